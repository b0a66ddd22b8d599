package scim

import (
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeQuery(t *testing.T) {
	good := []struct{ raw, want string }{
		{`Filter=userName+eq+%22a%22`, `filter=userName eq "a"`},
		{`STARTINDEX=2&Count=3&ExcludedAttributes=members`, `count=3|excludedAttributes=members|startIndex=2`},
		{`filter=displayName+eq+%22R;D%22`, `filter=displayName eq "R;D"`},
		{`aadOptscim062020&filter=x`, `aadOptscim062020=|filter=x`},
		{`other=1&other=2&&`, `other=1|other=2`},
	}
	for _, tc := range good {
		got, err := NormalizeQuery(tc.raw)
		if err != nil {
			t.Errorf("NormalizeQuery(%q): %v", tc.raw, err)
			continue
		}
		v, _ := url.ParseQuery(got)
		var pairs []string
		for _, k := range slices.Sorted(maps.Keys(v)) {
			for _, x := range v[k] {
				pairs = append(pairs, k+"="+x)
			}
		}
		if s := strings.Join(pairs, "|"); s != tc.want {
			t.Errorf("NormalizeQuery(%q) reads as %q, want %q", tc.raw, s, tc.want)
		}
	}
	bad := []struct{ raw, scimType, detail string }{
		{`filter=userName+eq+%22100%+x%22`, TypeInvalidFilter, `"%+x" at byte 19`},
		{`filter=a%`, TypeInvalidFilter, `"%" at byte 2`},
		{`filter=a&FILTER=b`, TypeInvalidFilter, "filter is given more than once"},
		{`count=1&count=1`, TypeInvalidValue, "count is given more than once"},
		{`attributes=%zz`, TypeInvalidValue, `"%zz" at byte 1`},
		{`%=1`, TypeInvalidValue, "parameter name"},
	}
	for _, tc := range bad {
		_, err := NormalizeQuery(tc.raw)
		var se *Error
		if !errors.As(err, &se) || se.Status != 400 || se.ScimType != tc.scimType || !strings.Contains(se.Detail, tc.detail) {
			t.Errorf("NormalizeQuery(%q) = %v, want 400 %s mentioning %q", tc.raw, err, tc.scimType, tc.detail)
		}
	}
}

func TestCheckContentType(t *testing.T) {
	for _, ct := range []string{"", "application/scim+json", "APPLICATION/SCIM+JSON; charset=UTF-8", "application/json;charset=utf8", "application/scim+json; charset=us-ascii", `application/json; charset="utf-8"`} {
		if err := CheckContentType(ct); err != nil {
			t.Errorf("CheckContentType(%q): %v", ct, err)
		}
	}
	for _, ct := range []string{"text/plain", "application/*", "application/scim+json; charset=iso-8859-1", "application/json; charset=utf-16", "application/json;;"} {
		var se *Error
		if err := CheckContentType(ct); !errors.As(err, &se) || se.Status != 415 {
			t.Errorf("CheckContentType(%q) = %v, want 415", ct, err)
		}
	}
}

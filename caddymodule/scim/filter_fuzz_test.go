package scim

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParseFilter checks, for any input: no panic; errors are *Error 400 invalidFilter;
// a parsed filter prints and parses back to the same tree; Match never panics and fails
// only with 400 invalidFilter; and every equality term is necessary for a match.
func FuzzParseFilter(f *testing.F) {
	for _, tc := range fltParseCases {
		f.Add(tc.in)
	}
	for _, tc := range fltErrorCases {
		if len(tc.in) <= MaxFilterLength {
			f.Add(tc.in)
		}
	}
	for _, tc := range fltUserMatchCases {
		f.Add(tc.filter)
	}
	user, group := fltLoad(f, "user.json"), fltLoad(f, "group.json")
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			fltRequireError(t, err, TypeInvalidFilter, "invalid filter")
			return
		}
		text := fltFormat(flt)
		again, err := ParseFilter(text)
		switch {
		case err != nil:
			// Quoting bare values can push a filter over the length limit.
			if !strings.Contains(err.Error(), "bytes long") {
				t.Fatalf("%q printed as %q, which does not parse: %v", s, text, err)
			}
		case !reflect.DeepEqual(flt, again):
			t.Fatalf("%q printed as %q parses to a different tree", s, text)
		}
		for _, rc := range []struct {
			typ string
			r   Resource
		}{{UserType, user}, {GroupType, group}, {"", user}} {
			if _, err := Match(flt, rc.typ, rc.r); err != nil {
				fltRequireError(t, err, TypeInvalidFilter, "")
				if strings.Contains(err.Error(), "too large") {
					t.Fatalf("Match rejects parsed filter %q as too large", s)
				}
				continue
			}
			fltCheckTermsNecessary(t, flt, rc.typ, rc.r)
		}
	})
}

// FuzzParsePath checks that ParsePath never panics, fails only with 400 invalidPath,
// and that a value filter in a path obeys the same grammar as ParseFilter.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		`userName`, `name.givenName`, `emails[type eq "work"].value`, `addresses[type eq "work"].formatted`,
		`members[value eq "7f4bc1a3-285e-48ae-8202-5accb43efb0e"]`, `members`, `manager`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`,
		`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag`,
		`emails[type eq "other"].Value`, `roles`, `active`,
	} {
		f.Add(s)
	}
	for _, tc := range fltPathErrorCases {
		if len(tc.in) <= MaxFilterLength {
			f.Add(tc.in)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			fltRequireError(t, err, TypeInvalidPath, "invalid path")
			return
		}
		if p.Attr.Name == "" {
			t.Fatalf("ParsePath(%q) returned no attribute name", s)
		}
		if p.Filter != nil && p.Attr.Sub != "" {
			t.Fatalf("ParsePath(%q) set both a filter and Attr.Sub", s)
		}
		if p.Filter != nil {
			if _, err := ParseFilter(fltFormat(p.Filter)); err != nil && !strings.Contains(err.Error(), "bytes long") {
				t.Fatalf("the filter of path %q does not parse as a filter: %v", s, err)
			}
		}
		if _, err := ParseAttrPath(s); err != nil {
			fltRequireError(t, err, TypeInvalidPath, "invalid attribute path")
		}
	})
}

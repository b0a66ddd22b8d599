package journaladmin

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

func TestFilterValuesRoundTrip(t *testing.T) {
	f := Filter{
		FromTime: time.Date(2025, 1, 31, 8, 0, 0, 0, time.UTC), ToTime: time.Date(2025, 2, 1, 8, 0, 0, 500, time.UTC),
		FromSeq: 2, ToSeq: 9, SCIMID: "id-1", Subject: "Alice@example.com", Outcome: "applied", ResourceType: "User",
	}
	q := f.Values()
	want := url.Values{
		"from": {"2025-01-31T08:00:00Z"}, "to": {"2025-02-01T08:00:00.0000005Z"}, "from_seq": {"2"}, "to_seq": {"9"},
		"scim_id": {"id-1"}, "user_name": {"Alice@example.com"}, "outcome": {"applied"}, "resource_type": {"User"},
	}
	if !reflect.DeepEqual(q, want) {
		t.Errorf("Values = %v, want %v", q, want)
	}
	got, err := ParseFilter(q)
	if err != nil || !reflect.DeepEqual(got, f) {
		t.Errorf("ParseFilter(Values) = %+v, %v; want %+v", got, err, f)
	}
	if q := (Filter{}).Values(); len(q) != 0 {
		t.Errorf("the zero Filter's Values = %v, want none", q)
	}
	wantQ := journal.Query{FromTime: f.FromTime, ToTime: f.ToTime, FromSeq: 2, ToSeq: 9, SCIMID: "id-1", Subject: "Alice@example.com", Outcome: "applied"}
	if got := f.Query(); got != wantQ {
		t.Errorf("Query = %+v, want %+v", got, wantQ)
	}
}

func TestParseFilterErrors(t *testing.T) {
	tests := []struct {
		query, param, msg string
	}{
		{"from=yesterday", "from", `want an RFC 3339 time such as 2025-01-31T08:00:00Z, got "yesterday"`},
		{"to=2025-13-01T00:00:00Z", "to", "want an RFC 3339 time"},
		{"from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z", "to", "is before from"},
		{"from_seq=0", "from_seq", `want a sequence number from 1, got "0"`},
		{"to_seq=-1", "to_seq", "want a sequence number from 1"},
		{"from_seq=5&to_seq=2", "to_seq", "is below from_seq"},
		{"outcome=Applied", "outcome", `unknown outcome "Applied"; want one of applied, rejected, failed`},
		{"outcome=skiped", "outcome", `unknown outcome "skiped"`},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseFilter(q)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != tt.param || !strings.Contains(pe.Err.Error(), tt.msg) ||
			err.Error() != "parameter "+tt.param+": "+pe.Err.Error() {
			t.Errorf("ParseFilter(%s) = %v, want parameter %s: ...%s...", tt.query, err, tt.param, tt.msg)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	at := time.Date(2025, 1, 31, 8, 0, 0, 0, time.UTC)
	r := &journal.Record{Seq: 5, Time: at, SCIMID: "id-1", Subject: "alice@example.com", Outcome: "applied", ResourceType: "User"}
	tests := []struct {
		name string
		f    Filter
		want bool
	}{
		{"zero", Filter{}, true},
		{"from is inclusive", Filter{FromTime: at}, true},
		{"from after", Filter{FromTime: at.Add(time.Nanosecond)}, false},
		{"to is exclusive", Filter{ToTime: at}, false},
		{"to after", Filter{ToTime: at.Add(time.Nanosecond)}, true},
		{"seq range inclusive", Filter{FromSeq: 5, ToSeq: 5}, true},
		{"seq below", Filter{FromSeq: 6}, false},
		{"seq above", Filter{ToSeq: 4}, false},
		{"scim id exact", Filter{SCIMID: "id-1"}, true},
		{"scim id case", Filter{SCIMID: "ID-1"}, false},
		{"subject any case", Filter{Subject: "ALICE@example.com"}, true},
		{"subject other", Filter{Subject: "bob@example.com"}, false},
		{"outcome exact", Filter{Outcome: "applied"}, true},
		{"outcome other", Filter{Outcome: "failed"}, false},
		{"resource type any case", Filter{ResourceType: "user"}, true},
		{"resource type other", Filter{ResourceType: "Group"}, false},
		{"all fields", Filter{FromTime: at, ToTime: at.Add(time.Second), FromSeq: 1, ToSeq: 9, SCIMID: "id-1", Subject: "Alice@Example.com", Outcome: "applied", ResourceType: "USER"}, true},
	}
	for _, tt := range tests {
		if got := tt.f.Match(r); got != tt.want {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCheckParams(t *testing.T) {
	tests := []struct {
		query string
		known []string
		want  string // "" for no error
	}{
		{"", nil, ""},
		{"x=1", nil, "parameter x: unknown parameter; this route takes none"},
		{"userName=a", Params("export"), "parameter userName: unknown parameter; known: format, from, to, from_seq, to_seq, scim_id, user_name, outcome"},
		{"outcome=a&outcome=b", Params("live"), "parameter outcome: given more than once"},
		{"scim_id=" + strings.Repeat("x", maxParamBytes+1), Params("live"), "parameter scim_id: longer than 1024 bytes"},
		{"resource_type=User&user_name=a&outcome=applied", Params("watch"), ""},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if err := CheckParams(q, tt.known...); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("CheckParams(%s) = %q, want %q", tt.query, got, tt.want)
		}
	}
}

package journaladmin

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
)

// Filter selects journal records. It is the one selection of the export and live routes
// and of the journal command: ParseFilter reads it from a route's query parameters, Values
// writes it back, Match applies it to a record, and Query hands it to journal.Export.
// Zero fields match everything. Each field's query parameter is named in its comment.
type Filter struct {
	// FromTime (inclusive) and ToTime (exclusive) bound the record time: from, to
	// (RFC 3339).
	FromTime, ToTime time.Time

	// FromSeq and ToSeq bound the sequence number, both inclusive: from_seq, to_seq.
	FromSeq, ToSeq uint64

	// SCIMID matches exactly: scim_id.
	SCIMID string

	// Subject (a user's userName, a group's displayName) matches case-insensitively, as
	// SCIM compares userName: user_name.
	Subject string

	// Outcome matches exactly: outcome.
	Outcome change.Outcome

	// ResourceType (User, Group) matches case-insensitively: resource_type. The live
	// stream takes it; export does not, and Query leaves it out.
	ResourceType string
}

// The query parameters of the routes that take any, in the order their errors list them.
var (
	exportParams = []string{"format", "from", "to", "from_seq", "to_seq", "scim_id", "user_name", "outcome"}
	liveParams   = []string{"resource_type", "user_name", "outcome", "scim_id", "backlog", "last_event_id"}
	pageParams   = []string{"from", "to", "outcome", "user_name", "scim_id", "resource_type", "event", "client"}
)

// Params returns the query parameters a journal route (export, live, watch, ...) takes;
// nil for a route that takes none. A client that checks a request before forwarding it,
// as `journal watch` does, checks it against these with CheckParams.
func Params(route string) []string {
	switch route {
	case "export":
		return slices.Clone(exportParams)
	case "live":
		return slices.Clone(liveParams)
	case "changes":
		return slices.Clone(changesParams)
	case "watch":
		return slices.Clone(pageParams)
	}
	return nil
}

// ParamError is a query parameter that a route refuses. Param names it, so the admin
// endpoint's message says which parameter to fix and the journal command which flag.
type ParamError struct {
	Param string
	Err   error
}

func (e *ParamError) Error() string { return "parameter " + e.Param + ": " + e.Err.Error() }

func (e *ParamError) Unwrap() error { return e.Err }

// CheckParams rejects any parameter not in known, given twice, or too long, with a
// *ParamError: a misspelt filter must fail, not export everything.
func CheckParams(q url.Values, known ...string) error {
	for k, vs := range q {
		if !slices.Contains(known, k) {
			if len(known) == 0 {
				return &ParamError{k, errors.New("unknown parameter; this route takes none")}
			}
			return &ParamError{k, fmt.Errorf("unknown parameter; known: %s", strings.Join(known, ", "))}
		}
		if len(vs) > 1 {
			return &ParamError{k, errors.New("given more than once")}
		}
		if len(vs[0]) > maxParamBytes {
			return &ParamError{k, fmt.Errorf("longer than %d bytes", maxParamBytes)}
		}
	}
	return nil
}

// ParseFilter reads a Filter from the query parameters in q; a bad value is a *ParamError.
// It reads every filter parameter present: a route first checks which ones it takes
// (CheckParams with its Params).
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	var err error
	if f.FromTime, err = parseTime(q, "from"); err != nil {
		return f, err
	}
	if f.ToTime, err = parseTime(q, "to"); err != nil {
		return f, err
	}
	if !f.FromTime.IsZero() && !f.ToTime.IsZero() && f.ToTime.Before(f.FromTime) {
		return f, &ParamError{"to", errors.New("is before from")}
	}
	if f.FromSeq, err = parseSeq(q, "from_seq"); err != nil {
		return f, err
	}
	if f.ToSeq, err = parseSeq(q, "to_seq"); err != nil {
		return f, err
	}
	if f.ToSeq != 0 && f.ToSeq < f.FromSeq {
		return f, &ParamError{"to_seq", errors.New("is below from_seq")}
	}
	f.SCIMID = q.Get("scim_id")
	f.Subject = q.Get("user_name")
	if f.Outcome, err = parseOutcome(q, "outcome"); err != nil {
		return f, err
	}
	f.ResourceType = q.Get("resource_type")
	return f, nil
}

// parseTime reads an RFC 3339 time; absent means unbounded.
func parseTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, &ParamError{name, fmt.Errorf("want an RFC 3339 time such as 2025-01-31T08:00:00Z, got %q", v)}
	}
	return t, nil
}

// parseSeq reads a sequence number; absent means unbounded.
func parseSeq(q url.Values, name string) (uint64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, &ParamError{name, fmt.Errorf("want a sequence number from 1, got %q", v)}
	}
	return n, nil
}

func parseOutcome(q url.Values, name string) (change.Outcome, error) {
	v, err := ParseOutcome(q.Get(name))
	if err != nil {
		return "", &ParamError{name, err}
	}
	return v, nil
}

// ParseOutcome reads an outcome filter: "" (any) or one of the outcomes a record carries.
// A misspelt one is an error, not a filter that silently matches nothing.
func ParseOutcome(s string) (change.Outcome, error) {
	v := change.Outcome(s)
	if v != "" && !v.Valid() {
		return "", fmt.Errorf("unknown outcome %q; want one of %s", s, strings.Join(outcomeNames(), ", "))
	}
	return v, nil
}

func outcomeNames() []string {
	out := make([]string, len(change.Outcomes))
	for i, o := range change.Outcomes {
		out[i] = string(o)
	}
	return out
}

// Values is f as query parameters (the ones ParseFilter reads), leaving out zero fields.
func (f Filter) Values() url.Values {
	q := url.Values{}
	set := func(name, v string) {
		if v != "" {
			q.Set(name, v)
		}
	}
	if !f.FromTime.IsZero() {
		set("from", f.FromTime.Format(time.RFC3339Nano))
	}
	if !f.ToTime.IsZero() {
		set("to", f.ToTime.Format(time.RFC3339Nano))
	}
	if f.FromSeq != 0 {
		set("from_seq", strconv.FormatUint(f.FromSeq, 10))
	}
	if f.ToSeq != 0 {
		set("to_seq", strconv.FormatUint(f.ToSeq, 10))
	}
	set("scim_id", f.SCIMID)
	set("user_name", f.Subject)
	set("outcome", string(f.Outcome))
	set("resource_type", f.ResourceType)
	return q
}

// Match reports whether r passes every set field, as journal.Export's selection does.
func (f Filter) Match(r *journal.Record) bool {
	return (f.FromTime.IsZero() || !r.Time.Before(f.FromTime)) &&
		(f.ToTime.IsZero() || r.Time.Before(f.ToTime)) &&
		(f.FromSeq == 0 || r.Seq >= f.FromSeq) &&
		(f.ToSeq == 0 || r.Seq <= f.ToSeq) &&
		(f.SCIMID == "" || f.SCIMID == r.SCIMID) &&
		(f.Subject == "" || strings.EqualFold(f.Subject, r.Subject)) &&
		(f.Outcome == "" || f.Outcome == r.Outcome) &&
		(f.ResourceType == "" || strings.EqualFold(f.ResourceType, r.ResourceType))
}

// Query is f as journal.Export's selection. journal.Query has no resource type, so
// ResourceType is left out: only the live stream takes it.
func (f Filter) Query() journal.Query {
	return journal.Query{
		FromTime: f.FromTime, ToTime: f.ToTime,
		FromSeq: f.FromSeq, ToSeq: f.ToSeq,
		SCIMID: f.SCIMID, Subject: f.Subject, Outcome: f.Outcome,
	}
}

// ParseFormat reads the export format from q (format, default jsonl); a bad value is a
// *ParamError.
func ParseFormat(q url.Values) (journal.Format, error) {
	v := q.Get("format")
	if v == "" {
		return journal.FormatJSONL, nil
	}
	f, err := journal.ParseFormat(v)
	if err != nil {
		return "", &ParamError{"format", fmt.Errorf("want jsonl, csv or ocsf, got %q", v)}
	}
	return f, nil
}

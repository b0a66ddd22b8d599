package reconcile

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scimgate/scimgate/caddymodule/mapping"
)

// Kind is what a finding says about an account.
type Kind string

// The kinds of findings.
const (
	// Orphaned: an account of the app that no resource of the directory stands for (not
	// in the directory, deleted there), or whose resource the policy keeps out of the app
	// while the account is still active there.
	Orphaned Kind = "orphaned"
	// Missing: an active resource of the directory, in scope, without an account in the
	// app (never created, or gone from the app).
	Missing Kind = "missing"
	// NotDisabled: inactive in the directory, active in the app.
	NotDisabled Kind = "not_disabled"
	// Drifted: mapped fields whose value in the app is not what the mapping sends for the
	// directory's current values.
	Drifted Kind = "drifted"
	// MemberMissing: a member of the directory's group that the app's group lacks.
	MemberMissing Kind = "member_missing"
	// MemberExtra: a member of the app's group that the directory's group does not have.
	MemberExtra Kind = "member_extra"
)

// Kinds lists every kind, in the order reports show them.
var Kinds = [...]Kind{Orphaned, Missing, NotDisabled, Drifted, MemberMissing, MemberExtra}

// Finding is one difference between the app and the directory.
type Finding struct {
	Kind         Kind   `json:"kind"`
	ResourceType string `json:"resource_type"`
	SCIMID       string `json:"scim_id,omitempty"`
	NativeID     string `json:"native_id,omitempty"`
	Subject      string `json:"subject,omitempty"` // userName or displayName (an orphan's: the app's)
	Reason       string `json:"reason"`
	// Fields are the drifted fields (Drifted and NotDisabled).
	Fields []mapping.Difference `json:"fields,omitempty"`
	// Member is the member of a membership finding (the group is the finding's resource).
	Member *Member `json:"member,omitempty"`
	// Fix is what --fix did about it: applied, skipped, dry_run, denied or failed, with
	// the reason; "" when nothing was attempted.
	Fix string `json:"fix,omitempty"`
}

// Member is the member of a membership finding.
type Member struct {
	SCIMID   string `json:"scim_id,omitempty"`
	NativeID string `json:"native_id"`
	Subject  string `json:"subject,omitempty"`
}

// Counts are a report's totals. The findings' counts are exact even when the report
// lists only the first MaxFindings of them.
type Counts struct {
	AppUsers       int `json:"app_users"`
	AppGroups      int `json:"app_groups"`
	DirUsers       int `json:"directory_users"`
	DirGroups      int `json:"directory_groups"`
	Orphaned       int `json:"orphaned"`
	Missing        int `json:"missing"`
	NotDisabled    int `json:"not_disabled"`
	Drifted        int `json:"drifted"`
	MembersMissing int `json:"members_missing"`
	MembersExtra   int `json:"members_extra"`
	Fixed          int `json:"fixed,omitempty"`
	FixFailed      int `json:"fix_failed,omitempty"`
	// FixSkipped: repairs that sent the app nothing (the policy skipped them, or the
	// target is in dry run); neither fixed nor failed.
	FixSkipped int `json:"fix_skipped,omitempty"`
	// Unlinked: links of the directory to accounts the app no longer lists, released by
	// the fix before its repairs (the app may give their ids to new accounts).
	Unlinked int `json:"unlinked,omitempty"`
}

// Findings is the number of findings of every kind.
func (c Counts) Findings() int {
	return c.Orphaned + c.Missing + c.NotDisabled + c.Drifted + c.MembersMissing + c.MembersExtra
}

func (c *Counts) add(k Kind) {
	switch k {
	case Orphaned:
		c.Orphaned++
	case Missing:
		c.Missing++
	case NotDisabled:
		c.NotDisabled++
	case Drifted:
		c.Drifted++
	case MemberMissing:
		c.MembersMissing++
	case MemberExtra:
		c.MembersExtra++
	}
}

// Report is the result of one reconcile.
type Report struct {
	// ID is the report's id in the store (0 until it is stored).
	ID uint64 `json:"id"`
	// Run is the run's request id: the journal's summary record and every repair of
	// --fix carry it as their request_id.
	Run      string    `json:"run"`
	Target   string    `json:"target"`
	By       string    `json:"by"` // who asked: "cli", "admin", "schedule"
	Fix      bool      `json:"fix"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Complete is false when the app could not be listed in full: missing accounts are
	// then not reported (they could be on the pages not read) and nothing is fixed.
	Complete bool      `json:"complete"`
	Counts   Counts    `json:"counts"`
	Findings []Finding `json:"findings"`
	// Truncated: more findings than MaxFindings were found; Counts has them all.
	Truncated bool `json:"truncated,omitempty"`
	// Notes are what the run could not compare or do (a listing error, no list call for
	// groups, groups that are roles).
	Notes []string `json:"notes,omitempty"`
}

// Summary is what the store lists of a report without reading it.
type Summary struct {
	ID       uint64    `json:"id"`
	Run      string    `json:"run"`
	Target   string    `json:"target"`
	By       string    `json:"by"`
	Fix      bool      `json:"fix"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Complete bool      `json:"complete"`
	Counts   Counts    `json:"counts"`
}

// Summary returns the report's summary.
func (r *Report) Summary() Summary {
	return Summary{ID: r.ID, Run: r.Run, Target: r.Target, By: r.By, Fix: r.Fix, Started: r.Started, Finished: r.Finished, Complete: r.Complete, Counts: r.Counts}
}

// Formats a report is written in.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// Write writes the report in format (table, json or csv).
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "", FormatTable:
		return r.WriteTable(w)
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case FormatCSV:
		return r.WriteCSV(w)
	}
	return fmt.Errorf("unknown format %q: use table, json or csv", format)
}

// WriteTable writes the report for people: a summary, then one line per finding.
func (r *Report) WriteTable(w io.Writer) error {
	c := r.Counts
	fmt.Fprintf(w, "reconcile report %d of %s (run %s, by %s), %s, %s\n", r.ID, r.Target, r.Run, r.By,
		r.Started.UTC().Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Millisecond))
	fmt.Fprintf(w, "app: %d users, %d groups; directory: %d users, %d groups\n", c.AppUsers, c.AppGroups, c.DirUsers, c.DirGroups)
	fmt.Fprintf(w, "orphaned %d, missing %d, not disabled %d, drifted %d, members missing %d, members extra %d",
		c.Orphaned, c.Missing, c.NotDisabled, c.Drifted, c.MembersMissing, c.MembersExtra)
	if r.Fix {
		fmt.Fprintf(w, "; fixed %d, fix failed %d", c.Fixed, c.FixFailed)
		if c.FixSkipped > 0 {
			fmt.Fprintf(w, ", not fixed %d (skipped by the policy, or dry run)", c.FixSkipped)
		}
		if c.Unlinked > 0 {
			fmt.Fprintf(w, "; links to gone accounts released %d", c.Unlinked)
		}
	}
	fmt.Fprintln(w)
	if !r.Complete {
		fmt.Fprintln(w, "INCOMPLETE: the app could not be listed in full; missing accounts are not reported and nothing was fixed")
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	if len(r.Findings) == 0 {
		_, err := fmt.Fprintln(w, "no findings")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tTYPE\tSUBJECT\tSCIM ID\tNATIVE ID\tDETAIL\tFIX")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Kind, f.ResourceType, oneLine(f.Subject), f.SCIMID, f.NativeID, oneLine(f.detail()), oneLine(f.Fix))
	}
	if r.Truncated {
		fmt.Fprintf(tw, "…\t\t\t\t\t%d findings in all; the report lists the first %d\t\n", c.Findings(), len(r.Findings))
	}
	return tw.Flush()
}

// detail is a finding's reason with its fields or member.
func (f *Finding) detail() string {
	var b strings.Builder
	b.WriteString(f.Reason)
	for i, d := range f.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s app=%s expected=%s", d.Native, d.App, d.Want)
	}
	if m := f.Member; m != nil {
		fmt.Fprintf(&b, ": member %s (native %s", m.Subject, m.NativeID)
		if m.SCIMID != "" {
			fmt.Fprintf(&b, ", SCIM %s", m.SCIMID)
		}
		b.WriteString(")")
	}
	return b.String()
}

// WriteCSV writes one row per finding, with a header row.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"report", "run", "target", "kind", "resource_type", "subject", "scim_id", "native_id", "reason",
		"fields", "member_scim_id", "member_native_id", "member_subject", "fix"})
	id := strconv.FormatUint(r.ID, 10)
	for _, f := range r.Findings {
		fields := ""
		if len(f.Fields) > 0 {
			b, _ := json.Marshal(f.Fields)
			fields = string(b)
		}
		var m Member
		if f.Member != nil {
			m = *f.Member
		}
		_ = cw.Write([]string{id, r.Run, r.Target, string(f.Kind), f.ResourceType, csvSafe(f.Subject), f.SCIMID, csvSafe(f.NativeID), f.Reason,
			fields, m.SCIMID, csvSafe(m.NativeID), csvSafe(m.Subject), f.Fix})
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe keeps a value an app chose from being read as a formula by a spreadsheet.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// oneLine keeps a table row on one line whatever an app's values hold.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

package reconcile

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// seeded is a directory of 100 clean users and two groups provisioned into the demo app
// through the engine, then changed behind the gateway's back in every way a reconcile
// reports.
type seeded struct {
	*rig
	users  []string // SCIM ids of the clean users u000..u099
	eng    string   // group "eng" (u000..u009)
	ops    string   // group "ops" (u010..u014)
	want   []string // the findings a reconcile must report (findingKey), sorted
	orphan []string // the orphans' native ids
}

func seed(t *testing.T) *seeded { return seedWith(t, nil) }

// seedWith is seed with a policy deciding every change.
func seedWith(t *testing.T, pol *policy.Engine) *seeded {
	r := newPolicyRig(t, pol)
	s := &seeded{rig: r}
	for i := range 100 {
		s.users = append(s.users, r.create(r.eng, scim.UserType, user(fmt.Sprintf("u%03d", i), "Engineer", true)))
	}
	s.eng = r.create(r.eng, scim.GroupType, group("eng", s.users[:10]...))
	s.ops = r.create(r.eng, scim.GroupType, group("ops", s.users[10:15]...))

	// orphaned: an account made in the app by hand, and one whose user the directory lost
	// (deleted there while the app kept it).
	ghost := r.app.call("POST", "/api/v1/accounts", `{"login":"ghost@example.com"}`, 201)
	s.orphan = append(s.orphan, jsonID(t, ghost))
	gone := r.create(r.eng, scim.UserType, user("gone", "Engineer", true))
	s.orphan = append(s.orphan, r.nativeID(scim.UserType, gone))
	if err := r.store.Update(func(tx *store.Tx) error { return tx.Delete(scim.UserType, gone) }); err != nil {
		t.Fatal(err)
	}
	// drifted: an admin changed a title in the app, and a team's description.
	r.app.call("PATCH", "/api/v1/accounts/"+r.nativeID(scim.UserType, s.users[20]), `{"org":{"title":"Hacker"}}`, 200)
	r.app.call("PATCH", "/api/v1/teams/"+r.nativeID(scim.GroupType, s.ops), `{"description":"ours now"}`, 200)
	// drifted: a title removed in the directory while the app kept it (a change that did
	// not reach the app).
	r.patch(r.plain, scim.UserType, s.users[21], `[{"op":"remove","path":"title"}]`)
	// not disabled: a leaver deactivated through the gateway, unlocked in the app by hand.
	leaver := r.create(r.eng, scim.UserType, user("leaver", "Engineer", true))
	r.patch(r.eng, scim.UserType, leaver, `[{"op":"replace","path":"active","value":false}]`)
	r.app.call("POST", "/api/v1/accounts/"+r.nativeID(scim.UserType, leaver)+"/unlock", "", 200)
	// missing: a user whose account was deleted in the app, and one created before the
	// target was configured.
	newbie := r.create(r.eng, scim.UserType, user("newbie", "Engineer", true))
	r.app.call("DELETE", "/api/v1/accounts/"+r.nativeID(scim.UserType, newbie), "", 204)
	r.create(r.plain, scim.UserType, user("latecomer", "Engineer", true))
	// an inactive user without an account is not missing: it would have no access.
	r.create(r.plain, scim.UserType, user("dormant", "Engineer", false))
	// membership drift: u030 added to eng in the app, u001 removed from it there.
	engNative := r.nativeID(scim.GroupType, s.eng)
	r.app.call("PUT", "/api/v1/teams/"+engNative+"/members/"+r.nativeID(scim.UserType, s.users[30]), "", 204)
	r.app.call("DELETE", "/api/v1/teams/"+engNative+"/members/"+r.nativeID(scim.UserType, s.users[1]), "", 204)

	s.want = []string{
		"orphaned User ghost@example.com",
		"orphaned User gone@example.com",
		"drifted User u020@example.com",
		"drifted Group ops",
		"drifted User u021@example.com",
		"not_disabled User leaver@example.com",
		"missing User newbie@example.com",
		"missing User latecomer@example.com",
		"member_extra Group eng member u030@example.com",
		"member_missing Group eng member u001@example.com",
	}
	slices.Sort(s.want)
	return s
}

func jsonID(t *testing.T, body []byte) string {
	t.Helper()
	var v struct {
		ID json.Number `json:"id"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.ID == "" {
		t.Fatalf("no id in %s: %v", body, err)
	}
	return v.ID.String()
}

func keys(r *Report) []string {
	out := make([]string, 0, len(r.Findings))
	for _, f := range r.Findings {
		out = append(out, findingKey(f))
	}
	slices.Sort(out)
	return out
}

// TestReconcileReportsExactlyTheDifferences: against the demo app seeded with orphans,
// drift, an account active against the directory, missing accounts and membership drift,
// the report lists exactly those, and nothing of the 100 clean users; it is stored,
// readable by id, and journaled with its counts.
func TestReconcileReportsExactlyTheDifferences(t *testing.T) {
	s := seed(t)
	rep, err := s.reconciler(Options{Batch: 7}).Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(rep); !slices.Equal(got, s.want) {
		t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(s.want, "\n"))
	}
	if !rep.Complete || rep.Truncated {
		t.Fatalf("complete %v truncated %v notes %v", rep.Complete, rep.Truncated, rep.Notes)
	}
	c := rep.Counts
	if c.AppUsers != 103 || c.AppGroups != 2 || c.DirUsers != 104 || c.DirGroups != 2 {
		t.Errorf("counts %+v: want 103 app users (100 + gone + ghost + leaver; newbie deleted), 104 directory users, 2 groups each", c)
	}
	for _, f := range rep.Findings {
		switch f.Kind {
		case Drifted:
			if f.ResourceType == scim.GroupType {
				if len(f.Fields) != 1 || f.Fields[0].Native != "description" || string(f.Fields[0].App) != `"ours now"` {
					t.Errorf("group drift fields %+v", f.Fields)
				}
				continue
			}
			want := `"Engineer"`
			if f.Subject == "u021@example.com" {
				want = `""` // the mapping's default for an absent title
			}
			if len(f.Fields) != 1 || f.Fields[0].Native != "org.title" || string(f.Fields[0].Want) != want {
				t.Errorf("%s's drift fields %+v: want org.title expected %s", f.Subject, f.Fields, want)
			}
		case NotDisabled:
			if len(f.Fields) != 1 || f.Fields[0].Native != "locked" || !f.Fields[0].State {
				t.Errorf("not disabled fields %+v: want locked", f.Fields)
			}
		case Missing:
			if f.Subject == "newbie@example.com" && f.Reason != "its account is gone from the app" {
				t.Errorf("newbie's reason %q", f.Reason)
			}
		}
	}

	stored, err := Load(s.store, rep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys(stored), s.want) || stored.Run != rep.Run {
		t.Errorf("stored report %d differs: %v", rep.ID, keys(stored))
	}
	recs := s.records(rep.Run)
	if len(recs) != 1 || recs[0].Action != change.ActionReconcile || recs[0].Subject != fmt.Sprintf("report %d", rep.ID) {
		t.Fatalf("journal records of the run: %+v", recs)
	}
	counts := map[string]string{}
	for _, ch := range recs[0].Changes {
		counts[ch.Path] = string(ch.Value)
	}
	if counts["orphaned"] != "2" || counts["missing"] != "2" || counts["drifted"] != "3" || counts["not_disabled"] != "1" || counts["members_extra"] != "1" || counts["members_missing"] != "1" {
		t.Errorf("journaled counts %v", counts)
	}
}

// TestReconcileFixConverges: --fix creates the missing, disables the not-disabled and
// (with orphans disable) the orphans, sends the drifted attributes and corrects the
// memberships, each journaled as a repair of the run; a second reconcile reports only
// the orphans, now disabled (they are never deleted), and once the app's admin deletes
// them, nothing.
func TestReconcileFixConverges(t *testing.T) {
	s := seed(t)
	rc := s.reconciler(Options{Orphans: OrphansDisable})
	rep, err := rc.Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys(rep), s.want) {
		t.Fatalf("findings %v", keys(rep))
	}
	for _, f := range rep.Findings {
		if f.Fix != string(change.Applied) {
			t.Errorf("%s: fix %q", findingKey(f), f.Fix)
		}
	}
	if rep.Counts.Fixed != len(s.want) || rep.Counts.FixFailed != 0 {
		t.Errorf("fixed %d failed %d", rep.Counts.Fixed, rep.Counts.FixFailed)
	}
	repairs := 0
	for _, rec := range s.records(rep.Run) {
		if rec.Action == change.ActionRepair {
			if rec.Client != "reconcile" || rec.Target != "demo" {
				t.Errorf("repair record %+v", rec)
			}
			if rec.Outcome == change.Applied {
				repairs++
			}
		}
	}
	// 2 orphans, 3 drifts, 1 not disabled, 2 missing, 1 group's members (both findings).
	if repairs != 9 {
		t.Errorf("%d applied repair records, want 9", repairs)
	}

	again, err := rc.Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"orphaned User ghost@example.com", "orphaned User gone@example.com"}
	if got := keys(again); !slices.Equal(got, want) {
		t.Fatalf("after the fix: %v, want only the orphans", got)
	}
	for _, f := range again.Findings {
		if !strings.HasSuffix(f.Reason, orphanDisabled) {
			t.Errorf("orphan %s: %q, want it disabled", f.Subject, f.Reason)
		}
	}
	st := s.app.state()
	if n := len(st.Memberships); n != 15 {
		t.Errorf("%d memberships in the app, want 15", n)
	}
	for _, id := range s.orphan {
		s.app.call("DELETE", "/api/v1/accounts/"+id, "", 204)
	}
	clean, err := rc.Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(clean.Findings) != 0 || clean.Counts.Findings() != 0 {
		t.Fatalf("a third reconcile still finds %v", keys(clean))
	}
}

// TestReconcileOrphansReportedOnly: by default --fix leaves orphans as they are.
func TestReconcileOrphansReportedOnly(t *testing.T) {
	s := seed(t)
	rep, err := s.reconciler(Options{}).Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Findings {
		if f.Kind == Orphaned && !strings.HasPrefix(f.Fix, "reported only") {
			t.Errorf("orphan %s: fix %q", f.Subject, f.Fix)
		}
	}
	for _, a := range s.app.state().Accounts {
		if (a.Login == "ghost@example.com" || a.Login == "gone@example.com") && a.Locked {
			t.Errorf("orphan %s was locked without orphans disable", a.Login)
		}
	}
}

// TestReconcileOutputs: the table, JSON and CSV forms carry every finding.
func TestReconcileOutputs(t *testing.T) {
	s := seed(t)
	rep, err := s.reconciler(Options{}).Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	var tbl, js, cs bytes.Buffer
	for format, w := range map[string]*bytes.Buffer{FormatTable: &tbl, FormatJSON: &js, FormatCSV: &cs} {
		if err := rep.Write(w, format); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"orphaned 2, missing 2, not disabled 1, drifted 3, members missing 1, members extra 1", "org.title app=\"Hacker\" expected=\"Engineer\"", "ghost@example.com"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || !slices.Equal(keys(&back), s.want) {
		t.Errorf("JSON: %v %v", err, keys(&back))
	}
	rows, err := csv.NewReader(&cs).ReadAll()
	if err != nil || len(rows) != len(s.want)+1 || rows[0][3] != "kind" {
		t.Errorf("CSV: %v, %d rows", err, len(rows))
	}
	if err := rep.Write(&tbl, "xml"); err == nil {
		t.Error("an unknown format was accepted")
	}
}

// TestReconcileMissingGroup: a group the app never got (created before the target was
// configured) is missing; the fix creates its team with the members the directory holds,
// and a second reconcile finds nothing.
func TestReconcileMissingGroup(t *testing.T) {
	r := newRig(t)
	var ids []string
	for i := range 3 {
		ids = append(ids, r.create(r.eng, scim.UserType, user(fmt.Sprintf("m%d", i), "Engineer", true)))
	}
	r.create(r.plain, scim.GroupType, group("late", ids...))
	rc := r.reconciler(Options{})
	rep, err := rc.Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(rep); len(got) != 1 || got[0] != "missing Group late" || rep.Findings[0].Fix != "applied" {
		t.Fatalf("findings %v, fix %q", got, rep.Findings[0].Fix)
	}
	st := r.app.state()
	if len(st.Teams) != 1 || st.Teams[0].Name != "late" || len(st.Memberships) != 3 {
		t.Fatalf("the app after the fix: %+v", st)
	}
	again, err := rc.Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Findings) != 0 {
		t.Fatalf("a second reconcile finds %v", keys(again))
	}
}

// TestReconcileAbsentActiveIsActive: a user created without active (SCIM leaves it to the
// server; the engine reads it as active, and Entra always sends it but other clients need
// not) whose account the app keeps unlocked is no finding: the mapping's state fields are
// expected as for an active user, not as absent (locked: false, not null). Once the app
// locks that account, it is drifted, active in the directory and inactive in the app, and
// --fix unlocks it.
func TestReconcileAbsentActiveIsActive(t *testing.T) {
	r := newRig(t)
	doc := user("noactive", "Engineer", true)
	delete(doc, "active")
	id := r.create(r.eng, scim.UserType, doc)
	rep, err := r.reconciler(Options{}).Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 0 {
		t.Fatalf("findings for an unlocked account of a user without active: %v", keys(rep))
	}

	native := r.nativeID(scim.UserType, id)
	r.app.call("POST", "/api/v1/accounts/"+native+"/lock", "", 200)
	rep, err = r.reconciler(Options{}).Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != Drifted || !strings.HasPrefix(rep.Findings[0].Reason, "active in the directory, inactive in the app") {
		t.Fatalf("findings for a locked account of a user without active: %+v", rep.Findings)
	}
	if s := r.app.state(); len(s.Accounts) != 1 || s.Accounts[0].Locked {
		t.Errorf("after --fix the account is %+v, want it unlocked", s.Accounts)
	}
}

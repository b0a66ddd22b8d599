package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestReconcileIncompleteListing: when a page of the app fails, the report says it is
// incomplete, reports no missing accounts (they could be on the pages not read), fixes
// nothing, and its journal record is failed.
func TestReconcileIncompleteListing(t *testing.T) {
	s := seed(t)
	var pages atomic.Int32
	s.app.interceptPages(func(w http.ResponseWriter, _ *http.Request) bool {
		if pages.Add(1) < 2 {
			return false // the first page, then every attempt at the second fails
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":{"code":"INTERNAL","message":"down"}}`))
		return true
	})
	rep, err := s.reconciler(Options{}).Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Complete || rep.Counts.Missing != 0 || rep.Counts.Fixed != 0 {
		t.Fatalf("complete %v, missing %d, fixed %d", rep.Complete, rep.Counts.Missing, rep.Counts.Fixed)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "missing users are not reported") {
		t.Errorf("notes %v", rep.Notes)
	}
	recs := s.records(rep.Run)
	if len(recs) != 1 || recs[0].Outcome != change.Failed {
		t.Errorf("records of the run: %+v", recs)
	}
}

// TestReconcileHoldsNoWriteLock: while the app's second page is held back, the directory
// takes writes (a change through the engine commits), and a second reconcile of the
// target is refused as busy.
func TestReconcileHoldsNoWriteLock(t *testing.T) {
	s := seed(t)
	gate, held := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before the app's server closes, however the test ends
	var pages atomic.Int32
	s.app.interceptPages(func(http.ResponseWriter, *http.Request) bool {
		if pages.Add(1) == 2 {
			close(held)
			<-gate
		}
		return false
	})
	rc := s.reconciler(Options{})
	done := make(chan error, 1)
	go func() {
		_, err := rc.Run(context.Background(), false, "test")
		done <- err
	}()
	<-held
	wrote := make(chan struct{})
	go func() {
		s.create(s.rig.eng, scim.UserType, user("during", "Engineer", true))
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(20 * time.Second):
		t.Fatal("a write waited for the reconcile")
	}
	if _, err := rc.Run(context.Background(), false, "test"); !errors.Is(err, ErrBusy) {
		t.Errorf("a second run: %v, want ErrBusy", err)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// brakePolicy refuses a deactivation once two were let through in the last hour.
const brakePolicy = `package scimgate

default decision := {"allow": true}

decision := {"allow": false, "reasons": ["brake: 2 deactivations in the last hour"]} if {
	"deactivate" in input.events
	input.stats.last_hour.deactivate >= 2
}

decision := {"allow": false, "reasons": ["titles are not repaired"]} if {
	input.action == "repair"
	input.resource.userName == "u020@example.com"
}
`

// TestReconcileFixWithinThePolicy: every repair is decided by the policy with action
// "repair", and counted by its stats: the leaver's deactivation through Entra and the
// first orphan's through the reconcile reach the brake, so the second orphan and the
// not-disabled account are refused and stay as they are; a repair the policy denies
// outright is refused too, and the rest is applied.
func TestReconcileFixWithinThePolicy(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "decision.rego"), []byte(brakePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(policy.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pol.Close() })
	s := seedWith(t, pol)
	rep, err := s.reconciler(Options{Orphans: OrphansDisable}).Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	fixes := map[string]string{}
	for _, f := range rep.Findings {
		fixes[findingKey(f)] = f.Fix
	}
	for key, want := range map[string]string{
		"orphaned User ghost@example.com":                  "applied",
		"orphaned User gone@example.com":                   "denied: denied by policy: brake",
		"not_disabled User leaver@example.com":             "denied: denied by policy: brake",
		"drifted User u020@example.com":                    "denied: denied by policy: titles are not repaired",
		"missing User newbie@example.com":                  "applied",
		"member_missing Group eng member u001@example.com": "applied",
	} {
		if !strings.HasPrefix(fixes[key], want) {
			t.Errorf("%s: fix %q, want %q", key, fixes[key], want)
		}
	}
	for _, a := range s.app.state().Accounts {
		if (a.Login == "gone@example.com" || a.Login == "leaver@example.com") && a.Locked {
			t.Errorf("%s was locked past the brake", a.Login)
		}
		if a.Login == "ghost@example.com" && !a.Locked {
			t.Error("ghost was not locked")
		}
	}
	var denied int
	for _, rec := range s.records(rep.Run) {
		if rec.Action == change.ActionRepair && rec.Outcome == change.Denied {
			denied++
		}
	}
	if denied != 3 {
		t.Errorf("%d denied repair records, want 3", denied)
	}
}

// TestNewRefusesWhatCannotWork: a mapping without list calls, an unknown orphans option.
func TestNewRefusesWhatCannotWork(t *testing.T) {
	r := newRig(t)
	if _, err := New(r.store, r.j, r.eng, r.target, Options{Orphans: "delete"}, nil); err == nil || !strings.Contains(err.Error(), "orphans must be report or disable") {
		t.Errorf("orphans delete: %v", err)
	}
	m, err := mapping.Parse("nolist", []byte(`{"version":1,"users":{"events":{"create":{"method":"POST","path":"/u","id":"id","body":{"login":"userName"}}}}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	nolist := &provision.Target{Name: "nolist", Mapping: m, Client: r.target.Client}
	if _, err := New(r.store, r.j, r.eng, nolist, Options{}, nil); err == nil || !strings.Contains(err.Error(), "no list call") {
		t.Errorf("no list call: %v", err)
	}
}

// TestReconcileItemWithoutID: an account the app lists without an id cannot be compared:
// the report is incomplete rather than wrong.
func TestReconcileItemWithoutID(t *testing.T) {
	s := seed(t)
	s.app.interceptPages(func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"items":[{"login":"noid@example.com"}],"next_cursor":null}`))
		return true
	})
	rep, err := s.reconciler(Options{}).Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Complete || rep.Counts.Missing != 0 || !strings.Contains(strings.Join(rep.Notes, "\n"), "page 1: its account 1: the response has no native id") {
		t.Errorf("complete %v missing %d notes %v", rep.Complete, rep.Counts.Missing, rep.Notes)
	}
}

// TestReportsAreBounded: the store keeps the newest Keep reports; older ones are gone,
// and reading one answers not found.
func TestReportsAreBounded(t *testing.T) {
	r := newRig(t)
	rc := r.reconciler(Options{Keep: 2})
	var ids []uint64
	for range 3 {
		rep, err := rc.Run(context.Background(), false, "test")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rep.ID)
	}
	sums, err := rc.Summaries()
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 || sums[0].ID != ids[2] || sums[1].ID != ids[1] {
		t.Fatalf("summaries %+v, want reports %v newest first", sums, ids[1:])
	}
	if _, err := rc.Report(ids[0]); err == nil {
		t.Error("the oldest report is still there")
	}
	if got, err := rc.Report(ids[2]); err != nil || got.ID != ids[2] {
		t.Errorf("the newest report: %v", err)
	}
}

// TestReconcileFixOfAnAccountTheListingMissed: an app that changes while it is listed
// (offset pages shifting under a deletion) can leave an account out of every page. The
// report calls it missing, but --fix must not make a second account: the repair looks the
// account up first and links the one it finds.
func TestReconcileFixOfAnAccountTheListingMissed(t *testing.T) {
	r := newRig(t)
	var ids []string
	for i := range 3 {
		ids = append(ids, r.create(r.eng, scim.UserType, user(fmt.Sprintf("p%d", i), "Engineer", true)))
	}
	skipped := r.nativeID(scim.UserType, ids[1])
	var creates atomic.Int32
	r.app.intercept.Store(func(w http.ResponseWriter, req *http.Request) bool {
		if req.Method == http.MethodPost && req.URL.Path == "/api/v1/accounts" {
			creates.Add(1)
			return false
		}
		if req.Method != http.MethodGet || req.URL.Path != "/api/v1/accounts" || req.URL.Query().Has("login") || req.URL.Query().Has("inner") {
			return false
		}
		// The listing, without the skipped account.
		var page map[string]json.RawMessage
		_ = json.Unmarshal(r.app.call("GET", "/api/v1/accounts?limit=200&inner=1", "", 200), &page)
		var items []map[string]any
		_ = json.Unmarshal(page["items"], &items)
		items = slices.DeleteFunc(items, func(it map[string]any) bool { return fmt.Sprint(it["id"]) == skipped })
		page["items"], _ = json.Marshal(items)
		delete(page, "next_cursor")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
		return true
	})
	rep, err := r.reconciler(Options{}).Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(rep); !slices.Equal(got, []string{"missing User p1@example.com"}) {
		t.Fatalf("findings %v", got)
	}
	if f := rep.Findings[0]; f.Fix != string(change.Applied) || rep.Counts.Fixed != 1 {
		t.Fatalf("fix %q (fixed %d, failed %d), want the account found and linked", f.Fix, rep.Counts.Fixed, rep.Counts.FixFailed)
	}
	if n := creates.Load(); n != 0 {
		t.Errorf("%d creates sent for an account the app has", n)
	}
	if got := r.nativeID(scim.UserType, ids[1]); got != skipped {
		t.Errorf("linked to %s, want the app's account %s", got, skipped)
	}
	if n := len(r.app.state().Accounts); n != 3 {
		t.Errorf("the app holds %d accounts, want 3", n)
	}
	var said bool
	for _, rec := range r.records(rep.Run) {
		if rec.Action == change.ActionRepair && rec.Outcome == change.Applied {
			said = said || rec.Decision != nil && strings.Contains(strings.Join(rec.Decision.Reasons, "; "), "linked account "+skipped+" that the lookup found")
		}
	}
	if !said {
		t.Error("the repair's record does not say it linked the account the lookup found")
	}
}

// TestReconcileOverlappingPages: an app whose pages overlap (each page repeats the one
// before it, as offset pages do when accounts are added while they are read) lists
// accounts twice. Each is counted and compared once: no finding twice, no account
// counted twice, and the report says the pages overlapped.
func TestReconcileOverlappingPages(t *testing.T) {
	s := seed(t)
	var mu sync.Mutex
	var previous []json.RawMessage
	s.app.interceptPages(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Has("login") || r.URL.Query().Has("inner") {
			return false
		}
		var page map[string]json.RawMessage
		_ = json.Unmarshal(s.app.call("GET", r.URL.RequestURI()+"&inner=1", "", 200), &page)
		var items []json.RawMessage
		_ = json.Unmarshal(page["items"], &items)
		mu.Lock()
		listed := append(slices.Clone(previous), items...)
		previous = items
		mu.Unlock()
		page["items"], _ = json.Marshal(listed)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
		return true
	})
	rep, err := s.reconciler(Options{}).Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(rep); !slices.Equal(got, s.want) {
		t.Errorf("findings %v\nwant %v", got, s.want)
	}
	if rep.Counts.AppUsers != 103 || rep.Counts.Findings() != len(s.want) {
		t.Errorf("counts %+v: want 103 users of the app and %d findings", rep.Counts, len(s.want))
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "users a second time") {
		t.Errorf("notes %v", rep.Notes)
	}
}

// TestSeenSetAcrossMerges: the seen set finds every id it holds, before and after its
// recent hashes are merged into its list and its list is written out to runs on disk
// (merged as they pile up), and refuses each a second time; what it keeps in memory stays
// under its bounds.
func TestSeenSetAcrossMerges(t *testing.T) {
	for _, spillAt := range []int{seenSpill, seenRecent, 5} {
		t.Run(fmt.Sprint(spillAt), func(t *testing.T) {
			s := newSeenSet(t.TempDir())
			defer s.close()
			s.spillAt = spillAt
			n := min(9*seenRecent, 1000*spillAt) + 17
			for i := range n {
				if added, err := s.add(strconv.Itoa(i)); err != nil || !added {
					t.Fatalf("id %d: already there (%v)", i, err)
				}
				if i%997 == 0 {
					if added, err := s.add(strconv.Itoa(i / 2)); err != nil || added {
						t.Fatalf("id %d added twice (%v)", i/2, err)
					}
				}
				if len(s.sorted) > max(spillAt, seenRecent)+seenRecent || len(s.recent) > seenRecent {
					t.Fatalf("%d sorted, %d recent in memory", len(s.sorted), len(s.recent))
				}
			}
			for i := range n {
				has, err := s.has(strconv.Itoa(i))
				added, aerr := s.add(strconv.Itoa(i))
				if err != nil || aerr != nil || !has || added {
					t.Fatalf("id %d lost: %v %v", i, err, aerr)
				}
			}
			onDisk := 0
			for i, r := range s.runs {
				onDisk += r.n
				if i > 0 && s.runs[i-1].n <= 2*r.n {
					t.Errorf("runs %d and %d (%d, %d hashes) not merged", i-1, i, s.runs[i-1].n, r.n)
				}
				if got := len(r.fences); got != (r.n+seenBlock-1)/seenBlock {
					t.Errorf("run %d: %d fences for %d hashes", i, got, r.n)
				}
				var prev uint64
				rr := r.reader()
				for k := range r.n {
					h, ok, err := rr.next()
					if err != nil || !ok || (k > 0 && h <= prev) {
						t.Fatalf("run %d, hash %d: %x after %x, %v %v", i, k, h, prev, ok, err)
					}
					prev = h
				}
			}
			if has, err := s.has("x"); err != nil || has || !slices.IsSorted(s.sorted) || len(s.sorted)+len(s.recent)+onDisk != n {
				t.Fatalf("%d sorted + %d recent + %d on disk, want %d (%v)", len(s.sorted), len(s.recent), onDisk, n, err)
			}
			if spillAt < n && len(s.runs) == 0 {
				t.Fatal("nothing written out")
			}
			if len(s.runs) > 1+bits.Len(uint(n/spillAt)) {
				t.Errorf("%d runs for %d hashes", len(s.runs), n)
			}
		})
	}
}

// TestSeenSetFailsWithoutItsFiles: a seen set that cannot write its run fails every call
// from then on, rather than taking an account for listed or not (a reconcile then fails:
// see TestReconcileFailsWithoutTemporaryFiles).
func TestSeenSetFailsWithoutItsFiles(t *testing.T) {
	s := newSeenSet(filepath.Join(t.TempDir(), "gone"))
	defer s.close()
	s.spillAt = 1
	var err error
	for i := 0; i < 2*seenRecent && err == nil; i++ {
		_, err = s.add(strconv.Itoa(i))
	}
	if err == nil || !strings.Contains(err.Error(), "temporary file") {
		t.Fatalf("add: %v", err)
	}
	if has, err := s.has("0"); err == nil || has {
		t.Fatalf("has after the failure: %v, %v", has, err)
	}
}

// TestReconcileWithTheListOnDisk: with every hash of the seen sets written out as it
// arrives (runs on disk, merged as they pile up), a reconcile of the seeded app reports
// exactly what it reports with them in memory; on a store file, they are written next to it.
func TestReconcileWithTheListOnDisk(t *testing.T) {
	seenSpillAt = 1
	t.Cleanup(func() { seenSpillAt = seenSpill })
	s := seed(t)
	if !teststore.Etcd() {
		// The list goes next to the store's file (Options.TempDir's default), not to a
		// system temporary directory that may be small or in memory.
		t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "gone"))
	}
	rep, err := s.reconciler(Options{Batch: 7}).Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(rep); !slices.Equal(got, s.want) {
		t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(s.want, "\n"))
	}
	if c := rep.Counts; c.AppUsers != 103 || c.DirUsers != 104 {
		t.Errorf("counts %+v", c)
	}
}

// TestReconcileFailsWithoutTemporaryFiles: when the seen set cannot write its list out, the
// reconcile fails with that reason; it reports no account missing and fixes nothing (a
// guess would create accounts the app has, or skip ones it lacks).
func TestReconcileFailsWithoutTemporaryFiles(t *testing.T) {
	seenSpillAt = 1
	t.Cleanup(func() { seenSpillAt = seenSpill })
	s := seed(t)
	before := s.app.state()
	rep, err := s.reconciler(Options{TempDir: filepath.Join(t.TempDir(), "gone")}).Run(context.Background(), true, "test")
	if err == nil || !strings.Contains(err.Error(), "temporary file") {
		t.Fatalf("report %+v, error %v", rep, err)
	}
	after := s.app.state()
	if !reflect.DeepEqual(before.Accounts, after.Accounts) || !reflect.DeepEqual(before.Teams, after.Teams) || !reflect.DeepEqual(before.Memberships, after.Memberships) {
		t.Errorf("the app changed: %d accounts, %d memberships before; %d, %d after", len(before.Accounts), len(before.Memberships), len(after.Accounts), len(after.Memberships))
	}
}

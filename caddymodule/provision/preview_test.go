package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/policytest"
	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// shippedPolicy loads the repository's policies (without tests) with config as
// scimgate.config, as a user adapting them would.
func shippedPolicy(t testing.TB, config string) *policy.Engine {
	t.Helper()
	eng, err := policy.Load(policy.Options{Dir: policytest.CopyShipped(t, config)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

// scopeConfig is a configuration scoping users to domains, with an attribute allowlist
// for users.
func scopeConfig(domains, allowed string) string {
	return `{"defaults": {"scoping": {"domains": ` + domains + `, "on_exit": "deactivate"},
		"attribute_allowlist": {"User": ` + allowed + `}}}`
}

// seedDirectory stores users directly (no app is called): users[i] gets a native id when
// withAccount(i), and edit (when not nil) changes its document. It returns the SCIM ids by
// userName.
func seedDirectory(t testing.TB, r *rig, names []string, withAccount func(int) bool, edit ...func(int, scim.Resource)) map[string]string {
	t.Helper()
	ids := map[string]string{}
	batch := 1000
	if teststore.Etcd() {
		batch = 10 // etcd commits at most 128 operations at once
	}
	for lo := 0; lo < len(names); lo += batch {
		err := r.store.Update(func(tx *store.Tx) error {
			for i := lo; i < min(lo+batch, len(names)); i++ {
				doc := scim.Resource{
					"schemas": []any{scim.UserSchema}, "userName": names[i], "active": true,
					"displayName": "D " + names[i], "title": "Engineer",
					"emails": []any{map[string]any{"value": names[i], "type": "work", "primary": true}},
				}
				for _, f := range edit {
					f(i, doc)
				}
				id := fmt.Sprintf("u%07d", i)
				body, err := json.Marshal(doc)
				if err != nil {
					return err
				}
				if err := tx.Put(&store.Record{Type: scim.UserType, ID: id, Doc: body, Index: IndexEntries(scim.UserType, doc)}); err != nil {
					return err
				}
				if withAccount(i) {
					if err := tx.SetNativeID("native/"+scim.UserType, id, fmt.Sprintf("n%d", i)); err != nil {
						return err
					}
				}
				ids[names[i]] = id
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestPolicyImpactNarrowedScope: a policy that narrows scoping.domains lists exactly the
// users who leave scope (leaves_scope with an app account, skipped without), a policy
// that narrows the attribute allowlist lists exactly the users who lose the attribute, a
// group whose member leaves scope loses that membership, and an unchanged policy lists
// nobody.
func TestPolicyImpactNarrowedScope(t *testing.T) {
	r := newRig(t, rigOptions{target: newTarget(t, "http://127.0.0.1:1", true)})
	var names []string
	for i := range 60 {
		domain := []string{"contoso.example", "fabrikam.example", "eu.fabrikam.example", "northwind.example"}[i%4]
		names = append(names, fmt.Sprintf("user%02d@%s", i, domain))
	}
	ids := seedDirectory(t, r, names, func(i int) bool { return i%3 != 0 })
	gid := r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Sales","members":[{"value":"`+ids["user01@fabrikam.example"]+`"},{"value":"`+ids["user00@contoso.example"]+`"}]}`)

	current := shippedPolicy(t, scopeConfig(`["contoso.example", "fabrikam.example"]`, `["userName", "active", "displayName", "title", "emails"]`))
	narrowed := shippedPolicy(t, scopeConfig(`["contoso.example"]`, `["userName", "active", "displayName", "emails"]`))

	im, err := r.eng.PolicyImpact(context.Background(), current, narrowed, ImpactOptions{PageSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	var wantLeave, wantSkip, wantTitle []string
	for i, n := range names {
		switch {
		case strings.HasSuffix(n, "fabrikam.example") && i%3 != 0:
			wantLeave = append(wantLeave, ids[n])
		case strings.HasSuffix(n, "fabrikam.example"):
			wantSkip = append(wantSkip, ids[n])
		case strings.HasSuffix(n, "@contoso.example"):
			wantTitle = append(wantTitle, ids[n])
		}
	}
	got := map[Effect][]string{}
	for _, e := range im.Entries {
		got[e.Effect] = append(got[e.Effect], e.ID)
		switch e.Effect {
		case EffectLeavesScope:
			if e.NativeID == "" || len(e.Reasons) != 1 || !strings.Contains(e.Reasons[0], "is not in scoping.domains") {
				t.Errorf("leaves_scope entry %+v: want its native id and the scoping reason", e)
			}
		case EffectDropsAttributes:
			if !slices.Equal(e.Attributes, []string{"title"}) {
				t.Errorf("drops_attributes entry %+v: want only title", e)
			}
		}
	}
	check := func(effect Effect, want []string) {
		t.Helper()
		if !slices.Equal(got[effect], want) || im.Counts[effect] != len(want) {
			t.Errorf("%s: %v (count %d), want %v", effect, got[effect], im.Counts[effect], want)
		}
	}
	check(EffectLeavesScope, wantLeave)
	check(EffectSkipped, wantSkip)
	check(EffectDropsAttributes, wantTitle)
	check(EffectDropsMembers, []string{gid})
	check(EffectDenied, nil)
	if im.Users != 60 || im.Groups != 1 || im.Deprovisions != len(wantLeave) || len(wantLeave) != 20 {
		t.Errorf("users %d, groups %d, deprovisions %d; want 60, 1, %d (20)", im.Users, im.Groups, im.Deprovisions, len(wantLeave))
	}
	for _, e := range im.Entries {
		if e.Effect == EffectDropsMembers && !slices.Equal(e.Members, []string{ids["user01@fabrikam.example"]}) {
			t.Errorf("group entry %+v: want the fabrikam member dropped", e)
		}
	}

	// The other way round, the same users come back.
	back, err := r.eng.PolicyImpact(context.Background(), narrowed, current, ImpactOptions{MaxEntries: 5})
	if err != nil {
		t.Fatal(err)
	}
	if back.Counts[EffectPasses] != len(wantLeave)+len(wantSkip) || back.Deprovisions != 0 || len(back.Entries) != 5 || back.Truncated != len(wantLeave)+len(wantSkip)-5 {
		t.Errorf("widening: counts %v, %d entries, %d truncated", back.Counts, len(back.Entries), back.Truncated)
	}

	same, err := r.eng.PolicyImpact(context.Background(), current, current, ImpactOptions{})
	if err != nil || len(same.Entries) != 0 || len(same.Counts) != 0 || same.Users != 60 || same.Groups != 1 {
		t.Errorf("unchanged policy: %+v, %v", same, err)
	}
}

// BenchmarkPolicyImpact previews a scope-narrowing policy over 100,000 users (a quarter
// leaving scope, half of them with an app account) against the policy in force, and
// reports users/s and users per CPU-second. The same preview with OPA's trivial policy
// (`decision := {"allow": true}`, two copies so both are evaluated) on both sides, timed
// in the same run, is the baseline: trivial-users/cpu-s is what OPA and the preview's own
// work cost without any policy, and x_trivial how many times that the shipped policies
// cost.
func BenchmarkPolicyImpact(b *testing.B) {
	r := newRig(b, rigOptions{target: newTarget(b, "http://127.0.0.1:1", true)})
	n := benchUsers()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("user%06d@%s", i, []string{"contoso.example", "fabrikam.example"}[i%4/3])
	}
	seedDirectory(b, r, names, func(i int) bool { return i%2 == 0 })
	current := shippedPolicy(b, `{"defaults": {"scoping": {"domains": ["contoso.example", "fabrikam.example"]}}}`)
	narrowed := shippedPolicy(b, `{"defaults": {"scoping": {"domains": ["contoso.example"]}}}`)
	trivialNow, trivialThen := trivialPolicy(b, "now"), trivialPolicy(b, "then")
	var cpu, trivialCPU time.Duration
	b.ResetTimer()
	for b.Loop() {
		cpu0 := processCPU(b)
		im, err := r.eng.PolicyImpact(context.Background(), current, narrowed, ImpactOptions{})
		if err != nil {
			b.Fatal(err)
		}
		cpu += processCPU(b) - cpu0
		if im.Users != n || im.Counts[EffectLeavesScope]+im.Counts[EffectSkipped] != n/4 {
			b.Fatalf("users %d, counts %v", im.Users, im.Counts)
		}
		b.StopTimer()
		cpu0 = processCPU(b)
		im, err = r.eng.PolicyImpact(context.Background(), trivialNow, trivialThen, ImpactOptions{})
		if err != nil {
			b.Fatal(err)
		}
		trivialCPU += processCPU(b) - cpu0
		if im.Users != n || len(im.Counts) != 0 {
			b.Fatalf("trivial policy: users %d, counts %v", im.Users, im.Counts)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "users/s")
	// The machine may be shared: users per CPU-second says what one idle core does.
	b.ReportMetric(float64(n*b.N)/cpu.Seconds(), "users/cpu-s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/user")
	b.ReportMetric(float64(n*b.N)/trivialCPU.Seconds(), "trivial-users/cpu-s")
	b.ReportMetric(cpu.Seconds()/trivialCPU.Seconds(), "x_trivial")
}

// trivialPolicy is OPA's trivial policy (every change allowed, nothing else), its hash
// made distinct by name.
func trivialPolicy(b *testing.B, name string) *policy.Engine {
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "scimgate"), 0o700); err != nil {
		b.Fatal(err)
	}
	src := "package scimgate\n\n# " + name + "\ndecision := {\"allow\": true}\n"
	if err := os.WriteFile(filepath.Join(dir, "scimgate", "decision.rego"), []byte(src), 0o600); err != nil {
		b.Fatal(err)
	}
	eng, err := policy.Load(policy.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = eng.Close() })
	return eng
}

// processCPU is the CPU time this process has used (user and system).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchUsers is the directory size of BenchmarkPolicyImpact: 100,000, or
// SCIMGATE_BENCH_USERS for a quicker look.
func benchUsers() int {
	if v, err := strconv.Atoi(os.Getenv("SCIMGATE_BENCH_USERS")); err == nil && v > 0 {
		return v
	}
	return 100_000
}

// TestMappingImpact: a proposed mapping that renames a create body field, moves the update
// path and requires a title on deactivation shows each kind of difference, counted once per
// resource that has it (every user; only the users without a title for the error), with a
// sample; the mapping in force against itself shows nothing.
func TestMappingImpact(t *testing.T) {
	r := newRig(t, rigOptions{target: newTarget(t, "http://127.0.0.1:1", true)})
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("user%02d@contoso.example", i))
	}
	seedDirectory(t, r, names, func(i int) bool { return i%2 == 0 }, func(i int, doc scim.Resource) {
		if i%3 == 0 {
			delete(doc, "title")
		}
	})
	r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Sales"}`)
	proposedFile := strings.NewReplacer(
		`"title": "title", "enabled": "active"}},`, `"job": "title", "enabled": "active"}},`,
		`"update": {"method": "PATCH", "path": "/accounts/{id}"`, `"update": {"method": "PATCH", "path": "/v2/accounts/{id}"`,
		`"deactivate": {"method": "PATCH", "path": "/accounts/{id}", "body": {"enabled": "active"}}`, `"deactivate": {"method": "PATCH", "path": "/accounts/{id}", "body": {"enabled": "active", "reason": {"from": "title", "required": true}}}`,
	).Replace(nativeMapping)
	if proposedFile == nativeMapping {
		t.Fatal("the proposed mapping is the mapping in force")
	}
	proposed, err := mapping.Parse("proposed", []byte(proposedFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	im, err := r.eng.MappingImpact(proposed, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"create: body field job added":        20, // users with a title (no title, no field)
		"create: body field title removed":    20, // users with a title
		"update: path":                        30,
		"deactivate: body field reason added": 20,
		"deactivate: error":                   10, // users without a title
	}
	if !maps.Equal(im.Counts, want) || im.Users != 30 || im.Groups != 1 || im.Differing != 30 {
		t.Errorf("counts %v (users %d, groups %d, differing %d)\nwant %v", im.Counts, im.Users, im.Groups, im.Differing, want)
	}
	s := im.Samples["update: path"]
	if s.Event != "update" || len(s.Current) != 1 || len(s.New) != 1 || !strings.HasPrefix(s.New[0].Path, "/v2/accounts/") || strings.HasPrefix(s.Current[0].Path, "/v2/") {
		t.Errorf("update sample %+v", s)
	}
	if e := im.Samples["deactivate: error"]; len(e.New) != 1 || !strings.Contains(e.New[0].Error, "title") || e.Current[0].Error != "" {
		t.Errorf("error sample %+v", e)
	}
	for kind, s := range im.Samples {
		if s.Type == "" || s.ID == "" || s.Name == "" {
			t.Errorf("sample of %s without its resource: %+v", kind, s)
		}
	}

	same, err := r.eng.MappingImpact(r.eng.target.Mapping, 0)
	if err != nil || same.Differing != 0 || len(same.Counts) != 0 {
		t.Errorf("the mapping in force against itself: %+v, %v", same, err)
	}
}

// TestPolicyImpactStopsAtTheFirstUndecided: a proposed policy that cannot decide a
// resource in time fails the preview, and the preview stops there: the cases already
// handed to the other workers are stopped with it, and no further case is started. (It
// went on deciding the rest of the page, up to 512 resources, each taking the whole
// timeout: a reload checking such a policy held the config load for many minutes.)
func TestPolicyImpactStopsAtTheFirstUndecided(t *testing.T) {
	r := newRig(t, rigOptions{target: newTarget(t, "http://127.0.0.1:1", true)})
	var names []string
	for i := range 40 {
		names = append(names, fmt.Sprintf("user%02d@contoso.example", i))
	}
	seedDirectory(t, r, names, func(int) bool { return true })
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "decision.rego"), []byte(`package scimgate

default decision := {"allow": true}

decision := {"allow": false} if {
	print("deciding", input.resource.userName)
	some a in numbers.range(1, 100000)
	some b in numbers.range(1, 100000)
	a * b == -1
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var started atomic.Int64
	slow, err := policy.Load(policy.Options{Dir: dir, Print: func(string, string) { started.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = slow.Close() })

	const workers = 2
	_, err = r.eng.PolicyImpact(context.Background(), nil, slow, ImpactOptions{Workers: workers, Timeout: 100 * time.Millisecond})
	if !errors.Is(err, policy.ErrTimeout) || !strings.Contains(err.Error(), "the proposed policy did not decide User") {
		t.Fatalf("PolicyImpact: %v; want the proposed policy's timeout", err)
	}
	// The first timeout stops the preview: at most one case per worker after it.
	if n := started.Load(); n > 2*workers {
		t.Errorf("%d of %d resources were decided; want at most %d: the preview goes on after its first undecided resource", n, len(names), 2*workers)
	}
}

// TestPolicyImpactCountsLiveAccountsOnly: users already inactive in the directory (Entra
// disabled them; their app accounts are locked) are listed when a proposed policy takes
// them out of scope, but they are not deprovisioned by it: Deprovisions, which the reload
// brake compares with the mass-deprovision limit, counts only the active ones.
func TestPolicyImpactCountsLiveAccountsOnly(t *testing.T) {
	r := newRig(t, rigOptions{target: newTarget(t, "http://127.0.0.1:1", true)})
	var names []string
	for i := range 10 {
		names = append(names, fmt.Sprintf("user%02d@fabrikam.example", i))
	}
	inactive := func(i int) bool { return i < 7 }
	seedDirectory(t, r, names, func(int) bool { return true }, func(i int, doc scim.Resource) {
		if inactive(i) {
			doc["active"] = false
		}
	})
	current := shippedPolicy(t, scopeConfig(`["contoso.example", "fabrikam.example"]`, `["userName", "active", "displayName", "title", "emails"]`))
	narrowed := shippedPolicy(t, scopeConfig(`["contoso.example"]`, `["userName", "active", "displayName", "title", "emails"]`))
	im, err := r.eng.PolicyImpact(context.Background(), current, narrowed, ImpactOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if im.Counts[EffectLeavesScope] != 10 || len(im.Entries) != 10 {
		t.Errorf("counts %v, %d entries; want all 10 users listed as leaving scope", im.Counts, len(im.Entries))
	}
	if im.Deprovisions != 3 {
		t.Errorf("Deprovisions = %d, want the 3 active users (7 are already inactive)", im.Deprovisions)
	}
}

// TestCompareDecisionsReadsObligationsAsTheGatewayDoes: a decision that says both skip
// and deactivate is carried out as a skip (nothing reaches the app: apply takes the skip
// path first), so the preview lists it as leaving scope, not as a deactivation the reload
// brake would count for an account the gateway never deactivates.
func TestCompareDecisionsReadsObligationsAsTheGatewayDoes(t *testing.T) {
	allow := policy.Decision{Allow: true}
	both := policy.Decision{Allow: true, Skip: true, Deactivate: true}
	if e := compareDecisions(allow, both, true); e == nil || e.Effect != EffectLeavesScope {
		t.Errorf("skip and deactivate, with an account: %+v, want leaves_scope", e)
	}
	if e := compareDecisions(allow, both, false); e == nil || e.Effect != EffectSkipped {
		t.Errorf("skip and deactivate, without an account: %+v, want skipped", e)
	}
	if e := compareDecisions(policy.Decision{Allow: true, Skip: true}, both, true); e != nil {
		t.Errorf("skipped both ways: %+v, want no entry", e)
	}
	if e := compareDecisions(allow, policy.Decision{Allow: true, Deactivate: true}, true); e == nil || e.Effect != EffectDeactivated {
		t.Errorf("deactivate: %+v, want deactivated", e)
	}
}

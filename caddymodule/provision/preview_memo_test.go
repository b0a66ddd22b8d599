package provision

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestPolicyImpactMatchesPlainDecisions: the preview (workers in parallel, each carrying
// its policy.Memos from user to user and page to page) reports exactly what deciding every
// resource on its own under both policies, with nothing kept between decisions, gives:
// same counts, same entries in the same order, same truncation, over a few hundred users
// of varied shapes (in and out of scope, subdomains, no domain, departments, missing
// emails, extra attributes, with and without an app account) and groups with members.
func TestPolicyImpactMatchesPlainDecisions(t *testing.T) {
	r := newRig(t, rigOptions{target: newTarget(t, "http://127.0.0.1:1", true)})
	var names []string
	for i := range 300 {
		domain := []string{"contoso.example", "fabrikam.example", "eu.fabrikam.example", "northwind.example", "contoso.example"}[i%5]
		name := fmt.Sprintf("user%03d@%s", i, domain)
		if i%23 == 0 {
			name = fmt.Sprintf("user%03d", i) // no domain in userName: the emails decide
		}
		names = append(names, name)
	}
	ids := seedDirectory(t, r, names, func(i int) bool { return i%3 != 0 }, func(i int, doc scim.Resource) {
		switch i % 7 {
		case 1:
			doc[scim.EnterpriseUserSchema] = map[string]any{"department": []string{"Sales", "Research", "Engineering"}[i%3]}
		case 2:
			delete(doc, "emails")
		case 3:
			doc["nickName"] = "n"
			doc["title"] = nil
		case 4:
			doc["emails"] = []any{map[string]any{"value": fmt.Sprintf("alt%d@fabrikam.example", i), "type": "work"}}
		}
	})
	for g := range 4 {
		members := ""
		for i := g; i < len(names); i += 37 {
			if members != "" {
				members += ","
			}
			members += `{"value":"` + ids[names[i]] + `"}`
		}
		r.mustCreate(scim.GroupType, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"G%d","members":[%s]}`, g, members))
	}
	r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Domain Admins"}`)

	current := shippedPolicy(t, scopeConfig(`["contoso.example", "fabrikam.example"]`, `["userName", "active", "displayName", "title", "emails"]`))
	proposed := shippedPolicy(t, `{"defaults": {"scoping": {"domains": ["contoso.example"], "departments": ["sales", "research"], "on_exit": "deactivate"},
		"attribute_allowlist": {"User": ["userName", "active", "emails.value"]}, "privileged_groups": {"names": ["Domain Admins"]}}}`)

	for _, c := range []struct {
		current *policy.Engine
		opts    ImpactOptions
	}{
		{current, ImpactOptions{Workers: 3, PageSize: 37}},
		{current, ImpactOptions{Workers: 2, PageSize: 512, MaxEntries: 25}},
		{nil, ImpactOptions{Workers: 4, PageSize: 64}},
	} {
		got, err := r.eng.PolicyImpact(context.Background(), c.current, proposed, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		want := plainImpact(t, r, c.current, proposed, c.opts.MaxEntries)
		if got.Users != want.Users || got.Groups != want.Groups || got.Deprovisions != want.Deprovisions || got.Truncated != want.Truncated ||
			!reflect.DeepEqual(got.Counts, want.Counts) || !reflect.DeepEqual(got.Entries, want.Entries) {
			t.Fatalf("options %+v: the preview differs from plain decisions:\ngot  %+v\nwant %+v", c.opts, got, want)
		}
		if c.current != nil && (len(want.Counts) < 4 || want.Deprovisions == 0) {
			t.Errorf("the case is too easy: counts %v", want.Counts)
		}
	}
}

// previewTestTimeout is PolicyImpact's default decision timeout, which plainImpact uses too.
const previewTestTimeout = 10 * time.Second

// plainImpact is PolicyImpact done the straightforward way: one resource after another,
// each decided with Engine.Decide (the input converted for each policy, nothing kept).
func plainImpact(t *testing.T, r *rig, current, proposed *policy.Engine, maxEntries int) *Impact {
	t.Helper()
	im := &Impact{Counts: map[Effect]int{}}
	for _, typ := range []string{scim.UserType, scim.GroupType} {
		page, next, err := r.eng.previewPage(typ, "", 1<<20)
		if err != nil || next != "" {
			t.Fatalf("reading %s: %v (next %q)", typ, err, next)
		}
		for _, c := range page {
			if typ == scim.UserType {
				im.Users++
			} else {
				im.Groups++
			}
			// With the preview's own timeout: under a loaded machine (CI) a decision may take
			// longer than a request's default 100 ms, which would deny it on this side only.
			decide := func(e *policy.Engine) policy.Decision {
				d, err := e.WithTimeout(previewTestTimeout).Decide(context.Background(), &c.in)
				if errors.Is(err, policy.ErrTimeout) {
					t.Fatalf("%s %s: no plain decision within %s", c.typ, c.id, previewTestTimeout)
				}
				return d // a policy error is a denial, as in the preview
			}
			now := policy.Decision{Allow: true}
			if current != nil {
				now = decide(current)
			}
			then := decide(proposed)
			e := compareDecisions(now, then, c.nativeID != "")
			if e == nil {
				continue
			}
			e.Type, e.ID, e.Name, e.NativeID, e.Reasons = c.typ, c.id, c.name, c.nativeID, then.Reasons
			im.Counts[e.Effect]++
			if e.Effect == EffectDeactivated || e.Effect == EffectLeavesScope {
				im.Deprovisions++
			}
			if maxEntries > 0 && len(im.Entries) >= maxEntries {
				im.Truncated++
				continue
			}
			im.Entries = append(im.Entries, *e)
		}
	}
	return im
}

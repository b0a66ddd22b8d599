package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestFleetLargeDeletes: on etcd (at most 128 operations per transaction) deleting a group
// of 130 members, and a user who belongs to 70 groups, answers 204 through a gateway other
// than the one that built them: the memberships are removed in parts before the delete
// (one etcd transaction each), the app loses the team and the account, every gateway sees
// the groups without the user, and the journal is one chain showing the parts, each record
// naming the gateway that made it.
func TestFleetLargeDeletes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and two gateway processes")
	}
	const members, groups = 130, 70
	f := startFleet(t, 2, "")
	must := func(gw int, method, path, body string, want ...int) fleetResp {
		t.Helper()
		r := f.do(gw, method, path, body)
		if r.err != nil || !slices.Contains(want, r.status) {
			t.Fatalf("%s %s through gateway %d: %d %v %s", method, path, gw, r.status, r.err, r.body)
		}
		return r
	}

	ids := make([]string, members)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < members; i += 8 {
				r := f.do(0, http.MethodPost, "/Users", fleetUser(fmt.Sprintf("big-%03d@contoso.example", i), "t"))
				mu.Lock()
				if r.status != http.StatusCreated {
					failed = append(failed, fmt.Sprintf("create %d: %d %v %s", i, r.status, r.err, r.body))
				}
				ids[i] = r.id()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatal(strings.Join(failed, "\n"))
	}

	// One team of every user, and one user in many teams.
	big := must(0, http.MethodPost, "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Big Team"}`, http.StatusCreated).id()
	var values []string
	for _, id := range ids {
		values = append(values, fmt.Sprintf(`{"value":%q}`, id))
	}
	must(0, http.MethodPatch, "/Groups/"+big, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[`+strings.Join(values, ",")+`]}]}`,
		http.StatusOK, http.StatusNoContent)
	joiner := ids[0]
	for g := range groups {
		must(g%2, http.MethodPost, "/Groups", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Small Team %02d","members":[{"value":%q}]}`, g, joiner), http.StatusCreated)
	}
	teams := f.app.state(t)
	if len(teams.Teams) != groups+1 || len(teams.Memberships) != members+groups {
		t.Fatalf("before the deletes the app has %d teams and %d memberships, want %d and %d", len(teams.Teams), len(teams.Memberships), groups+1, members+groups)
	}

	must(1, http.MethodDelete, "/Groups/"+big, "", http.StatusNoContent)
	must(0, http.MethodGet, "/Groups/"+big, "", http.StatusNotFound)
	must(1, http.MethodDelete, "/Users/"+joiner, "", http.StatusNoContent)
	must(0, http.MethodGet, "/Users/"+joiner, "", http.StatusNotFound)

	for gw := range 2 {
		listed := f.listGroups(t, gw)
		if len(listed) != groups {
			t.Fatalf("gateway %d lists %d groups, want %d", gw, len(listed), groups)
		}
		for name, m := range listed {
			if len(m) != 0 {
				t.Fatalf("gateway %d: %s still lists members %v", gw, name, m)
			}
		}
	}
	after := f.app.state(t)
	if len(after.Teams) != groups || len(after.Memberships) != 0 || len(after.Accounts) != members-1 {
		t.Fatalf("after the deletes the app has %d teams, %d memberships, %d accounts; want %d, 0, %d",
			len(after.Teams), len(after.Memberships), len(after.Accounts), groups, members-1)
	}

	fj := verifyJournal(t, f.backup())
	parts := map[string]int{}
	for _, r := range fj.records {
		if r.Part != nil && string(r.Action) == "delete" {
			parts[r.SCIMID]++
		}
	}
	if parts[big] < 2 || parts[joiner] < 2 {
		t.Fatalf("the journal shows %d delete parts of the group and %d of the user; want the deletes split", parts[big], parts[joiner])
	}
	if n := fj.applied()["delete"]; n[big] == 0 || n[joiner] == 0 {
		t.Fatalf("applied deletes: %v", n)
	}
	// Each record names the gateway that made it: the users' creates gateway 0, the
	// deletes (every part) gateway 1.
	host, _ := os.Hostname()
	gateway := func(gw int) string { return host + ":" + strconv.Itoa(f.pid(gw)) }
	for _, r := range fj.records {
		want := ""
		switch {
		case string(r.Action) == "delete" && (r.SCIMID == big || r.SCIMID == joiner):
			want = gateway(1)
		case string(r.Action) == "create" && r.ResourceType == "User":
			want = gateway(0)
		default:
			continue
		}
		if r.Gateway != want {
			t.Fatalf("record %d (%s %s) names gateway %q, want %q", r.Seq, r.Action, r.SCIMID, r.Gateway, want)
		}
	}
}

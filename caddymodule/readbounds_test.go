package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/query"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestReadBoundsMembers: a read answers at most query.MaxReadMembers members. A group one
// past it is 400 tooMany on GET /Groups/{id} and in a list, with a detail naming
// excludedAttributes=members, before any member is rendered (the answer was built in
// memory whole: about 1.7 KB per member, unbounded); excluding members, or listing the
// groups it does not reach, answers as before.
func TestReadBoundsMembers(t *testing.T) {
	g := newTestGateway(t, nil)
	small := benchCreate(t, g, benchGroupsPath, []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Small"}`))
	big := benchCreate(t, g, benchGroupsPath, []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Everyone"}`))
	benchSeedMembers(t, g, small, 3)
	benchSeedMembers(t, g, big, query.MaxReadMembers+1)
	first := 1 // the position of the big group in the list (groups are listed by id)
	if big < small {
		first = 0
	}
	refused := []string{
		itBase + "/Groups/" + big,
		itBase + "/Groups",
		itBase + "/Groups?filter=" + url.QueryEscape(`displayName eq "Everyone"`),
		itBase + "/Groups?attributes=members.value",
		itBase + "/?count=5",
	}
	for _, target := range refused {
		w := serve(t, g, http.MethodGet, target, nil)
		body := decodeJSON(t, w)
		detail, _ := body["detail"].(string)
		if w.Code != http.StatusBadRequest || body["scimType"] != scim.TypeTooMany || !strings.Contains(detail, "excludedAttributes=members") {
			t.Errorf("GET %s: %d %v; want 400 tooMany naming excludedAttributes=members", target, w.Code, body)
		}
		if first == 1 && target == itBase+"/Groups" && !strings.Contains(detail, "count=1") {
			t.Errorf("GET %s: detail %q does not say count=1 answers", target, detail)
		}
	}
	for _, c := range []struct {
		target  string
		members bool
	}{
		{itBase + "/Groups/" + big + "?excludedAttributes=members", false},
		{itBase + "/Groups?excludedAttributes=members", false},
		{itBase + "/Groups?filter=" + url.QueryEscape(`displayName eq "Everyone"`) + "&excludedAttributes=members", false},
		{itBase + "/Groups/" + small, true},
		{itBase + fmt.Sprintf("/Groups?startIndex=%d&count=1", 2-first), true}, // the small group alone
	} {
		w := serve(t, g, http.MethodGet, c.target, nil)
		if w.Code != http.StatusOK || strings.Count(w.Body.String(), `"value"`) != map[bool]int{false: 0, true: 3}[c.members] {
			t.Errorf("GET %s: %d %.300s; want 200 with members %v", c.target, w.Code, w.Body.String(), c.members)
		}
	}
}

package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// createUser POSTs body (JSON) to /Users and returns the new user's id.
func createUser(t *testing.T, g *Handler, body string) string {
	t.Helper()
	w := serve(t, g, "POST", "/scim/v2/Users", body)
	if w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	return decodeJSON(t, w)["id"].(string)
}

// expectSCIMError checks an answer is a SCIM error with status, scimType and a detail
// containing detail.
func expectSCIMError(t *testing.T, w *httptest.ResponseRecorder, status int, scimType, detail string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	body := decodeJSON(t, w)
	if got, _ := body["scimType"].(string); got != scimType {
		t.Errorf("scimType %q, want %q: %v", got, scimType, body)
	}
	if got, _ := body["detail"].(string); !strings.Contains(got, detail) {
		t.Errorf("detail %q does not mention %q", got, detail)
	}
}

// TestPatchAddReplaceNeedValue: a PATCH add or replace with a path and no "value" key is 400
// invalidValue and changes nothing (it used to unassign the attribute and answer 200), in
// both of Entra's dialects; an explicit "value": null, and "" for the manager, still
// unassign.
func TestPatchAddReplaceNeedValue(t *testing.T) {
	g := newTestGateway(t, nil)
	mgrPath := scim.EnterpriseUserSchema + ":manager"
	tests := []struct {
		name   string
		op     string
		status int
		gone   string // the attribute the op unassigns, for a 200
	}{
		{name: "Replace without value (default dialect)", op: `{"op":"Replace","path":"title"}`, status: http.StatusBadRequest},
		{name: "add without value (aadOptscim062020)", op: `{"op":"add","path":"nickName"}`, status: http.StatusBadRequest},
		{name: "replace manager without value", op: `{"op":"replace","path":"` + mgrPath + `"}`, status: http.StatusBadRequest},
		{name: "path-less add without value", op: `{"op":"Add"}`, status: http.StatusBadRequest},
		{name: "replace title null", op: `{"op":"Replace","path":"title","value":null}`, status: http.StatusOK, gone: "title"},
		{name: "replace manager empty string", op: `{"op":"Replace","path":"` + mgrPath + `","value":""}`, status: http.StatusOK, gone: "manager"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := createUser(t, g, `{"userName":"nv`+string(rune('a'+i))+`@contoso.example","title":"Boss","nickName":"B",`+
				`"`+scim.EnterpriseUserSchema+`":{"manager":{"value":"m1"}}}`)
			w := serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+scim.PatchOpSchema+`"],"Operations":[`+tt.op+`]}`)
			if tt.status == http.StatusBadRequest {
				expectSCIMError(t, w, http.StatusBadRequest, scim.TypeInvalidValue, "value")
			} else if w.Code != tt.status {
				t.Fatalf("PATCH: %d %s", w.Code, w.Body)
			}
			user := decodeJSON(t, serve(t, g, "GET", "/scim/v2/Users/"+id, nil))
			ext, _ := user[scim.EnterpriseUserSchema].(map[string]any)
			held := map[string]bool{"title": user["title"] != nil, "nickName": user["nickName"] != nil, "manager": ext["manager"] != nil}
			for name, has := range held {
				if want := name != tt.gone; has != want {
					t.Errorf("after the PATCH, %s present: %v, want %v (%v)", name, has, want, user)
				}
			}
		})
	}
}

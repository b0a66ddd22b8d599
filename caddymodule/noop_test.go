package caddymodule

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// TestNoOpPatchAnswersAsGet (issue 18): Entra's periodic "active": "True" to an active
// user, in both of its dialects (with a path; without one, the value an object of
// attributes), and other PATCHes and a PUT that set what the user holds, answer the bytes
// and the ETag a GET of the user answers, commit nothing and call nothing; a stale If-Match
// still fails with 412. With a target and without one, with reads journaled (the no-op is
// journaled once, like a read, naming the account) and without (not journaled).
func TestNoOpPatchAnswersAsGet(t *testing.T) {
	for _, tc := range []struct {
		name          string
		target, reads bool
	}{
		{"target", true, false},
		{"target, reads journaled", true, true},
		{"no target", false, false},
		{"no target, reads journaled", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &faultApp{}
			app.mode.Store("ok")
			g := newTestGateway(t, func(g *Handler) {
				if tc.target {
					srv := httptest.NewServer(app)
					t.Cleanup(srv.Close)
					mapFile := filepath.Join(t.TempDir(), "app.json")
					if err := os.WriteFile(mapFile, []byte(faultMapping), 0o600); err != nil {
						t.Fatal(err)
					}
					g.Target = &TargetConfig{Name: "app", URL: srv.URL, Mapping: mapFile}
				}
				if tc.reads {
					g.Journal = &JournalConfig{Reads: true}
				}
			})
			body := benchUserBody("noop", 1)
			w := serve(t, g, http.MethodPost, "/scim/v2/Users", body)
			if w.Code != http.StatusCreated {
				t.Fatalf("create: %d %s", w.Code, w.Body)
			}
			uid := decodeJSON(t, w)["id"].(string)
			w = serve(t, g, http.MethodPost, "/scim/v2/Groups", fmt.Sprintf(`{"displayName":"Sales","members":[{"value":%q}]}`, uid))
			if w.Code != http.StatusCreated {
				t.Fatalf("create group: %d %s", w.Code, w.Body)
			}
			userPath := "/scim/v2/Users/" + uid
			get := serve(t, g, http.MethodGet, userPath, nil)
			if get.Code != http.StatusOK || !bytes.Contains(get.Body.Bytes(), []byte(`"groups"`)) {
				t.Fatalf("GET: %d %s", get.Code, get.Body)
			}
			etag := get.Header().Get("ETag")
			calls := app.calls.Load()
			records := len(auditRecords(t, g))

			same := func(what string, w *httptest.ResponseRecorder, want *httptest.ResponseRecorder) {
				t.Helper()
				if w.Code != http.StatusOK {
					t.Fatalf("%s: %d %s", what, w.Code, w.Body)
				}
				if !bytes.Equal(w.Body.Bytes(), want.Body.Bytes()) {
					t.Errorf("%s answered\n%s\nwhere GET answers\n%s", what, w.Body, want.Body)
				}
				if got := w.Header().Get("ETag"); got != etag {
					t.Errorf("%s: ETag %s, want %s", what, got, etag)
				}
				if got := app.calls.Load(); got != calls {
					t.Errorf("%s: %d calls to the app, want none", what, got-calls)
				}
				recs := auditRecords(t, g)
				switch {
				case !tc.reads && len(recs) != records:
					t.Errorf("%s: journaled %d records, want none: %+v", what, len(recs)-records, recs[records:])
				case tc.reads && len(recs) != records+1:
					t.Errorf("%s: journaled %d records, want one", what, len(recs)-records)
				case tc.reads:
					r := recs[len(recs)-1]
					if r.SCIMID != uid || r.Status != http.StatusOK || r.Outcome != change.Applied || len(r.Changes) != 0 || len(r.Events) != 0 {
						t.Errorf("%s: journaled %+v", what, r)
					}
					if tc.target && r.NativeID == "" {
						t.Errorf("%s: the record does not name the account: %+v", what, r)
					}
				}
				records = len(recs)
			}
			patch := func(ops string, headers ...string) *httptest.ResponseRecorder {
				t.Helper()
				return serve(t, g, http.MethodPatch, userPath, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":`+ops+`}`, headers...)
			}
			same("active with a path", patch(`[{"op":"Replace","path":"active","value":"True"}]`), get)
			same("active without a path", patch(`[{"op":"Replace","value":{"active":"True"}}]`), get)
			same("Entra's other values as they are", patch(`[{"op":"Replace","value":{"active":true,"displayName":"Bench User 1","name.givenName":"Bench",`+
				`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"Retail"}},`+
				`{"op":"Add","path":"title","value":"Engineer"},{"op":"replace","path":"name","value":{"familyName":"User1"}}]`), get)
			same("with If-Match of the version", patch(`[{"op":"Replace","path":"active","value":"True"}]`, "If-Match", etag), get)
			same("PUT of the body it was created with", serve(t, g, http.MethodPut, userPath, body), get)
			if again := serve(t, g, http.MethodGet, userPath, nil); !bytes.Equal(again.Body.Bytes(), get.Body.Bytes()) {
				t.Errorf("GET after the no-ops answered\n%s\nwhere it answered\n%s", again.Body, get.Body)
			}
			records = len(auditRecords(t, g))

			// Projected: the answer is the projected GET's, and the projection leaves the
			// resource whole for the next request.
			const exclude = "?excludedAttributes=name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
			getProjected := serve(t, g, http.MethodGet, userPath+exclude, nil)
			records = len(auditRecords(t, g))
			w = serve(t, g, http.MethodPatch, userPath+exclude, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"True"}]}`)
			same("active, projected", w, getProjected)
			same("active, after the projected one", patch(`[{"op":"Replace","path":"active","value":"True"}]`), get)

			// A stale If-Match fails as it does on any PATCH, journaled as a rejection.
			if w := patch(`[{"op":"Replace","path":"title","value":"Manager"}]`); w.Code != http.StatusOK || w.Header().Get("ETag") == etag {
				t.Fatalf("a change: %d, ETag %s (was %s) %s", w.Code, w.Header().Get("ETag"), etag, w.Body)
			}
			w = patch(`[{"op":"Replace","path":"active","value":"True"}]`, "If-Match", etag)
			if w.Code != http.StatusPreconditionFailed {
				t.Fatalf("stale If-Match: %d %s", w.Code, w.Body)
			}
			if r := lastRecord(t, g); r.Status != http.StatusPreconditionFailed || r.Outcome != change.Rejected {
				t.Errorf("the 412 was journaled as %+v", r)
			}
		})
	}
}

package mapping

import (
	"strings"
	"testing"
)

// TestAnswersWithARepeatedKey: gjson reads the first of a key written twice, the app's
// own stack the last, so an answer holding one is ambiguous: no id is read from it, and a
// lookup's answer whose first "items" is empty is no proof that the account is absent.
func TestAnswersWithARepeatedKey(t *testing.T) {
	for _, body := range []string{
		`{"id": "tmp", "id": "u1"}`,
		`{"user": {"id": 1, "name": "a", "\u0069d": 2}}`,
		`[{"x": [{"k": 1, "k": 2}]}]`,
	} {
		if id, err := ExtractID([]byte(body), "id"); err == nil || !strings.Contains(err.Error(), "twice") {
			t.Errorf("ExtractID(%s) = %q, %v; want the ambiguity", body, id, err)
		}
	}
	for _, body := range []string{`{"id": "u1", "user": {"id": 2}, "list": [{"id": 3}, {"id": 4}]}`, `{"a": "\"id\": 1, \"id\": 2", "id": "u1"}`} {
		if id, err := ExtractID([]byte(body), "id"); err != nil || id != "u1" {
			t.Errorf("ExtractID(%s) = %q, %v", body, id, err)
		}
	}
	single := &Request{IDPath: "items.0.id"}
	if _, found, err := single.FindID([]byte(`{"items": [], "items": [{"id": 1}]}`)); err == nil || found {
		t.Errorf("a lookup's answer with two lists: found %v, err %v; want an error, never not found", found, err)
	}
	list := &Request{ItemsPath: "items", IDPath: "id"}
	if _, found, err := list.FindID([]byte(`{"items": [], "items": [{"id": 1}]}`)); err == nil || found {
		t.Errorf("a lookup's list answer with two lists: found %v, err %v; want an error, never not found", found, err)
	}
	if id, found, err := list.FindID([]byte(`{"items": [{"id": 1}], "next": null}`)); err != nil || !found || id != "1" {
		t.Errorf("a plain list: %q %v %v", id, found, err)
	}
}

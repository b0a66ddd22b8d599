package journaladmin

import (
	"crypto/ed25519"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.etcd.io/bbolt"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// testJournal opens journal name in a fresh bbolt file; both close when the test ends.
func testJournal(t *testing.T, name string) *journal.Journal {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "scimgate.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	j, err := journal.Open(kv.NewBolt(db), journal.Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// TestRegister checks that the routes see exactly the registered journals, with their
// store file and whether they are signed, and that a name two stores share is refused.
func TestRegister(t *testing.T) {
	b, a1, a2 := testJournal(t, "b"), testJournal(t, "a"), testJournal(t, "a")
	pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
	unregB := Register(b, []ed25519.PublicKey{pub})
	unregA1 := Register(a1, nil)
	defer unregB()
	defer unregA1()

	got := journals()
	if len(got) != 2 || got[0].j != a1 || got[1].j != b {
		t.Fatalf("journals = %+v, want a then b", got)
	}
	if got[0].store != a1.DB().String() || len(got[0].keys) != 0 || len(got[1].keys) != 1 {
		t.Errorf("journals = %+v", got)
	}
	if f, err := findJournal("a"); err != nil || f.j != a1 {
		t.Errorf("findJournal(a) = %+v, %v", f, err)
	}

	unregA2 := Register(a2, nil)
	_, err := findJournal("a")
	var apiErr caddy.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusConflict ||
		!strings.Contains(apiErr.Message, a1.DB().String()) || !strings.Contains(apiErr.Message, a2.DB().String()) {
		t.Errorf("findJournal of a shared name = %v, want a 409 naming both stores", err)
	}
	unregA2()
	unregA2() // a second call is harmless
	if f, err := findJournal("a"); err != nil || f.j != a1 {
		t.Errorf("after unregistering the second a: %+v, %v", f, err)
	}

	unregB()
	_, err = findJournal("b")
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusNotFound {
		t.Errorf("findJournal of an unregistered journal = %v, want a 404", err)
	}
}

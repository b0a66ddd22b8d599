package storecmd_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
)

// The move to a fleet as the README describes it: back up a running gateway on bbolt,
// copy the backup into etcd (which requires a password, given through the environment),
// start a gateway on etcd: it serves the directory it had and continues its journal's
// chain.
func TestMoveAGatewayToEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	const password = "etcd-pw-51c0ffee"
	c.EnableAuth("root", password)
	t.Setenv("SCIMGATE_ADM_ETCD_PASSWORD", password)

	single := journaltest.Start(t)
	ids := journaltest.Seed(t, single)
	head := single.Head(t)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, _, stderr := journaltest.Run(t, "backup", "--admin", single.Admin, "--output", backup); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}

	etcdFlags := []string{"--endpoints", c.Endpoints()[0], "--prefix", "/fleet/", "--username", "root", "--password-env", "SCIMGATE_ADM_ETCD_PASSWORD",
		"--timeout", "60s"} // etcd checks the password with bcrypt: slow under -race
	code, out, err := run(t, append([]string{"copy", "--from", backup, "--to", "etcd"}, etcdFlags...)...)
	if code != 0 {
		t.Fatalf("copy: exit %d: %v\n%s", code, err, out)
	}
	if !strings.Contains(out, fmt.Sprintf("journal audit: %d records, 0 checkpoints, head seq %d", head, head)) || strings.Contains(out, password) {
		t.Errorf("report:\n%s", out)
	}

	fleet := journaltest.StartStore(t, fmt.Sprintf(
		"store etcd {\n\t\t\tendpoints %s\n\t\t\tprefix /fleet/\n\t\t\tusername root\n\t\t\tpassword {env.SCIMGATE_ADM_ETCD_PASSWORD}\n\t\t\tdial_timeout 60s\n\t\t}", c.Endpoints()[0]))
	if status, body := fleet.SCIMDo(t, http.MethodGet, "/Users/"+ids["carol@example.com"], ""); status != http.StatusOK || !strings.Contains(string(body), "carol@example.com") {
		t.Fatalf("the gateway on etcd does not serve a copied user: %d %s", status, body)
	}
	if status, body := fleet.SCIMDo(t, http.MethodPost, "/Users", journaltest.UserBody("bob@example.com")); status != http.StatusConflict {
		t.Fatalf("a copied userName is not taken on etcd: %d %s", status, body)
	}
	fleet.CreateUser(t, "dave@example.com")
	if got := fleet.Head(t); got != head+2 {
		t.Errorf("head %d on etcd, want %d (the copied %d, a conflict and a create)", got, head+2, head)
	}
	fleet.Checkpoint(t)
	code, vout, _ := journaltest.Run(t, "verify", "--admin", fleet.Admin)
	if code != 0 || !strings.HasPrefix(vout, "OK: journal audit in etcd "+c.Endpoints()[0]+" prefix /fleet/ verifies") {
		t.Fatalf("verify on etcd: exit %d: %q", code, vout)
	}
}

package journalcmd_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journal"
)

// A gateway whose store is etcd (with a password): verify, backup and export through its
// admin endpoint name the etcd store, never the password; the backup is a bbolt file that
// verifies and exports the same records; store copy reads the same store from etcd.
func TestCLIAgainstAGatewayOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	const password = "etcd-pw-7f3a9c41"
	c.EnableAuth("root", password) // etcd checks it with bcrypt: slow under -race, hence dial_timeout
	t.Setenv("SCIMGATE_ADM_ETCD_PASSWORD", password)
	endpoint, prefix := c.Endpoints()[0], "/gw-test/"
	e := journaltest.StartStore(t, fmt.Sprintf("store etcd {\n\t\t\tendpoints %s\n\t\t\tprefix %s\n\t\t\tusername root\n\t\t\tpassword {env.SCIMGATE_ADM_ETCD_PASSWORD}\n\t\t\tdial_timeout 60s\n\t\t}", endpoint, prefix))
	journaltest.Seed(t, e)
	head := e.Head(t)
	if head < 5 {
		t.Fatalf("head %d after seeding", head)
	}
	storeName := "etcd " + endpoint + " prefix " + prefix
	if items := e.List(t); len(items) != 1 || items[0].Store != storeName {
		t.Fatalf("list: %+v, want the store %q", items, storeName)
	}
	var printed []string
	dir := t.TempDir()

	e.Checkpoint(t)
	code, out, stderr := journaltest.Run(t, "verify", "--admin", e.Admin)
	printed = append(printed, out, stderr)
	if code != 0 || !strings.HasPrefix(out, "OK: journal audit in "+storeName+" verifies: "+fmt.Sprint(head)+" records") {
		t.Fatalf("verify: exit %d: %q %q", code, out, stderr)
	}

	backup := filepath.Join(dir, "fleet.db")
	code, out, stderr = journaltest.Run(t, "backup", "--admin", e.Admin, "--output", backup)
	printed = append(printed, out, stderr)
	if code != 0 || !strings.HasPrefix(stderr, "backed up "+storeName+" (journal audit and the directory) as a bbolt file: ") {
		t.Fatalf("backup: exit %d: %q", code, stderr)
	}
	rep, err := journal.VerifyFileJournal(context.Background(), backup, "", e.Pub)
	if err != nil || !rep.OK || rep.LastSeq != head || rep.Records != head {
		t.Fatalf("the backup: %+v, %v (head %d)", rep, err, head)
	}
	code, out, _ = journaltest.Run(t, "verify", "--file", backup)
	if code != 0 || !strings.HasPrefix(out, "OK: journal "+journaltest.JournalName+" in "+backup+" verifies") {
		t.Fatalf("verify --file: exit %d: %q", code, out)
	}

	fromAdmin, fromFile := filepath.Join(dir, "admin.jsonl"), filepath.Join(dir, "file.jsonl")
	code, out, stderr = journaltest.Run(t, "export", "--admin", e.Admin, "--output", fromAdmin)
	printed = append(printed, out, stderr)
	if code != 0 || !strings.HasPrefix(stderr, fmt.Sprintf("exported %d records of journal audit in %s as jsonl", head, storeName)) {
		t.Fatalf("export --admin: exit %d: %q", code, stderr)
	}
	if code, _, stderr = journaltest.Run(t, "export", "--file", backup, "--output", fromFile); code != 0 {
		t.Fatalf("export --file: exit %d: %q", code, stderr)
	}
	a, _ := os.ReadFile(fromAdmin)
	b, _ := os.ReadFile(fromFile)
	// The first line says when the export was made; the records after it must be the same.
	_, aRecords, _ := bytes.Cut(a, []byte("\n"))
	_, bRecords, _ := bytes.Cut(b, []byte("\n"))
	if len(aRecords) == 0 || !bytes.Equal(aRecords, bRecords) {
		t.Errorf("the export through the admin endpoint (%d bytes) and the backup's (%d bytes) differ", len(a), len(b))
	}
	if recs := journaltest.JSONLRecords(t, a); uint64(len(recs)) != head {
		t.Errorf("exported %d records, head %d", len(recs), head)
	}

	for _, p := range printed {
		if strings.Contains(p, password) {
			t.Errorf("a message shows the etcd password: %q", p)
		}
	}
}

package storecmd_test

// Tests of `store copy`, run in-process through the cobra command Caddy registers, between
// bbolt files and a real etcd (one in-process member).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/internal/journaltest" // registers the gateway and the commands
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/kv/kvtest"
	"github.com/scimgate/scimgate/caddymodule/store"
	"github.com/scimgate/scimgate/caddymodule/storecmd"
)

// run runs `store args...` and returns the exit status the process would have, stdout and
// the command's error.
func run(t testing.TB, args ...string) (int, string, error) {
	t.Helper()
	reg, ok := caddycmd.Commands()["store"]
	if !ok || reg.CobraFunc == nil {
		t.Fatal("the store command is not registered")
	}
	cmd := &cobra.Command{Use: "store", SilenceUsage: true, SilenceErrors: true}
	reg.CobraFunc(cmd)
	var out, errb bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.Execute()
	return journaltest.ExitCode(err), out.String(), err
}

var signingKey = ed25519.NewKeyFromSeed([]byte("scimgate-storecmd-test-seed-32by"))

// Sizes of the seeded store.
const (
	seedUsers  = 40
	seedGroups = 4
)

// seed writes a gateway's store at path: users and groups with their indexes, memberships,
// an id map, account marks, outbox tasks, policy stats and a signed journal with
// checkpoints.
func seed(t testing.TB, path string) { seedN(t, path, seedUsers) }

// seedN is seed with users users (at least seedGroups).
func seedN(t testing.TB, path string, users int) {
	t.Helper()
	s, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(s.DB(), journal.Options{Name: journaltest.JournalName, SigningKey: signingKey, KeyID: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seq := 0
	write := func(fn func(tx *store.Tx) error) {
		t.Helper()
		if err := s.Update(func(tx *store.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			seq++
			return j.Append(tx.KV(), &journal.Record{
				Time: now.Add(time.Duration(seq) * time.Second), RequestID: fmt.Sprintf("req-%d", seq),
				Client: "entra", Action: change.Action("create"), Outcome: change.Outcome("applied"), Status: 201,
			})
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range users {
		id := fmt.Sprintf("u%03d", i)
		write(func(tx *store.Tx) error {
			if err := tx.Put(&store.Record{Type: "User", ID: id, Created: now, LastModified: now,
				Doc:   []byte(fmt.Sprintf(`{"userName":"user%d@example.com","active":true}`, i)),
				Index: []store.IndexEntry{{Attr: "userName", Value: fmt.Sprintf("user%d@example.com", i), Unique: true}}}); err != nil {
				return err
			}
			if err := tx.SetNativeID("app", id, fmt.Sprintf("a%d", i)); err != nil {
				return err
			}
			if i%5 == 0 {
				if _, err := tx.Enqueue("app", id, []byte(`{"events":["create"]}`)); err != nil {
					return err
				}
			}
			return tx.AddStats("app", now.Unix()/60, map[string]int64{"create": 1})
		})
		if i%10 == 9 && i < seedUsers {
			if _, err := j.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for g := range seedGroups {
		id := fmt.Sprintf("g%d", g)
		write(func(tx *store.Tx) error {
			if err := tx.Put(&store.Record{Type: "Group", ID: id, Created: now, LastModified: now,
				Doc: []byte(fmt.Sprintf(`{"displayName":"group %d"}`, g))}); err != nil {
				return err
			}
			for i := g; i < users; i += seedGroups {
				if _, err := tx.AddMember(id, store.Member{ID: fmt.Sprintf("u%03d", i), Type: "User"}); err != nil {
					return err
				}
			}
			return tx.SetRole("app", id, "role-"+id)
		})
	}
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// dumpFile returns everything in a bbolt file.
func dumpFile(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := kv.OpenBolt(path, kv.BoltOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return kvtest.Dump(t, db)
}

func wantSame(t *testing.T, got, want map[string]string) {
	t.Helper()
	n := 0
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			if n++; n <= 5 {
				t.Errorf("%s: got %q (present %v), want %q", k, g, ok, v)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if n++; n <= 5 {
				t.Errorf("%s: not in the source", k)
			}
		}
	}
	if n > 0 {
		t.Fatalf("%d differences (%d entries, want %d)", n, len(got), len(want))
	}
}

// etcdArgs names the etcd store at prefix of cluster c with flags.
func etcdArgs(c *etcdtest.Cluster, prefix string) []string {
	return []string{"--endpoints", strings.Join(c.Endpoints(), ","), "--prefix", prefix}
}

// revision is the cluster's current revision: it moves with every write.
func revision(t *testing.T, c *etcdtest.Cluster) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Client().Get(ctx, "revision-probe")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func TestCopyRoundTripThroughEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	src := filepath.Join(dir, "scimgate.db")
	seed(t, src)
	want := dumpFile(t, src)

	code, out, err := run(t, append([]string{"copy", "--from", src, "--to", "etcd"}, etcdArgs(c, "/fleet/")...)...)
	if code != 0 {
		t.Fatalf("bbolt -> etcd: exit %d: %v\n%s", code, err, out)
	}
	t.Logf("bbolt -> etcd:\n%s", out)
	if !strings.HasPrefix(out, "OK: copied "+src+" to etcd ") || !strings.Contains(out, "journal audit: 44 records, 5 checkpoints, head seq 44") {
		t.Errorf("report:\n%s", out)
	}

	back := filepath.Join(dir, "back", "scimgate.db")
	code, out, err = run(t, append([]string{"copy", "--from", "etcd", "--to", back}, etcdArgs(c, "/fleet/")...)...)
	if code != 0 {
		t.Fatalf("etcd -> bbolt: exit %d: %v\n%s", code, err, out)
	}
	t.Logf("etcd -> bbolt:\n%s", out)
	if !strings.Contains(out, "source read at etcd revision ") {
		t.Errorf("the report does not name the revision copied:\n%s", out)
	}
	wantSame(t, dumpFile(t, back), want)
	rep, err := journal.VerifyFileJournal(context.Background(), back, "", signingKey.Public().(ed25519.PublicKey))
	if err != nil || !rep.OK || rep.Records != seedUsers+seedGroups || rep.Checkpoints != 5 || !rep.Signed {
		t.Fatalf("the round-tripped journal: %+v, %v", rep, err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "back", ".*.part-*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	t.Run("the etcd end from a Caddyfile's store block", func(t *testing.T) {
		t.Setenv("STORECMD_TEST_TOKEN", journaltest.Token)
		caddyfile := filepath.Join(t.TempDir(), "Caddyfile")
		body := fmt.Sprintf(`http://127.0.0.1:9 {
	scim_gateway {
		token entra {env.STORECMD_TEST_TOKEN}
		store etcd {
			endpoints %s
			prefix /fleet
		}
	}
}
`, strings.Join(c.Endpoints(), " "))
		if err := os.WriteFile(caddyfile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		again := filepath.Join(t.TempDir(), "again.db")
		code, out, err := run(t, "copy", "--from", "etcd", "--config", caddyfile, "--to", again)
		if code != 0 {
			t.Fatalf("exit %d: %v\n%s", code, err, out)
		}
		wantSame(t, dumpFile(t, again), want)
	})

	t.Run("the etcd end from Caddy's JSON", func(t *testing.T) {
		config := filepath.Join(t.TempDir(), "caddy.json")
		body := fmt.Sprintf(`{"apps":{"http":{"servers":{"s":{"routes":[{"handle":[{"handler":"subroute","routes":[{"handle":[
			{"handler":"scim_gateway","store":{"backend":"etcd","endpoints":[%q],"prefix":"/fleet/"}}]}]}]}]}}}}}`, c.Endpoints()[0])
		if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		again := filepath.Join(t.TempDir(), "again.db")
		if code, out, err := run(t, "copy", "--from", "etcd", "--config", config, "--to", again); code != 0 {
			t.Fatalf("exit %d: %v\n%s", code, err, out)
		}
		wantSame(t, dumpFile(t, again), want)
	})
}

func TestCopyRefusesANonEmptyDestination(t *testing.T) {
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	src := filepath.Join(dir, "scimgate.db")
	seed(t, src)
	if code, out, err := run(t, append([]string{"copy", "--from", src, "--to", "etcd"}, etcdArgs(c, "/fleet/")...)...); code != 0 {
		t.Fatalf("first copy: exit %d: %v\n%s", code, err, out)
	}

	t.Run("etcd", func(t *testing.T) {
		before := revision(t, c)
		code, _, err := run(t, append([]string{"copy", "--from", src, "--to", "etcd"}, etcdArgs(c, "/fleet/")...)...)
		if code != 1 || err == nil {
			t.Fatalf("exit %d, %v", code, err)
		}
		for _, want := range []string{"is not empty: it holds", "keys in", "journal audit at seq 44", "etcdctl --endpoints", "del --prefix /fleet/"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q: %v", want, err)
			}
		}
		if after := revision(t, c); after != before {
			t.Errorf("the refused copy wrote to etcd: revision %d -> %d", before, after)
		}
	})

	t.Run("bbolt file", func(t *testing.T) {
		dst := filepath.Join(dir, "taken.db")
		if code, out, err := run(t, "copy", "--from", src, "--to", dst); code != 0 {
			t.Fatalf("bbolt -> bbolt: exit %d: %v\n%s", code, err, out)
		}
		data, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		code, _, err := run(t, append([]string{"copy", "--from", "etcd", "--to", dst}, etcdArgs(c, "/fleet/")...)...)
		if code != 1 || err == nil || !strings.Contains(err.Error(), "exists and holds") || !strings.Contains(err.Error(), "rm "+dst) {
			t.Fatalf("exit %d, %v", code, err)
		}
		if now, _ := os.ReadFile(dst); !bytes.Equal(now, data) {
			t.Error("the refused copy changed the existing file")
		}
	})
}

func TestCopyOfATamperedJournalFailsVerification(t *testing.T) {
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	src := filepath.Join(dir, "scimgate.db")
	seed(t, src)
	db, err := kv.OpenBolt(src, kv.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	journaltest.Tamper(t, db, 17)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	code, out, err := run(t, append([]string{"copy", "--from", src, "--to", "etcd"}, etcdArgs(c, "/fleet/")...)...)
	if code != 1 || err == nil {
		t.Fatalf("exit %d, %v\n%s", code, err, out)
	}
	for _, want := range []string{"journal audit in etcd", "does not verify: first bad sequence number 17 (modified)", "partial copy", "del --prefix /fleet/"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if strings.Contains(out, "OK") {
		t.Errorf("printed a report: %q", out)
	}

	dst := filepath.Join(dir, "copy.db")
	code, _, err = run(t, "copy", "--from", src, "--to", dst)
	if code != 1 || err == nil || !strings.Contains(err.Error(), "first bad sequence number 17") || !strings.Contains(err.Error(), "nothing was written to "+dst) {
		t.Fatalf("to a file: exit %d, %v", code, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a failed copy to a file left files: %v", entries)
	}
}

func TestCopyRefusesALockedSource(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "scimgate.db")
	seed(t, src)
	held, err := kv.OpenBolt(src, kv.BoltOptions{}) // what a running gateway holds
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	dst := filepath.Join(dir, "copy.db")
	code, _, err := run(t, "copy", "--from", src, "--to", dst)
	if code != 1 || err == nil {
		t.Fatalf("exit %d, %v", code, err)
	}
	for _, want := range []string{"source " + src + " is in use", "Stop the gateway", "scimgate journal backup --output"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("the refused copy created the destination")
	}
	if code, _, err := run(t, "copy", "--from", dir, "--to", dst); code != 1 || err == nil || !strings.Contains(err.Error(), "is a directory: name the store file in it ("+src+")") {
		t.Errorf("a data directory as the source: exit %d, %v", code, err)
	}
}

func TestCopyUsage(t *testing.T) {
	t.Setenv("STORECMD_TEST_PASSWORD", "s3cret")
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"copy", "--from", "a.db"}, "needs --from and --to"},
		{[]string{"copy", "--from", "etcd", "--to", "etcd", "--endpoints", "http://127.0.0.1:2379"}, "one etcd end"},
		{[]string{"copy", "--from", "a.db", "--to", "etcd"}, "etcd needs its store"},
		{[]string{"copy", "--from", "a.db", "--to", "b.db", "--endpoints", "http://127.0.0.1:2379"}, "neither --from nor --to is etcd"},
		{[]string{"copy", "--from", "a.db", "--to", "etcd", "--endpoints", "http://127.0.0.1"}, "has no port"},
		{[]string{"copy", "--from", "a.db", "--to", "etcd", "--endpoints", "http://127.0.0.1:2379", "--username", "u", "--password-env", "s3cret!"}, "the name of an environment variable"},
		{[]string{"copy", "--from", "a.db", "--to", "etcd", "--endpoints", "http://127.0.0.1:2379", "--username", "u", "--password-env", "STORECMD_TEST_UNSET"}, "not set"},
		{[]string{"copy", "--from", "a.db", "--to", "etcd", "--endpoints", "http://10.0.0.1:2379", "--username", "u", "--password-env", "STORECMD_TEST_PASSWORD"}, "clear text"},
		{[]string{"copy", "--from", "a.db", "--to", "etcd", "--config", filepath.Join(dir, "Caddyfile"), "--endpoints", "http://127.0.0.1:2379"}, "not both"},
		{[]string{"copy", "--from", "a.db", "--to", "a.db"}, "the same file"},
	} {
		code, _, err := run(t, tc.args...)
		if code != storecmd.ExitUsage || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: exit %d, %v; want %d and %q", tc.args, code, err, storecmd.ExitUsage, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") && !strings.Contains(strings.Join(tc.args, " "), "s3cret!") {
			t.Errorf("%v: the error shows the password: %v", tc.args, err)
		}
	}
}

package storeconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func parse(t *testing.T, src string) (*Config, error) {
	t.Helper()
	d := caddyfile.NewTestDispenser(src)
	d.Next() // "store"
	c := &Config{}
	return c, c.UnmarshalCaddyfile(d)
}

func TestParseEtcd(t *testing.T) {
	c, err := parse(t, `store etcd {
		endpoints http://127.0.0.1:2379 http://127.0.0.1:22379
		prefix /scimgate/prod
		username gw
		password {env.ETCD_PW}
		lease_ttl 4s
		request_timeout 2s
		read_staleness 250ms
	}`)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ETCD_PW", "s3cret-password")
	r, err := c.Resolve(caddy.NewReplacer(), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Backend != Etcd || r.Prefix != "/scimgate/prod/" || r.Password != "s3cret-password" || r.Username != "gw" ||
		r.LeaseTTL != 4*time.Second || r.RequestTimeout != 2*time.Second || r.DialTimeout != DefaultDialTimeout || len(r.Endpoints) != 2 ||
		r.ReadStaleness != 250*time.Millisecond {
		t.Fatalf("resolved %+v", r)
	}
	if r.Key != "etcd http://127.0.0.1:22379,http://127.0.0.1:2379 /scimgate/prod/" {
		t.Fatalf("key %q", r.Key)
	}
	if strings.Contains(r.Key, "s3cret") {
		t.Fatal("the key names the password")
	}
}

// TestReadStalenessDefaultsToLinearizable: without read_staleness (or with 0) every read is
// linearizable; the JSON config is checked as the Caddyfile is.
func TestReadStalenessDefaultsToLinearizable(t *testing.T) {
	for _, src := range []string{"store etcd {\n endpoints http://127.0.0.1:2379\n}", "store etcd {\n endpoints http://127.0.0.1:2379\n read_staleness 0\n}"} {
		c, err := parse(t, src)
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Resolve(caddy.NewReplacer(), "")
		if err != nil || r.ReadStaleness != 0 {
			t.Fatalf("%q: %+v %v", src, r, err)
		}
	}
	for _, d := range []caddy.Duration{-1, caddy.Duration(MaxReadStaleness + time.Millisecond)} {
		c := &Config{Backend: Etcd, Endpoints: []string{"http://127.0.0.1:2379"}, ReadStaleness: d}
		if _, err := c.Resolve(caddy.NewReplacer(), ""); err == nil || !strings.Contains(err.Error(), "read_staleness") {
			t.Errorf("read_staleness %v in JSON: %v", time.Duration(d), err)
		}
	}
	c := &Config{ReadStaleness: caddy.Duration(time.Second)}
	if _, err := c.Resolve(caddy.NewReplacer(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "read_staleness") {
		t.Errorf("read_staleness on bbolt: %v", err)
	}
}

func TestDefaultIsBolt(t *testing.T) {
	var c *Config
	dir := t.TempDir()
	r, err := c.Resolve(caddy.NewReplacer(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Backend != Bolt || r.Path != filepath.Join(dir, FileName) || r.Key != r.Path {
		t.Fatalf("resolved %+v", r)
	}
}

func TestBadConfigs(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, src, dataDir, want string }{
		{"no backend", `store`, "", "needs a backend"},
		{"unknown backend", `store redis`, "", "unknown backend"},
		{"bbolt options", "store bbolt {\n endpoints http://127.0.0.1:2379\n}", "", "takes no options"},
		{"no endpoints", "store etcd {\n prefix /x/\n}", "", "endpoints are required"},
		{"endpoint without port", "store etcd {\n endpoints http://10.0.0.1\n}", "", "has no port"},
		{"endpoint scheme", "store etcd {\n endpoints unix:///run/etcd.sock\n}", "", "must be http"},
		{"mixed schemes", "store etcd {\n endpoints http://127.0.0.1:2379 https://10.0.0.2:2379\n}", "", "mix"},
		{"data_dir with etcd", "store etcd {\n endpoints http://127.0.0.1:2379\n}", "/var/lib/scimgate", "data_dir"},
		{"literal password", "store etcd {\n endpoints http://127.0.0.1:2379\n username gw\n password hunter2hunter2\n}", "", "must be a placeholder"},
		{"password without user", "store etcd {\n endpoints http://127.0.0.1:2379\n password {env.X}\n}", "", "needs a username"},
		{"clear text credentials", "store etcd {\n endpoints http://10.0.0.1:2379\n username gw\n password {env.ETCD_PW2}\n}", "", "clear text"},
		{"tls over http", "store etcd {\n endpoints http://127.0.0.1:2379\n tls {\n  server_name etcd\n }\n}", "", "need https"},
		{"bad ca", "store etcd {\n endpoints https://10.0.0.1:2379\n tls {\n  ca " + ca + "\n }\n}", "", "no PEM"},
		{"cert without key", "store etcd {\n endpoints https://10.0.0.1:2379\n tls {\n  cert x.pem\n }\n}", "", "both cert and key"},
		{"short lease", "store etcd {\n endpoints http://127.0.0.1:2379\n lease_ttl 1s\n}", "", "at least 2s"},
		{"negative staleness", "store etcd {\n endpoints http://127.0.0.1:2379\n read_staleness -1s\n}", "", "read_staleness"},
		{"long staleness", "store etcd {\n endpoints http://127.0.0.1:2379\n read_staleness 1m\n}", "", "read_staleness"},
		{"staleness not a duration", "store etcd {\n endpoints http://127.0.0.1:2379\n read_staleness soon\n}", "", "read_staleness"},
		{"twice", "store etcd {\n prefix /a/\n prefix /b/\n}", "", "set twice"},
		{"unknown option", "store etcd {\n replicas 3\n}", "", "unrecognized option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ETCD_PW2", "a-long-password")
			c, err := parse(t, tc.src)
			if err == nil {
				_, err = c.Resolve(caddy.NewReplacer(), tc.dataDir)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "a-long-password") || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error quotes a secret: %v", err)
			}
		})
	}
}

// TestDataDirThatIsAFile: a data_dir that is a file, or lies below one, is refused when the
// config is provisioned (so `scimgate validate` says so), naming the file, and nothing is
// created; a data_dir still to be created below a directory passes.
func TestDataDirThatIsAFile(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "afile")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{
		file:                          "data_dir " + file + " is a file, not a directory",
		filepath.Join(file, "a", "b"): "data_dir " + filepath.Join(file, "a", "b") + " cannot be created: " + file + " is a file",
	} {
		if _, err := (*Config)(nil).Resolve(caddy.NewReplacer(), dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("data_dir %s: %v, want %q", dir, err, want)
		}
	}
	fresh := filepath.Join(root, "new", "data")
	if _, err := (*Config)(nil).Resolve(caddy.NewReplacer(), fresh); err != nil {
		t.Errorf("data_dir to be created: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("resolving created something: %v", err)
	}
}

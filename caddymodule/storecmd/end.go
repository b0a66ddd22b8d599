package storecmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/storeconfig"
)

// etcdFlags are the flags that name an etcd store (the alternative to --config).
var etcdFlags = []string{"endpoints", "prefix", "username", "password-env", "password-file", "ca", "cert", "key", "server-name", "timeout"}

// envName is what --password-env accepts: an environment variable's name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// etcdStore resolves the etcd store of --config or of the etcd flags, through the store
// block's own validation (storeconfig), so the rules are the gateway's: no password in
// clear text off this machine, TLS files that load, endpoints with a port.
func etcdStore(f caddycmd.Flags) (*storeconfig.Resolved, error) {
	var set []string
	for _, name := range etcdFlags {
		if f.Changed(name) {
			set = append(set, "--"+name)
		}
	}
	config := f.String("config")
	switch {
	case config != "" && len(set) > 0:
		return nil, usagef("name the etcd store with --config or with %s, not both", strings.Join(set, ", "))
	case config != "":
		return configStore(config)
	case len(set) == 0:
		return nil, usagef("etcd needs its store: --config <Caddyfile> with a store etcd { ... } block, or --endpoints <urls> [--prefix ...]")
	}
	if !f.Changed("endpoints") {
		return nil, usagef("etcd needs --endpoints (e.g. --endpoints http://127.0.0.1:2379)")
	}
	eps := strings.Split(f.String("endpoints"), ",")
	for i := range eps {
		eps[i] = strings.TrimSpace(eps[i])
	}
	eps = slices.DeleteFunc(eps, func(s string) bool { return s == "" })
	c := &storeconfig.Config{
		Backend:      storeconfig.Etcd,
		Endpoints:    eps,
		Prefix:       f.String("prefix"),
		Username:     f.String("username"),
		PasswordFile: f.String("password-file"),
	}
	if env := f.String("password-env"); env != "" {
		if !envName.MatchString(env) {
			return nil, usagef("--password-env takes the name of an environment variable (such as ETCD_PASSWORD), not the password")
		}
		if os.Getenv(env) == "" {
			return nil, usagef("--password-env %s: the variable is not set", env)
		}
		c.Password = "{env." + env + "}"
	}
	if d := f.Duration("timeout"); d > 0 {
		c.DialTimeout, c.RequestTimeout = caddy.Duration(d), caddy.Duration(d)
	} else {
		return nil, usagef("--timeout must be positive")
	}
	if f.String("ca") != "" || f.String("cert") != "" || f.String("key") != "" || f.String("server-name") != "" {
		c.TLS = &storeconfig.TLS{CA: f.String("ca"), Cert: f.String("cert"), Key: f.String("key"), ServerName: f.String("server-name")}
	}
	// Placeholders in flags resolve as in a Caddyfile ({env.X}); nothing else does.
	r, err := c.Resolve(caddy.NewReplacer(), "")
	if err != nil {
		return nil, usageError{err}
	}
	return r, nil
}

// configStore resolves the etcd store of the gateways a config file configures. A
// Caddyfile is adapted as `scimgate adapt` would; a file ending in .json is Caddy's JSON.
func configStore(path string) (*storeconfig.Resolved, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--config: %v", err)
	}
	if !strings.EqualFold(filepath.Ext(path), ".json") {
		adapter := caddyconfig.GetAdapter("caddyfile")
		if adapter == nil {
			return nil, usagef("--config: this binary has no Caddyfile adapter; give Caddy's JSON (a .json file)")
		}
		if body, _, err = adapter.Adapt(body, map[string]any{"filename": path}); err != nil {
			return nil, usagef("--config %s: %v", path, err)
		}
	}
	var root any
	if err := json.Unmarshal(body, &root); err != nil {
		return nil, usagef("--config %s: %v", path, err)
	}
	var gateways []map[string]any
	findGateways(root, &gateways, 0)
	if len(gateways) == 0 {
		return nil, usagef("--config %s configures no scim_gateway", path)
	}
	var found *storeconfig.Resolved
	for _, g := range gateways {
		raw, _ := json.Marshal(g["store"])
		var c storeconfig.Config
		if g["store"] != nil {
			if err := json.Unmarshal(raw, &c); err != nil {
				return nil, usagef("--config %s: store: %v", path, err)
			}
		}
		dataDir, _ := g["data_dir"].(string)
		r, err := c.Resolve(caddy.NewReplacer(), dataDir)
		if err != nil {
			return nil, usagef("--config %s: %v", path, err)
		}
		if r.Backend != storeconfig.Etcd {
			continue
		}
		if found != nil && found.Key != r.Key {
			return nil, usagef("--config %s names several etcd stores (%s; %s): name one with --endpoints and --prefix", path, found.Key, r.Key)
		}
		found = r
	}
	if found == nil {
		return nil, usagef("--config %s keeps its store in bbolt (data_dir), not etcd: give the file's path instead of etcd", path)
	}
	return found, nil
}

// maxConfigDepth bounds the walk of a config's JSON.
const maxConfigDepth = 64

// findGateways collects the scim_gateway handlers anywhere in an adapted config (sites,
// routes, subroutes).
func findGateways(v any, out *[]map[string]any, depth int) {
	if depth > maxConfigDepth {
		return
	}
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == "scim_gateway" {
			*out = append(*out, v)
			return
		}
		for _, e := range v {
			findGateways(e, out, depth+1)
		}
	case []any:
		for _, e := range v {
			findGateways(e, out, depth+1)
		}
	}
}

// openEtcd connects to the etcd store and loads it (one consistent revision).
func openEtcd(ctx context.Context, r *storeconfig.Resolved) (*etcdkv.DB, error) {
	host, _ := os.Hostname()
	return etcdkv.Open(ctx, etcdkv.Config{
		Endpoints:     r.Endpoints,
		Prefix:        r.Prefix,
		Username:      r.Username,
		Password:      r.Password,
		TLS:           r.TLS,
		DialTimeout:   r.DialTimeout,
		CommitTimeout: r.RequestTimeout,
		// request_timeout bounds reads too: a linearizable read that etcd answers within it
		// must not fail on a shorter bound of its own.
		BarrierTimeout: r.RequestTimeout,
		Name:           fmt.Sprintf("store-copy@%s:%d", host, os.Getpid()),
		Logger:         zap.NewNop(),
	})
}

// lockWait is how long opening a bbolt source waits for its lock: a running gateway
// holds it for as long as it runs, so waiting longer gains nothing.
const lockWait = time.Second

// openBoltSource opens a bbolt file read-only. A file a running gateway holds is refused
// with what to do instead.
func openBoltSource(path string) (*kv.Bolt, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("source %s does not exist", path)
	}
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("source %s is a directory: name the store file in it (%s)", path, filepath.Join(path, storeconfig.FileName))
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("source %s is not a file", path)
	}
	db, err := kv.OpenBolt(path, kv.BoltOptions{ReadOnly: true, Timeout: lockWait})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("source %s is in use: a running gateway (or another program) holds its lock. "+
			"Stop the gateway and copy again, or copy a backup of it: scimgate journal backup --output copy.db, then --from copy.db", path)
	}
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	return db, nil
}

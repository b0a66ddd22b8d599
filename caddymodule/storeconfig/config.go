// Package storeconfig is the `store` block of a gateway's config: where it keeps its
// directory, id map, outbox and journal. The default is one embedded bbolt file under
// data_dir; `store etcd { ... }` puts everything in an etcd cluster that several gateways
// share (a fleet).
package storeconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/scimgate/scimgate/caddymodule/gwconfig"
	"github.com/scimgate/scimgate/caddymodule/secret"
)

// Backends.
const (
	Bolt = "bbolt"
	Etcd = "etcd"
)

// FileName is the bbolt store's file in data_dir.
const FileName = "scimgate.db"

// DefaultPrefix is where a fleet keeps its keys in etcd when the config names no prefix.
const DefaultPrefix = "/scimgate/"

// Defaults of the etcd settings.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultLeaseTTL       = 10 * time.Second
	// MaxReadStaleness is the longest read_staleness allowed.
	MaxReadStaleness = 10 * time.Second
)

// Config is the store block. The zero value is the embedded bbolt file.
type Config struct {
	// Backend is "bbolt" (default) or "etcd".
	Backend string `json:"backend,omitempty"`
	// Endpoints are the etcd members' client URLs (http:// or https://).
	Endpoints []string `json:"endpoints,omitempty"`
	// Prefix is the key prefix everything is kept under; gateways sharing a prefix share a
	// directory. Default /scimgate/.
	Prefix string `json:"prefix,omitempty"`
	// Username and Password authenticate to etcd; the password must be a placeholder such as
	// {env.ETCD_PASSWORD} or come from PasswordFile.
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	PasswordFile string `json:"password_file,omitempty"`
	// TLS configures https:// endpoints: a CA for the members' certificates, a client
	// certificate for mutual TLS, the server name to verify.
	TLS *TLS `json:"tls,omitempty"`
	// DialTimeout bounds connecting to etcd at start; RequestTimeout bounds every etcd
	// request (a write answers 503 after it when etcd has no quorum). Default 5s each.
	DialTimeout    caddy.Duration `json:"dial_timeout,omitempty"`
	RequestTimeout caddy.Duration `json:"request_timeout,omitempty"`
	// LeaseTTL is how long a gateway's jobs (queued delivery, scheduled reconciles,
	// checkpoints, retention) stay with it after it stopped renewing its lease: the
	// failover time. Default 10s.
	LeaseTTL caddy.Duration `json:"lease_ttl,omitempty"`
	// ReadStaleness lets Entra's reads (a GET of a resource, a list or filter) miss writes
	// that other gateways acknowledged within this long, so that they cost no round trip
	// to etcd: a gateway answers from its local copy of the store when a linearizable read
	// of the fleet's head, sent at most this long ago, shows nothing the copy lacks (it
	// sends one otherwise). A gateway always sees its own writes, and a write, with the
	// reads that decide it, always sees the current store. Default 0: every read is
	// linearizable (it sees every write acknowledged before it began). At most 10s.
	ReadStaleness caddy.Duration `json:"read_staleness,omitempty"`
}

// TLS is the etcd client's TLS settings.
type TLS struct {
	CA         string `json:"ca,omitempty"`
	Cert       string `json:"cert,omitempty"`
	Key        string `json:"key,omitempty"`
	ServerName string `json:"server_name,omitempty"`
}

// Resolved is a provisioned store config, its placeholders replaced.
type Resolved struct {
	Backend string
	// Key identifies the store in the process (the file's path, or the etcd cluster and
	// prefix): configs with the same key share one open store.
	Key string
	// Path is the bbolt file.
	Path string
	// etcd settings.
	Endpoints      []string
	Prefix         string
	Username       string
	Password       string
	TLS            *tls.Config
	DialTimeout    time.Duration
	RequestTimeout time.Duration
	LeaseTTL       time.Duration
	ReadStaleness  time.Duration
}

// Resolve checks the config and resolves its placeholders and files. dataDir is the
// gateway's data_dir, used by the bbolt backend ("" when the config did not set one).
func (c *Config) Resolve(repl *caddy.Replacer, dataDir string) (*Resolved, error) {
	backend := Bolt
	if c != nil && c.Backend != "" {
		backend = c.Backend
	}
	switch backend {
	case Bolt:
		if c != nil && (len(c.Endpoints) > 0 || c.Prefix != "" || c.Username != "" || c.Password != "" || c.PasswordFile != "" || c.TLS != nil || c.ReadStaleness != 0) {
			return nil, fmt.Errorf("store bbolt: endpoints, prefix, credentials, tls and read_staleness are etcd settings (store etcd { ... })")
		}
		return resolveBolt(repl, dataDir)
	case Etcd:
		if dataDir != "" {
			return nil, fmt.Errorf("store etcd: data_dir is the embedded store's directory; a gateway on etcd keeps nothing on disk (remove data_dir)")
		}
		return c.resolveEtcd(repl)
	default:
		return nil, fmt.Errorf("store: unknown backend %q (want bbolt or etcd)", backend)
	}
}

func resolveBolt(repl *caddy.Replacer, dataDir string) (*Resolved, error) {
	if dataDir == "" {
		dataDir = "./scimgate-data"
	}
	dir := repl.ReplaceAll(dataDir, "")
	if dir == "" {
		return nil, fmt.Errorf("data_dir resolves to an empty path")
	}
	path, err := filepath.Abs(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("resolving store path in %s: %w", dir, err)
	}
	if err := checkDataDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return &Resolved{Backend: Bolt, Key: path, Path: path}, nil
}

// checkDataDir refuses, without creating anything, a data_dir that could never hold the
// store: one that is a file, or below a file. (The store opens only when the config
// starts, so `scimgate validate` would otherwise pass a config that fails at its start.)
func checkDataDir(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.IsDir():
			return nil
		case err == nil && p == dir:
			return fmt.Errorf("data_dir %s is a file, not a directory: name a directory for the store (it is created if missing)", dir)
		case err == nil:
			return fmt.Errorf("data_dir %s cannot be created: %s is a file, not a directory", dir, p)
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return fmt.Errorf("data_dir %s: %w", dir, err)
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

func (c *Config) resolveEtcd(repl *caddy.Replacer) (*Resolved, error) {
	r := &Resolved{
		Backend:        Etcd,
		DialTimeout:    durationOr(c.DialTimeout, DefaultDialTimeout),
		RequestTimeout: durationOr(c.RequestTimeout, DefaultRequestTimeout),
		LeaseTTL:       durationOr(c.LeaseTTL, DefaultLeaseTTL),
		ReadStaleness:  time.Duration(c.ReadStaleness),
	}
	if r.ReadStaleness < 0 || r.ReadStaleness > MaxReadStaleness {
		return nil, fmt.Errorf("store etcd: read_staleness must be between 0 (every read linearizable) and %s, got %s", MaxReadStaleness, r.ReadStaleness)
	}
	if r.DialTimeout < 0 || r.RequestTimeout < 0 {
		return nil, fmt.Errorf("store etcd: dial_timeout and request_timeout must be positive")
	}
	if r.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("store etcd: lease_ttl must be at least 2s (etcd counts leases in seconds), got %s", r.LeaseTTL)
	}
	if len(c.Endpoints) == 0 {
		return nil, fmt.Errorf("store etcd: endpoints are required, e.g. endpoints http://127.0.0.1:2379")
	}
	secure := 0
	for _, e := range c.Endpoints {
		v, err := secret.Value(repl, e)
		if err != nil {
			return nil, fmt.Errorf("store etcd: endpoint %w", err)
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("store etcd: endpoint %q must be http://host:port or https://host:port", v)
		}
		if u.Port() == "" {
			return nil, fmt.Errorf("store etcd: endpoint %q has no port (etcd's client port is usually 2379)", v)
		}
		if u.Scheme == "https" {
			secure++
		}
		r.Endpoints = append(r.Endpoints, u.Scheme+"://"+u.Host)
	}
	if secure != 0 && secure != len(r.Endpoints) {
		return nil, fmt.Errorf("store etcd: endpoints mix http:// and https://")
	}
	prefix, err := secret.Value(repl, c.Prefix)
	if err != nil {
		return nil, fmt.Errorf("store etcd: prefix %w", err)
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "\x00") {
		return nil, fmt.Errorf("store etcd: prefix %q must start with /", prefix)
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	r.Prefix = prefix
	if c.Username != "" || c.Password != "" || c.PasswordFile != "" {
		if r.Username, err = secret.Value(repl, c.Username); err != nil || r.Username == "" {
			return nil, fmt.Errorf("store etcd: a password needs a username")
		}
		if r.Password, err = secret.Resolve(repl, "store etcd", "password", c.Password, c.PasswordFile); err != nil {
			return nil, err
		}
		if secure == 0 && !allLoopback(r.Endpoints) {
			return nil, fmt.Errorf("store etcd: a username and password would cross the network in clear text: use https:// endpoints (with tls { ca ... }) for etcd members that are not on this machine")
		}
	}
	if c.TLS != nil {
		if secure == 0 {
			return nil, fmt.Errorf("store etcd: tls settings need https:// endpoints")
		}
		if r.TLS, err = c.TLS.build(repl); err != nil {
			return nil, err
		}
	} else if secure > 0 {
		r.TLS = &tls.Config{MinVersion: tls.VersionTLS12} // the system's roots
	}
	sorted := slices.Clone(r.Endpoints)
	slices.Sort(sorted)
	r.Key = "etcd " + strings.Join(sorted, ",") + " " + r.Prefix
	return r, nil
}

func (t *TLS) build(repl *caddy.Replacer) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	var err error
	if cfg.ServerName, err = secret.Value(repl, t.ServerName); err != nil {
		return nil, fmt.Errorf("store etcd: tls server_name %w", err)
	}
	if t.CA != "" {
		path := repl.ReplaceAll(t.CA, "")
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("store etcd: tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store etcd: tls ca %s holds no PEM certificate", path)
		}
		cfg.RootCAs = pool
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, fmt.Errorf("store etcd: tls client certificate needs both cert and key")
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(repl.ReplaceAll(t.Cert, ""), repl.ReplaceAll(t.Key, ""))
		if err != nil {
			return nil, fmt.Errorf("store etcd: tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func durationOr(d caddy.Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// allLoopback reports whether every endpoint is on this machine.
func allLoopback(endpoints []string) bool {
	for _, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil {
			return false
		}
		host := u.Hostname()
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// UnmarshalCaddyfile parses the store directive after its name:
//
//	store bbolt                       # the default: one file in data_dir
//	store etcd {
//	    endpoints <url>...            # http(s)://host:2379, one or more
//	    prefix <prefix>               # default /scimgate/
//	    username <name>
//	    password <placeholder>        # {env.ETCD_PASSWORD}, or password_file <path>
//	    tls {
//	        ca <pem file>
//	        cert <pem file>
//	        key <pem file>
//	        server_name <name>
//	    }
//	    dial_timeout <duration>       # default 5s
//	    request_timeout <duration>    # default 5s
//	    lease_ttl <duration>          # default 10s: how fast jobs move when a gateway dies
//	    read_staleness <duration>     # default 0: reads may miss other gateways' writes this recent
//	}
func (c *Config) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Errf("store needs a backend: store bbolt, or store etcd { endpoints ... }")
	}
	c.Backend = d.Val()
	if c.Backend != Bolt && c.Backend != Etcd {
		return d.Errf("store: unknown backend %q (want bbolt or etcd)", c.Backend)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if c.Backend == Bolt {
			return d.Errf("store bbolt takes no options (its directory is data_dir)")
		}
		if seen[opt] {
			return d.Errf("store: %s is set twice", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "endpoints":
			c.Endpoints = d.RemainingArgs()
			if len(c.Endpoints) == 0 {
				return d.ArgErr()
			}
		case "prefix":
			c.Prefix, err = gwconfig.OneArg(d)
		case "username":
			c.Username, err = gwconfig.OneArg(d)
		case "password":
			c.Password, err = gwconfig.OneArg(d)
		case "password_file":
			c.PasswordFile, err = gwconfig.OneArg(d)
		case "dial_timeout", "request_timeout", "lease_ttl", "read_staleness":
			var v string
			if v, err = gwconfig.OneArg(d); err != nil {
				return err
			}
			dur, perr := caddy.ParseDuration(v)
			switch {
			case opt == "read_staleness" && (perr != nil || dur < 0 || dur > MaxReadStaleness):
				return d.Errf("store: read_staleness %q must be a duration from 0 (every read linearizable) to %s", v, MaxReadStaleness)
			case opt != "read_staleness" && (perr != nil || dur <= 0):
				return d.Errf("store: %s %q is not a positive duration", opt, v)
			}
			*map[string]*caddy.Duration{"dial_timeout": &c.DialTimeout, "request_timeout": &c.RequestTimeout,
				"lease_ttl": &c.LeaseTTL, "read_staleness": &c.ReadStaleness}[opt] = caddy.Duration(dur)
		case "tls":
			c.TLS, err = parseTLS(d)
		default:
			return d.Errf("store etcd: unrecognized option %q (want endpoints, prefix, username, password, password_file, tls, dial_timeout, request_timeout, lease_ttl or read_staleness)", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseTLS(d *caddyfile.Dispenser) (*TLS, error) {
	t := &TLS{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		v, err := gwconfig.OneArg(d)
		if err != nil {
			return nil, err
		}
		switch opt {
		case "ca":
			t.CA = v
		case "cert":
			t.Cert = v
		case "key":
			t.Key = v
		case "server_name":
			t.ServerName = v
		default:
			return nil, d.Errf("store etcd tls: unrecognized option %q (want ca, cert, key or server_name)", opt)
		}
	}
	return t, nil
}

package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/scimgate/scimgate/caddymodule"
	_ "github.com/scimgate/scimgate/demoapp"
)

// defaultMapping is where the repository keeps the demo app's mapping; rigs look for it
// in the working directory and its parents, so `go run` and `go test` both find it.
const (
	defaultMapping = "mappings/demoapp.json"
	maxParentDirs  = 6
)

// rig is one in-process Caddy serving the gateway, the bare proxy, the floor (floor.go)
// and their three demo apps.
type rig struct {
	gateway string // the gateway's SCIM root, http://127.0.0.1:p/scim/v2
	proxy   string // the proxy site, http://127.0.0.1:p (paths /api/v1/... reach demo app B)
	floor   string // the floor site: the proxy with two durable commits per write, to demo app C
	appA    string // demo app A (the gateway's target), for inspection
	appB    string // demo app B (behind the proxy), for inspection
	appC    string // demo app C (behind the floor), for inspection
	token   string // the SCIM bearer token
	apiKey  string // both demo apps' X-Api-Key
	dataDir string // the gateway's store and journal
	client  *http.Client
	tmp     string
}

// startRig starts Caddy with a fresh temporary directory and random credentials.
func startRig(mappingPath, policyDir string, lat latency) (*rig, error) {
	mp, err := findMapping(mappingPath)
	if err != nil {
		return nil, err
	}
	if policyDir != "" {
		if policyDir, err = filepath.Abs(policyDir); err != nil {
			return nil, fmt.Errorf("-policy: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "gatewaybench-")
	if err != nil {
		return nil, fmt.Errorf("creating the temporary directory: %w", err)
	}
	r := &rig{tmp: tmp, dataDir: filepath.Join(tmp, "data"), token: randomHex(32), apiKey: randomHex(16)}
	addrs, err := freeAddrs(6)
	if err != nil {
		r.cleanup()
		return nil, err
	}
	gw, px, a, b, fl, c := addrs[0], addrs[1], addrs[2], addrs[3], addrs[4], addrs[5]
	r.gateway, r.proxy, r.appA, r.appB = "http://"+gw+"/scim/v2", "http://"+px, "http://"+a, "http://"+b
	r.floor, r.appC = "http://"+fl, "http://"+c
	if err := loadCaddyfile(caddyfileFor(r, mp, policyDir, lat, gw, px, a, b) + floorSites(r, lat, fl, c)); err != nil {
		r.cleanup()
		return nil, err
	}
	r.client = newHTTPClient()
	return r, nil
}

// loadCaddyfile starts the in-process Caddy with the config src.
func loadCaddyfile(src string) error {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "gatewaybench.Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting the Caddyfile: %w", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return fmt.Errorf("starting Caddy: %w", err)
	}
	return nil
}

// caddyfileFor writes the rig's config. The credentials are literals: they are random per
// run and the config never leaves the process. The demo apps all get the same options, so the
// only difference between the two paths is the gateway versus reverse_proxy (both apps
// answer after the same latency, and the target lets as many calls through at once as the
// highest level sends: the proxy has no such limit, and the target's default of 16 would
// measure that setting, not the gateway). With a policy directory the gateway decides every write
// with it.
func caddyfileFor(r *rig, mappingPath, policyDir string, lat latency, gw, px, a, b string) string {
	policy := ""
	if policyDir != "" {
		policy = fmt.Sprintf("policy %q", policyDir)
	}
	return fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %[1]q
	log {
		output discard
	}
}

http://%[2]s {
	bind 127.0.0.1
	scim_gateway {
		token bench %[3]s
		data_dir %[4]q
		target demo {
			url http://%[5]s
			mapping %[6]q
			header X-Api-Key %[7]s
			max_concurrent %[12]d
		}
		journal {
			name gatewaybench
		}
		%[10]s
	}
}

http://%[8]s {
	bind 127.0.0.1
	reverse_proxy %[9]s
}

http://%[5]s {
	bind 127.0.0.1
	scimgate_demo_app {
		api_key %[7]s
		name gatewaybench-a
		%[11]s
	}
}

http://%[9]s {
	bind 127.0.0.1
	scimgate_demo_app {
		api_key %[7]s
		name gatewaybench-b
		%[11]s
	}
}
`, filepath.Join(r.tmp, "caddy"), gw, r.token, r.dataDir, a, mappingPath, r.apiKey, px, b, policy, lat.caddyfile(), maxConcurrency)
}

// floorSites is the floor's site (floor.go) and its demo app, configured as the proxy's.
func floorSites(r *rig, lat latency, fl, c string) string {
	return fmt.Sprintf(`
http://%[1]s {
	bind 127.0.0.1
	route {
		gatewaybench_floor {
			file %[3]q
		}
		reverse_proxy %[2]s
	}
}

http://%[2]s {
	bind 127.0.0.1
	scimgate_demo_app {
		api_key %[4]s
		name gatewaybench-c
		%[5]s
	}
}
`, fl, c, filepath.Join(r.tmp, "floor", "floor.db"), r.apiKey, lat.caddyfile())
}

// stop stops Caddy and removes the temporary directory.
func (r *rig) stop() {
	_ = caddy.Stop()
	r.client.CloseIdleConnections()
	r.cleanup()
}

func (r *rig) cleanup() { _ = os.RemoveAll(r.tmp) }

// newHTTPClient keeps enough idle connections for the highest level, so a cell measures
// requests rather than connection set-up, and never follows redirects (a redirect is an
// unexpected status).
func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 4 * maxConcurrency
	tr.MaxIdleConnsPerHost = maxConcurrency
	tr.DisableCompression = true
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// findMapping returns an absolute path to the mapping: the flag's value, or the
// repository's file found from the working directory upwards.
func findMapping(flagValue string) (string, error) {
	if flagValue != "" {
		if _, err := os.Stat(flagValue); err != nil {
			return "", fmt.Errorf("-mapping: %w", err)
		}
		return filepath.Abs(flagValue)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range maxParentDirs {
		p := filepath.Join(dir, filepath.FromSlash(defaultMapping))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no " + defaultMapping + " in the working directory or its parents: run from the repository or pass -mapping")
}

// freeAddrs picks n distinct free loopback ports (the tests claim them: ports_test.go).
var freeAddrs = pickFreeAddrs

// pickFreeAddrs picks n distinct free loopback ports. They are released before Caddy binds
// them; on a busy host another process could take one, and Caddy's start then fails with
// a clear error.
func pickFreeAddrs(n int) ([]string, error) {
	out := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

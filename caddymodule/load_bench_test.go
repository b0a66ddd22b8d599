package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/google/uuid"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
	"github.com/scimgate/scimgate/caddymodule/storeconfig"
)

// The load benchmarks drive a real Caddy over loopback HTTP, with a bare Caddy
// reverse_proxy to a trivial backend as the baseline measured in the same run:
//
//	go test -run '^$' -bench HTTP -benchtime 5s ./caddymodule/
//
// Compare ns/op of each gateway case with BenchmarkHTTP/baseline_reverse_proxy.

const loadUsers = 10000

type loadRig struct {
	gateway  string // SCIM root of the gateway site
	baseline string // URL of the reverse_proxy site
	client   *http.Client
}

func startLoadRig(b *testing.B) *loadRig {
	b.Helper()
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/scim+json")
		_, _ = io.WriteString(w, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"Resources":[],"startIndex":1,"itemsPerPage":0}`)
	})}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = backend.Serve(bl) }()
	b.Cleanup(func() { _ = backend.Close() })

	gwAddr, proxyAddr := loadFreeAddr(b), loadFreeAddr(b)
	dataDir := b.TempDir()
	b.Setenv("SCIMGATE_LOAD_TOKEN", testToken)
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %s
	log {
		output discard
	}
}
http://%s {
	bind 127.0.0.1
	scim_gateway {
		token entra {env.SCIMGATE_LOAD_TOKEN}
		data_dir %s
	}
}
http://%s {
	bind 127.0.0.1
	reverse_proxy %s
}
`, b.TempDir(), gwAddr, dataDir, proxyAddr, bl.Addr().String())
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = caddy.Stop() })

	// Seed the directory through the store Caddy opened (shared through the pool).
	path, _ := filepath.Abs(filepath.Join(dataDir, storeFileName))
	h, err := acquireStore(&storeconfig.Resolved{Backend: storeconfig.Bolt, Key: path, Path: path}, journal.Options{Name: DefaultJournalName}, nil) // already open: shared
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = releaseStore(path) }()
	if err := loadSeedUsers(h.Store, loadUsers); err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	return &loadRig{
		gateway:  "http://" + gwAddr + "/scim/v2",
		baseline: "http://" + proxyAddr + "/scim/v2/Users",
		client:   &http.Client{Transport: tr, Timeout: 10 * time.Second},
	}
}

func loadFreeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// loadSeedUsers writes n Entra-shaped users directly, in large transactions.
func loadSeedUsers(st *store.Store, n int) error {
	now := time.Now().UTC()
	for start := 0; start < n; start += 5000 {
		err := st.Update(func(tx *store.Tx) error {
			for i := start; i < min(start+5000, n); i++ {
				doc := scim.Resource{
					"schemas":  []any{scim.UserSchema},
					"userName": fmt.Sprintf("user-%d@contoso.example", i),
					"active":   true,
					"emails":   []any{map[string]any{"type": "work", "primary": true, "value": fmt.Sprintf("user-%d@contoso.example", i)}},
					"name":     map[string]any{"givenName": "Load", "familyName": fmt.Sprint(i)},
				}
				data, err := json.Marshal(doc)
				if err != nil {
					return err
				}
				rec := &store.Record{Type: scim.UserType, ID: uuid.NewString(), Created: now, LastModified: now, Doc: data, Index: provision.IndexEntries(scim.UserType, doc)}
				if err := tx.Put(rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (rig *loadRig) do(b *testing.B, method, u, body string) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		b.Error(err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	resp, err := rig.client.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		b.Errorf("%s %s: %d", method, u, resp.StatusCode)
	}
}

// BenchmarkHTTP measures the gateway end to end at 32 concurrent clients, against a bare
// Caddy reverse_proxy in the same process and run.
func BenchmarkHTTP(b *testing.B) {
	if os.Getenv("SCIMGATE_SKIP_LOAD") != "" {
		b.Skip("SCIMGATE_SKIP_LOAD set")
	}
	rig := startLoadRig(b)
	var seq atomic.Int64
	cases := []struct {
		name string
		run  func(b *testing.B)
	}{
		{"baseline_reverse_proxy", func(b *testing.B) { rig.do(b, http.MethodGet, rig.baseline, "") }},
		{"filter_userName_10000_users", func(b *testing.B) {
			n := seq.Add(1) % loadUsers
			q := url.Values{"filter": {fmt.Sprintf(`userName eq "USER-%d@contoso.example"`, n)}}
			rig.do(b, http.MethodGet, rig.gateway+"/Users?"+q.Encode(), "")
		}},
		{"test_connection_probe", func(b *testing.B) {
			q := url.Values{"filter": {fmt.Sprintf(`userName eq "%s"`, uuid.NewString())}}
			rig.do(b, http.MethodGet, rig.gateway+"/Users?"+q.Encode(), "")
		}},
		{"post_user", func(b *testing.B) {
			body := fmt.Sprintf(`{"schemas":["%s"],"userName":"load-%d-%s@contoso.example","active":true,"emails":[{"type":"work","value":"x@contoso.example","primary":true}]}`, scim.UserSchema, seq.Add(1), uuid.NewString()[:8])
			rig.do(b, http.MethodPost, rig.gateway+"/Users", body)
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetParallelism(16) // 32 goroutines on 2 cores
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.run(b)
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// Command writetail measures the tail latency of SCIM creates (POST /Users) against a
// running gateway, as issue 17 asks: seed the store with users, then send a bounded number
// of creates at a fixed concurrency and print p50/p99/max; with -admin it also captures an
// execution trace and block/mutex profiles from the gateway's Caddy admin endpoint while
// the creates run.
//
//	go build -o /tmp/scimgate ./cmd/scimgate
//	SCIM_TOKEN=$(openssl rand -hex 32) SCIMGATE_ADDR=127.0.0.1:18080 SCIMGATE_BIND=127.0.0.1 \
//	  SCIMGATE_ADMIN=127.0.0.1:12019 SCIMGATE_DATA=$(mktemp -d) SCIMGATE_DEMO_ADDR=127.0.0.1:18081 \
//	  SCIMGATE_DRY_RUN=true SCIMGATE_DEBUG_PROFILE=1 taskset -c 0 /tmp/scimgate run --config Caddyfile.example &
//	taskset -c 1 go run ./cmd/writetail -url http://127.0.0.1:18080/scim/v2 -seed 10000 \
//	  -requests 3000 -admin 127.0.0.1:12019 -profile-dir /tmp/wt
//
// The token is read from SCIM_TOKEN. Every loop is bounded (-seed, -requests); every user
// name carries -prefix (default: the start time), so runs against the same store do not
// collide. It exits 1 if a create got a status other than 201, 2 on a usage error.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds that keep a run finite whatever the flags say.
const (
	maxSeed        = 200_000
	maxRequests    = 1_000_000
	maxConcurrency = 256
	maxTrace       = time.Minute
	maxAnswer      = 1 << 20 // bytes of an answer read (the rest is dropped with its connection)
)

const (
	userSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	enterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
)

type config struct {
	URL             string
	Token           string
	Prefix          string
	Seed            int
	SeedConcurrency int
	Requests        int
	Concurrency     int
	Admin           string
	ProfileDir      string
	Trace           time.Duration
	Waits           string
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parse(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "writetail:", err)
		return 2
	}
	if cfg.Waits != "" {
		if err := printWaits(cfg.Waits, stdout); err != nil {
			fmt.Fprintln(stderr, "writetail:", err)
			return 1
		}
		return 0
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 2 * maxConcurrency, MaxIdleConnsPerHost: 2 * maxConcurrency,
	}}
	ctx := context.Background()
	if cfg.Seed > 0 {
		res := creates(ctx, client, cfg, "seed", cfg.Seed, cfg.SeedConcurrency)
		fmt.Fprintf(stdout, "seed     %s\n", res)
		if res.failed > 0 {
			return 1
		}
	}
	var wg sync.WaitGroup
	var profErr error
	if cfg.Admin != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			profErr = fetch(ctx, client, cfg, fmt.Sprintf("trace?seconds=%d", int(cfg.Trace/time.Second)), "trace.out")
		}()
		time.Sleep(100 * time.Millisecond) // the trace starts before the creates
	}
	res := creates(ctx, client, cfg, "post", cfg.Requests, cfg.Concurrency)
	fmt.Fprintf(stdout, "measured %s\n", res)
	wg.Wait()
	if cfg.Admin != "" {
		profErr = errors.Join(profErr,
			fetch(ctx, client, cfg, "block", "block.pb.gz"),
			fetch(ctx, client, cfg, "mutex", "mutex.pb.gz"))
		if profErr != nil {
			fmt.Fprintln(stderr, "writetail: profiles:", profErr)
		} else {
			fmt.Fprintf(stdout, "profiles in %s (go tool trace -pprof=sync %s)\n", cfg.ProfileDir, filepath.Join(cfg.ProfileDir, "trace.out"))
			if err := printWaits(filepath.Join(cfg.ProfileDir, "trace.out"), stdout); err != nil {
				fmt.Fprintln(stderr, "writetail:", err)
			}
		}
	}
	if res.failed > 0 {
		return 1
	}
	return 0
}

func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("writetail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{Token: os.Getenv("SCIM_TOKEN")}
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080/scim/v2", "the gateway's SCIM root")
	fs.StringVar(&cfg.Prefix, "prefix", strconv.FormatInt(time.Now().Unix(), 36), "user name prefix (distinct per run)")
	fs.IntVar(&cfg.Seed, "seed", 0, "users to create before measuring")
	fs.IntVar(&cfg.SeedConcurrency, "seed-concurrency", 64, "concurrency of the seeding creates")
	fs.IntVar(&cfg.Requests, "requests", 2000, "measured creates")
	fs.IntVar(&cfg.Concurrency, "concurrency", 16, "concurrency of the measured creates")
	fs.StringVar(&cfg.Admin, "admin", "", "the gateway's Caddy admin address: capture trace, block and mutex profiles")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", ".", "where -admin's profiles are written")
	fs.DurationVar(&cfg.Trace, "trace", 5*time.Second, "execution trace length (with -admin)")
	fs.StringVar(&cfg.Waits, "waits", "", "only print where the writes in this execution trace waited (a trace.out of an earlier run)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case cfg.Waits != "":
		return cfg, nil
	case cfg.Token == "":
		return cfg, errors.New("set SCIM_TOKEN to the gateway's bearer token")
	case cfg.Seed < 0 || cfg.Seed > maxSeed:
		return cfg, fmt.Errorf("-seed must be 0..%d", maxSeed)
	case cfg.Requests < 1 || cfg.Requests > maxRequests:
		return cfg, fmt.Errorf("-requests must be 1..%d", maxRequests)
	case cfg.Concurrency < 1 || cfg.Concurrency > maxConcurrency || cfg.SeedConcurrency < 1 || cfg.SeedConcurrency > maxConcurrency:
		return cfg, fmt.Errorf("-concurrency and -seed-concurrency must be 1..%d", maxConcurrency)
	case cfg.Trace < time.Second || cfg.Trace > maxTrace:
		return cfg, fmt.Errorf("-trace must be 1s..%s", maxTrace)
	}
	return cfg, nil
}

// result is one phase's latencies and failures.
type result struct {
	lat     []time.Duration
	elapsed time.Duration
	failed  int
	sample  string
}

func (r result) String() string {
	if len(r.lat) == 0 {
		return fmt.Sprintf("no request succeeded (%d failed: %s)", r.failed, r.sample)
	}
	slices.Sort(r.lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s := fmt.Sprintf("n=%d req/s=%.0f p50=%.1fms p99=%.1fms max=%.1fms", len(r.lat),
		float64(len(r.lat))/r.elapsed.Seconds(), ms(pct(r.lat, 0.50)), ms(pct(r.lat, 0.99)), ms(r.lat[len(r.lat)-1]))
	if r.failed > 0 {
		s += fmt.Sprintf(" failed=%d (%s)", r.failed, r.sample)
	}
	return s
}

// pct is the q-quantile of sorted (nearest rank).
func pct(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// creates POSTs n distinct users at concurrency c and returns the latencies of the 201s.
func creates(ctx context.Context, client *http.Client, cfg config, phase string, n, c int) result {
	var next atomic.Int64
	var mu sync.Mutex
	res := result{lat: make([]time.Duration, 0, n)}
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				err := createUser(ctx, client, cfg, fmt.Sprintf("%s-%s-%07d", cfg.Prefix, phase, i))
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.failed++
					res.sample = err.Error()
				} else {
					res.lat = append(res.lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func createUser(ctx context.Context, client *http.Client, cfg config, name string) error {
	body, _ := json.Marshal(map[string]any{
		"schemas":     []string{userSchema, enterpriseSchema},
		"userName":    name + "@writetail.example",
		"externalId":  name,
		"active":      true,
		"displayName": "User " + name,
		"title":       "Engineer",
		"emails":      []any{map[string]any{"primary": true, "type": "work", "value": name + "@mail.writetail.example"}},
		"name":        map[string]any{"givenName": "User", "familyName": name},
		enterpriseSchema: map[string]any{
			"department":     "Research",
			"employeeNumber": name,
		},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL+"/Users", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// Read the rest of the answer, so that the connection is kept for the next request as a
	// keep-alive client's would be (Entra's is): a body closed unread closes its connection,
	// and every create then paid a new connection and a new server goroutine.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// fetch saves the admin endpoint's /debug/pprof/<what> to file in cfg.ProfileDir.
func fetch(ctx context.Context, client *http.Client, cfg config, what, file string) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Trace+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.Admin+"/debug/pprof/"+what, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: status %d: %s", what, resp.StatusCode, bytes.TrimSpace(msg))
	}
	f, err := os.Create(filepath.Join(cfg.ProfileDir, file))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

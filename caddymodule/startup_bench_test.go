package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/google/uuid"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Issue 18 item 5: start-up of a gateway (with the shipped policies) whose store holds a
// large directory and a long journal, and its memory after serving it. The journal spans
// startupJournalDays, as a real one would (about 1,400 records an hour at 1,000,000), with
// a few intents left without an outcome by crashes long ago; start-up must read what it
// needs (the unfinished intents, the last hour's changes for the policy's stats), not the
// journal's length.
const (
	startupUsers       = 100_000
	startupGroups      = 1_000
	startupMembers     = 50 // per group
	startupJournalDays = 30
	startupOpenIntents = 5
	startupSeedChunk   = 20_000
)

// BenchmarkStartup reports start-up time (provision to the first answered lookup) and the
// heap after serving, for 10,000 and 1,000,000 journal records over the same directory.
// SCIMGATE_BENCH_STARTUP_RECORDS overrides the larger count.
func BenchmarkStartup(b *testing.B) {
	large := 1_000_000
	if v := os.Getenv("SCIMGATE_BENCH_STARTUP_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("SCIMGATE_BENCH_STARTUP_RECORDS=%q is not a positive number", v)
		}
		large = n
	}
	cases := []struct {
		name    string
		records int
		span    time.Duration
	}{
		{"records=10000", 10_000, startupJournalDays * 24 * time.Hour},
		{fmt.Sprintf("records=%d", large), large, startupJournalDays * 24 * time.Hour},
		// Right after Entra's initial cycle over the directory: an intent and an outcome for
		// each user within the hour, all of which the policy's stats count.
		{"last_hour=200000", 2 * startupUsers, time.Hour - 5*time.Minute},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			seedStartupStore(b, dir, c.records, c.span)
			mapFile := filepath.Join("..", "mappings", "demoapp.json")
			var heap, rss uint64
			for b.Loop() {
				g := &Handler{
					Tokens:  []Token{{Name: "entra", Value: testToken}},
					DataDir: dir,
					Target:  &TargetConfig{Name: "demo", URL: "http://127.0.0.1:9", Mapping: mapFile, Headers: map[string]string{"X-Api-Key": "startup-bench-key"}},
					// The shipped guardrails: their brake's counts are the last hour's
					// changes, which start-up reads back from the journal.
					Policy: &PolicyConfig{Dir: filepath.Join("..", "policies")},
				}
				ctx, cancel := caddy.NewContext(caddy.Context{Context: b.Context()})
				if err := g.Provision(ctx); err != nil {
					b.Fatalf("provision: %v", err)
				}
				if err := g.Validate(); err != nil {
					b.Fatalf("validate: %v", err)
				}
				w := serve(b, g, http.MethodGet, "/scim/v2/Users?filter="+url.QueryEscape(`userName eq "startup-7@contoso.example"`), nil)
				if w.Code != http.StatusOK || decodeJSON(b, w)["totalResults"] != float64(1) {
					b.Fatalf("the first lookup: %d %s", w.Code, w.Body)
				}
				b.StopTimer()
				for i := range 1000 {
					serve(b, g, http.MethodGet, "/scim/v2/Users?filter="+url.QueryEscape(fmt.Sprintf(`userName eq "startup-%d@contoso.example"`, i*97)), nil)
				}
				serve(b, g, http.MethodGet, "/scim/v2/Groups?count=100", nil)
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				heap = max(heap, m.HeapInuse)
				rss = max(rss, processRSS())
				_ = g.Cleanup()
				cancel()
				b.StartTimer()
			}
			b.ReportMetric(float64(heap)/(1<<20), "heap_MiB_after_serving")
			b.ReportMetric(float64(rss)/(1<<20), "rss_MiB_after_serving")
		})
	}
}

// benchRecord is a stored resource as create() would store it.
func benchRecord(typ, id string, doc scim.Resource, now time.Time) *store.Record {
	data, err := json.Marshal(doc)
	if err != nil {
		panic(err) // the benchmark's own documents
	}
	return &store.Record{Type: typ, ID: id, Created: now, LastModified: now, Doc: data, Index: provision.IndexEntries(typ, doc)}
}

// seedStartupStore writes the directory and records journal records over the span before
// now straight into a store in dir, in large transactions.
func seedStartupStore(b *testing.B, dir string, records int, span time.Duration) {
	b.Helper()
	st, err := store.Open(filepath.Join(dir, storeFileName), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	j, err := journal.Open(st.DB(), journal.Options{Name: DefaultJournalName})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	now := time.Now().UTC()
	users := make([]string, startupUsers)
	for start := 0; start < startupUsers; start += startupSeedChunk {
		err := st.Update(func(tx *store.Tx) error {
			for i := start; i < min(start+startupSeedChunk, startupUsers); i++ {
				users[i] = uuid.NewString()
				doc := scim.Resource{
					"schemas":  []any{scim.UserSchema},
					"userName": fmt.Sprintf("startup-%d@contoso.example", i),
					"active":   true,
					"emails":   []any{map[string]any{"type": "work", "primary": true, "value": fmt.Sprintf("startup-%d@contoso.example", i)}},
					"name":     map[string]any{"givenName": "Startup", "familyName": strconv.Itoa(i)},
				}
				if err := tx.Put(benchRecord(scim.UserType, users[i], doc, now)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	err = st.Update(func(tx *store.Tx) error {
		for g := range startupGroups {
			id := uuid.NewString()
			doc := scim.Resource{"schemas": []any{scim.GroupSchema}, "displayName": fmt.Sprintf("startup-team-%d", g)}
			if err := tx.Put(benchRecord(scim.GroupType, id, doc, now)); err != nil {
				return err
			}
			for m := range startupMembers {
				if _, err := tx.AddMember(id, store.Member{ID: users[(g*startupMembers+m)%startupUsers], Type: scim.UserType}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// The journal: an intent and its outcome per change, oldest first, evenly over the span;
	// a few intents long ago never got their outcome.
	step := span / time.Duration(records)
	openEvery := max(records/(startupOpenIntents+1), 2)
	for start := 0; start < records; start += startupSeedChunk {
		err := st.DB().Update(func(tx kv.Tx) error {
			for i := start; i < min(start+startupSeedChunk, records); i++ {
				at := now.Add(-span + time.Duration(i)*step)
				rid := "req-" + strconv.Itoa(i/2)
				r := &journal.Record{Time: at, RequestID: rid, Client: "entra", Target: "demo", Action: change.ActionPatch,
					ResourceType: scim.UserType, SCIMID: users[(i/2)%startupUsers], Subject: fmt.Sprintf("startup-%d@contoso.example", (i/2)%startupUsers),
					Events: []change.Event{change.Update}, Outcome: change.Applied, Status: http.StatusOK}
				if i%2 == 0 {
					r.Outcome, r.Status = change.Pending, 0
				} else if (i/2)%openEvery == 0 && at.Before(now.Add(-2*time.Hour)) {
					r.Action, r.Outcome, r.Error = change.ActionCreate, change.Pending, "" // a second intent, never finished
				}
				if err := j.Append(tx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// processRSS is the process's resident set (Linux; 0 elsewhere): the heap plus the store's
// pages the process touched through its memory map.
func processRSS() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

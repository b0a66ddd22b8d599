package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.etcd.io/bbolt"

	"github.com/scimgate/scimgate/caddymodule/provision"
)

// gatedBody is a request body that holds back its bytes until the gate opens.
type gatedBody struct {
	gate <-chan struct{}
	r    io.Reader
}

func (g *gatedBody) Read(p []byte) (int, error) {
	<-g.gate
	return g.r.Read(p)
}

func membersPatch(n int) string {
	var b strings.Builder
	b.WriteString(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		// Ids in no particular order, as Entra's object ids are: the store's edges then
		// land all over its pages, which is what costs memory.
		fmt.Fprintf(&b, `{"value":"%08x-0000-4000-8000-%012d"}`, uint32(i)*2654435761, i)
	}
	b.WriteString(`]}]}`)
	return b.String()
}

// TestLargeBodiesAreLimited: while the large-request slots are taken, another large
// request waits, then answers 503 with Retry-After (journaled as failed); small requests
// never wait; a slot frees when its request is answered, with or without a Content-Length.
func TestLargeBodiesAreLimited(t *testing.T) {
	g := newTestGateway(t, func(h *Handler) { h.LargeBodyBytes = 4096; h.MaxLargeBodies = 1 })
	gid := decodeJSON(t, serve(t, g, http.MethodPost, "/scim/v2/Groups", `{"displayName":"Big"}`))["id"].(string)
	big := membersPatch(500)

	send := func(body io.Reader, length int64) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPatch, "http://scim.test/scim/v2/Groups/"+gid, body)
		req.ContentLength = length
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/scim+json")
		w := httptest.NewRecorder()
		if err := g.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })); err != nil {
			t.Error(err)
		}
		return w
	}

	gate := make(chan struct{})
	var first *httptest.ResponseRecorder
	var wg sync.WaitGroup
	wg.Go(func() { first = send(&gatedBody{gate: gate, r: strings.NewReader(big)}, int64(len(big))) })
	time.Sleep(100 * time.Millisecond) // the first request holds the slot, waiting for its body

	if w := serve(t, g, http.MethodPatch, "/scim/v2/Groups/"+gid, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Small"}]}`); w.Code != http.StatusNoContent {
		t.Fatalf("a small request waited or failed: %d %s", w.Code, w.Body)
	}
	start := time.Now()
	w := send(strings.NewReader(big), int64(len(big)))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "other large requests") {
		t.Fatalf("a second large request: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if waited := time.Since(start); waited < largeBodyWait {
		t.Errorf("answered after %v, before the wait for a slot was over", waited)
	}
	if r := lastRecord(t, g); r.Outcome != "failed" || r.Status != http.StatusServiceUnavailable {
		t.Errorf("not journaled as failed: %+v", r)
	}
	// Without a Content-Length the slot is taken once the body passes the size.
	w = send(io.MultiReader(strings.NewReader(big)), -1)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("a large chunked request while the slot is taken: %d %s", w.Code, w.Body)
	}

	close(gate)
	wg.Wait()
	if first.Code != http.StatusNoContent {
		t.Fatalf("the first large request: %d %s", first.Code, first.Body)
	}
	if w := send(io.MultiReader(strings.NewReader(strings.Replace(big, `"add"`, `"remove"`, 1))), -1); w.Code != http.StatusNoContent {
		t.Fatalf("a large request after the slot freed: %d %s", w.Code, w.Body)
	}
}

// BenchmarkLargeMemberPatch reports the peak heap of one PATCH that adds n members to a
// group, against its body's size (issue 11's target: at most 10x): peak_heap/body is the
// most the heap in use grew over its size after a collection before the request. Two more
// metrics say where it comes from. live_heap/body is the most the heap the collector found
// live (runtime/metrics /gc/heap/live:bytes, which counts as live what is allocated while it
// marks) grew over the live heap before the request: what the request holds. alloc/body is
// everything the request allocated. The collector lets the heap grow by about the live
// heap's size before it collects, so once a request allocates more than the gateway's own
// live heap (about 5 MB here) the peak is about that heap plus twice what the request holds,
// whatever the body's size: that sets a floor for small bodies (a 10,000-member body is
// 0.5 MB).
//
// bbolt-alone is the baseline, measured the same way in the same run: the same n edges and
// their reverse edges (the store's layout: members groupID\0memberID -> type, memberOf
// memberID\0groupID -> empty) put in one transaction of a bare bbolt file holding nothing
// else, with no gateway, no parsing, no journal; its ratios are over the same body's size.
func BenchmarkLargeMemberPatch(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 200_000} {
		body := membersPatch(n)
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			var worst heapGrowth
			for b.Loop() {
				b.StopTimer()
				g := newTestGateway(b, func(h *Handler) { h.MaxBodyBytes = 16 << 20 })
				gid := decodeJSON(b, serve(b, g, http.MethodPost, "/scim/v2/Groups", `{"displayName":"Big"}`))["id"].(string)
				var w *httptest.ResponseRecorder
				worst = worst.max(measureHeapGrowth(b, func() {
					w = serve(b, g, http.MethodPatch, "/scim/v2/Groups/"+gid, body)
				}))
				if w.Code != http.StatusNoContent {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
			worst.report(b, len(body))
		})
		b.Run(fmt.Sprintf("bbolt-alone/members=%d", n), func(b *testing.B) {
			const gid = "7f3c1a52-9d1e-4b7a-8f0e-2c4d6b8a1e3f"
			mids := make([]string, n)
			for i := range n {
				mids[i] = fmt.Sprintf("%08x-0000-4000-8000-%012d", uint32(i)*2654435761, i)
			}
			// In the gateway's order: by member id, each part's edges neighbours.
			slices.Sort(mids)
			edges, reverse := make([][]byte, n), make([][]byte, n)
			for i, mid := range mids {
				edges[i], reverse[i] = []byte(gid+"\x00"+mid), []byte(mid+"\x00"+gid)
			}
			value := []byte{4, 'U', 's', 'e', 'r'}
			var worst heapGrowth
			for b.Loop() {
				b.StopTimer()
				db, _ := benchBareBolt(b)
				var err error
				worst = worst.max(measureHeapGrowth(b, func() {
					part := provision.FilePartSize(n)
					for from := 0; from < n && err == nil; from += part {
						err = db.Update(func(tx *bbolt.Tx) error {
							members, err := tx.CreateBucketIfNotExists([]byte("members"))
							if err != nil {
								return err
							}
							memberOf, err := tx.CreateBucketIfNotExists([]byte("memberOf"))
							if err != nil {
								return err
							}
							for i := from; i < min(n, from+part); i++ {
								if err := members.Put(edges[i], value); err != nil {
									return err
								}
								if err := memberOf.Put(reverse[i], nil); err != nil {
									return err
								}
							}
							return nil
						})
					}
				}))
				if err != nil {
					b.Fatal(err)
				}
			}
			worst.report(b, len(body))
		})
	}
}

// heapGrowth is what one measured call grew the heap by, in bytes.
type heapGrowth struct{ peak, live, alloc uint64 }

func (h heapGrowth) max(o heapGrowth) heapGrowth {
	return heapGrowth{max(h.peak, o.peak), max(h.live, o.live), max(h.alloc, o.alloc)}
}

func (h heapGrowth) report(b *testing.B, body int) {
	b.ReportMetric(float64(body), "body_bytes")
	b.ReportMetric(float64(h.peak)/float64(body), "peak_heap/body")
	b.ReportMetric(float64(h.live)/float64(body), "live_heap/body")
	b.ReportMetric(float64(h.alloc)/float64(body), "alloc/body")
}

// measureHeapGrowth runs f, timed, after a collection, sampling the heap every millisecond
// while it runs: the most the heap in use and the live heap grew over their sizes before
// it, and what it allocated. The caller stops the timer before.
func measureHeapGrowth(b *testing.B, f func()) heapGrowth {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	baseLive := live[0].Value.Uint64()
	var peak, peakLive atomic.Uint64
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		var m runtime.MemStats
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peakLive.Load() {
				peakLive.Store(v)
			}
		}
	})
	b.StartTimer()
	f()
	b.StopTimer()
	close(done)
	sampler.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	var g heapGrowth
	if peak.Load() > base.HeapInuse {
		g.peak = peak.Load() - base.HeapInuse
	}
	if peakLive.Load() > baseLive {
		g.live = peakLive.Load() - baseLive
	}
	g.alloc = after.TotalAlloc - base.TotalAlloc
	b.StartTimer()
	return g
}

// TestReadAllSized: a body is read whole whatever size it announced (more, less, none),
// into one buffer when it is the size it announced.
func TestReadAllSized(t *testing.T) {
	body := strings.Repeat("0123456789", 1000)
	for _, size := range []int64{-1, 0, 1, 4096, int64(len(body)) - 1, int64(len(body)), int64(len(body)) + 1, 1 << 20} {
		got, err := readAll(io.LimitReader(&slowReader{s: body}, int64(len(body))), size)
		if err != nil || string(got) != body {
			t.Fatalf("announced %d: %d bytes, %v", size, len(got), err)
		}
		if size == int64(len(body)) && cap(got) != len(body)+1 {
			t.Errorf("announced %d: read into a buffer of %d", size, cap(got))
		}
	}
}

// slowReader returns s at most 700 bytes a read.
type slowReader struct{ s string }

func (r *slowReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 700)], r.s)
	r.s = r.s[n:]
	return n, nil
}

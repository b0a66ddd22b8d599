package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fleetBenchConcurrency is Entra-facing requests in flight, spread over a rig's gateways.
const fleetBenchConcurrency = 32

// BenchmarkFleet compares, in one run on one machine, three gateway processes on a
// three-member local etcd cluster with one gateway process on its bbolt file (issue 20's
// targets: writes ≥ 0.5×, reads ≥ 0.9× the single gateway), both in front of the demo app
// in this process, at 32 requests in flight spread round-robin over the rig's gateways.
// etcd3-1gw, one gateway on the same kind of cluster, separates what etcd costs a gateway
// from what gateways competing for the store's head cost each other; etcd3-3gw-stale is
// the three gateways with read_staleness 250ms (reads only: writes do not use it);
// etcd3-3gw-via1 is etcd3-3gw's fleet with every write sent to its first gateway (writes
// only): the most a fleet that forwarded its writes to one elected gateway could reach
// here, before the cost of the forwarding hop, since one committer puts the fleet's
// changes in one group where three gateways race for the head:
//
//	create   POST /Users (a new user each time: store, journal, the app's create)
//	update   PATCH /Users/{id} replacing title (store, journal, the app's update)
//	read     GET /Users/{id} (from the store; on etcd a linearizable read, with
//	         read_staleness one linearizable read per 250ms)
//
// Each sub-benchmark reports req/s; compare bolt-1gw with etcd3-3gw per kind:
//
//	go test ./caddymodule/ -run '^$' -bench BenchmarkFleet -benchtime 2000x
//
// Everything (the load, three gateways, three etcd members fsyncing, the app) shares this
// machine's cores, so the ratio is the point, not the absolute numbers.
func BenchmarkFleet(b *testing.B) {
	type fleetRig struct {
		name       string
		f          *gwFleet
		readsOnly  bool
		writesOnly bool // every request to the fleet's first gateway
	}
	rigs := []fleetRig{
		{name: "bolt-1gw", f: startFleetWith(b, 1, "", true)},
		{name: "etcd3-1gw", f: startFleetWith(b, 1, "", false)},
		{name: "etcd3-3gw", f: startFleetWith(b, 3, "", false)},
		{name: "etcd3-3gw-stale", f: startFleetOf(b, 3, &gwFleet{readStaleness: 250 * time.Millisecond}, false), readsOnly: true},
	}
	rigs = append(rigs, fleetRig{name: "etcd3-3gw-via1", f: rigs[2].f, writesOnly: true})
	const seeded = 256
	ids := make([][]string, len(rigs))
	for r, rig := range rigs {
		if j := slices.IndexFunc(rigs[:r], func(o fleetRig) bool { return o.f == rig.f }); j >= 0 {
			ids[r] = ids[j] // the same fleet, seeded already
			continue
		}
		for i := range seeded {
			resp := rig.f.do(i%len(rig.f.gws), http.MethodPost, "/Users", fleetUser(fmt.Sprintf("seed-%d@contoso.example", i), "t"))
			if resp.status != http.StatusCreated {
				b.Fatalf("%s: seeding: %d %v %s", rig.name, resp.status, resp.err, resp.body)
			}
			ids[r] = append(ids[r], resp.id())
		}
	}
	var runs atomic.Int64 // distinct user names across the calls of one sub-benchmark
	kinds := []struct {
		name string
		req  func(f *gwFleet, ids []string, i int) (method, path, body string, want int)
	}{
		{"create", func(f *gwFleet, _ []string, i int) (string, string, string, int) {
			return http.MethodPost, "/Users", fleetUser(fmt.Sprintf("bench-%d-%d@contoso.example", runs.Load(), i), "t"), http.StatusCreated
		}},
		{"update", func(f *gwFleet, ids []string, i int) (string, string, string, int) {
			return http.MethodPatch, "/Users/" + ids[i%len(ids)], fleetPatch("title", fmt.Sprintf(`"u-%d"`, i)), http.StatusOK
		}},
		{"read", func(f *gwFleet, ids []string, i int) (string, string, string, int) {
			return http.MethodGet, "/Users/" + ids[i%len(ids)], "", http.StatusOK
		}},
	}
	// Kind by kind, the two rigs one after the other: both measured under the same
	// conditions of the machine.
	for _, k := range kinds {
		for r, rig := range rigs {
			if (rig.readsOnly && k.name != "read") || (rig.writesOnly && k.name == "read") {
				continue
			}
			b.Run(k.name+"/"+rig.name, func(b *testing.B) {
				runs.Add(1)
				rev0, fsyncs0 := fleetEtcdCounters(b, rig.f)
				var failed atomic.Int64
				fleetLoad(b, func(i int) bool {
					method, path, body, want := k.req(rig.f, ids[r], i)
					gw := i % len(rig.f.gws)
					if rig.writesOnly {
						gw = 0
					}
					resp := rig.f.do(gw, method, path, body)
					if resp.status != want && !(want == http.StatusOK && resp.status == http.StatusNoContent) {
						if failed.Add(1) == 1 {
							b.Errorf("%s %s: %d %v %s", method, path, resp.status, resp.err, resp.body)
						}
					}
					return true
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				if rig.f.etcd != nil {
					// What the store did per request: commits (etcd revisions) and WAL
					// fsyncs (summed over the members; commits that lost the race to another
					// gateway cost fsyncs without a revision).
					rev, fsyncs := fleetEtcdCounters(b, rig.f)
					b.ReportMetric(float64(rev-rev0)/float64(b.N), "commits/op")
					b.ReportMetric((fsyncs-fsyncs0)/float64(b.N), "fsyncs/op")
				}
				if n := failed.Load(); n > 0 {
					b.Fatalf("%d of %d requests failed", n, b.N)
				}
			})
		}
	}
	benchEtcdAlone(b, rigs[2].f.etcd.Client())
}

// benchEtcdAlone is the store's own floor for writes, measured like the rigs (32 in flight)
// on the etcd3-3gw rig's cluster with no gateway and no app: what etcd alone does with one
// write of a stored user's size per change.
//
//	create/etcd3-alone-put    a put under a new key: etcd's best case, its concurrent
//	                          proposals batched into one Raft entry and one fsync per member
//	create/etcd3-alone-chain  the same put in a transaction guarded by the revision of one
//	                          head key that it also moves (issue 20's one linear journal,
//	                          each change its own commit; a lost race reads the head again
//	                          and retries)
//
// A gateway's write does more than either (its intent before the app's call, its outcome
// after, the indexes and the id map), so its rate over bolt-1gw's cannot pass these over
// bolt-1gw's unless it puts several changes in one commit.
func benchEtcdAlone(b *testing.B, cli *clientv3.Client) {
	value := strings.Repeat("x", benchStoredUserSize(b))
	var runs atomic.Int64
	for _, chain := range []bool{false, true} {
		name := "create/etcd3-alone-put"
		if chain {
			name = "create/etcd3-alone-chain"
		}
		b.Run(name, func(b *testing.B) {
			run := runs.Add(1)
			head := fmt.Sprintf("bench-alone/%d/head", run)
			var retries atomic.Int64
			var failed atomic.Value
			fleetLoad(b, func(i int) bool {
				err := etcdAloneWrite(cli, head, fmt.Sprintf("bench-alone/%d/%d", run, i), value, chain, &retries)
				if err != nil {
					failed.CompareAndSwap(nil, err)
				}
				return err == nil
			})
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			b.ReportMetric(float64(retries.Load())/float64(b.N), "retries/op")
		})
	}
}

// etcdAloneWrite puts value under key, with chain in a transaction guarded by head's
// revision (read again and retried, counted in retries, when another write moved it).
func etcdAloneWrite(cli *clientv3.Client, head, key, value string, chain bool, retries *atomic.Int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !chain {
		_, err := cli.Put(ctx, key, value)
		return err
	}
	for {
		got, err := cli.Get(ctx, head)
		if err != nil {
			return err
		}
		rev := int64(0)
		if len(got.Kvs) > 0 {
			rev = got.Kvs[0].ModRevision
		}
		resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(head), "=", rev)).
			Then(clientv3.OpPut(head, key), clientv3.OpPut(key, value)).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		retries.Add(1)
	}
}

// fleetLoad runs op for 0..b.N-1 from fleetBenchConcurrency goroutines, timed, with the
// timer stopped after; a goroutine stops early when op returns false.
func fleetLoad(b *testing.B, op func(i int) bool) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range fleetBenchConcurrency {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < b.N; i = int(next.Add(1)) - 1 {
				if !op(i) {
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
}

// fleetEtcdCounters reads the fleet's etcd revision and the WAL fsyncs of every etcd member
// in this process (etcd's metrics in the default Prometheus registry), or zeros without etcd.
func fleetEtcdCounters(b *testing.B, f *gwFleet) (rev int64, fsyncs float64) {
	b.Helper()
	if f.etcd == nil {
		return 0, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.etcd.Client().Get(ctx, "revision-probe")
	if err != nil {
		b.Fatalf("reading the revision: %v", err)
	}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_disk_wal_fsync_duration_seconds" {
			for _, m := range mf.GetMetric() {
				fsyncs += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return resp.Header.Revision, fsyncs
}

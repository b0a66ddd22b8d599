package caddymodule

// Benchmarks of the gateway's hot paths, measured through the real handler (ServeHTTP with
// httptest), with baselines in the same run so results can be read as ratios:
//
//   - BenchmarkBaselineEmptyHandler: the floor of the HTTP plumbing (request construction,
//     recorder, a small JSON body) that every handler benchmark pays too.
//   - BenchmarkBaselineBoltBatch: a bare bbolt db.Batch Put of a value the size of a stored
//     user (bbolt's own group commit, with a 1 ms batch window): bbolt alone, grouping
//     concurrent writers.
//   - BenchmarkBaselineBoltUpdate: the same Put through db.Update, committed at once: the
//     floor of one durable write. The store's group commit has no batch window, so a lone
//     handler write pays at least this (one commit, two fsyncs).
//
// Run them with, for example:
//
//	go test -run xxx -bench . -benchtime 2s -count 3 ./caddymodule/
//
// The store's own costs (lookups, edges, group commit without HTTP) are measured in
// store/bench_test.go; these benchmarks add the SCIM and HTTP layers on top.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.etcd.io/bbolt"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// benchSeedChunk is how many records or edges share one seeding transaction: 100,000 users
// take ten commits, and each commit's dirty pages stay modest.
const benchSeedChunk = 10_000

// benchConcurrency is the writer concurrency the parallel benchmarks aim for: Entra's
// provisioning jobs and other clients writing at once.
const benchConcurrency = 32

// benchPrime is the stride between the users successive iterations look up: a prime, so the
// lookups visit users all over the B+tree instead of walking neighbouring keys.
const benchPrime = 7919

const (
	benchPatchOp     = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	benchUsersPath   = "/scim/v2/Users"
	benchGroupsPath  = "/scim/v2/Groups"
	benchUserTypeURN = "urn:ietf:params:scim:schemas:core:2.0:User"
	benchEntURN      = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
)

// benchNext is the handler after the gateway; SCIM paths never reach it.
var benchNext = benchNextHandler{}

type benchNextHandler struct{}

func (benchNextHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	w.WriteHeader(http.StatusTeapot)
	return nil
}

// benchDo sends one request through the gateway and checks its status. Unlike serve it
// returns errors instead of failing the test, so it may run on RunParallel's goroutines,
// which must not call FailNow.
func benchDo(g *Handler, method, target string, body []byte, want int) (*httptest.ResponseRecorder, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://scim.test"+target, r)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	}
	w := httptest.NewRecorder()
	if err := g.ServeHTTP(w, req, benchNext); err != nil {
		return nil, fmt.Errorf("%s %s: ServeHTTP returned %w", method, target, err)
	}
	if w.Code != want {
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", method, target, w.Code, want, w.Body.Bytes())
	}
	return w, nil
}

// benchUserName is the userName (an Entra userPrincipalName) of seeded user i; tag keeps
// the names of different seedings apart.
func benchUserName(tag string, i int) string {
	return "bench." + tag + "." + strconv.Itoa(i) + "@contoso.onmicrosoft.com"
}

// benchUserBody is the POST /Users body Entra sends with the default attribute mappings of a
// non-gallery app (entra-wire.md §2.2): string booleans, the enterprise URN listed, meta and
// an empty roles array included.
func benchUserBody(tag string, i int) []byte {
	name := benchUserName(tag, i)
	return fmt.Appendf(nil, `{"schemas":[%q,%q],"externalId":"bench%s%d","userName":%q,"active":"True",`+
		`"displayName":"Bench User %d","title":"Engineer",`+
		`"emails":[{"primary":true,"type":"work","value":%q}],"meta":{"resourceType":"User"},`+
		`"name":{"formatted":"Bench User%d","familyName":"User%d","givenName":"Bench"},`+
		`"phoneNumbers":[{"type":"work","value":"+1 425 555 0100"}],"roles":[],`+
		`%q:{"employeeNumber":"%d","department":"Retail"}}`,
		benchUserTypeURN, benchEntURN, tag, i, name, i, name, i, i, benchEntURN, i)
}

// benchUserRecord turns body into the record create() stores: the same preparation, the
// same document bytes and the same index entries, with a fresh random id as create() uses.
// It skips readBody's input guards (scim.CheckJSON), which only reject bodies and cost as
// much as the rest: the body is the benchmark's own.
func benchUserRecord(body []byte, now time.Time) (*store.Record, error) {
	v, err := scim.Decode(body)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("user body is not a JSON object: %s", body)
	}
	p, err := scim.PrepareResource(scim.UserType, m)
	if err != nil {
		return nil, err
	}
	doc, err := json.Marshal(p.Doc)
	if err != nil {
		return nil, err
	}
	return &store.Record{
		Type: scim.UserType, ID: uuid.NewString(), Created: now, LastModified: now,
		Doc: doc, Index: provision.IndexEntries(scim.UserType, p.Doc),
	}, nil
}

// benchSeedUsers writes n users straight into g's store, benchSeedChunk per transaction
// (100,000 HTTP POSTs would take minutes: each waits for a commit), and returns their ids
// and userNames by index.
func benchSeedUsers(tb testing.TB, g *Handler, tag string, n int) (ids, names []string) {
	tb.Helper()
	ids, names = make([]string, n), make([]string, n)
	now := time.Now().UTC()
	for start := 0; start < n; start += benchSeedChunk {
		end := min(start+benchSeedChunk, n)
		// Records are built outside the transaction: db.Batch may run its function twice,
		// and preparing them is the slow part.
		recs := make([]*store.Record, 0, end-start)
		for i := start; i < end; i++ {
			rec, err := benchUserRecord(benchUserBody(tag, i), now)
			if err != nil {
				tb.Fatalf("preparing user %d: %v", i, err)
			}
			recs = append(recs, rec)
			ids[i], names[i] = rec.ID, benchUserName(tag, i)
		}
		err := g.store.Update(func(tx *store.Tx) error {
			for _, rec := range recs {
				if err := tx.Put(rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("seeding users %d..%d: %v", start, end, err)
		}
	}
	return ids, names
}

// benchSeedMembers adds n member edges (users that need not exist, as Entra's reference
// pass may leave) to group groupID, benchSeedChunk per transaction.
func benchSeedMembers(tb testing.TB, g *Handler, groupID string, n int) {
	tb.Helper()
	for start := 0; start < n; start += benchSeedChunk {
		end := min(start+benchSeedChunk, n)
		ids := make([]string, 0, end-start)
		for range end - start {
			ids = append(ids, uuid.NewString())
		}
		err := g.store.Update(func(tx *store.Tx) error {
			for _, id := range ids {
				if _, err := tx.AddMember(groupID, store.Member{ID: id, Type: scim.UserType}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("seeding members %d..%d: %v", start, end, err)
		}
	}
}

// benchCreate POSTs body to path and returns the new resource's id.
func benchCreate(tb testing.TB, g *Handler, path string, body []byte) string {
	tb.Helper()
	w, err := benchDo(g, http.MethodPost, path, body, http.StatusCreated)
	if err != nil {
		tb.Fatal(err)
	}
	id, _ := decodeJSON(tb, w)["id"].(string)
	if id == "" {
		tb.Fatalf("POST %s answered without an id: %s", path, w.Body.Bytes())
	}
	return id
}

// benchParallelism is the SetParallelism argument that makes RunParallel start at least
// conc goroutines (it starts parallelism × GOMAXPROCS).
func benchParallelism(conc int) int {
	procs := runtime.GOMAXPROCS(0)
	return (conc + procs - 1) / procs
}

// benchReportRate reports completed operations per second of measured time as unit.
func benchReportRate(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// BenchmarkFilterUserName measures Entra's matching query, GET /Users?filter=userName eq
// "...", for 1,000 and 100,000 users. It is one index seek, so /users=100000 should cost at
// most 1.5 times /users=1000.
func BenchmarkFilterUserName(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run("users="+strconv.Itoa(n), func(b *testing.B) {
			g := newTestGateway(b, nil)
			_, names := benchSeedUsers(b, g, "f", n)
			i := 0
			for b.Loop() {
				i = (i + benchPrime) % n
				target := benchUsersPath + "?filter=userName+eq+%22" + names[i] + "%22"
				w, err := benchDo(g, http.MethodGet, target, nil, http.StatusOK)
				if err != nil {
					b.Fatal(err)
				}
				if !benchFoundOne(w.Body.Bytes()) {
					b.Fatalf("filter on %s did not find exactly one user: %s", names[i], w.Body.Bytes())
				}
			}
		})
	}
}

// benchFoundOne is a cheap check, fit for a timed loop, that a ListResponse body has
// totalResults 1 (whatever the key order).
func benchFoundOne(body []byte) bool {
	const key = `"totalResults":1`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return false
	}
	rest := body[i+len(key):]
	return len(rest) > 0 && (rest[0] == ',' || rest[0] == '}')
}

// BenchmarkGetUserByID measures GET /Users/{id}, Entra's read before each update.
func BenchmarkGetUserByID(b *testing.B) {
	const n = 1000
	g := newTestGateway(b, nil)
	ids, _ := benchSeedUsers(b, g, "g", n)
	i := 0
	for b.Loop() {
		i = (i + benchPrime) % n
		if _, err := benchDo(g, http.MethodGet, benchUsersPath+"/"+ids[i], nil, http.StatusOK); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPatchUser measures Entra's default-dialect user update (entra-wire.md §2.3):
// replace of emails[type eq "work"].value and name.familyName, answered 200 with the user.
// Values change every iteration, so every PATCH rewrites the record and its email index.
func BenchmarkPatchUser(b *testing.B) {
	const n = 1000
	g := newTestGateway(b, nil)
	ids, _ := benchSeedUsers(b, g, "p", n)
	i := 0
	for b.Loop() {
		i++
		body := fmt.Appendf(nil, `{"schemas":[%q],"Operations":[`+
			`{"op":"Replace","path":"emails[type eq \"work\"].value","value":"updated%d@contoso.example"},`+
			`{"op":"Replace","path":"name.familyName","value":"Updated%d"}]}`, benchPatchOp, i, i)
		target := benchUsersPath + "/" + ids[(i*benchPrime)%n]
		if _, err := benchDo(g, http.MethodPatch, target, body, http.StatusOK); err != nil {
			b.Fatal(err)
		}
	}
}

// benchMembersPatch is the PATCH body Entra sends to add (op "Add") or remove (op "Remove",
// Entra's non-RFC form with a value) one member of a group.
func benchMembersPatch(op, memberID string) []byte {
	return fmt.Appendf(nil, `{"schemas":[%q],"Operations":[{"op":%q,"path":"members","value":[{"value":%q}]}]}`,
		benchPatchOp, op, memberID)
}

// BenchmarkAddMember measures PATCH /Groups/{id} adding one member, to an empty group and
// to a group of 100,000 members. Each edge is its own key, so the two should cost the same
// (ratio <= 1.5). The member is removed again after each add, outside the timer, so the
// group keeps its size.
func BenchmarkAddMember(b *testing.B) {
	for _, n := range []int{0, 100_000} {
		b.Run("members="+strconv.Itoa(n), func(b *testing.B) { benchAddMember(b, n) })
	}
}

// benchAddMember runs BenchmarkAddMember's loop against a fresh gateway whose group has n
// members.
func benchAddMember(b *testing.B, n int) {
	g := newTestGateway(b, nil)
	groupID := benchCreate(b, g, benchGroupsPath, fmt.Appendf(nil,
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Bench Group","externalId":%q}`,
		uuid.NewString()))
	benchSeedMembers(b, g, groupID, n)
	userID := benchCreate(b, g, benchUsersPath, benchUserBody("m", 0))
	add, remove := benchMembersPatch("Add", userID), benchMembersPatch("Remove", userID)
	target := benchGroupsPath + "/" + groupID
	for b.Loop() {
		if _, err := benchDo(g, http.MethodPatch, target, add, http.StatusNoContent); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := benchDo(g, http.MethodPatch, target, remove, http.StatusNoContent); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	benchCheckMember(b, g, groupID, userID, false)
}

// benchCheckMember fails the benchmark unless memberID's membership of groupID is want.
func benchCheckMember(b *testing.B, g *Handler, groupID, memberID string, want bool) {
	b.Helper()
	var has bool
	err := g.store.View(func(tx *store.Tx) error {
		var err error
		has, err = tx.HasMember(groupID, memberID)
		return err
	})
	if err != nil || has != want {
		b.Fatalf("member %s of %s: has=%v, err=%v; want has=%v", memberID, groupID, has, err, want)
	}
}

// BenchmarkPostUser measures POST /Users with a unique userName per request, from one
// writer and from benchConcurrency writers. It reports requests per second and bbolt
// commits per request: with group commit, 32 writers should share commits (well below 1).
func BenchmarkPostUser(b *testing.B) {
	for _, conc := range []int{1, benchConcurrency} {
		b.Run("concurrency="+strconv.Itoa(conc), func(b *testing.B) {
			g := newTestGateway(b, nil)
			var seq atomic.Int64
			post := func() error {
				_, err := benchDo(g, http.MethodPost, benchUsersPath, benchUserBody("c", int(seq.Add(1))), http.StatusCreated)
				return err
			}
			start, pages := g.store.Commits(), benchPagesWritten(b, g.store.DB())
			benchRun(b, conc, post)
			commits := g.store.Commits() - start
			b.ReportMetric(float64(commits)/float64(b.N), "commits/req")
			b.ReportMetric(float64(pages())/float64(max(commits, 1)), "pages/commit")
			benchReportRate(b, "req/s")
		})
	}
}

// benchRun runs op b.N times: in a b.Loop when conc is 1 (RunParallel cannot run fewer
// goroutines than GOMAXPROCS), otherwise from at least conc goroutines. The first error
// stops the benchmark.
func benchRun(b *testing.B, conc int, op func() error) {
	if conc == 1 {
		for b.Loop() {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(benchParallelism(conc))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBaselineBoltBatch is bbolt alone for BenchmarkPostUser: a bare bbolt db.Batch
// Put of a value the size of a stored user into a fresh file, and nothing else.
func BenchmarkBaselineBoltBatch(b *testing.B) {
	size := benchStoredUserSize(b)
	for _, conc := range []int{1, benchConcurrency} {
		b.Run("concurrency="+strconv.Itoa(conc), func(b *testing.B) {
			db, bucket := benchBareBolt(b)
			value := bytes.Repeat([]byte{'x'}, size)
			var commits atomic.Int64
			var hooked *bbolt.Tx // only touched under bbolt's writer lock
			put := func() error {
				key := []byte(uuid.NewString())
				return db.Batch(func(tx *bbolt.Tx) error {
					if hooked != tx {
						hooked = tx
						tx.OnCommit(func() { commits.Add(1) })
					}
					return tx.Bucket(bucket).Put(key, value)
				})
			}
			pages := benchPagesWritten(b, kv.NewBolt(db))
			benchRun(b, conc, put)
			b.ReportMetric(float64(commits.Load())/float64(b.N), "commits/op")
			b.ReportMetric(float64(pages())/float64(max(commits.Load(), 1)), "pages/commit")
			benchReportRate(b, "ops/s")
		})
	}
}

// BenchmarkBaselineBoltUpdate is what one durable write costs at least: a bare bbolt
// db.Update (its own commit and fsyncs at once) of a value the size of a stored user.
// Against BenchmarkBaselineBoltBatch/concurrency=1 it shows how much of a lone writer's
// latency db.Batch spends waiting for company (MaxBatchDelay) rather than committing.
func BenchmarkBaselineBoltUpdate(b *testing.B) {
	value := bytes.Repeat([]byte{'x'}, benchStoredUserSize(b))
	db, bucket := benchBareBolt(b)
	for b.Loop() {
		key := []byte(uuid.NewString())
		if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put(key, value) }); err != nil {
			b.Fatal(err)
		}
	}
	benchReportRate(b, "ops/s")
}

// benchPagesWritten returns a function that reports how many pages the bbolt file behind
// db has written since benchPagesWritten was called (bbolt's TxStats: the dirty pages of
// every commit, its meta page included): what each commit's fsyncs have to make durable.
func benchPagesWritten(b *testing.B, db kv.DB) func() int64 {
	b.Helper()
	bolt, ok := db.(*kv.Bolt)
	if !ok {
		b.Fatalf("the store is %T, not a bbolt file", db)
	}
	written := func() int64 {
		st := bolt.Bolt().Stats()
		return st.TxStats.GetWrite()
	}
	start := written()
	return func() int64 { return written() - start }
}

// benchBareBolt opens a fresh bbolt file with the options the gateway's store uses and
// creates one bucket in it.
func benchBareBolt(b *testing.B) (*bbolt.DB, []byte) {
	b.Helper()
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "bare.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	db.MaxBatchDelay = time.Millisecond // a short window, as a tuned bbolt deployment would use
	bucket := []byte("bare")
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		b.Fatal(err)
	}
	return db, bucket
}

// benchStoredUserSize is the size of the value the store writes for one POSTed user,
// read from the records/User bucket described in the store's package doc.
func benchStoredUserSize(b *testing.B) int {
	b.Helper()
	g := newTestGateway(b, nil)
	id := benchCreate(b, g, benchUsersPath, benchUserBody("s", 0))
	size := 0
	err := g.store.DB().View(func(tx kv.Tx) error {
		users := tx.Bucket([]byte("records")).Bucket([]byte(scim.UserType))
		if users == nil {
			return errors.New("no records/User bucket: has the store's layout changed?")
		}
		size = len(users.Get([]byte(id)))
		return nil
	})
	if err == nil && size == 0 {
		err = fmt.Errorf("user %s is not in records/User: has the store's layout changed?", id)
	}
	if err != nil {
		b.Fatal(err)
	}
	return size
}

// BenchmarkBaselineEmptyHandler is the HTTP-plumbing floor: the same request construction
// and recorder as the gateway benchmarks, with a handler that only writes a small JSON body.
func BenchmarkBaselineEmptyHandler(b *testing.B) {
	body := []byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"Resources":[],"startIndex":1,"itemsPerPage":0}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "http://scim.test"+benchUsersPath+"?filter=userName+eq+%22x%22", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// benchAnsweringApp starts an in-process app on loopback that answers every call at once,
// and writes its mapping file: the target of the write benchmarks.
func benchAnsweringApp(b *testing.B) (url, mapFile string) {
	b.Helper()
	_, appURL := startFaultApp(b, "ok")
	mapFile = filepath.Join(b.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(faultMapping), 0o600); err != nil {
		b.Fatal(err)
	}
	return appURL, mapFile
}

// BenchmarkPatchUserTarget is BenchmarkPatchUser with a target: decide, the intent record,
// the native call (to an in-process app that answers at once) and the commit of the change
// with its outcome record. Against BenchmarkPatchUser it shows what the target path costs;
// at concurrency 32 its CPU profile is the gateway's own share of a write.
func BenchmarkPatchUserTarget(b *testing.B) {
	srvURL, mapFile := benchAnsweringApp(b)
	for _, conc := range []int{1, benchConcurrency} {
		b.Run("concurrency="+strconv.Itoa(conc), func(b *testing.B) {
			g := newTestGateway(b, func(g *Handler) {
				g.Target = &TargetConfig{Name: "app", URL: srvURL, Mapping: mapFile, MaxConcurrent: 64}
			})
			const n = 200
			ids := make([]string, n)
			for i := range ids {
				ids[i] = benchCreate(b, g, benchUsersPath, benchUserBody("t", i))
			}
			var seq atomic.Int64
			b.ReportAllocs()
			start, pages := g.store.Commits(), benchPagesWritten(b, g.store.DB())
			benchRun(b, conc, func() error {
				i := seq.Add(1)
				body := fmt.Appendf(nil, `{"schemas":[%q],"Operations":[{"op":"Replace","path":"title","value":"Title %d"}]}`, benchPatchOp, i)
				_, err := benchDo(g, http.MethodPatch, benchUsersPath+"/"+ids[(int(i)*benchPrime)%n], body, http.StatusOK)
				return err
			})
			commits := g.store.Commits() - start
			b.ReportMetric(float64(commits)/float64(b.N), "commits/req")
			b.ReportMetric(float64(pages())/float64(max(commits, 1)), "pages/commit")
			benchReportRate(b, "req/s")
		})
	}
}

// BenchmarkUnchangedPatch (issue 18: "no-op PATCH throughput ≥ 0.8× a GET by id's, at
// concurrency 8"): Entra's periodic `active: "True"` to users that are active, against a GET
// by id of the same users, both at concurrency 8 on a gateway with a target (the no-op
// sends nothing, so the app's speed does not matter). Compare the two req/s figures; on a
// machine shared with other work, where they move by 2× from run to run, compare the
// process's CPU time per request (cpu-µs/op, garbage collection included), which moves far
// less.
func BenchmarkUnchangedPatch(b *testing.B) {
	srvURL, mapFile := benchAnsweringApp(b)
	g := newTestGateway(b, func(g *Handler) {
		g.Target = &TargetConfig{Name: "app", URL: srvURL, Mapping: mapFile, MaxConcurrent: 64}
	})
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		ids[i] = benchCreate(b, g, benchUsersPath, benchUserBody("u", i))
	}
	body := fmt.Appendf(nil, `{"schemas":[%q],"Operations":[{"op":"Replace","path":"active","value":"True"}]}`, benchPatchOp)
	for _, kind := range []string{"get", "unchanged_patch"} {
		b.Run(kind, func(b *testing.B) {
			var seq atomic.Int64
			b.ReportAllocs()
			cpu0, cpuOK := processCPU()
			benchRun(b, 8, func() error {
				id := ids[(int(seq.Add(1))*benchPrime)%n]
				if kind == "get" {
					_, err := benchDo(g, http.MethodGet, benchUsersPath+"/"+id, nil, http.StatusOK)
					return err
				}
				_, err := benchDo(g, http.MethodPatch, benchUsersPath+"/"+id, body, http.StatusOK)
				return err
			})
			benchReportRate(b, "req/s")
			if cpu1, ok := processCPU(); ok && cpuOK && b.N > 0 {
				b.ReportMetric(float64(cpu1-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
			}
		})
	}
}

package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/scimgate/scimgate/caddymodule/fleet"
)

// outboxHolder is the gateway (by index) that holds the outbox job of target demo: the
// election key with the lowest create revision names its process.
func (f *gwFleet) outboxHolder(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := f.etcd.Client().Get(ctx, fleet.ElectionPrefix(fleetPrefix)+"outbox/demo/", clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
		if err != nil || len(resp.Kvs) == 0 {
			continue
		}
		id := string(resp.Kvs[0].Value)
		pid, err := strconv.Atoi(id[strings.LastIndexByte(id, ':')+1:])
		if err != nil {
			t.Fatalf("election value %q", id)
		}
		for i := range f.gws {
			if f.pid(i) == pid {
				return i
			}
		}
	}
	t.Fatal("no gateway holds the outbox job")
	return -1
}

// TestFleetQueuedWorkerPausedPastLease: the gateway delivering the queued outbox is paused
// (SIGSTOP) past its lease while Entra's creates go on through the others; another gateway
// takes the job over and delivers them. When the paused one resumes (SIGCONT) it must make
// no call for the job it lost: every acknowledged create reaches the app exactly once.
func TestFleetQueuedWorkerPausedPastLease(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and three gateway processes")
	}
	f := startFleetOf(t, 3, &gwFleet{delivery: "queued"}, false)
	// A first create makes some gateway campaign and take the job.
	if r := f.do(0, http.MethodPost, "/Users", fleetUser("warmup@contoso.example", "t")); r.status != http.StatusCreated {
		t.Fatalf("warm-up create: %d %v %s", r.status, r.err, r.body)
	}
	w := f.outboxHolder(t)
	others := []int{(w + 1) % 3, (w + 2) % 3}
	var mu sync.Mutex
	acked := []string{}
	create := func(gw int, name string) {
		r := f.do(gw, http.MethodPost, "/Users", fleetUser(name, "t"))
		if r.err != nil || r.status != http.StatusCreated {
			t.Errorf("create %s through gateway %d: %d %v %s", name, gw, r.status, r.err, r.body)
			return
		}
		mu.Lock()
		acked = append(acked, name)
		mu.Unlock()
	}
	// Creates in flight to the worker when it stops, and after.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { create(others[i%2], fmt.Sprintf("before-%d@contoso.example", i)) })
	}
	pid := f.pid(w)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	for i := range 20 {
		wg.Go(func() { create(others[i%2], fmt.Sprintf("paused-%d@contoso.example", i)) })
	}
	wg.Wait()
	// lease_ttl 3s: another gateway takes the job within about that, and delivers.
	time.Sleep(5 * time.Second)
	for i := range 10 {
		create(others[i%2], fmt.Sprintf("taken-over-%d@contoso.example", i))
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	for i := range 10 {
		create(others[i%2], fmt.Sprintf("resumed-%d@contoso.example", i))
	}
	var missing []string
	for range 60 {
		missing = missing[:0]
		for _, name := range acked {
			if f.app.createCount(name) == 0 {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a late duplicate from the resumed gateway
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged creates never reached the app, e.g. %s", len(missing), len(acked), missing[0])
	}
	for _, name := range append(acked, "warmup@contoso.example") {
		if n := f.app.createCount(name); n != 1 {
			t.Errorf("the app received %d creates for %s, want 1", n, name)
		}
	}
	fj := verifyJournal(t, f.backup())
	t.Logf("%d creates, each delivered once; worker %d paused past its lease; %d journal records in one chain",
		len(acked)+1, w, fj.report.Records)
}

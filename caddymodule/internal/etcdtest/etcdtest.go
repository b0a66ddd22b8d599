// Package etcdtest starts etcd clusters in-process for tests, with
// go.etcd.io/etcd/server/v3/embed. Only _test.go files may import it: the production binary
// must not link the etcd server.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long a cluster (or a restarted member) may take to be ready.
const startTimeout = 60 * time.Second

// Cluster is an etcd cluster of in-process members on 127.0.0.1, with data in the test's
// temporary directory. It is stopped when the test ends.
type Cluster struct {
	t       testing.TB
	mu      sync.Mutex
	members []*member
	initial string
}

type member struct {
	name      string
	dir       string
	peer, cli url.URL
	etcd      *embed.Etcd
	stopped   bool
	// initial is the cluster a rejoined member starts with (initial-cluster-state
	// existing); "" for a member of the cluster as it started.
	initial string
	// removed: the member was removed from the cluster (Remove) and its data wiped; Rejoin
	// adds it back.
	removed bool
}

// Start starts an n-member cluster and waits until it has a leader.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := start(t, n)
		if err == nil {
			t.Cleanup(c.Close)
			return c
		}
		// A port found free was taken before etcd bound it: try others.
		inUse := errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
		if !inUse || attempt == 5 {
			t.Fatal(err)
		}
	}
}

func start(t testing.TB, n int) (*Cluster, error) {
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		m := &member{
			name: fmt.Sprintf("m%d", i),
			dir:  filepath.Join(t.TempDir(), fmt.Sprintf("m%d", i)),
			peer: url.URL{Scheme: "http", Host: freeAddr(t)},
			cli:  url.URL{Scheme: "http", Host: freeAddr(t)},
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer.String())
	}
	c.initial = strings.Join(initial, ",")
	for _, m := range c.members {
		e, err := embed.StartEtcd(c.config(m))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("starting etcd member %s: %w", m.name, err)
		}
		m.etcd = e
	}
	for _, m := range c.members {
		c.waitReady(m)
	}
	return c, nil
}

func (c *Cluster) config(m *member) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ListenPeerUrls = []url.URL{m.peer}
	cfg.AdvertisePeerUrls = []url.URL{m.peer}
	cfg.ListenClientUrls = []url.URL{m.cli}
	cfg.AdvertiseClientUrls = []url.URL{m.cli}
	cfg.InitialCluster = c.initial
	if m.initial != "" {
		cfg.InitialCluster = m.initial
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.InitialClusterToken = "etcdtest"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Elections quicker than etcd's defaults (100ms/1s) but with room for a loaded machine.
	cfg.TickMs = 50
	cfg.ElectionMs = 500
	return cfg
}

func (c *Cluster) waitReady(m *member) {
	c.t.Helper()
	select {
	case <-m.etcd.Server.ReadyNotify():
	case err := <-m.etcd.Err():
		c.t.Fatalf("etcd member %s failed: %v", m.name, err)
	case <-time.After(startTimeout):
		c.t.Fatalf("etcd member %s not ready within %s", m.name, startTimeout)
	}
}

// Endpoints are the client URLs of every member, stopped or not.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.cli.String())
	}
	return eps
}

// Stop stops member i (0-based), keeping its data and ports for Restart.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if !m.stopped {
		closeMember(m)
	}
}

// closeMember stops m's etcd. One that never became ready (its cluster never formed:
// another member failed to start, or it was restarted without a quorum) is stopped first:
// embed.Etcd.Close waits for the client servers such a member has not started, and would
// wait forever.
func closeMember(m *member) {
	select {
	case <-m.etcd.Server.ReadyNotify():
	default:
		m.etcd.Server.HardStop()
	}
	m.etcd.Close()
	m.stopped = true
}

// Restart starts the stopped member i again on its data and ports and waits until it is
// ready (which needs a quorum of members running).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.members[i]
	if !m.stopped {
		c.mu.Unlock()
		return
	}
	if m.removed {
		c.mu.Unlock()
		c.t.Fatalf("member %s was removed from the cluster: Rejoin adds it back", m.name)
	}
	e, err := embed.StartEtcd(c.config(m))
	if err != nil {
		c.mu.Unlock()
		c.t.Fatalf("restarting etcd member %s: %v", m.name, err)
	}
	m.etcd, m.stopped = e, false
	c.mu.Unlock()
	c.waitReady(m)
}

// Remove does what operators do when member i's disk dies: the member stops (if it runs), is
// removed from the cluster (MemberRemove, through the other members) and its data directory
// is wiped. Its name, ports and client URL stay for Rejoin. The cluster then has one member
// fewer (a quorum of the rest).
func (c *Cluster) Remove(i int) {
	c.t.Helper()
	c.Stop(i)
	c.mu.Lock()
	m := c.members[i]
	if m.removed {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cli := c.clientOf(func(o *member) bool { return o != m })
	defer cli.Close()
	list, err := cli.MemberList(ctx)
	if err != nil {
		c.t.Fatalf("listing the members to remove %s: %v", m.name, err)
	}
	var id uint64
	for _, mm := range list.Members {
		if slices.Contains(mm.PeerURLs, m.peer.String()) {
			id = mm.ID
		}
	}
	if id == 0 {
		c.t.Fatalf("member %s (%s) is not in the cluster's list", m.name, m.peer.String())
	}
	if _, err := cli.MemberRemove(ctx, id); err != nil {
		c.t.Fatalf("removing member %s: %v", m.name, err)
	}
	if err := os.RemoveAll(m.dir); err != nil {
		c.t.Fatalf("wiping member %s's data: %v", m.name, err)
	}
	c.mu.Lock()
	m.removed = true
	c.mu.Unlock()
}

// Rejoin adds the removed member i back as a new member of the cluster (MemberAdd with its
// peer URL), starts it on its empty data directory with initial-cluster-state existing
// and the same client URL (the endpoint the gateways were configured with), and waits
// until it is ready: it has joined and takes requests (it catches up from the leader's
// log or snapshot).
func (c *Cluster) Rejoin(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.members[i]
	if !m.removed {
		c.mu.Unlock()
		c.t.Fatalf("member %s was not removed", m.name)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cli := c.clientOf(func(o *member) bool { return o != m })
	defer cli.Close()
	// etcd refuses a member add ("unhealthy cluster") until every member has been
	// connected to the leader for 5 s (its strict reconfiguration check), as after a
	// removal or a restart: an operator tries again, so does this.
	var resp *clientv3.MemberAddResponse
	var err error
	for {
		resp, err = cli.MemberAdd(ctx, []string{m.peer.String()})
		if err == nil || !strings.Contains(err.Error(), "unhealthy cluster") || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("adding member %s back: %v", m.name, err)
	}
	var initial []string
	for _, mm := range resp.Members {
		name := mm.Name
		if mm.ID == resp.Member.ID {
			name = m.name // not started yet: it has no name in the list
		}
		for _, u := range mm.PeerURLs {
			initial = append(initial, name+"="+u)
		}
	}
	c.mu.Lock()
	m.initial = strings.Join(initial, ",")
	e, err := embed.StartEtcd(c.config(m))
	if err != nil {
		c.mu.Unlock()
		c.t.Fatalf("starting the rejoined member %s: %v", m.name, err)
	}
	m.etcd, m.stopped, m.removed = e, false, false
	c.mu.Unlock()
	c.waitReady(m)
}

// Replace is Remove then Rejoin: member i replaced by a new one with an empty disk.
func (c *Cluster) Replace(i int) {
	c.t.Helper()
	c.Remove(i)
	c.Rejoin(i)
}

// MemberIDs returns the etcd member id of each running member by index (0: not running).
func (c *Cluster) MemberIDs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]uint64, len(c.members))
	for i, m := range c.members {
		if !m.stopped {
			ids[i] = uint64(m.etcd.Server.MemberID())
		}
	}
	return ids
}

// clientOf is a client of the running members keep selects, for membership changes.
func (c *Cluster) clientOf(keep func(*member) bool) *clientv3.Client {
	c.t.Helper()
	c.mu.Lock()
	var eps []string
	for _, m := range c.members {
		if !m.stopped && keep(m) {
			eps = append(eps, m.cli.String())
		}
	}
	c.mu.Unlock()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatalf("etcd client: %v", err)
	}
	return cli
}

// Leader returns the index of the member running members see as the leader, or -1 if none
// does.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.stopped {
			continue
		}
		lead := m.etcd.Server.Leader()
		for i, o := range c.members {
			if !o.stopped && o.etcd.Server.MemberID() == lead {
				return i
			}
		}
	}
	return -1
}

// Client returns a client for the cluster, closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		c.t.Fatalf("etcd client: %v", err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// EnableAuth turns on etcd's authentication with user as root (password checked with
// bcrypt by etcd, slow under -race). Clients from Client no longer work afterwards.
func (c *Cluster) EnableAuth(user, password string) {
	c.t.Helper()
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, user, password); return err },
		func() error { _, err := cli.UserGrantRole(ctx, user, "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			c.t.Fatalf("enabling etcd authentication: %v", err)
		}
	}
}

// Compact compacts the cluster's history up to its current revision.
func (c *Cluster) Compact() int64 {
	c.t.Helper()
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "compact-probe")
	if err != nil {
		c.t.Fatalf("reading the revision: %v", err)
	}
	rev := resp.Header.Revision
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		c.t.Fatalf("compacting at %d: %v", rev, err)
	}
	return rev
}

// Close stops every member.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.etcd != nil && !m.stopped {
			closeMember(m)
		}
	}
}

// freeAddr returns a 127.0.0.1 address with a port free at the moment, below Linux's
// ephemeral range (32768 and up) so that outgoing connections, which take ports from that
// range, are unlikely to take it before etcd binds it.
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 50 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

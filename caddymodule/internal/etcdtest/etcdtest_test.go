package etcdtest

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// TestCloseOfAMemberThatNeverFormedACluster: a member whose cluster never formed (here: the
// other member of two is never started, as when its port was taken) closes, instead of
// waiting forever for client servers it has not started.
func TestCloseOfAMemberThatNeverFormedACluster(t *testing.T) {
	c := &Cluster{t: t}
	for _, name := range []string{"m0", "m1"} {
		c.members = append(c.members, &member{name: name, dir: t.TempDir(),
			peer: url.URL{Scheme: "http", Host: freeAddr(t)}, cli: url.URL{Scheme: "http", Host: freeAddr(t)}})
	}
	c.initial = "m0=" + c.members[0].peer.String() + ",m1=" + c.members[1].peer.String()
	e, err := embed.StartEtcd(c.config(c.members[0]))
	if err != nil {
		t.Fatal(err)
	}
	c.members[0].etcd = e
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close of a member whose cluster never formed did not return within 30s")
	}
}

// TestReplaceAMember: a member is removed, wiped and added back while the others take
// writes; the new member (a new id, the same client URL) serves everything written before,
// during and after, read from its own copy.
func TestReplaceAMember(t *testing.T) {
	c := Start(t, 3)
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	put := func(k string) {
		t.Helper()
		if _, err := cli.Put(ctx, k, "v"); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	put("before")
	old := c.MemberIDs()[1]
	c.Remove(1)
	put("while-removed")
	c.Rejoin(1)
	put("after")
	if id := c.MemberIDs()[1]; id == 0 || id == old {
		t.Fatalf("the rejoined member's id is %x, the removed one's %x", id, old)
	}
	list, err := cli.MemberList(ctx)
	if err != nil || len(list.Members) != 3 {
		t.Fatalf("member list: %v %v", list, err)
	}
	one, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Endpoints()[1]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	// A linearizable read through the new member waits until it has applied every write.
	if _, err := one.Get(ctx, "sync"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"before", "while-removed", "after"} {
		resp, err := one.Get(ctx, k, clientv3.WithSerializable())
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("the rejoined member's own copy of %s: %v %v", k, fmt.Sprint(resp), err)
		}
	}
}

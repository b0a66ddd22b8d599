package etcdtest

import (
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
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

package etcdkv

import (
	"fmt"
	"strings"
	"testing"
)

// committed returns a snapshot holding what fn wrote, as if committed.
func committed(t *testing.T, fn func(*tx)) *snapshot {
	t.Helper()
	s := &snapshot{m: newTree()}
	w := newWriteTx(nil, s)
	fn(w)
	return &snapshot{m: w.m}
}

func fillBucket(t *testing.T, w *tx, n int) {
	t.Helper()
	b, err := w.CreateBucketIfNotExists([]byte("big"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := b.Put(fmt.Appendf(nil, "k%04d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	nb, _ := b.CreateBucketIfNotExists([]byte("nested"))
	_ = nb.Put([]byte("k"), []byte("v"))
	_ = nb.SetSequence(3)
}

// TestPlanDeleteBucket: deleting a bucket of any size is a few range deletes; deleting it and
// putting some of its keys again splits the ranges around them, since etcd rejects a Txn whose
// deletes and puts overlap.
func TestPlanDeleteBucket(t *testing.T) {
	s := committed(t, func(w *tx) { fillBucket(t, w, 1000) })

	w := newWriteTx(nil, s)
	if err := w.root().DeleteBucket([]byte("big")); err != nil {
		t.Fatal(err)
	}
	p := w.plan("/p/")
	if len(p.ops) != 3 { // data, bucket markers, sequences
		t.Errorf("DeleteBucket of 1000 keys: %d operations, want 3", len(p.ops))
	}

	w = newWriteTx(nil, s)
	_ = w.root().DeleteBucket([]byte("big"))
	b, _ := w.CreateBucketIfNotExists([]byte("big"))
	for _, k := range []string{"k0000", "k0500", "k0999", "new"} {
		if err := b.Put([]byte(k), []byte("again")); err != nil {
			t.Fatal(err)
		}
	}
	p = w.plan("/p/")
	var puts []string
	type rng struct{ lo, hi string }
	var dels []rng
	for _, op := range p.ops {
		switch {
		case op.IsPut():
			puts = append(puts, string(op.KeyBytes()))
		case op.IsDelete():
			dels = append(dels, rng{string(op.KeyBytes()), string(op.RangeBytes())})
		}
	}
	for _, k := range puts {
		for _, d := range dels {
			if k == d.lo || (d.hi != "" && k >= d.lo && k < d.hi) {
				t.Errorf("put %q overlaps delete [%q, %q)", k, d.lo, d.hi)
			}
		}
	}
	// The 4 values (the bucket's marker is unchanged: kept by splitting the marker range
	// around it); deletes: the nested bucket's data up to k0000, the two gaps between the
	// old keys put again, the nested marker, the sequences. Empty pieces are left out.
	if len(puts) != 4 || len(dels) != 5 {
		t.Errorf("%d puts, %d deletes: %q %q", len(puts), len(dels), puts, dels)
	}
	for _, d := range dels {
		if !strings.HasPrefix(d.lo, "/p/") || (d.hi != "" && !strings.HasPrefix(d.hi, "/p/")) {
			t.Errorf("delete outside the prefix: %q", d)
		}
	}
}

// TestPlanSkipsNoChange: writing values back as they were, or deleting absent keys, sends
// nothing.
func TestPlanSkipsNoChange(t *testing.T) {
	s := committed(t, func(w *tx) { fillBucket(t, w, 3) })
	w := newWriteTx(nil, s)
	b := w.Bucket([]byte("big"))
	_ = b.Put([]byte("k0001"), []byte("changed"))
	_ = b.Put([]byte("k0001"), []byte("v"))
	_ = b.Delete([]byte("absent"))
	_ = b.Put([]byte("k0002"), []byte("v"))
	if p := w.plan("/p/"); len(p.ops) != 0 {
		t.Errorf("no net change planned %d operations", len(p.ops))
	}
}

// Package kvtest is the conformance suite every kv.DB implementation passes: the behaviour
// the gateway relies on, checked the same way against Bolt and etcd.
package kvtest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// Options describe the implementation under test.
type Options struct {
	// MaxTxnOps is the backend's limit on writes per transaction (0: none, the test of
	// ErrTxnTooLarge is skipped).
	MaxTxnOps int
	// CursorFollowsBucketWrites: a cursor stays correct after Put and Delete through its
	// bucket during iteration (etcd). bbolt's cursors survive only their own Delete.
	CursorFollowsBucketWrites bool
}

// Run runs the suite; open returns a fresh, empty DB (closed by the suite).
func Run(t *testing.T, open func(t *testing.T) kv.DB, opts Options) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db kv.DB, opts Options)
	}{
		{"NestedBuckets", testNestedBuckets},
		{"KeysAndBucketsDoNotShareNames", testKeyBucketNames},
		{"Cursor", testCursor},
		{"CursorMutation", testCursorMutation},
		{"Sequences", testSequences},
		{"ForEachBucket", testForEachBucket},
		{"DeleteBucket", testDeleteBucket},
		{"DeleteLargeBucket", testDeleteLargeBucket},
		{"Rollback", testRollback},
		{"OnCommit", testOnCommit},
		{"ReadOnly", testReadOnly},
		{"SnapshotIsolation", testSnapshotIsolation},
		{"TxnTooLarge", testTxnTooLarge},
		{"BatchOneFails", testBatchOneFails},
		{"Changed", testChanged},
		{"CopyAndBackup", testCopyAndBackup},
		{"BatchPanic", testBatchPanic},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t)
			defer db.Close()
			tc.fn(t, db, opts)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Dump returns everything in db as path -> value: "a/b:key" for a value, "a/b/" for a
// bucket, "a/b#" for a non-zero sequence (bucket names and keys quoted with %q).
func Dump(t testing.TB, db kv.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(path string, b kv.Bucket) error
	walk = func(path string, b kv.Bucket) error {
		out[path+"/"] = ""
		if s := b.Sequence(); s != 0 {
			out[path+"#"] = fmt.Sprint(s)
		}
		if err := b.ForEach(func(k, v []byte) error {
			out[fmt.Sprintf("%s:%q", path, k)] = string(v)
			return nil
		}); err != nil {
			return err
		}
		return b.ForEachBucket(func(name []byte) error {
			return walk(fmt.Sprintf("%s/%q", path, name), b.Bucket(name))
		})
	}
	if err := db.View(func(tx kv.Tx) error {
		return tx.ForEachBucket(func(name []byte) error {
			return walk(fmt.Sprintf("%q", name), tx.Bucket(name))
		})
	}); err != nil {
		t.Fatalf("dumping %s: %v", db, err)
	}
	return out
}

func testNestedBuckets(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		a, err := tx.CreateBucketIfNotExists([]byte("a"))
		must(t, err)
		b, err := a.CreateBucketIfNotExists([]byte("b"))
		must(t, err)
		c, err := b.CreateBucketIfNotExists([]byte("c"))
		must(t, err)
		must(t, a.Put([]byte("k"), []byte("in a")))
		must(t, b.Put([]byte("k"), []byte("in b")))
		must(t, c.Put([]byte("k"), []byte("in c")))
		must(t, c.Put([]byte("empty"), nil))
		// Created again: the same bucket, contents kept.
		a2, err := tx.CreateBucketIfNotExists([]byte("a"))
		must(t, err)
		if got := a2.Get([]byte("k")); string(got) != "in a" {
			t.Errorf("a/k after CreateBucketIfNotExists again = %q", got)
		}
		return nil
	}))
	must(t, db.View(func(tx kv.Tx) error {
		a := tx.Bucket([]byte("a"))
		if a == nil {
			t.Fatal("bucket a missing")
		}
		b := a.Bucket([]byte("b"))
		c := b.Bucket([]byte("c"))
		for _, tc := range []struct {
			b    kv.Bucket
			want string
		}{{a, "in a"}, {b, "in b"}, {c, "in c"}} {
			if got := tc.b.Get([]byte("k")); string(got) != tc.want {
				t.Errorf("Get = %q, want %q", got, tc.want)
			}
		}
		if v := c.Get([]byte("empty")); v == nil || len(v) != 0 {
			t.Errorf("empty value = %#v, want non-nil and empty", v)
		}
		if v := a.Get([]byte("b")); v != nil {
			t.Errorf("Get of a nested bucket's name = %q, want nil", v)
		}
		if tx.Bucket([]byte("b")) != nil || a.Bucket([]byte("c")) != nil || a.Bucket([]byte("k")) != nil {
			t.Error("a bucket is visible where it was not created")
		}
		if a.Get([]byte("missing")) != nil {
			t.Error("Get of a missing key is not nil")
		}
		return nil
	}))
}

func testKeyBucketNames(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		a, err := tx.CreateBucketIfNotExists([]byte("a"))
		must(t, err)
		must(t, a.Put([]byte("key"), []byte("v")))
		_, err = a.CreateBucketIfNotExists([]byte("nested"))
		must(t, err)
		if _, err := a.CreateBucketIfNotExists([]byte("key")); !errors.Is(err, kv.ErrIncompatibleValue) {
			t.Errorf("bucket over a key: %v, want ErrIncompatibleValue", err)
		}
		if err := a.Put([]byte("nested"), []byte("v")); !errors.Is(err, kv.ErrIncompatibleValue) {
			t.Errorf("key over a bucket: %v, want ErrIncompatibleValue", err)
		}
		if err := a.Delete([]byte("nested")); !errors.Is(err, kv.ErrIncompatibleValue) {
			t.Errorf("Delete of a bucket: %v, want ErrIncompatibleValue", err)
		}
		if err := a.DeleteBucket([]byte("key")); !errors.Is(err, kv.ErrIncompatibleValue) {
			t.Errorf("DeleteBucket of a key: %v, want ErrIncompatibleValue", err)
		}
		if err := a.Put(nil, []byte("v")); !errors.Is(err, kv.ErrKeyRequired) {
			t.Errorf("empty key: %v, want ErrKeyRequired", err)
		}
		if err := a.Put(make([]byte, kv.MaxKeySize+1), []byte("v")); !errors.Is(err, kv.ErrKeyTooLarge) {
			t.Errorf("long key: %v, want ErrKeyTooLarge", err)
		}
		if _, err := tx.CreateBucketIfNotExists(nil); !errors.Is(err, kv.ErrKeyRequired) {
			t.Errorf("empty bucket name: %v, want ErrKeyRequired", err)
		}
		return nil
	}))
}

// fill creates bucket "c" holding keys k00..k(n-1) (value "v"+index) and nested buckets
// between them, which cursors must skip.
func fill(t *testing.T, db kv.DB, n int) {
	t.Helper()
	must(t, db.Update(func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("c"))
		must(t, err)
		for i := range n {
			must(t, b.Put(fmt.Appendf(nil, "k%02d", i), fmt.Appendf(nil, "v%02d", i)))
		}
		for _, name := range []string{"a-nested", "k03x", "k05", "zz"} {
			if name == "k05" {
				must(t, b.Delete([]byte(name)))
			}
			nb, err := b.CreateBucketIfNotExists([]byte(name))
			must(t, err)
			must(t, nb.Put([]byte("k04"), []byte("nested value")))
		}
		return nil
	}))
}

func keysOf(c kv.Cursor, k []byte, next func() ([]byte, []byte)) []string {
	var out []string
	for i := 0; k != nil && i < 1000; i++ {
		out = append(out, string(k))
		k, _ = next()
	}
	return out
}

func wantKeys(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func testCursor(t *testing.T, db kv.DB, _ Options) {
	fill(t, db, 8) // k00..k07 without k05 (a bucket)
	must(t, db.View(func(tx kv.Tx) error {
		b := tx.Bucket([]byte("c"))
		c := b.Cursor()
		k, v := c.First()
		if string(k) != "k00" || string(v) != "v00" {
			t.Errorf("First = %q, %q", k, v)
		}
		wantKeys(t, "forward", keysOf(c, k, c.Next), "k00", "k01", "k02", "k03", "k04", "k06", "k07")
		if k, v := c.Next(); k != nil || v != nil {
			t.Errorf("Next past the end = %q, %q", k, v)
		}
		k, _ = c.Last()
		wantKeys(t, "backward", keysOf(c, k, c.Prev), "k07", "k06", "k04", "k03", "k02", "k01", "k00")
		if k, _ := c.Seek([]byte("k03a")); string(k) != "k04" {
			t.Errorf("Seek(k03a) = %q, want k04", k)
		}
		if k, _ := c.Seek([]byte("k05")); string(k) != "k06" {
			t.Errorf("Seek(k05), a bucket's name = %q, want k06", k)
		}
		if k, _ := c.Seek([]byte("k02")); string(k) != "k02" {
			t.Errorf("Seek(k02) = %q", k)
		}
		if k, _ := c.Prev(); string(k) != "k01" {
			t.Errorf("Prev after Seek = %q, want k01", k)
		}
		if k, v := c.Seek([]byte("x")); k != nil || v != nil {
			t.Errorf("Seek past the end = %q, %q", k, v)
		}
		if k, _ := c.Seek(nil); string(k) != "k00" {
			t.Errorf("Seek(nil) = %q, want k00", k)
		}
		var each []string
		must(t, b.ForEach(func(k, v []byte) error { each = append(each, string(k)); return nil }))
		wantKeys(t, "ForEach", each, "k00", "k01", "k02", "k03", "k04", "k06", "k07")
		empty := b.Bucket([]byte("zz")).Cursor()
		if k, _ := empty.Seek([]byte("k05")); k != nil {
			t.Errorf("Seek past a nested bucket's only key = %q", k)
		}
		if k, _ := b.Bucket([]byte("zz")).Cursor().First(); string(k) != "k04" {
			t.Errorf("nested bucket's First = %q", k)
		}
		return nil
	}))
	must(t, db.Update(func(tx kv.Tx) error {
		nb, err := tx.Bucket([]byte("c")).CreateBucketIfNotExists([]byte("empty"))
		must(t, err)
		c := nb.Cursor()
		for _, kv := range [][2][]byte{wrap(c.First()), wrap(c.Last()), wrap(c.Seek([]byte("a")))} {
			if kv[0] != nil {
				t.Errorf("cursor on an empty bucket = %q", kv[0])
			}
		}
		return nil
	}))
}

func wrap(k, v []byte) [2][]byte { return [2][]byte{k, v} }

func testCursorMutation(t *testing.T, db kv.DB, opts Options) {
	fill(t, db, 10)
	must(t, db.Update(func(tx kv.Tx) error {
		b := tx.Bucket([]byte("c"))
		c := b.Cursor()
		var seen []string
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			seen = append(seen, string(k))
			if k := string(k); k == "k01" || k == "k02" || k == "k07" {
				must(t, c.Delete())
			}
		}
		wantKeys(t, "visited", seen, "k00", "k01", "k02", "k03", "k04", "k06", "k07", "k08", "k09")
		seen = nil
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			seen = append(seen, string(k))
			if string(k) == "k08" || string(k) == "k00" {
				must(t, c.Delete())
			}
		}
		wantKeys(t, "backwards", seen, "k09", "k08", "k06", "k04", "k03", "k00")
		return nil
	}))
	var left []string
	must(t, db.View(func(tx kv.Tx) error {
		return tx.Bucket([]byte("c")).ForEach(func(k, _ []byte) error { left = append(left, string(k)); return nil })
	}))
	wantKeys(t, "committed", left, "k03", "k04", "k06", "k09")
	if d := Dump(t, db); d[`"c"/"zz":"k04"`] != "nested value" {
		t.Errorf("a nested bucket's key was touched: %q", d)
	}
	if !opts.CursorFollowsBucketWrites {
		return
	}
	must(t, db.Update(func(tx kv.Tx) error {
		b := tx.Bucket([]byte("c"))
		c := b.Cursor()
		var seen []string
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			seen = append(seen, string(k))
			switch string(k) {
			case "k03":
				must(t, b.Delete([]byte("k03")))    // the cursor's own key
				must(t, b.Put([]byte("k03b"), nil)) // after the cursor: visited
				must(t, b.Put([]byte("k00a"), nil)) // behind it: not visited
			case "k04":
				must(t, b.Delete([]byte("k06"))) // ahead of it: not visited
			}
		}
		wantKeys(t, "visited with bucket writes", seen, "k03", "k03b", "k04", "k09")
		seen = nil
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			seen = append(seen, string(k))
			if string(k) == "k04" {
				must(t, b.Delete([]byte("k04")))
				must(t, b.Put([]byte("k03c"), nil)) // behind it going backwards: visited
			}
		}
		wantKeys(t, "backwards with bucket writes", seen, "k09", "k04", "k03c", "k03b", "k00a")
		return nil
	}))
}

func testSequences(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		a, _ := tx.CreateBucketIfNotExists([]byte("a"))
		b, _ := a.CreateBucketIfNotExists([]byte("b"))
		for want := uint64(1); want <= 3; want++ {
			n, err := a.NextSequence()
			if err != nil || n != want {
				t.Errorf("NextSequence = %d, %v; want %d", n, err, want)
			}
		}
		must(t, b.SetSequence(41))
		return nil
	}))
	must(t, db.Update(func(tx kv.Tx) error {
		b := tx.Bucket([]byte("a")).Bucket([]byte("b"))
		if n, _ := b.NextSequence(); n != 42 {
			t.Errorf("NextSequence after SetSequence(41) = %d", n)
		}
		return nil
	}))
	must(t, db.View(func(tx kv.Tx) error {
		a := tx.Bucket([]byte("a"))
		if a.Sequence() != 3 || a.Bucket([]byte("b")).Sequence() != 42 {
			t.Errorf("sequences = %d, %d; want 3, 42", a.Sequence(), a.Bucket([]byte("b")).Sequence())
		}
		if _, err := a.NextSequence(); !errors.Is(err, kv.ErrTxNotWritable) {
			t.Errorf("NextSequence in a View: %v", err)
		}
		return nil
	}))
	must(t, db.Update(func(tx kv.Tx) error {
		a := tx.Bucket([]byte("a"))
		must(t, a.DeleteBucket([]byte("b")))
		b, _ := a.CreateBucketIfNotExists([]byte("b"))
		if b.Sequence() != 0 {
			t.Errorf("sequence of a recreated bucket = %d", b.Sequence())
		}
		must(t, a.SetSequence(0))
		return nil
	}))
	must(t, db.View(func(tx kv.Tx) error {
		if s := tx.Bucket([]byte("a")).Sequence(); s != 0 {
			t.Errorf("sequence after SetSequence(0) = %d", s)
		}
		return nil
	}))
}

func testForEachBucket(t *testing.T, db kv.DB, _ Options) {
	// Names that are prefixes of each other and bytes either side of the encodings' separators.
	names := []string{"a", "a\x00", "ab", "a.b", "a/b", "b", "\xff", "\x00"}
	for _, n := range names {
		must(t, db.Update(func(tx kv.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte(n))
			must(t, err)
			for _, m := range names {
				nb, err := b.CreateBucketIfNotExists([]byte(m))
				must(t, err)
				_, err = nb.CreateBucketIfNotExists([]byte("deeper"))
				must(t, err)
			}
			return b.Put([]byte("zkey"), []byte("not a bucket"))
		}))
	}
	want := slices.Clone(names)
	slices.Sort(want)
	must(t, db.View(func(tx kv.Tx) error {
		var top []string
		must(t, tx.ForEachBucket(func(n []byte) error { top = append(top, string(n)); return nil }))
		wantKeys(t, "top-level buckets", top, want...)
		for _, n := range names {
			var nested []string
			must(t, tx.Bucket([]byte(n)).ForEachBucket(func(m []byte) error {
				nested = append(nested, string(m))
				return nil
			}))
			wantKeys(t, "nested in "+n, nested, want...)
		}
		stop := errors.New("stop")
		count := 0
		err := tx.ForEachBucket(func([]byte) error { count++; return stop })
		if !errors.Is(err, stop) || count != 1 {
			t.Errorf("ForEachBucket did not stop at the first error: %v after %d", err, count)
		}
		return nil
	}))
}

func testDeleteBucket(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		root, _ := tx.CreateBucketIfNotExists([]byte("root"))
		for _, n := range []string{"a", "ab", "b"} {
			b, _ := root.CreateBucketIfNotExists([]byte(n))
			must(t, b.Put([]byte("k"), []byte(n)))
			must(t, b.SetSequence(7))
			nb, _ := b.CreateBucketIfNotExists([]byte("nested"))
			must(t, nb.Put([]byte("k"), []byte(n+"/nested")))
		}
		return nil
	}))
	must(t, db.Update(func(tx kv.Tx) error {
		root := tx.Bucket([]byte("root"))
		must(t, root.DeleteBucket([]byte("a")))
		if err := root.DeleteBucket([]byte("a")); !errors.Is(err, kv.ErrBucketNotFound) {
			t.Errorf("deleting it again: %v, want ErrBucketNotFound", err)
		}
		if root.Bucket([]byte("a")) != nil {
			t.Error("deleted bucket still visible in its transaction")
		}
		// Deleted and created again in one transaction, with a key it held before.
		must(t, root.DeleteBucket([]byte("b")))
		b, err := root.CreateBucketIfNotExists([]byte("b"))
		must(t, err)
		must(t, b.Put([]byte("k"), []byte("b again")))
		return nil
	}))
	want := map[string]string{
		`"root"/`:                  "",
		`"root"/"ab"/`:             "",
		`"root"/"ab"#`:             "7",
		`"root"/"ab":"k"`:          "ab",
		`"root"/"ab"/"nested"/`:    "",
		`"root"/"ab"/"nested":"k"`: "ab/nested",
		`"root"/"b"/`:              "",
		`"root"/"b":"k"`:           "b again",
	}
	if got := Dump(t, db); !maps.Equal(got, want) {
		t.Errorf("after DeleteBucket:\n got %q\nwant %q", got, want)
	}
	if err := db.Update(func(tx kv.Tx) error {
		return tx.Bucket([]byte("root")).DeleteBucket([]byte("missing"))
	}); !errors.Is(err, kv.ErrBucketNotFound) {
		t.Errorf("deleting a missing bucket: %v", err)
	}
}

// testDeleteLargeBucket deletes, in one transaction, a bucket holding more keys than one
// transaction could write.
func testDeleteLargeBucket(t *testing.T, db kv.DB, _ Options) {
	for i := range 10 {
		must(t, db.Update(func(tx kv.Tx) error {
			b, _ := tx.CreateBucketIfNotExists([]byte("big"))
			nb, _ := b.CreateBucketIfNotExists(fmt.Appendf(nil, "sub%d", i))
			for j := range 50 {
				must(t, b.Put(fmt.Appendf(nil, "k%d-%d", i, j), []byte("v")))
				must(t, nb.Put(fmt.Appendf(nil, "k%d", j), []byte("v")))
			}
			return nil
		}))
	}
	must(t, db.Update(func(tx kv.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("bigger")) // sorts after "big"
		must(t, err)
		b, _ := tx.Bucket([]byte("big")).CreateBucketIfNotExists([]byte("keep"))
		_ = b
		return nil
	}))
	must(t, db.Update(func(tx kv.Tx) error {
		parent, _ := tx.CreateBucketIfNotExists([]byte("parent"))
		return parent.Put([]byte("x"), []byte("y"))
	}))
	// Move "big" under "parent": delete the whole bucket in one transaction.
	must(t, db.Update(func(tx kv.Tx) error {
		big := tx.Bucket([]byte("big"))
		must(t, big.DeleteBucket([]byte("sub3")))
		p := tx.Bucket([]byte("parent"))
		_, err := p.CreateBucketIfNotExists([]byte("moved"))
		return err
	}))
	must(t, db.Update(func(tx kv.Tx) error {
		root, _ := tx.CreateBucketIfNotExists([]byte("holder"))
		_ = root
		return nil
	}))
	must(t, db.Update(func(tx kv.Tx) error {
		// kv.Tx has no top-level DeleteBucket: the large bucket is nested in "big"'s place.
		p := tx.Bucket([]byte("parent"))
		must(t, p.DeleteBucket([]byte("moved")))
		return nil
	}))
	// Build a large nested bucket and delete it whole.
	for i := range 5 {
		must(t, db.Update(func(tx kv.Tx) error {
			p := tx.Bucket([]byte("parent"))
			l, _ := p.CreateBucketIfNotExists([]byte("large"))
			for j := range 60 {
				must(t, l.Put(fmt.Appendf(nil, "%d-%d", i, j), []byte("v")))
			}
			nl, _ := l.CreateBucketIfNotExists(fmt.Appendf(nil, "n%d", i))
			return nl.Put([]byte("k"), []byte("v"))
		}))
	}
	must(t, db.Update(func(tx kv.Tx) error { return tx.Bucket([]byte("parent")).DeleteBucket([]byte("large")) }))
	d := Dump(t, db)
	for k := range d {
		if bytes.Contains([]byte(k), []byte(`"large"`)) || bytes.Contains([]byte(k), []byte(`"sub3"`)) {
			t.Errorf("left after DeleteBucket: %s", k)
		}
	}
	if d[`"parent":"x"`] != "y" || d[`"big":"k9-49"`] != "v" || d[`"big"/"sub4":"k49"`] != "v" {
		t.Errorf("DeleteBucket removed a neighbour: %d keys left", len(d))
	}
	if _, ok := d[`"bigger"/`]; !ok {
		t.Error("bucket bigger vanished")
	}
}

func testRollback(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		b, _ := tx.CreateBucketIfNotExists([]byte("r"))
		return b.Put([]byte("k"), []byte("before"))
	}))
	before := Dump(t, db)
	boom := errors.New("boom")
	err := db.Update(func(tx kv.Tx) error {
		b := tx.Bucket([]byte("r"))
		must(t, b.Put([]byte("k"), []byte("after")))
		must(t, b.Put([]byte("k2"), []byte("after")))
		_, _ = b.NextSequence()
		_, _ = tx.CreateBucketIfNotExists([]byte("new"))
		must(t, tx.Bucket([]byte("r")).Delete([]byte("k")))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	if after := Dump(t, db); !maps.Equal(before, after) {
		t.Errorf("a failed Update changed the store:\nbefore %q\n after %q", before, after)
	}
}

func testOnCommit(t *testing.T, db kv.DB, _ Options) {
	var ran []string
	must(t, db.Update(func(tx kv.Tx) error {
		tx.OnCommit(func() { ran = append(ran, "first") })
		b, _ := tx.CreateBucketIfNotExists([]byte("o"))
		tx.OnCommit(func() {
			// The commit is visible when the hook runs.
			must(t, db.View(func(tx kv.Tx) error {
				if tx.Bucket([]byte("o")) == nil {
					t.Error("OnCommit ran before the commit was visible")
				}
				return nil
			}))
			// A hook may start another write transaction.
			must(t, db.Update(func(tx kv.Tx) error {
				return tx.Bucket([]byte("o")).Put([]byte("from hook"), []byte("v"))
			}))
			ran = append(ran, "second")
		})
		if len(ran) != 0 {
			t.Error("OnCommit ran inside the transaction")
		}
		return b.Put([]byte("k"), []byte("v"))
	}))
	wantKeys(t, "hooks", ran, "first", "second")
	ran = nil
	_ = db.Update(func(tx kv.Tx) error {
		tx.OnCommit(func() { ran = append(ran, "failed") })
		return errors.New("no")
	})
	if len(ran) != 0 {
		t.Errorf("OnCommit of a failed Update ran: %q", ran)
	}
}

func testReadOnly(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("ro"))
		return err
	}))
	must(t, db.View(func(tx kv.Tx) error {
		if tx.Writable() {
			t.Error("View's transaction is writable")
		}
		b := tx.Bucket([]byte("ro"))
		for what, err := range map[string]error{
			"Put":          b.Put([]byte("k"), []byte("v")),
			"Delete":       b.Delete([]byte("k")),
			"SetSequence":  b.SetSequence(3),
			"DeleteBucket": b.DeleteBucket([]byte("x")),
		} {
			if !errors.Is(err, kv.ErrTxNotWritable) {
				t.Errorf("%s in a View: %v", what, err)
			}
		}
		if _, err := b.CreateBucketIfNotExists([]byte("n")); !errors.Is(err, kv.ErrTxNotWritable) {
			t.Errorf("CreateBucketIfNotExists in a View: %v", err)
		}
		if _, err := tx.CreateBucketIfNotExists([]byte("n")); !errors.Is(err, kv.ErrTxNotWritable) {
			t.Errorf("top-level CreateBucketIfNotExists in a View: %v", err)
		}
		return nil
	}))
	must(t, db.Update(func(tx kv.Tx) error {
		if !tx.Writable() {
			t.Error("Update's transaction is not writable")
		}
		return nil
	}))
}

func testSnapshotIsolation(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		b, _ := tx.CreateBucketIfNotExists([]byte("s"))
		return b.Put([]byte("k"), []byte("old"))
	}))
	must(t, db.View(func(tx kv.Tx) error {
		done := make(chan error)
		go func() {
			done <- db.Update(func(tx kv.Tx) error {
				return tx.Bucket([]byte("s")).Put([]byte("k"), []byte("new"))
			})
		}()
		must(t, <-done)
		if v := tx.Bucket([]byte("s")).Get([]byte("k")); string(v) != "old" {
			t.Errorf("a View saw a commit made after it began: %q", v)
		}
		return nil
	}))
	must(t, db.View(func(tx kv.Tx) error {
		if v := tx.Bucket([]byte("s")).Get([]byte("k")); string(v) != "new" {
			t.Errorf("a View after the commit read %q", v)
		}
		return nil
	}))
}

func testTxnTooLarge(t *testing.T, db kv.DB, opts Options) {
	if opts.MaxTxnOps == 0 {
		t.Skip("the backend has no transaction limit")
	}
	must(t, db.Update(func(tx kv.Tx) error {
		b, _ := tx.CreateBucketIfNotExists([]byte("t"))
		return b.Put([]byte("before"), []byte("v"))
	}))
	before := Dump(t, db)
	err := db.Update(func(tx kv.Tx) error {
		b := tx.Bucket([]byte("t"))
		for i := range opts.MaxTxnOps + 1 {
			must(t, b.Put(fmt.Appendf(nil, "k%d", i), []byte("v")))
		}
		return nil
	})
	if !errors.Is(err, kv.ErrTxnTooLarge) {
		t.Fatalf("Update of %d puts: %v, want ErrTxnTooLarge", opts.MaxTxnOps+1, err)
	}
	if after := Dump(t, db); !maps.Equal(before, after) {
		t.Errorf("a transaction too large wrote something: %d entries, was %d", len(after), len(before))
	}
	// One large value over the byte limit.
	err = db.Update(func(tx kv.Tx) error {
		return tx.Bucket([]byte("t")).Put([]byte("huge"), make([]byte, 2<<20))
	})
	if !errors.Is(err, kv.ErrTxnTooLarge) {
		t.Errorf("Update of a 2 MiB value: %v, want ErrTxnTooLarge", err)
	}
	// Batch: a too-large function fails alone.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			errs[i] = db.Batch(func(tx kv.Tx) error {
				b := tx.Bucket([]byte("t"))
				n := 1
				if i == 0 {
					n = opts.MaxTxnOps + 1
				}
				for j := range n {
					if err := b.Put(fmt.Appendf(nil, "b%d-%d", i, j), []byte("v")); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	if !errors.Is(errs[0], kv.ErrTxnTooLarge) || errs[1] != nil {
		t.Errorf("Batch results = %v, %v; want ErrTxnTooLarge, nil", errs[0], errs[1])
	}
}

func testBatchOneFails(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("batch"))
		return err
	}))
	const n = 16
	boom := errors.New("boom")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = db.Batch(func(tx kv.Tx) error {
				b := tx.Bucket([]byte("batch"))
				if err := b.Put(fmt.Appendf(nil, "k%02d", i), []byte("v")); err != nil {
					return err
				}
				if _, err := b.NextSequence(); err != nil {
					return err
				}
				if i == 5 {
					return boom
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == 5 && !errors.Is(err, boom) || i != 5 && err != nil {
			t.Errorf("Batch %d: %v", i, err)
		}
	}
	must(t, db.View(func(tx kv.Tx) error {
		b := tx.Bucket([]byte("batch"))
		for i := range n {
			got := b.Get(fmt.Appendf(nil, "k%02d", i)) != nil
			if got != (i != 5) {
				t.Errorf("key of Batch %d stored: %v", i, got)
			}
		}
		if s := b.Sequence(); s != n-1 {
			t.Errorf("sequence = %d, want %d (the failed function's increment rolled back)", s, n-1)
		}
		return nil
	}))
}

func testChanged(t *testing.T, db kv.DB, _ Options) {
	ch := db.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before any commit")
	default:
	}
	must(t, db.Update(func(tx kv.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("c"))
		return err
	}))
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed when Update returned")
	}
}

func testCopyAndBackup(t *testing.T, db kv.DB, _ Options) {
	for i := range 3 {
		for part := range 2 {
			must(t, db.Update(func(tx kv.Tx) error {
				b, _ := tx.CreateBucketIfNotExists(fmt.Appendf(nil, "top%d", i))
				must(t, b.SetSequence(uint64(i+5)))
				nb, _ := b.CreateBucketIfNotExists([]byte("nested"))
				for j := part * 45; j < (part+1)*45; j++ { // 90 keys: more than one copy batch
					must(t, b.Put(fmt.Appendf(nil, "k%03d", j), fmt.Appendf(nil, "v%d", j)))
					must(t, nb.Put(fmt.Appendf(nil, "n%03d", j), nil))
				}
				_, err := nb.CreateBucketIfNotExists([]byte("empty"))
				return err
			}))
		}
	}
	want := Dump(t, db)
	dir := t.TempDir()
	dst, err := kv.OpenBolt(filepath.Join(dir, "copy.db"), kv.BoltOptions{})
	must(t, err)
	defer dst.Close()
	must(t, kv.Copy(dst, db))
	if got := Dump(t, dst); !maps.Equal(got, want) {
		t.Errorf("Copy: %d entries, want %d", len(got), len(want))
	}
	if err := kv.Copy(dst, db); err == nil {
		t.Error("Copy into a store that is not empty succeeded")
	}
	testSummarize(t, db, dst)
	f, err := os.Create(filepath.Join(dir, "backup.db"))
	must(t, err)
	n, err := db.Backup(f)
	must(t, err)
	must(t, f.Close())
	if n == 0 {
		t.Error("Backup wrote nothing")
	}
	back, err := kv.OpenBolt(f.Name(), kv.BoltOptions{ReadOnly: true})
	must(t, err)
	defer back.Close()
	if got := Dump(t, back); !maps.Equal(got, want) {
		t.Errorf("Backup: %d entries, want %d", len(got), len(want))
	}
}

// testBatchPanic: a Batch function that panics panics in its caller's goroutine and leaves
// the other callers' commits alone.
func testBatchPanic(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("p"))
		return err
	}))
	var wg sync.WaitGroup
	var recovered any
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					recovered = p
				}
			}()
			errs[i] = db.Batch(func(tx kv.Tx) error {
				must(t, tx.Bucket([]byte("p")).Put(fmt.Appendf(nil, "k%d", i), []byte("v")))
				if i == 2 {
					panic("fn panicked")
				}
				return nil
			})
		})
	}
	wg.Wait()
	if recovered != "fn panicked" {
		t.Errorf("recovered %v, want the function's panic", recovered)
	}
	d := Dump(t, db)
	for i := range 4 {
		_, stored := d[fmt.Sprintf(`"p":"k%d"`, i)]
		if stored != (i != 2) || (i != 2 && errs[i] != nil) {
			t.Errorf("Batch %d: stored %v, error %v", i, stored, errs[i])
		}
	}
}

func testClose(t *testing.T, db kv.DB, _ Options) {
	must(t, db.Update(func(tx kv.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("c"))
		return err
	}))
	must(t, db.Close())
	if err := db.View(func(kv.Tx) error { return nil }); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("View after Close: %v, want ErrClosed", err)
	}
	if err := db.Update(func(kv.Tx) error { return nil }); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
}

// testSummarize checks Summarize on a store and its copy: the same counts and digest, and a
// digest that changes with a value or a sequence.
func testSummarize(t *testing.T, db, dst kv.DB) {
	t.Helper()
	summary := func(d kv.DB) kv.Summary {
		var s kv.Summary
		must(t, d.View(func(tx kv.Tx) error {
			var err error
			s, err = kv.Summarize(tx)
			return err
		}))
		return s
	}
	src, cp := summary(db), summary(dst)
	if !maps.Equal(src.Keys, cp.Keys) || src.Digest != cp.Digest {
		t.Fatalf("Summarize: the copy differs: %v %x, source %v %x", cp.Keys, cp.Digest, src.Keys, src.Digest)
	}
	if src.Keys["top0"] != 90 || src.Keys["top0/nested"] != 90 || src.Keys["top0/nested/empty"] != 0 || len(src.Keys) != 9 {
		t.Errorf("Summarize counts %v", src.Keys)
	}
	must(t, dst.Update(func(tx kv.Tx) error { return tx.Bucket([]byte("top1")).Put([]byte("k000"), []byte("changed")) }))
	changed := summary(dst)
	if !maps.Equal(changed.Keys, src.Keys) || changed.Digest == src.Digest {
		t.Errorf("Summarize: a changed value: counts %v, digest the same: %v", changed.Keys, changed.Digest == src.Digest)
	}
	must(t, dst.Update(func(tx kv.Tx) error { return tx.Bucket([]byte("top1")).Put([]byte("k000"), []byte("v0")) }))
	if again := summary(dst); again.Digest != src.Digest {
		t.Error("Summarize: the digest differs after restoring the value")
	}
	must(t, dst.Update(func(tx kv.Tx) error { return tx.Bucket([]byte("top1")).SetSequence(99) }))
	if seq := summary(dst); seq.Digest == src.Digest {
		t.Error("Summarize: a changed sequence leaves the digest the same")
	}
	var seen []string
	other, err := kv.OpenBolt(filepath.Join(t.TempDir(), "snapshot.db"), kv.BoltOptions{})
	must(t, err)
	defer other.Close()
	must(t, kv.CopySnapshot(other, db, func(tx kv.Tx) error {
		return tx.ForEachBucket(func(name []byte) error { seen = append(seen, string(name)); return nil })
	}))
	if len(seen) != 3 {
		t.Errorf("CopySnapshot's read saw buckets %v, want the source's three", seen)
	}
}

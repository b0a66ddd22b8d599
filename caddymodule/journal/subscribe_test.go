package journal

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

func recv(t *testing.T, s *Subscription) Entry {
	t.Helper()
	select {
	case e, ok := <-s.C:
		if !ok {
			t.Fatalf("subscription closed: %v", s.Err())
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no entry")
		return Entry{}
	}
}

func TestSubscribeCommittedOnly(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	appendN(t, j, 0, 2) // before Subscribe: not delivered
	s := j.Subscribe(16)
	defer s.Close()

	rollback := errors.New("roll back")
	err := db.Update(func(tx kv.Tx) error {
		if err := j.Append(tx, sampleRecord(100)); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	appendN(t, j, 2, 3)
	for want := uint64(3); want <= 5; want++ {
		e := recv(t, s)
		if e.Record.Seq != want || e.Record.RequestID == "req-000100" {
			t.Fatalf("got seq %d (%s), want %d", e.Record.Seq, e.Record.RequestID, want)
		}
		if e.Hash != chainHash(mustPrev(t, e), e.Record.Seq, e.Raw) {
			t.Fatal("entry hash does not cover its raw bytes")
		}
	}
	select {
	case e := <-s.C:
		t.Fatalf("unexpected entry %d", e.Record.Seq)
	case <-time.After(30 * time.Millisecond):
	}
	s.Close()
	s.Close()
	if _, ok := <-s.C; ok || s.Err() != nil {
		t.Fatalf("closed subscription: err %v", s.Err())
	}
}

func mustPrev(t *testing.T, e Entry) [32]byte {
	h, err := decodeHash(e.Record.PrevHash)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSlowSubscriberDropped(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	slow := j.Subscribe(2)
	fast := j.Subscribe(1000)
	defer fast.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			appendN(t, j, i, 1)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Append blocked on a slow subscriber")
	}
	for want := uint64(1); want <= 50; want++ {
		if e := recv(t, fast); e.Record.Seq != want {
			t.Fatalf("fast subscriber got %d, want %d", e.Record.Seq, want)
		}
	}
	n := 0
	for range slow.C {
		n++
	}
	if n > 2 || !errors.Is(slow.Err(), ErrSlowConsumer) {
		t.Fatalf("slow subscriber got %d entries, err %v", n, slow.Err())
	}
}

func TestSubscribeClosedJournal(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	s := j.Subscribe(1)
	j.Close()
	if _, ok := <-s.C; ok || !errors.Is(s.Err(), ErrClosed) {
		t.Fatalf("err %v", s.Err())
	}
	late := j.Subscribe(1)
	if _, ok := <-late.C; ok || !errors.Is(late.Err(), ErrClosed) {
		t.Fatalf("late err %v", late.Err())
	}
}

// TestSubscribeOrderUnderLoad: commit handlers of consecutive transactions may run in any
// order; subscribers still see every record once, in sequence order, including records
// appended through a second Journal value on the same file.
func TestSubscribeOrderUnderLoad(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	other := openJournal(t, db, Options{})
	s := j.Subscribe(10000)
	defer s.Close()
	const writers, each = 16, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jj := j
			if w%2 == 1 {
				jj = other
			}
			for i := range each {
				r := sampleRecord(w*each + i)
				if err := db.Batch(func(tx kv.Tx) error { return jj.Append(tx, r) }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for want := uint64(1); want <= writers*each; want++ {
		if e := recv(t, s); e.Record.Seq != want {
			t.Fatalf("got %d, want %d", e.Record.Seq, want)
		}
	}
	info, err := j.Info()
	if err != nil || info.Records != writers*each || info.LastSeq != writers*each || info.FirstSeq != 1 {
		t.Fatalf("info %+v %v", info, err)
	}
}

// TestSubscribeSeesOtherJournalValue: records appended through another Journal value on the
// same file (two configs during a reload) reach this value's subscribers too.
func TestSubscribeSeesOtherJournalValue(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	other := openJournal(t, db, Options{})
	s := j.Subscribe(10)
	defer s.Close()
	for i := range 3 {
		r := sampleRecord(i)
		if err := db.Update(func(tx kv.Tx) error { return other.Append(tx, r) }); err != nil {
			t.Fatal(err)
		}
	}
	for want := uint64(1); want <= 3; want++ {
		if e := recv(t, s); e.Record.Seq != want {
			t.Fatalf("got %d, want %d", e.Record.Seq, want)
		}
	}
}

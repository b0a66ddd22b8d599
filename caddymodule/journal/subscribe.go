package journal

import (
	"bytes"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"
	"go.uber.org/zap"
)

// publishPage bounds how many records one read transaction of the publisher copies out.
const publishPage = 1000

// Subscription receives committed records in sequence order on C. A subscriber that lets its
// buffer fill is dropped: C is closed and Err says why. Writers never wait for subscribers.
type Subscription struct {
	// C delivers entries committed after Subscribe returned, in sequence order.
	C <-chan Entry

	c    chan Entry
	from uint64
	p    *publisher

	mu     sync.Mutex
	err    error
	closed bool
}

// Err is nil while the subscription is open, ErrSlowConsumer when it was dropped for not
// keeping up, ErrClosed when the journal closed, and nil after Close.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription and closes C. It is safe to call more than once.
func (s *Subscription) Close() { s.p.remove(s, nil) }

// end closes C once, recording why.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed, s.err = true, err
	close(s.c)
}

// publisher delivers committed records to subscribers. Commit handlers only wake it: it reads
// the records back from the committed database in sequence order, so it publishes nothing a
// rolled-back transaction wrote, never reorders records of transactions whose commit
// handlers race, and sees records appended by any Journal value on the same file.
type publisher struct {
	j      *Journal
	wakeC  chan struct{}
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	next   uint64      // next sequence number to publish; guarded by mu
	active atomic.Bool // len(subs) > 0, read without mu by commit handlers
}

func (p *publisher) init(j *Journal, head uint64) {
	p.j = j
	p.wakeC = make(chan struct{}, 1)
	p.subs = make(map[*Subscription]struct{})
	p.next = head + 1
}

// wake asks the publisher goroutine to look for new records; it never blocks.
func (p *publisher) wake() {
	if !p.active.Load() {
		return
	}
	select {
	case p.wakeC <- struct{}{}:
	default:
	}
}

// Subscribe starts receiving records committed from now on. buffer is how many entries may
// wait for the subscriber before it is dropped (minimum 1).
func (j *Journal) Subscribe(buffer int) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	c := make(chan Entry, buffer)
	s := &Subscription{C: c, c: c, p: &j.pub}
	var head uint64
	err := j.db.View(func(tx kv.Tx) error {
		var err error
		head, _, err = j.Head(tx)
		return err
	})
	if err != nil || j.closed.Load() {
		s.end(ErrClosed)
		return s
	}
	s.from = head + 1
	p := &j.pub
	p.mu.Lock()
	if len(p.subs) == 0 && p.next < s.from {
		// Nobody listened to the records before: skip them instead of reading them back.
		p.next = s.from
	}
	p.subs[s] = struct{}{}
	p.active.Store(true)
	p.mu.Unlock()
	p.wake()
	return s
}

// remove ends s with err (nil for a Close by the subscriber).
func (p *publisher) remove(s *Subscription, err error) {
	p.mu.Lock()
	delete(p.subs, s)
	p.active.Store(len(p.subs) > 0)
	p.mu.Unlock()
	s.end(err)
}

// closeAll ends every subscription because the journal closed.
func (p *publisher) closeAll() {
	p.mu.Lock()
	subs := p.subs
	p.subs = map[*Subscription]struct{}{}
	p.active.Store(false)
	p.mu.Unlock()
	for s := range subs {
		s.end(ErrClosed)
	}
}

// publishPoll is how often the publisher also looks for new records while anyone listens:
// records another Journal value appended to the same file (two configs during a reload)
// wake only that value's publisher.
const publishPoll = 200 * time.Millisecond

// run is the publisher goroutine.
func (p *publisher) run(stop <-chan struct{}) {
	poll := time.NewTicker(publishPoll)
	defer poll.Stop()
	for {
		select {
		case <-stop:
			return
		case <-poll.C:
			if !p.active.Load() {
				continue
			}
		case <-p.wakeC:
		}
		for p.publishPage() {
			select {
			case <-stop:
				return
			default:
			}
		}
	}
}

// publishPage delivers up to publishPage new records, reporting whether more may be waiting.
func (p *publisher) publishPage() bool {
	p.mu.Lock()
	next, active := p.next, len(p.subs) > 0
	p.mu.Unlock()
	var entries []Entry
	var head uint64
	err := p.j.db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, p.j.name)
		if err != nil {
			return err
		}
		if head, _, err = headOf(b); err != nil || !active {
			return err
		}
		entries, err = readEntries(b.Bucket(bucketRecords), next, head, publishPage)
		return err
	})
	if err != nil {
		p.j.log.Error("reading records to publish", zap.Error(err))
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(entries) == 0 {
		if head >= p.next {
			p.next = head + 1
		}
		return false
	}
	for _, e := range entries {
		p.deliver(e)
	}
	p.next = entries[len(entries)-1].Record.Seq + 1
	return p.next <= head
}

// deliver sends e to every subscriber that wants it, dropping any whose buffer is full.
// Called with p.mu held.
func (p *publisher) deliver(e Entry) {
	for s := range p.subs {
		if e.Record.Seq < s.from {
			continue
		}
		select {
		case s.c <- e:
		default:
			delete(p.subs, s)
			s.end(ErrSlowConsumer)
		}
	}
	p.active.Store(len(p.subs) > 0)
}

// readEntries copies out and decodes up to limit records with from <= seq <= to.
func readEntries(rb kv.Bucket, from, to uint64, limit int) ([]Entry, error) {
	var out []Entry
	c := rb.Cursor()
	for k, v := c.Seek(u64(from)); k != nil && len(out) < limit; k, v = c.Next() {
		seq, ok := keySeq(k)
		if !ok || seq > to {
			break
		}
		out = append(out, decodeEntry(seq, v))
	}
	return out, nil
}

// decodeEntry copies a stored value into an Entry. A value that does not decode (only a
// damaged file has one) still yields an entry, saying so, so that the stream neither stops
// nor skips silently.
func decodeEntry(seq uint64, v []byte) Entry {
	h, raw, ok := splitValue(v)
	e := Entry{Raw: bytes.Clone(raw), Hash: h}
	if !ok || json.Unmarshal(e.Raw, &e.Record) != nil {
		e.Record = Record{Seq: seq, Error: "the stored record does not decode: run verify"}
	}
	e.Record.Seq = seq
	return e
}

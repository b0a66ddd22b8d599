package store

import (
	"errors"
	"fmt"
	"sync"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// maxGroupSize bounds how many write functions share one transaction, so that one commit
// (and the time its writers wait) stays bounded however many requests queue.
const maxGroupSize = 1000

// errTrySolo tells a caller whose function failed inside a shared transaction to run it
// again in a transaction of its own, where its error cannot be confused with anyone else's.
var errTrySolo = errors.New("store: run the write function alone")

// committer is group commit without a timer: many concurrent writers share one bbolt
// transaction and so one fsync, like bbolt's db.Batch, but the transaction starts as soon as
// the writer lock is free instead of after a fixed delay. A lone writer commits at once (one
// commit's latency, not delay + commit); writers that arrive while a commit is running form
// the next group, so under load each commit carries everyone who queued during the previous
// one. bbolt's db.Batch with its default 10 ms delay made a lone write take 11 ms; even a
// 1 ms delay, waited on twice by a write that journals an intent and an outcome, dominated
// the gateway's write latency (the commit itself takes well under that).
//
// The semantics callers rely on are db.Batch's: functions in a group run one after the other
// in one transaction; if one returns an error the transaction is rolled back, the others run
// again in a new transaction, and the failing one is run alone by its caller, so every
// function may run more than once and must be idempotent.
type committer struct {
	db kv.DB

	mu      sync.Mutex
	queue   []*commitCall
	running bool // a goroutine is draining queue
}

// commitCall is one writer waiting for its group's commit.
type commitCall struct {
	fn   func(kv.Tx) error
	done chan error // buffered: the committer never blocks on a writer
}

// update runs fn in a transaction shared with concurrent callers and returns once that
// transaction is committed (nil) or fn's own error, or the commit's error.
func (c *committer) update(fn func(kv.Tx) error) error {
	call := &commitCall{fn: fn, done: make(chan error, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, call)
	if !c.running {
		c.running = true
		go c.drain()
	}
	c.mu.Unlock()
	err := <-call.done
	if errors.Is(err, errTrySolo) {
		err = c.db.Update(func(tx kv.Tx) error { return safeCall(fn, tx) })
	}
	return err
}

// drain commits the queue group by group until it is empty. One drain goroutine runs at a
// time; it ends when it finds the queue empty, and the next writer starts a new one.
func (c *committer) drain() {
	for {
		c.mu.Lock()
		group := c.queue
		if len(group) > maxGroupSize {
			group = group[:maxGroupSize:maxGroupSize]
			c.queue = append([]*commitCall(nil), c.queue[maxGroupSize:]...)
		} else {
			c.queue = nil
		}
		if len(group) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.commit(group)
	}
}

// commit runs group in one transaction. A function that fails is taken out and told to run
// alone; the rest run again in a fresh transaction (their first run was rolled back).
func (c *committer) commit(group []*commitCall) {
	for len(group) > 0 {
		failed := -1
		err := c.db.Update(func(tx kv.Tx) error {
			for i, call := range group {
				if err := safeCall(call.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			group[failed].done <- errTrySolo
			group = append(group[:failed:failed], group[failed+1:]...)
			continue
		}
		if errors.Is(err, kv.ErrTxnTooLarge) && len(group) > 1 {
			// The backend (etcd) commits a bounded number of operations at once: halve the
			// group until each half fits; a single function too large gets the error.
			half := len(group) / 2
			c.commit(group[:half])
			group = group[half:]
			continue
		}
		for _, call := range group {
			call.done <- err
		}
		return
	}
}

// safeCall runs fn, turning a panic into an error so that one faulty function cannot take
// the committer (and every writer waiting on it) down with it. Run alone, the panic comes
// back to its caller as an error.
func safeCall(fn func(kv.Tx) error, tx kv.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: write function panicked: %v", p)
		}
	}()
	return fn(tx)
}

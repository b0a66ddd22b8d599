package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// Intents without an outcome, and where in the journal a time falls: what a gateway reads
// when it starts (the crash scan, the policy's hourly stats). Both cost what they find, not
// the journal's length.
//
// The open-intent index is kept by Append in the transaction of the record: a record with
// a target, a request id and the outcome "pending" (an intent: native calls follow) adds
// target \0 request id -> its seq; any later record of the same target and request (its
// outcome, or a reconcile record that reports it) removes the entry. What remains after a
// crash are exactly the intents whose outcome never committed.

var (
	bucketOpen    = []byte("open")
	keyOpenFormat = []byte("open_format") // present once the index covers the journal
	// keyOpenThrough is the last record the index has seen, written with each record. A
	// release from before the index (2026-11-27) appends without it after a rollback, so on
	// the next open the records beyond it are indexed then.
	keyOpenThrough = []byte("open_through")
)

// openIndexWindow bounds the one-time build of the index in a journal written before it:
// intents older than this many records were not looked at by earlier versions either.
const openIndexWindow = 100_000

// openMark is what a prepared record does to the index.
type openMark struct {
	key   []byte // target \0 request id; nil: the record does not touch the index
	open  bool   // an intent: add; otherwise remove
	owner string // the intent's Owner, kept in the index after its seq
}

func markOf(r *Record) openMark {
	if r.Target == "" || r.RequestID == "" {
		return openMark{}
	}
	return openMark{key: openKey(r.Target, r.RequestID), open: r.Outcome == change.Pending, owner: r.Owner}
}

// openValue splits an index value: the intent's seq, then its owner (none in an index
// written before owners, or by a gateway that is alone on its store).
func openValue(v []byte) (seq uint64, owner string, ok bool) {
	if len(v) < 8 {
		return 0, "", false
	}
	return binary.BigEndian.Uint64(v), string(v[8:]), true
}

func openKey(target, requestID string) []byte {
	k := make([]byte, 0, len(target)+1+len(requestID))
	k = append(append(append(k, target...), 0), requestID...)
	return k
}

// applyMark updates the index for record seq.
func applyMark(b kv.Bucket, m openMark, seq uint64) error {
	if m.key == nil {
		return nil
	}
	ob := b.Bucket(bucketOpen)
	if m.open {
		return ob.Put(m.key, append(u64(seq), m.owner...))
	}
	if ob.Get(m.key) == nil {
		return nil
	}
	return ob.Delete(m.key)
}

// initOpenIndex creates the index; in a journal that has records but no index yet it is
// built from the newest openIndexWindow records, once. An index that has not seen the newest
// records (an older release appended them after a rollback) is brought up to the head.
func initOpenIndex(b kv.Bucket) error {
	if _, err := b.CreateBucketIfNotExists(bucketOpen); err != nil {
		return err
	}
	head, _, err := headOf(b)
	if err != nil {
		return err
	}
	from := uint64(1)
	if b.Get(keyOpenFormat) != nil {
		v := b.Get(keyOpenThrough)
		if v == nil {
			// Kept by a release from before keyOpenThrough, which maintained the index.
			return b.Put(keyOpenThrough, u64(head))
		}
		if len(v) != 8 {
			return fmt.Errorf("%w: %s", ErrCorrupt, keyOpenThrough)
		}
		through := binary.BigEndian.Uint64(v)
		if through >= head {
			return nil
		}
		from = through + 1
	}
	if head >= openIndexWindow && from < head-openIndexWindow+1 {
		from = head - openIndexWindow + 1
	}
	if err := indexRecords(b, from); err != nil {
		return err
	}
	if err := b.Put(keyOpenFormat, u64(1)); err != nil {
		return err
	}
	return b.Put(keyOpenThrough, u64(head))
}

// indexRecords applies the records from seq from on to the index.
func indexRecords(b kv.Bucket, from uint64) error {
	c := b.Bucket(bucketRecords).Cursor()
	for k, v := c.Seek(u64(from)); k != nil; k, v = c.Next() {
		seq, ok := keySeq(k)
		_, raw, ok2 := splitValue(v)
		if !ok || !ok2 {
			continue
		}
		var r struct {
			RequestID string         `json:"request_id"`
			Target    string         `json:"target"`
			Outcome   change.Outcome `json:"outcome"`
		}
		if json.Unmarshal(raw, &r) != nil {
			continue
		}
		m := markOf(&Record{RequestID: r.RequestID, Target: r.Target, Outcome: r.Outcome})
		if err := applyMark(b, m, seq); err != nil {
			return err
		}
	}
	return nil
}

// OpenIntents returns target's intents (records with outcome "pending") that no later
// record of their request has followed, oldest first. An intent whose record retention has
// since removed is left out.
func (j *Journal) OpenIntents(target string) ([]Record, error) {
	var out []Record
	err := j.db.View(func(tx kv.Tx) error {
		var err error
		out, err = j.openIntents(tx, target, nil)
		return err
	})
	return out, err
}

// IntentFilter selects open intents by what their records say; an empty field selects any.
type IntentFilter struct {
	Action       change.Action
	ResourceType string
	// Subject is compared case-insensitively (userNames and displayNames are unique so).
	Subject string
	// SCIMID selects the intents of one resource.
	SCIMID string
	// NotRequestID leaves out the intent of this request.
	NotRequestID string
}

// OpenIntentsMatching is OpenIntents inside the caller's transaction, for the intents f
// selects: what a change reads to
// learn which changes of target are in flight (on a shared store, through other gateways).
// It reads only the fields f names from each stored record and decodes just the records
// it selects, so a check costs a microsecond or two per open intent, not a decode.
func (j *Journal) OpenIntentsMatching(tx kv.Tx, target string, f IntentFilter) ([]Record, error) {
	return j.openIntents(tx, target, func(requestID, raw []byte) bool {
		if f.NotRequestID != "" && string(requestID) == f.NotRequestID {
			return false
		}
		// The subject first: it rules out most intents with one read.
		return (f.Subject == "" || strings.EqualFold(gjson.GetBytes(raw, "subject").Str, f.Subject)) &&
			(f.SCIMID == "" || gjson.GetBytes(raw, "scim_id").Str == f.SCIMID) &&
			(f.Action == "" || gjson.GetBytes(raw, "action").Str == string(f.Action)) &&
			(f.ResourceType == "" || gjson.GetBytes(raw, "resource_type").Str == f.ResourceType)
	})
}

// openIntents reads target's open intents that keep selects (nil: all), oldest first.
func (j *Journal) openIntents(tx kv.Tx, target string, keep func(requestID, raw []byte) bool) ([]Record, error) {
	var out []Record
	b, err := journalBucket(tx, j.name)
	if err == nil {
		prefix := append([]byte(target), 0)
		rb := b.Bucket(bucketRecords)
		c := b.Bucket(bucketOpen).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			seq, owner, ok := openValue(v)
			if !ok {
				err = fmt.Errorf("%w: open intent %q", ErrCorrupt, k)
				break
			}
			stored := rb.Get(u64(seq))
			if stored == nil {
				continue // pruned
			}
			if keep != nil {
				if _, raw, ok := splitValue(stored); ok && !keep(k[len(prefix):], raw) {
					continue
				}
			}
			e := decodeEntry(seq, stored)
			e.Record.Owner = owner
			out = append(out, e.Record)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("journal %s: reading open intents: %w", j.opts.Name, err)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	return out, nil
}

// OpenIntentSeq returns, inside the caller's transaction, the sequence number of the open
// intent of target's request requestID; ok is false when the request has none (its outcome
// or a reconcile record followed it). A transaction that closes an intent reads it first,
// so that the close is conditional: on a shared store the transaction does not commit when
// another gateway closed the intent meanwhile (it runs again, and finds it closed).
func (j *Journal) OpenIntentSeq(tx kv.Tx, target, requestID string) (seq uint64, ok bool, err error) {
	seq, _, ok, err = j.openIntentSeq(tx, target, requestID)
	return seq, ok, err
}

func (j *Journal) openIntentSeq(tx kv.Tx, target, requestID string) (seq uint64, owner string, ok bool, err error) {
	b, err := journalBucket(tx, j.name)
	if err != nil {
		return 0, "", false, fmt.Errorf("journal %s: reading open intents: %w", j.opts.Name, err)
	}
	v := b.Bucket(bucketOpen).Get(openKey(target, requestID))
	if v == nil {
		return 0, "", false, nil
	}
	seq, owner, ok = openValue(v)
	if !ok {
		return 0, "", false, fmt.Errorf("journal %s: %w: open intent of request %q", j.opts.Name, ErrCorrupt, requestID)
	}
	return seq, owner, true, nil
}

// OpenIntent returns, inside the caller's transaction, the open intent of target's request
// requestID, or nil when it has none (or retention removed its record).
func (j *Journal) OpenIntent(tx kv.Tx, target, requestID string) (*Record, error) {
	seq, owner, ok, err := j.openIntentSeq(tx, target, requestID)
	if err != nil || !ok {
		return nil, err
	}
	b, err := journalBucket(tx, j.name)
	if err != nil {
		return nil, err
	}
	stored := b.Bucket(bucketRecords).Get(u64(seq))
	if stored == nil {
		return nil, nil // pruned
	}
	e := decodeEntry(seq, stored)
	e.Record.Owner = owner
	return &e.Record, nil
}

// SeqAtTime returns the sequence number of the first record stamped at or after t, by
// binary search over the records (which are stamped as they are appended, so their times
// only grow; a record whose time a caller set may be a little out of order, so callers that
// need every record after t still check each record's time). It returns the head + 1 when
// every record is older, and the first kept seq when none is.
func (j *Journal) SeqAtTime(t time.Time) (uint64, error) {
	var seq uint64
	err := j.db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, j.name)
		if err != nil {
			return err
		}
		rb := b.Bucket(bucketRecords)
		c := rb.Cursor()
		k, _ := c.First()
		if k == nil {
			head, _, err := headOf(b)
			seq = head + 1
			return err
		}
		lo, _ := keySeq(k)
		head, _, err := headOf(b)
		if err != nil {
			return err
		}
		hi := head + 1 // invariant: records before lo are older than t; records from hi on are not
		for lo < hi {
			mid := lo + (hi-lo)/2
			// A pruned or missing seq: look at the next record that exists.
			k, v := c.Seek(u64(mid))
			s, ok := keySeq(k)
			if k == nil || !ok {
				hi = mid
				continue
			}
			if _, raw, ok := splitValue(v); ok && !recordTimeBefore(raw, t) {
				hi = mid
				continue
			}
			lo = min(s+1, hi)
		}
		seq = lo
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("journal %s: finding records since %s: %w", j.opts.Name, t.Format(time.RFC3339), err)
	}
	return seq, nil
}

// recordTimeBefore reports whether a stored record's time is before t (a record without a
// readable time counts as not before, so the search never skips it).
func recordTimeBefore(raw []byte, t time.Time) bool {
	rt, err := time.Parse(time.RFC3339Nano, gjson.GetBytes(raw, "time").Str)
	return err == nil && rt.Before(t)
}

package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
)

// Stats are the policy's counts of recent changes (input.stats) kept in the store, so that
// gateways sharing one store (a fleet) count each other's changes: a target's counts of one
// minute are one key, and the last hour is a cursor range of at most StatsMinutes+1 keys.
//
//	stats  target \0 Unix minute (8 bytes, big-endian)  -> per event: name, count
//
// A minute whose counts all fall to zero is deleted, so a target with no key in the window
// has counted nothing in the last hour. Minutes that left the window are deleted by later
// additions, a few per call (see AddStats), so the work of a call stays bounded however long
// a target was quiet.

// StatsMinutes is how many minutes SumStats looks back (an hour).
const StatsMinutes = 60

// StatsSkewMinutes is how many minutes ahead of the caller's SumStats also counts: a
// gateway whose clock runs a little behind another's still sees the other's newest changes.
const StatsSkewMinutes = 1

// statsExpireBatch bounds how many expired minutes one AddStats deletes. Every call adds at
// most one minute, so deleting up to two keeps the expired ones from piling up.
const statsExpireBatch = 2

// AddStats adds delta (event -> change of its count; negative to take counts back) to the
// counts of target's minute, the Unix minute the changes happened in. A count never falls
// below zero, and a minute left with no counts is deleted. It also deletes up to a few of
// target's minutes that have left the window, keeping those that a gateway whose clock is
// up to StatsSkewMinutes behind still counts. target may be empty
// (the gateway's own directory, without an app); events may not.
func (tx *Tx) AddStats(target string, minute int64, delta map[string]int64) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkStatsArgs(target, minute); err != nil {
		return err
	}
	for ev := range delta {
		if err := checkName("event", ev); err != nil {
			return err
		}
	}
	b := tx.bucket(bucketStats)
	key := statsKey(target, minute)
	counts, err := decodeStats(b.Get(key))
	if err != nil {
		return fmt.Errorf("counts of %s at minute %d: %w", target, minute, err)
	}
	for ev, d := range delta {
		if n := counts[ev] + d; n > 0 {
			counts[ev] = n
		} else {
			delete(counts, ev)
		}
	}
	if len(counts) == 0 {
		err = b.Delete(key)
	} else {
		err = b.Put(key, encodeStats(counts))
	}
	if err != nil {
		return fmt.Errorf("writing the counts of %s at minute %d: %w", target, minute, err)
	}
	// A reader whose clock is StatsSkewMinutes behind still counts the minute before the
	// window: it is kept.
	return tx.expireStats(target, minute-StatsMinutes+1-StatsSkewMinutes)
}

// expireStats deletes up to statsExpireBatch of target's minutes before from. Keys are
// collected before deleting, since deleting under a bbolt cursor can skip keys.
func (tx *Tx) expireStats(target string, from int64) error {
	if from <= 0 {
		return nil
	}
	b := tx.bucket(bucketStats)
	prefix := statsKey(target, 0)[:len(target)+1]
	end := statsKey(target, from)
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(old) < statsExpireBatch && bytes.Compare(k, end) < 0; k, _ = c.Next() {
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("deleting expired counts of %s: %w", target, err)
		}
	}
	return nil
}

// SumStats returns target's counts per event over the StatsMinutes minutes ending at
// minute, and the StatsSkewMinutes after it. Events with no count are absent.
func (tx *Tx) SumStats(target string, minute int64) (map[string]int64, error) {
	if err := checkStatsArgs(target, minute); err != nil {
		return nil, err
	}
	var sum statsSum
	end := statsKey(target, minute+StatsSkewMinutes)
	c := tx.bucket(bucketStats).Cursor()
	for k, v := c.Seek(statsKey(target, max(minute-StatsMinutes+1, 0))); k != nil && bytes.Compare(k, end) <= 0; k, v = c.Next() {
		if err := sum.add(v); err != nil {
			return nil, fmt.Errorf("counts of %s: %w", target, err)
		}
	}
	return sum.counts(), nil
}

// checkStatsArgs refuses a target that cannot be a key component (an empty one can: it is
// the gateway's own directory) and a minute before 1970 or
// past maxStatsMinute.
func checkStatsArgs(target string, minute int64) error {
	if target != "" {
		if err := checkName("target", target); err != nil {
			return err
		}
	}
	if minute < 0 || minute > maxStatsMinute {
		return fmt.Errorf("%w: minute %d is out of range", ErrInvalidKey, minute)
	}
	return nil
}

// maxStatsMinute is two million years after 1970: beyond any clock, far from overflowing.
const maxStatsMinute = 1 << 40

// statsKey is target \0 minute (big-endian, so a cursor walks a target's minutes in order).
func statsKey(target string, minute int64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(target), sep), uint64(minute))
}

// encodeStats lays out counts as (uvarint length, event, uvarint count) in event order.
func encodeStats(counts map[string]int64) []byte {
	events := make([]string, 0, len(counts))
	for ev := range counts {
		events = append(events, ev)
	}
	slices.Sort(events)
	var b []byte
	for _, ev := range events {
		b = appendString(b, ev)
		b = binary.AppendUvarint(b, uint64(counts[ev]))
	}
	return b
}

// decodeStats reads what encodeStats wrote (nil: no counts).
func decodeStats(v []byte) (map[string]int64, error) {
	var sum statsSum
	if err := sum.add(v); err != nil {
		return nil, err
	}
	return sum.counts(), nil
}

// statsSum adds up encoded counts. It is a list, not a map: there are a handful of events,
// and looking one up by its bytes allocates nothing, so a sum over the hour (up to 61
// minutes) allocates once per event, not once per event and minute.
type statsSum []statCount

type statCount struct {
	event string
	n     int64
}

// add adds the counts encodeStats wrote in v.
func (s *statsSum) add(v []byte) error {
	for len(v) > 0 {
		l, w := binary.Uvarint(v)
		if w <= 0 || l == 0 || l > uint64(len(v)-w) {
			return fmt.Errorf("%w: stats event", ErrCorrupt)
		}
		ev := v[w : w+int(l)]
		v = v[w+int(l):]
		n, w := binary.Uvarint(v)
		if w <= 0 || n > 1<<62 || bytes.IndexByte(ev, sep) >= 0 {
			return fmt.Errorf("%w: stats count of %q", ErrCorrupt, ev)
		}
		v = v[w:]
		s.addEvent(ev, int64(n))
	}
	return nil
}

func (s *statsSum) addEvent(ev []byte, n int64) {
	for i := range *s {
		if (*s)[i].event == string(ev) {
			(*s)[i].n += n
			return
		}
	}
	*s = append(*s, statCount{event: string(ev), n: n})
}

func (s statsSum) counts() map[string]int64 {
	out := make(map[string]int64, len(s))
	for _, c := range s {
		out[c.event] = c.n
	}
	return out
}

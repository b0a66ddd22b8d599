package store

import (
	"encoding/binary"
	"errors"
)

// Reports are the results of reconciles with the apps (caddymodule/reconcile), kept so that
// a report can be read again by its id: the newest ones, at most the number the caller
// keeps. Each has a summary, listed without reading the reports themselves.

// PutReport stores a report and its summary, which build makes for the new id (ids
// increase), then deletes the oldest reports beyond keep (at least 1).
func (tx *Tx) PutReport(keep int, build func(id uint64) (summary, report []byte, err error)) (uint64, error) {
	if err := tx.checkWritable(); err != nil {
		return 0, err
	}
	idx, reps := tx.bucket(bucketRepSums), tx.bucket(bucketReports)
	seq, err := idx.NextSequence()
	if err != nil {
		return 0, err
	}
	summary, report, err := build(seq)
	if err != nil {
		return 0, err
	}
	key := encodeUint64(seq)
	if err := idx.Put(key, summary); err != nil {
		return 0, err
	}
	if err := reps.Put(key, report); err != nil {
		return 0, err
	}
	keep = max(keep, 1)
	var all [][]byte // few: at most keep+1
	c := idx.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		all = append(all, append([]byte(nil), k...))
	}
	for _, k := range all[:max(len(all)-keep, 0)] {
		if err := idx.Delete(k); err != nil {
			return 0, err
		}
		if err := reps.Delete(k); err != nil {
			return 0, err
		}
	}
	return seq, nil
}

// Report returns a copy of the report with id, or ErrNotFound.
func (tx *Tx) Report(id uint64) ([]byte, error) {
	v := tx.bucket(bucketReports).Get(encodeUint64(id))
	if v == nil {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

// ReportSummaries calls fn with each stored report's id and summary (a copy), newest
// first, until fn returns false.
func (tx *Tx) ReportSummaries(fn func(id uint64, summary []byte) bool) error {
	c := tx.bucket(bucketRepSums).Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if len(k) != 8 {
			return errors.Join(ErrCorrupt, errors.New("a report key is not 8 bytes"))
		}
		if !fn(binary.BigEndian.Uint64(k), append([]byte(nil), v...)) {
			return nil
		}
	}
	return nil
}

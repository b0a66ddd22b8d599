package store

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Reports are the results of reconciles with the apps (caddymodule/reconcile), kept so that
// a report can be read again by its id: the newest ones, at most the number the caller
// keeps. Each has a summary, listed without reading the reports themselves.
//
// Reports are stored gzip-compressed: a report lists up to thousands of findings in JSON,
// which compresses about tenfold, and a shared store (etcd) commits at most about 1.5 MiB at
// once. A report stored before compression (it does not start with gzip's magic bytes) is
// read as it is.

// gzipMagic starts every gzip stream (RFC 1952); a JSON report never starts with it.
var gzipMagic = []byte{0x1f, 0x8b}

func compressReport(report []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(report); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// maxReportSize bounds a decompressed report, so a corrupt value cannot exhaust memory.
const maxReportSize = 256 << 20

func decompressReport(v []byte) ([]byte, error) {
	if !bytes.HasPrefix(v, gzipMagic) {
		return append([]byte(nil), v...), nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(v))
	if err != nil {
		return nil, fmt.Errorf("%w: report: %v", ErrCorrupt, err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxReportSize+1))
	if err != nil || len(out) > maxReportSize {
		return nil, fmt.Errorf("%w: report: %v", ErrCorrupt, err)
	}
	return out, nil
}

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
	if report, err = compressReport(report); err != nil {
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
	return decompressReport(v)
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

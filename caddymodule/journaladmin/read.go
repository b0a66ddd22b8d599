package journaladmin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

// Reading what the routes write: a JSONL export (which the live stream replays from, and
// `journal tail --file` reads) and the live stream's server-sent events (which the journal
// command follows).

// ReadEntries runs export (a JSONL export into w) and hands each record line to fn as an
// Entry; the header, checkpoint and end lines are skipped.
func ReadEntries(ctx context.Context, export func(context.Context, io.Writer) error, fn func(journal.Entry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := export(ctx, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	err := ScanEntries(pr, fn)
	cancel()
	pr.CloseWithError(errors.New("stopped reading"))
	if xerr := <-done; err == nil && xerr != nil {
		err = xerr
	}
	return err
}

// ScanEntries decodes the record lines of a JSONL export from r.
func ScanEntries(r io.Reader, fn func(journal.Entry) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), journal.MaxRecordBytes+4096)
	for sc.Scan() {
		e, ok, err := parseExportLine(sc.Bytes())
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return sc.Err()
}

// parseExportLine decodes one JSONL export line, {"seq":N,"hash":"<hex>","record":{...}};
// ok is false for the other lines (header, checkpoint, end).
func parseExportLine(line []byte) (e journal.Entry, ok bool, err error) {
	if len(bytes.TrimSpace(line)) == 0 {
		return e, false, nil
	}
	var l struct {
		Seq    uint64          `json:"seq"`
		Hash   string          `json:"hash"`
		Record json.RawMessage `json:"record"`
	}
	if err := json.Unmarshal(line, &l); err != nil {
		return e, false, fmt.Errorf("reading the export: %w", err)
	}
	if l.Record == nil {
		return e, false, nil
	}
	h, err := hex.DecodeString(l.Hash)
	if err != nil || len(h) != len(e.Hash) {
		return e, false, fmt.Errorf("reading the export: record %d: bad hash", l.Seq)
	}
	copy(e.Hash[:], h)
	e.Raw = bytes.Clone(l.Record)
	if err := json.Unmarshal(e.Raw, &e.Record); err != nil {
		return e, false, fmt.Errorf("reading the export: record %d: %w", l.Seq, err)
	}
	return e, true, nil
}

// ReadEvents parses a server-sent event stream such as the live route's, calling fn per
// event with its name ("message" when it has none) and its data lines joined by newlines.
func ReadEvents(r io.Reader, fn func(event string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 2*journal.MaxRecordBytes)
	var event string
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if data != nil || event != "" {
				if event == "" {
					event = "message"
				}
				if err := fn(event, bytes.TrimSuffix(data, []byte("\n"))); err != nil {
					return err
				}
			}
			event, data = "", nil
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			event = string(value)
		case "data":
			data = append(append(data, value...), '\n')
		}
	}
	return sc.Err()
}

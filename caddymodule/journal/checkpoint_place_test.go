package journal

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// rewriteJSONL is an attacker who holds a JSONL export but not the signing key: edit
// changes the record lines it returns true for, and every hash, prev_hash and the end line
// are recomputed so that the chain is consistent again. move, when set, rearranges the
// lines afterwards.
func rewriteJSONL(t *testing.T, export []byte, edit func(seq uint64, r *Record) bool, move func(lines []string) []string) []byte {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(export), "\n"), "\n")
	prev, err := decodeHash(gjson.Get(lines[0], "anchor.prev_hash").Str)
	if err != nil {
		t.Fatal(err)
	}
	var lastSeq uint64
	var n int
	for i, l := range lines {
		if !gjson.Get(l, "record").Exists() {
			continue
		}
		seq := gjson.Get(l, "seq").Uint()
		var r Record
		if err := json.Unmarshal([]byte(gjson.Get(l, "record").Raw), &r); err != nil {
			t.Fatal(err)
		}
		edit(seq, &r)
		r.PrevHash = hex.EncodeToString(prev[:])
		raw, _ := json.Marshal(&r)
		h := chainHash(prev, seq, raw)
		var buf bytes.Buffer
		if err := (&jsonlEncoder{}).record(&buf, seq, h, raw); err != nil {
			t.Fatal(err)
		}
		lines[i] = strings.TrimSuffix(buf.String(), "\n")
		prev, lastSeq = h, seq
		n++
	}
	end, _ := json.Marshal(map[string]jsonlEnd{"end": {Records: uint64(n), LastSeq: lastSeq, LastHash: hex.EncodeToString(prev[:])}})
	lines[len(lines)-1] = string(end)
	if move != nil {
		lines = move(lines)
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// TestVerifyJSONLCheckpointOutOfPlace: a checkpoint line vouches for the record it follows.
// An attacker who rewrote history in an export (recomputing every hash) and moved the
// checkpoint lines away from their records, so that no checkpoint is compared with the
// recomputed chain, must not get an export that verifies.
func TestVerifyJSONLCheckpointOutOfPlace(t *testing.T) {
	pub, _ := testKey()
	j := exportJournal(t, 35)
	out, _ := export(t, j, Query{}, FormatJSONL)
	if rep, err := VerifyJSONL(context.Background(), bytes.NewReader(out), pub); err != nil || !rep.OK {
		t.Fatalf("untouched export: %+v %v", rep, err)
	}
	isCP := func(l string) bool { return gjson.Get(l, "checkpoint").Exists() }
	rewrite := func(seq uint64, r *Record) bool {
		if seq == 5 {
			r.Subject = "mallory"
		}
		return seq == 5
	}
	// Rewritten in place, the checkpoint of record 10 catches it.
	rep, err := VerifyJSONL(context.Background(), bytes.NewReader(rewriteJSONL(t, out, rewrite, nil)), pub)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, KindCheckpointMismatch, 10)

	moves := map[string]func([]string) []string{
		"every checkpoint just before its record": func(lines []string) []string {
			for i := 2; i < len(lines); i++ {
				if isCP(lines[i]) {
					lines[i-1], lines[i] = lines[i], lines[i-1]
				}
			}
			return lines
		},
		"every checkpoint right after the header": func(lines []string) []string {
			var recs, cps []string
			for _, l := range lines[1:] {
				if isCP(l) {
					cps = append(cps, l)
				} else {
					recs = append(recs, l)
				}
			}
			return append(append([]string{lines[0]}, cps...), recs...)
		},
	}
	for name, move := range moves {
		t.Run(name, func(t *testing.T) {
			rep, err := VerifyJSONL(context.Background(), bytes.NewReader(rewriteJSONL(t, out, rewrite, move)), pub)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK {
				t.Fatalf("a rewritten export with its checkpoints moved verifies: %+v", rep)
			}
		})
	}
}

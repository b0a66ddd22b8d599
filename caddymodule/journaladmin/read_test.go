package journaladmin

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

// TestLiveParseLine checks the reading of JSONL export lines back into entries.
func TestLiveParseLine(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	rec := `{"v":1,"seq":1,"time":"2025-01-01T00:00:00Z","action":"create","outcome":"applied","prev_hash":"` + strings.Repeat("00", 32) + `"}`
	tests := []struct {
		name   string
		line   string
		ok     bool
		hasErr bool
	}{
		{"record", `{"seq":1,"hash":"` + hash + `","record":` + rec + `}`, true, false},
		{"blank", "  ", false, false},
		{"header", `{"format":"scimgate-journal","version":1,"journal":"audit"}`, false, false},
		{"checkpoint", `{"checkpoint":{"seq":1}}`, false, false},
		{"not JSON", `{"seq":`, false, true},
		{"bad hash", `{"seq":1,"hash":"zz","record":` + rec + `}`, false, true},
		{"record not an object", `{"seq":1,"hash":"` + hash + `","record":[1]}`, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok, err := parseExportLine([]byte(tt.line))
			if ok != tt.ok || (err != nil) != tt.hasErr {
				t.Fatalf("ok %v, err %v", ok, err)
			}
			if ok && (e.Record.Seq != 1 || hex.EncodeToString(e.Hash[:]) != hash || string(e.Raw) != rec) {
				t.Errorf("entry = %+v", e)
			}
		})
	}
}

// TestReadEvents checks the parsing of a server-sent event stream (the journal command's
// reading of the live stream).
func TestReadEvents(t *testing.T) {
	in := "retry: 2000\n\n: comment\n\nid: 1\nevent: record\ndata: {\"a\":\ndata: 1}\n\nevent: heartbeat\ndata: x\n\ndata: plain\n\n"
	var got []string
	err := ReadEvents(strings.NewReader(in), func(event string, data []byte) error {
		got = append(got, event+"="+string(data))
		return nil
	})
	want := []string{"record={\"a\":\n1}", "heartbeat=x", "message=plain"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("events %q, err %v; want %q", got, err, want)
	}
}

package journal

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/sjson"
)

// lineOf returns the index of the first line with prefix.
func lineOf(t *testing.T, lines []string, prefix string) int {
	t.Helper()
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	t.Fatalf("no line starts with %s", prefix)
	return -1
}

func recLine(seq int) string { return fmt.Sprintf(`{"seq":%d,`, seq) }
func cpLine(seq int) string  { return fmt.Sprintf(`{"checkpoint":{"seq":%d,`, seq) }

// TestEditedExports: what an attacker can do to a JSONL export without the signing key,
// and what verify with the public key says of it.
func TestEditedExports(t *testing.T) {
	const n = 20
	pub, _ := testKey()
	path := buildFile(t, n)
	lines := exportLines(t, path, Query{})
	withKey := JSONLOptions{Keys: []ed25519.PublicKey{pub}}

	// Another journal of the same key: journal "other", 25 records, checkpoints at 10 and 25.
	db, otherPath := openDB(t)
	_, priv := testKey()
	oj := openJournal(t, db, Options{Name: "other", SigningKey: priv, KeyID: "k1"})
	appendN(t, oj, 0, 10)
	if _, err := oj.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	appendN(t, oj, 10, 15)
	if _, err := oj.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	oj.Close()
	db.Close()
	other := exportLines(t, otherPath, Query{})

	// A second store whose journal has the same name and key, and other records (a whole
	// export of it verifies as journal main: see the README on sharing a key).
	db2, path2 := openDB(t)
	j2 := openJournal(t, db2, Options{SigningKey: priv, KeyID: "k1"})
	appendN(t, j2, 200, 10)
	if _, err := j2.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	appendN(t, j2, 100, 10)
	if _, err := j2.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	j2.Close()
	db2.Close()
	second := exportLines(t, path2, Query{})

	edit := func(f func(l []string) []string) []string { return f(append([]string(nil), lines...)) }
	tests := []struct {
		name  string
		lines []string
		kind  string
		seq   uint64
	}{
		{"two records swapped", edit(func(l []string) []string {
			i := lineOf(t, l, recLine(5))
			l[i], l[i+1] = l[i+1], l[i]
			return l
		}), KindReordered, 5},
		{"a record duplicated", edit(func(l []string) []string {
			i := lineOf(t, l, recLine(5))
			return append(l[:i+1:i+1], l[i:]...)
		}), KindReordered, 5},
		{"a checkpoint of another journal, same key", edit(func(l []string) []string {
			l[lineOf(t, l, cpLine(10))] = other[lineOf(t, other, cpLine(10))]
			return l
		}), KindBadSignature, 10},
		{"the header renamed", edit(func(l []string) []string {
			l[0], _ = sjson.Set(l[0], "journal", "other")
			return l
		}), KindBadSignature, 10},
		{"a checkpoint of a later record appended", edit(func(l []string) []string {
			end := len(l) - 1
			return append(l[:end:end], other[lineOf(t, other, cpLine(25))], l[end])
		}), KindBadSignature, 25},
		{"a checkpoint of a record the export lacks", edit(func(l []string) []string {
			end := len(l) - 1
			cp, _ := sjson.Set(l[lineOf(t, l, cpLine(n))], "checkpoint.seq", n+5)
			return append(l[:end:end], cp, l[end])
		}), KindBadSignature, n + 5},
		{"records spliced from another store's backup", func() []string {
			i := lineOf(t, lines, recLine(11))
			k := lineOf(t, second, recLine(11))
			return append(append([]string(nil), lines[:i]...), second[k:]...)
		}(), KindModified, 10},
		{"spliced, and the hashes recomputed", func() []string {
			i := lineOf(t, lines, recLine(11))
			k := lineOf(t, second, recLine(11))
			return forge(t, append(append([]string(nil), lines[:i]...), second[k:]...), nil, nil)
		}(), KindCheckpointMismatch, n},
		{"a genuine checkpoint before forged records", func() []string {
			// The records after checkpoint 10, rewritten, alone behind it: the checkpoint
			// is the anchor's and covers none of them.
			hdr, _ := sjson.Set(lines[0], "anchor.seq", 11)
			var h10 string
			for _, l := range lines {
				if strings.HasPrefix(l, recLine(10)) {
					h10 = l[len(recLine(10))+len(`"hash":"`) : len(recLine(10))+len(`"hash":"`)+64]
				}
			}
			hdr, _ = sjson.Set(hdr, "anchor.prev_hash", h10)
			body := append([]string{hdr, lines[lineOf(t, lines, cpLine(10))]}, lines[lineOf(t, lines, recLine(11)):lineOf(t, lines, cpLine(n))]...)
			f := forge(t, append(body, lines[len(lines)-1]), nil, map[uint64]func(*Record){12: mallory})
			return f
		}(), KindUnvouched, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantProblem(t, verifyLines(t, tt.lines, withKey), tt.kind, tt.seq)
		})
	}

	t.Run("an export of another journal", func(t *testing.T) {
		_, err := VerifyJSONLWith(context.Background(), strings.NewReader(strings.Join(other, "\n")+"\n"), JSONLOptions{Keys: withKey.Keys, Journal: "main"})
		if err == nil || !strings.Contains(err.Error(), `is of journal "other", not "main"`) {
			t.Fatalf("err = %v", err)
		}
		rep := verifyLines(t, other, JSONLOptions{Keys: withKey.Keys, Journal: "other"})
		wantOK(t, rep, nil)
		if rep.Journal != "other" {
			t.Errorf("report names journal %q", rep.Journal)
		}
	})
	t.Run("an OCSF export", func(t *testing.T) {
		var b strings.Builder
		if _, err := ExportFileJournal(context.Background(), path, "", &b, Query{}, FormatOCSF); err != nil {
			t.Fatal(err)
		}
		_, err := VerifyJSONL(context.Background(), strings.NewReader(b.String()), pub)
		if err == nil || !strings.Contains(err.Error(), "an OCSF export cannot be verified") {
			t.Fatalf("err = %v", err)
		}
	})
}

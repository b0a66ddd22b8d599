package journal

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// Problem kinds, in the order verification looks for them.
const (
	// KindDeleted: the record with Seq is missing (a gap in the sequence numbers).
	KindDeleted = "deleted"
	// KindReordered: the record stored at Seq belongs at another sequence number.
	KindReordered = "reordered"
	// KindModified: the record with Seq no longer hashes to what the chain recorded.
	KindModified = "modified"
	// KindCheckpointMismatch: the chain recomputed up to the checkpoint at Seq does not
	// reach the checkpoint's hash: records up to Seq were rewritten (hashes recomputed).
	KindCheckpointMismatch = "checkpoint_mismatch"
	// KindBadSignature: the checkpoint at Seq is unsigned or its signature fails.
	KindBadSignature = "bad_signature"
	// KindHeadMismatch: the stored head disagrees with the records (records beyond it, or
	// a different hash).
	KindHeadMismatch = "head_mismatch"
	// KindTruncated: records from Seq on are gone: the head or a checkpoint names a sequence
	// number the records no longer reach (or a JSONL export lost its tail).
	KindTruncated = "truncated"
	// KindMalformed: a JSONL export line at or after Seq is not what the format defines.
	KindMalformed = "malformed"
	// KindUnvouched: verified with public keys, records from Seq on are covered by no
	// signed checkpoint, and not as the tail after the newest checkpoint of a stretch of
	// records without gaps: the file holds no checkpoint (or none of theirs), so whoever can
	// write it could have rewritten them with recomputed hashes, and nothing signed shows
	// otherwise.
	KindUnvouched = "unvouched"
)

// Problem is the first thing verification found wrong: Seq is the first bad sequence number.
type Problem struct {
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

func (p *Problem) String() string { return fmt.Sprintf("seq %d: %s: %s", p.Seq, p.Kind, p.Detail) }

// Report is the result of a verification. Verification stops at the first problem, so
// Records counts the records verified before it.
type Report struct {
	OK          bool     `json:"ok"`
	Records     uint64   `json:"records"`
	FirstSeq    uint64   `json:"first_seq,omitempty"`
	LastSeq     uint64   `json:"last_seq,omitempty"`
	Checkpoints int      `json:"checkpoints"`
	FirstBad    *Problem `json:"first_bad,omitempty"`
	// LastHash is the hex hash of LastSeq.
	LastHash string `json:"last_hash,omitempty"`
	// Signed is true when checkpoint signatures were checked (a public key was given).
	Signed bool `json:"signed"`
	// CheckpointSeq is the record the newest verified checkpoint covers (0: none). Records
	// after it are chained but no checkpoint vouches for them yet: whoever can write the
	// file can rewrite or append them with recomputed hashes, and only a later checkpoint
	// (or a copy of it in a log sink) tells.
	CheckpointSeq uint64 `json:"checkpoint_seq,omitempty"`
	// CheckpointTime is when the newest verified checkpoint was made: with a public key,
	// the signed time. Whoever can write the file can delete the newest checkpoints with
	// the records after them: compare it with when the file was made, and with the
	// checkpoints in your log sink.
	CheckpointTime *time.Time `json:"checkpoint_time,omitempty"`
	// Vouched counts the records a signed checkpoint covers (verified with public keys
	// only): a checkpoint covers the records before it back to the start or to a gap.
	Vouched uint64 `json:"vouched,omitempty"`
	// Journal is the name of the journal verified (a JSONL export's header names it).
	Journal string `json:"journal,omitempty"`
	// Partial is true for a filtered JSONL export: each record was checked against its own
	// hash, but the links across the records the filter left out could not be.
	Partial bool `json:"partial,omitempty"`
}

// verifyPage bounds the records one read transaction verifies, so verification never holds
// a read transaction (and with it bbolt's page reuse) for long.
const verifyPage = 10000

// chain recomputes the hash chain record by record and diagnoses the first problem.
type chain struct {
	name string
	keys []ed25519.PublicKey // trusted to sign checkpoints; none: signatures not checked
	next uint64              // expected sequence number
	prev [32]byte            // hash of next-1
	rep  Report

	// What signed checkpoints cover (with keys): the records since the newest verified
	// checkpoint of the current run (a stretch without gaps), whether the run has one, and
	// the first records that no checkpoint covers other than as such a run's tail.
	pending, pendingFrom     uint64
	runVouched               bool
	strandedFrom, strandedTo uint64
}

func newChain(name string, keys []ed25519.PublicKey, anchorSeq uint64, anchorPrev [32]byte) *chain {
	keys = trusted(keys)
	return &chain{name: name, keys: keys, next: anchorSeq, prev: anchorPrev, rep: Report{Signed: len(keys) > 0, Journal: name}}
}

// gap ends the current run where the records skip to another sequence number (a subset):
// the checkpoints after the gap do not cover the records before it.
func (c *chain) gap() {
	c.strand()
	c.runVouched = false
}

// strand records the records since the newest checkpoint as covered by none.
func (c *chain) strand() {
	if c.pending > 0 && c.strandedFrom == 0 {
		c.strandedFrom, c.strandedTo = c.pendingFrom, c.next-1
	}
	c.pending = 0
}

func (c *chain) fail(seq uint64, kind, format string, args ...any) *Problem {
	p := &Problem{Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
	c.rep.FirstBad = p
	return p
}

// record checks the record stored at seq with stored hash h. A gap before it is reported by
// the caller (which knows whether gaps are allowed).
func (c *chain) record(seq uint64, h [32]byte, raw []byte) *Problem {
	var prevHex [64]byte
	hex.Encode(prevHex[:], c.prev[:])
	fields := gjson.GetManyBytes(raw, "seq", "prev_hash")
	claimedSeq, claimedPrev := fields[0].Uint(), fields[1].Str
	got := chainHash(c.prev, seq, raw)
	if got == h && claimedSeq == seq && claimedPrev == string(prevHex[:]) {
		c.accept(seq, h)
		return nil
	}
	return c.diagnose(seq, h, raw, claimedSeq, claimedPrev)
}

// diagnose names what is wrong with a record that failed the chain check. A record that is
// consistent with its own claims (its hash covers its own seq and prev_hash) was not itself
// changed: it was moved (reordered), or its predecessor changed.
func (c *chain) diagnose(seq uint64, h [32]byte, raw []byte, claimedSeq uint64, claimedPrev string) *Problem {
	cp, err := decodeHash(claimedPrev)
	selfConsistent := func(s uint64) bool { return err == nil && chainHash(cp, s, raw) == h }
	switch {
	case claimedSeq != seq && claimedSeq != 0 && selfConsistent(claimedSeq):
		return c.fail(seq, KindReordered, "the record stored at %d is record %d", seq, claimedSeq)
	case claimedSeq == seq && selfConsistent(seq) && c.rep.Records > 0:
		return c.fail(seq-1, KindModified,
			"record %d no longer hashes to the prev_hash that record %d holds", seq-1, seq)
	case claimedSeq == seq && selfConsistent(seq):
		return c.fail(seq, KindModified, "record %d does not continue from the anchor's hash", seq)
	default:
		return c.fail(seq, KindModified, "record %d does not match its hash", seq)
	}
}

func (c *chain) accept(seq uint64, h [32]byte) {
	if c.rep.Records == 0 {
		c.rep.FirstSeq = seq
	}
	c.rep.Records++
	c.rep.LastSeq = seq
	if c.pending == 0 {
		c.pendingFrom = seq
	}
	c.pending++
	c.prev = h
	c.next = seq + 1
}

// checkpoint checks cp against the chain, which must have just verified record cp.Seq (or
// start right after it): a checkpoint of a record the chain has not reached says that
// records are missing, one of an earlier record is out of place.
func (c *chain) checkpoint(cp Checkpoint) *Problem {
	if cp.garbled {
		return c.fail(cp.Seq, KindMalformed, "the stored checkpoint of record %d is not a checkpoint of it (it does not decode, or names another record)", cp.Seq)
	}
	if len(c.keys) > 0 {
		if err := cp.VerifySignature(c.name, c.keys...); err != nil {
			return c.fail(cp.Seq, KindBadSignature, "%v", err)
		}
	}
	// A checkpoint vouches for the record it follows: one anywhere else would be counted
	// without ever being compared with the chain (a JSONL export is a file anyone can
	// rearrange).
	switch {
	case cp.Seq >= c.next:
		return c.fail(c.next, KindTruncated,
			"a checkpoint names record %d, but the records end at %d", cp.Seq, c.next-1)
	case cp.Seq+1 != c.next:
		return c.fail(cp.Seq, KindMalformed,
			"the checkpoint of record %d does not follow that record (it comes after record %d)", cp.Seq, c.next-1)
	case cp.Hash != hex.EncodeToString(c.prev[:]):
		return c.fail(cp.Seq, KindCheckpointMismatch,
			"the chain recomputed up to %d does not reach the checkpoint's hash %s: records up to %d were rewritten",
			cp.Seq, truncate(cp.Hash, 64), cp.Seq)
	}
	c.rep.Checkpoints++
	c.rep.CheckpointSeq = cp.Seq
	t := cp.Time
	c.rep.CheckpointTime = &t
	if c.rep.Signed {
		c.rep.Vouched += c.pending
		c.pending, c.runVouched = 0, true
	}
	return nil
}

// finish completes the report. Verified with keys, records that no signed checkpoint
// covers fail it, except the tail after the newest checkpoint of a run without gaps (a
// journal's newest records, not checkpointed yet, which the report names).
func (c *chain) finish() *Report {
	if c.rep.FirstBad == nil && c.rep.Signed {
		if !c.runVouched || c.rep.Vouched == 0 {
			// A checkpoint before all the records (of the anchor's record) covers none.
			c.strand()
		}
		if c.strandedFrom != 0 {
			hint := "an export or a backup proves its records only up to a signed checkpoint it holds; " +
				"a journal has none before its first checkpoint, which POST .../checkpoint writes"
			if c.rep.Partial {
				hint = "a filtered export proves a record only when the records from it up to a checkpoint come with it; " +
					"verify an unfiltered export to prove them"
			}
			c.fail(c.strandedFrom, KindUnvouched,
				"no signed checkpoint vouches for records %d to %d: whoever can write the file could have rewritten them with recomputed hashes (%s)",
				c.strandedFrom, c.strandedTo, hint)
		}
	}
	c.rep.OK = c.rep.FirstBad == nil
	if c.rep.Records > 0 {
		c.rep.LastHash = hex.EncodeToString(c.prev[:])
	}
	return &c.rep
}

// Verify recomputes the journal's hash chain from its anchor to its head, checks every
// checkpoint against it (and its signature, made by one of keys, when any is given) and
// names the first bad sequence number. It reads in short transactions; records appended
// meanwhile are not checked. A problem is reported in the Report, not as an error: errors
// mean verification could not run.
func (j *Journal) Verify(ctx context.Context, keys ...ed25519.PublicKey) (*Report, error) {
	j.pruneMu.RLock()
	defer j.pruneMu.RUnlock()
	return verifyDB(ctx, j.db, j.name, keys)
}

// snapshot is what verification and export read once, in their first transaction.
type snapshot struct {
	anchorSeq  uint64
	anchorPrev [32]byte
	head       uint64
	headHash   [32]byte
	lastRecord uint64 // newest record key (0: none)
	lastCP     uint64 // newest checkpoint key (0: none)
}

// span is the range of sequence numbers a read of q covers in s: from q's first (or the
// anchor of a pruned journal) to q's last (or the head as of s).
func (s snapshot) span(q Query) (from, to uint64) {
	from, to = max(q.FromSeq, s.anchorSeq), s.head
	if q.ToSeq != 0 && q.ToSeq < to {
		to = q.ToSeq
	}
	return from, to
}

// readEnds reads the journal's anchor, head and newest stored record from its bucket b.
func (s *snapshot) readEnds(b kv.Bucket) error {
	var ok1, ok2 bool
	s.anchorSeq, s.anchorPrev, ok1 = readAnchor(b)
	s.head, s.headHash, ok2 = readHead(b)
	if !ok1 || !ok2 {
		return fmt.Errorf("%w: head or anchor", ErrCorrupt)
	}
	if k, _ := b.Bucket(bucketRecords).Cursor().Last(); k != nil {
		s.lastRecord, _ = keySeq(k)
	}
	return nil
}

func readSnapshot(db kv.DB, name []byte) (s snapshot, err error) {
	err = db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, name)
		if err != nil {
			return err
		}
		if err := readableFormat(b); err != nil {
			return fmt.Errorf("%w; verify or export it with that version", err)
		}
		if err := s.readEnds(b); err != nil {
			return err
		}
		if k, _ := b.Bucket(bucketCheckpoints).Cursor().Last(); k != nil {
			s.lastCP, _ = keySeq(k)
		}
		return nil
	})
	return s, err
}

// verifyDB verifies journal name in db.
func verifyDB(ctx context.Context, db kv.DB, name []byte, keys []ed25519.PublicKey) (*Report, error) {
	s, err := readSnapshot(db, name)
	if err != nil {
		return nil, fmt.Errorf("verifying journal %s: %w", name, err)
	}
	c := newChain(string(name), keys, s.anchorSeq, s.anchorPrev)
	cpFrom := s.anchorSeq - 1
	for c.rep.FirstBad == nil && c.next <= s.head {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		more, err := verifyDBPage(db, name, c, s.head, cpFrom)
		if err != nil {
			return nil, fmt.Errorf("verifying journal %s: %w", name, err)
		}
		cpFrom = c.next
		if !more {
			break
		}
	}
	if c.rep.FirstBad == nil {
		checkEnd(c, s)
	}
	return c.finish(), nil
}

// verifyDBPage verifies up to verifyPage records starting at c.next in one read transaction,
// with the checkpoints from cpFrom up to the last record it reaches. more is false when the
// records end before head.
func verifyDBPage(db kv.DB, name []byte, c *chain, head, cpFrom uint64) (more bool, err error) {
	err = db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, name)
		if err != nil {
			return err
		}
		cps := readCheckpoints(b.Bucket(bucketCheckpoints), cpFrom, min(head, c.next+verifyPage-1))
		checkCheckpoints(c, &cps)
		cur := b.Bucket(bucketRecords).Cursor()
		n := 0
		k, v := cur.Seek(u64(c.next))
		for ; k != nil && n < verifyPage && c.rep.FirstBad == nil; k, v = cur.Next() {
			seq, ok := keySeq(k)
			if !ok || seq > head {
				return nil
			}
			if seq != c.next {
				c.fail(c.next, KindDeleted, "records %d to %d are missing", c.next, seq-1)
				return nil
			}
			h, raw, ok := splitValue(v)
			if !ok {
				c.fail(seq, KindModified, "the stored value of record %d is too short", seq)
				return nil
			}
			if c.record(seq, h, raw) != nil {
				return nil
			}
			checkCheckpoints(c, &cps)
			n++
		}
		more = k != nil && n == verifyPage
		return nil
	})
	return more, err
}

// checkCheckpoints checks the checkpoints the chain has reached, consuming them from cps.
// Checkpoints of sequence numbers the chain skipped (gaps are reported elsewhere) are
// dropped.
func checkCheckpoints(c *chain, cps *[]Checkpoint) {
	for len(*cps) > 0 && c.rep.FirstBad == nil {
		cp := (*cps)[0]
		if cp.Seq >= c.next {
			return
		}
		*cps = (*cps)[1:]
		c.checkpoint(cp)
	}
}

// readCheckpoints copies out the checkpoints with from <= seq <= to; one that is not the
// checkpoint of its key is garbled (damage that verification reports, not an error that
// stops it).
func readCheckpoints(cb kv.Bucket, from, to uint64) []Checkpoint {
	var out []Checkpoint
	cur := cb.Cursor()
	for k, v := cur.Seek(u64(from)); k != nil; k, v = cur.Next() {
		seq, ok := keySeq(k)
		if !ok || seq > to {
			break
		}
		out = append(out, decodeCheckpoint(seq, v))
	}
	return out
}

// decodeCheckpoint decodes the checkpoint stored under seq (garbled when it is not one).
func decodeCheckpoint(seq uint64, v []byte) Checkpoint {
	var cp Checkpoint
	if err := json.Unmarshal(v, &cp); err != nil || cp.Seq != seq {
		return Checkpoint{Seq: seq, garbled: true}
	}
	return cp
}

// checkEnd compares where the records ended with the head and the newest checkpoint.
func checkEnd(c *chain, s snapshot) {
	last := c.next - 1
	switch {
	case last < s.head:
		c.fail(last+1, KindTruncated, "the head names record %d but the records end at %d", s.head, last)
	case c.prev != s.headHash:
		c.fail(s.head, KindHeadMismatch, "the head's hash does not match record %d", s.head)
	case s.lastRecord > s.head:
		c.fail(s.head+1, KindHeadMismatch, "records %d to %d lie beyond the head", s.head+1, s.lastRecord)
	case s.lastCP > s.head:
		c.fail(s.head+1, KindTruncated,
			"the newest checkpoint names record %d but the records end at %d", s.lastCP, s.head)
	}
}

// keySeq decodes an 8-byte big-endian key.
func keySeq(k []byte) (uint64, bool) {
	if len(k) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

func errCorruptSeq(seq uint64) error { return fmt.Errorf("%w: record %d", ErrCorrupt, seq) }

// openFile opens a bbolt file (a backup) read-only, never waiting long for a lock: the live
// database is locked by the running gateway and must be read through its admin API instead.
func openFile(path string) (kv.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := kv.OpenBolt(path, kv.BoltOptions{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening %s read-only (a running gateway holds its live file: use a backup): %w", path, err)
	}
	return db, nil
}

// VerifyDB verifies journal name in an open store that no Journal of this process is
// appending to or pruning (a store being copied, a backup): what `store copy` checks its
// destination with.
func VerifyDB(ctx context.Context, db kv.DB, name string, keys ...ed25519.PublicKey) (*Report, error) {
	return verifyDB(ctx, db, []byte(name), keys)
}

// Head is a journal's newest record as its head key names it.
type Head struct {
	Name string
	// Seq and Hash (hex) are the newest record's (0 and "" for an empty journal).
	Seq  uint64
	Hash string
}

// Heads reads the head of every journal in tx, sorted by name.
func Heads(tx kv.Tx) ([]Head, error) {
	root := tx.Bucket(bucketRoot)
	if root == nil {
		return nil, nil
	}
	var names []string
	if err := root.ForEachBucket(func(k []byte) error {
		names = append(names, string(k))
		return nil
	}); err != nil {
		return nil, err
	}
	sort.Strings(names)
	heads := make([]Head, 0, len(names))
	for _, name := range names {
		b, err := journalBucket(tx, []byte(name))
		if err != nil {
			return nil, fmt.Errorf("journal %s: %w", name, err)
		}
		seq, h, err := headOf(b)
		if err != nil {
			return nil, fmt.Errorf("journal %s: %w", name, err)
		}
		hd := Head{Name: name, Seq: seq}
		if seq > 0 {
			hd.Hash = hex.EncodeToString(h[:])
		}
		heads = append(heads, hd)
	}
	return heads, nil
}

// Journals lists the journal names in db, sorted.
func Journals(db kv.DB) ([]string, error) {
	var names []string
	err := db.View(func(tx kv.Tx) error {
		root := tx.Bucket(bucketRoot)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	sort.Strings(names)
	return names, err
}

// fileJournal opens path and picks journal name, or the only journal when name is empty.
func fileJournal(path, name string) (kv.DB, []byte, error) {
	db, err := openFile(path)
	if err != nil {
		return nil, nil, err
	}
	if name == "" {
		names, err := Journals(db)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		switch len(names) {
		case 0:
			db.Close()
			return nil, nil, fmt.Errorf("%s: %w", path, ErrNoJournal)
		case 1:
			name = names[0]
		default:
			db.Close()
			return nil, nil, fmt.Errorf("%s holds journals %q: name one", path, names)
		}
	}
	return db, []byte(name), nil
}

// VerifyFileJournal verifies journal name (the only one when empty) in a bbolt file.
func VerifyFileJournal(ctx context.Context, path, name string, keys ...ed25519.PublicKey) (*Report, error) {
	db, jn, err := fileJournal(path, name)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return verifyDB(ctx, db, jn, keys)
}

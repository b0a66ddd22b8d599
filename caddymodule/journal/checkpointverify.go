package journal

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// Before it signs, a checkpoint verifies the records since the newest stored checkpoint:
// a signature vouches for every record it covers, so the gateway must not lend it to a
// chain it has not checked. The check starts from the newest checkpoint's seq and hash (or
// from the anchor that retention moved, when no checkpoint is kept past it) and reads in
// read transactions of at most verifyPage records, outside the write transaction the
// checkpoint is stored in.
//
// What it cannot see: records rewritten with every hash recomputed after the newest
// checkpoint that remains (the newer ones deleted) form a chain as sound as the real one.
// Nothing in the file tells them apart; only the copies of the deleted checkpoints in the
// log sink do. The start-up check therefore logs the records a new run inherits without a
// checkpoint (checkTailAtStart), for comparison with the log sink.

// ErrTailUnverified is what Checkpoint returns (wrapped in a *TailError) when the records
// since the newest checkpoint do not verify: nothing is signed.
var ErrTailUnverified = errors.New("journal: the records since the newest checkpoint do not verify; no checkpoint was written")

// TailError names the first bad record found between the newest checkpoint (From: the
// record it covers, 0 for none) and the head.
type TailError struct {
	Journal string
	From    uint64
	Problem Problem
}

func (e *TailError) Error() string {
	from := "the first kept record"
	if e.From > 0 {
		from = fmt.Sprintf("checkpoint %d", e.From)
	}
	return fmt.Sprintf("journal %s: refusing to sign a checkpoint: the records from %s to the head do not verify: %s",
		e.Journal, from, e.Problem.String())
}

func (e *TailError) Unwrap() error { return ErrTailUnverified }

// tailStart is where the check of the records since the newest checkpoint begins.
type tailStart struct {
	cpSeq uint64   // the newest checkpoint's record (0: none kept past the anchor)
	seq   uint64   // the first record to check
	prev  [32]byte // the hash it must continue from
}

// verifyTail checks the records since the newest checkpoint up to the head as of its first
// read transaction and returns that head. A chain that does not verify is a *TailError.
// The caller holds pruneMu shared.
func (j *Journal) verifyTail(ctx context.Context) (head uint64, headHash [32]byte, err error) {
	var s snapshot
	var st tailStart
	var bad *Problem
	err = j.db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, j.name)
		if err != nil {
			return err
		}
		if err := s.readEnds(b); err != nil {
			return err
		}
		st, bad = tailFrom(b, &s)
		return nil
	})
	if err != nil {
		return 0, headHash, fmt.Errorf("journal %s: reading the newest checkpoint: %w", j.opts.Name, err)
	}
	if bad == nil && s.head >= st.seq {
		c := newChain(j.opts.Name, nil, st.seq, st.prev)
		for c.rep.FirstBad == nil && c.next <= s.head {
			if err := ctx.Err(); err != nil {
				return 0, headHash, err
			}
			more, err := verifyDBPage(j.db, j.name, c, s.head, c.next)
			if err != nil {
				return 0, headHash, fmt.Errorf("journal %s: verifying the records since checkpoint %d: %w", j.opts.Name, st.cpSeq, err)
			}
			if !more {
				break
			}
		}
		if c.rep.FirstBad == nil {
			checkEnd(c, s)
		}
		bad = c.rep.FirstBad
	}
	if bad != nil {
		return 0, headHash, &TailError{Journal: j.opts.Name, From: st.cpSeq, Problem: *bad}
	}
	return s.head, s.headHash, nil
}

// tailFrom finds where the check starts: right after the newest checkpoint, whose hash must
// be the stored hash of its record (or the anchor's, for the checkpoint retention keeps of
// the last record it removed). s.lastCP is set for checkEnd.
func tailFrom(b kv.Bucket, s *snapshot) (tailStart, *Problem) {
	start := tailStart{seq: s.anchorSeq, prev: s.anchorPrev}
	k, v := b.Bucket(bucketCheckpoints).Cursor().Last()
	if k == nil {
		return start, nil
	}
	seq, ok := keySeq(k)
	if !ok {
		return start, &Problem{Kind: KindMalformed, Detail: fmt.Sprintf("a checkpoint key is %d bytes, not 8", len(k))}
	}
	s.lastCP = seq
	if seq+1 < s.anchorSeq || seq > s.head {
		// Older than what retention keeps (it had no checkpoint since), or beyond the
		// head, which checkEnd reports.
		return start, nil
	}
	start.cpSeq = seq
	cp := decodeCheckpoint(seq, v)
	h, err := decodeHash(cp.Hash)
	if cp.garbled || err != nil {
		return start, &Problem{Seq: seq, Kind: KindMalformed, Detail: fmt.Sprintf("the newest checkpoint, of record %d, does not decode or names another record", seq)}
	}
	var want [32]byte
	if seq+1 == s.anchorSeq {
		want = s.anchorPrev
	} else {
		stored := b.Bucket(bucketRecords).Get(u64(seq))
		if stored == nil {
			return start, &Problem{Seq: seq, Kind: KindDeleted, Detail: fmt.Sprintf("record %d, which the newest checkpoint covers, is missing", seq)}
		}
		if want, _, ok = splitValue(stored); !ok {
			return start, &Problem{Seq: seq, Kind: KindModified, Detail: fmt.Sprintf("the stored value of record %d is too short", seq)}
		}
	}
	if want != h {
		return start, &Problem{Seq: seq, Kind: KindCheckpointMismatch, Detail: fmt.Sprintf(
			"the stored hash of record %d is not the hash its checkpoint holds (%s): records up to %d were rewritten", seq, truncate(cp.Hash, 64), seq)}
	}
	start.seq, start.prev = seq+1, h
	return start, nil
}

// checkTailAtStart runs when this gateway takes the checkpoint job: it reports at once a
// chain since the newest checkpoint that was edited while no gateway ran, and names the
// records the run inherits that no checkpoint covers yet (for comparison with the log sink:
// a checkpoint there newer than the newest one kept means checkpoints were deleted).
func (j *Journal) checkTailAtStart(ctx context.Context) {
	j.pruneMu.RLock()
	head, _, err := j.verifyTail(ctx)
	j.pruneMu.RUnlock()
	var te *TailError
	switch {
	case errors.As(err, &te):
		j.logRefusal(te)
		return
	case err != nil:
		if ctx.Err() == nil {
			j.log.Error("verifying the journal records since the newest checkpoint", zap.Error(err))
		}
		return
	}
	info, err := j.Info()
	if err != nil || head == 0 {
		return
	}
	var cpSeq uint64
	fields := []zap.Field{zap.Uint64("head", head)}
	if cp := info.LatestCheckpoint; cp != nil {
		cpSeq = cp.Seq
		fields = append(fields, zap.Uint64("checkpoint_seq", cp.Seq), zap.String("checkpoint_hash", cp.Hash), zap.Time("checkpoint_time", cp.Time))
	}
	if cpSeq < head {
		j.log.Info("journal records since the newest checkpoint verify; the next checkpoint vouches for them "+
			"(a checkpoint in the log sink newer than checkpoint_seq means checkpoints were deleted)",
			append(fields, zap.Uint64("from_seq", max(cpSeq+1, info.FirstSeq)))...)
	}
}

// logRefusal logs a checkpoint refused because the chain since the newest checkpoint does
// not verify, naming the first bad record.
func (j *Journal) logRefusal(te *TailError) {
	j.log.Error("refusing to sign journal checkpoints: the records since the newest checkpoint do not verify "+
		"(the journal keeps recording; restore the store from a backup, see README \"Audit journal\")",
		zap.Uint64("checkpoint_seq", te.From), zap.Uint64("first_bad_seq", te.Problem.Seq),
		zap.String("kind", te.Problem.Kind), zap.String("detail", te.Problem.Detail))
}

// hexHash is h in hex.
func hexHash(h [32]byte) string { return hex.EncodeToString(h[:]) }

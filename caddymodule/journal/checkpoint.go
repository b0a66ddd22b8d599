package journal

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/fleet"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// Checkpoint commits to the chain up to Seq: Hash is hash_Seq. When the journal has a
// signing key, Signature is the hex Ed25519 signature of SignedBytes.
type Checkpoint struct {
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id,omitempty"`
	Signature string    `json:"signature,omitempty"`

	// garbled marks a stored checkpoint that is not the checkpoint of its key (its value
	// does not decode, or names another record): readCheckpoints keeps it, with Seq its
	// key, so that verification reports it where the chain reaches it and an export
	// carries it.
	garbled bool
}

// checkpointDomain separates checkpoint signatures from any other use of the key.
const checkpointDomain = "scimgate-journal-checkpoint-v1\n"

// SignedBytes is the byte string a checkpoint of journal name signs:
//
//	"scimgate-journal-checkpoint-v1\n"
//	uint32 BE len(name)  || name
//	uint64 BE seq
//	32 bytes             hash (raw, not hex)
//	int64 BE             time in Unix nanoseconds
//	uint32 BE len(key id) || key id
//
// Every variable-length field is length-prefixed, so no two checkpoints share a byte string.
func (c Checkpoint) SignedBytes(name string) ([]byte, error) {
	h, err := decodeHash(c.Hash)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(checkpointDomain)+4+len(name)+8+32+8+4+len(c.KeyID))
	b = append(b, checkpointDomain...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint64(b, c.Seq)
	b = append(b, h[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.KeyID)))
	b = append(b, c.KeyID...)
	return b, nil
}

// VerifySignature checks c's signature with the trusted public keys: it verifies when one
// of them made it (a journal whose signing key was rotated has checkpoints of each key).
// An unsigned checkpoint fails; nil keys are ignored, and without any key it fails.
func (c Checkpoint) VerifySignature(name string, keys ...ed25519.PublicKey) error {
	if c.Signature == "" {
		return fmt.Errorf("checkpoint %d is unsigned", c.Seq)
	}
	sig, err := hex.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("checkpoint %d: malformed signature", c.Seq)
	}
	keys = trusted(keys)
	if len(keys) == 0 {
		return fmt.Errorf("checkpoint %d: no public key to verify it with", c.Seq)
	}
	for _, pub := range keys {
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
		}
	}
	msg, err := c.SignedBytes(name)
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", c.Seq, err)
	}
	for _, pub := range keys {
		if ed25519.Verify(pub, msg, sig) {
			return nil
		}
	}
	if len(keys) == 1 {
		return fmt.Errorf("checkpoint %d (key id %q): signature does not verify with the given public key", c.Seq, c.KeyID)
	}
	return fmt.Errorf("checkpoint %d (key id %q): signature does not verify with any of the %d given public keys", c.Seq, c.KeyID, len(keys))
}

// trusted is keys without the nil ones (a caller's "no key").
func trusted(keys []ed25519.PublicKey) []ed25519.PublicKey {
	if !slices.ContainsFunc(keys, func(k ed25519.PublicKey) bool { return k == nil }) {
		return keys
	}
	return slices.DeleteFunc(slices.Clone(keys), func(k ed25519.PublicKey) bool { return k == nil })
}

// decodeHash parses a 64-digit hex hash.
func decodeHash(s string) (h [32]byte, err error) {
	if len(s) != 64 {
		return h, fmt.Errorf("hash %q is not 64 hex digits", truncate(s, 80))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %q is not hex", truncate(s, 80))
	}
	return h, nil
}

// truncate bounds client- or file-supplied strings quoted in errors.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Checkpoint writes a checkpoint of the head (signed when the journal has a key) in its own
// write transaction and returns it. It first verifies the records since the newest stored
// checkpoint, in read transactions of their own (verifyTail): when they do not verify it
// writes nothing and returns a *TailError (ErrTailUnverified) naming the first bad record.
// The checkpoint covers the head as of that check (records appended meanwhile wait for the
// next one). When the newest checkpoint already covers it, it is returned unchanged. An
// empty journal returns ErrEmpty.
func (j *Journal) Checkpoint() (*Checkpoint, error) {
	if j.closed.Load() {
		return nil, ErrClosed
	}
	return j.checkpoint()
}

// checkpoint is Checkpoint without the check that the journal is open: Close's last
// checkpoint (see checkpoints) runs after the journal is marked closed.
func (j *Journal) checkpoint() (*Checkpoint, error) {
	// Shared: retention does not remove the records being checked, or move the anchor,
	// until the checkpoint is stored.
	j.pruneMu.RLock()
	defer j.pruneMu.RUnlock()
	seq, h, err := j.verifyTail(context.Background())
	if err != nil {
		return nil, err
	}
	if seq == 0 {
		return nil, ErrEmpty
	}
	var cp Checkpoint
	var created bool
	err = j.db.Batch(func(tx kv.Tx) error {
		var err error
		cp, created, err = j.checkpointTx(tx, time.Now(), seq, h)
		return err
	})
	if err != nil {
		return nil, err
	}
	if created {
		j.log.Info("journal checkpoint", zap.Uint64("seq", cp.Seq), zap.String("hash", cp.Hash),
			zap.Time("time", cp.Time), zap.String("key_id", cp.KeyID), zap.String("signature", cp.Signature))
		if j.opts.OnCheckpoint != nil {
			j.opts.OnCheckpoint(cp)
		}
	}
	return &cp, nil
}

// checkpointTx stores in tx the checkpoint of record seq, whose verified hash is h. It is
// rerun safely by db.Batch: the key is the sequence number, so a rerun overwrites its own
// write. A newest checkpoint at or past seq (written meanwhile) is returned instead.
func (j *Journal) checkpointTx(tx kv.Tx, now time.Time, seq uint64, h [32]byte) (cp Checkpoint, created bool, err error) {
	b, err := journalBucket(tx, j.name)
	if err != nil {
		return cp, false, err
	}
	cb := b.Bucket(bucketCheckpoints)
	if k, v := cb.Cursor().Last(); k != nil {
		if last, ok := keySeq(k); ok && last >= seq {
			if err := json.Unmarshal(v, &cp); err != nil {
				return cp, false, errCorruptSeq(last)
			}
			return cp, false, nil
		}
	}
	// What was verified is still what is stored (on a shared store, another gateway's
	// retention or a writer of the store could have changed it since).
	head, headHash, err := headOf(b)
	if err != nil {
		return cp, false, err
	}
	stored := headHash
	if head != seq {
		v := b.Bucket(bucketRecords).Get(u64(seq))
		var ok bool
		if stored, _, ok = splitValue(v); !ok {
			return cp, false, fmt.Errorf("journal %s: record %d changed while it was verified for a checkpoint", j.opts.Name, seq)
		}
	}
	if stored != h {
		return cp, false, fmt.Errorf("journal %s: record %d changed while it was verified for a checkpoint", j.opts.Name, seq)
	}
	cp = Checkpoint{Seq: seq, Hash: hexHash(h), Time: now.UTC(), KeyID: j.opts.KeyID}
	if j.opts.SigningKey != nil {
		msg, err := cp.SignedBytes(j.opts.Name)
		if err != nil {
			return cp, false, err
		}
		cp.Signature = hex.EncodeToString(ed25519.Sign(j.opts.SigningKey, msg))
	}
	v, err := json.Marshal(cp)
	if err != nil {
		return cp, false, err
	}
	if err := cb.Put(u64(seq), v); err != nil {
		return cp, false, fmt.Errorf("storing checkpoint %d: %w", seq, err)
	}
	return cp, true, nil
}

// maintenanceInterval is how often retention runs when there is no checkpoint timer.
const maintenanceInterval = 10 * time.Minute

// startBackground starts the publisher and, each as a fleet job that one gateway of those
// sharing the store runs at a time (Options.Elector), the checkpoints and the retention.
func (j *Journal) startBackground() {
	el := j.opts.Elector
	if el == nil {
		el = fleet.NewSolo()
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.cancelJobs = cancel
	j.done.Add(1)
	go func() {
		defer j.done.Done()
		j.pub.run(j.stop)
	}()
	if j.db.Shared() {
		// Records other gateways append wake no commit handler here.
		j.done.Add(1)
		go func() {
			defer j.done.Done()
			j.watchCommits()
		}()
	}
	jobs := map[string]func(context.Context){}
	if j.opts.CheckpointInterval > 0 || j.opts.CheckpointEvery > 0 {
		jobs["checkpoint"] = j.checkpoints
	}
	if j.opts.MaxAge > 0 || j.opts.MaxRecords > 0 || j.opts.MaxBytes > 0 {
		jobs["retention"] = j.retain
	}
	for name, work := range jobs {
		job := "journal/" + j.opts.Name + "/" + name
		j.done.Add(1)
		go func() {
			defer j.done.Done()
			if err := el.Run(ctx, job, work); err != nil && ctx.Err() == nil {
				j.log.Error("a journal job stopped", zap.String("job", job), zap.Error(err))
			}
		}()
	}
}

// watchCommits wakes the publisher after every commit to the store, by any gateway.
func (j *Journal) watchCommits() {
	for {
		changed := j.db.Changed()
		select {
		case <-j.stop:
			return
		case <-changed:
			j.pub.wake()
		}
	}
}

// checkpoints writes checkpoints while this gateway holds the job: every CheckpointEvery
// records and on the CheckpointInterval timer. On a shared store the records of every
// gateway count: it looks at the head after each commit instead of waiting for its own.
func (j *Journal) checkpoints(ctx context.Context) {
	var tick <-chan time.Time
	if interval := j.opts.CheckpointInterval; interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	every := j.opts.CheckpointEvery
	shared := j.db.Shared() && every > 0
	j.checkTailAtStart(ctx)
	var seen uint64 // the head when last looked (shared)
	var changed <-chan struct{}
	if shared {
		// The wait is taken before the head is read, here and after each wake-up: a commit
		// made after the read (while a checkpoint runs, say) then wakes the loop again
		// instead of going unseen until the next one.
		changed = j.db.Changed()
		seen, _ = j.headSeq()
	}
	if j.needsFirstCheckpoint() {
		if shared {
			j.backgroundCheckpoint()
		} else {
			// Through the request channel, where the first record's own request (committed)
			// coalesces with this one: one checkpoint, not a second at a later head.
			select {
			case j.checkpointReq <- struct{}{}:
			default:
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			j.closingCheckpoint()
			return
		case <-j.checkpointReq:
			if !shared {
				j.backgroundCheckpoint()
			}
		case <-changed:
			changed = j.db.Changed()
			head, err := j.headSeq()
			if err != nil {
				j.log.Error("reading the journal head", zap.Error(err))
				continue
			}
			if head/every > seen/every {
				j.backgroundCheckpoint()
			} else if seen == 0 && head > 0 && j.needsFirstCheckpoint() {
				j.backgroundCheckpoint()
			}
			seen = head
		case <-tick:
			j.backgroundCheckpoint()
		}
	}
}

// headSeq reads the head's sequence number.
func (j *Journal) headSeq() (seq uint64, err error) {
	err = j.db.View(func(tx kv.Tx) error {
		seq, _, err = j.Head(tx)
		return err
	})
	return seq, err
}

// retain runs retention while this gateway holds the job: on the CheckpointInterval timer,
// or every maintenanceInterval without one.
func (j *Journal) retain(ctx context.Context) {
	every := j.opts.CheckpointInterval
	if every <= 0 {
		every = maintenanceInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			j.backgroundPrune(ctx, now)
		}
	}
}

// needsFirstCheckpoint reports whether a signed journal has records but no checkpoint (a
// new journal, or signing just turned on): with a public key, verify refuses records no
// signed checkpoint covers, so such a journal is checkpointed at once rather than fail
// verification until its first checkpoint_every or checkpoint_interval (see committed).
func (j *Journal) needsFirstCheckpoint() bool {
	if j.opts.SigningKey == nil {
		return false
	}
	needs := false
	if err := j.db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, j.name)
		if err != nil {
			return err
		}
		seq, _, err := headOf(b)
		if err != nil {
			return err
		}
		k, _ := b.Bucket(bucketCheckpoints).Cursor().Last()
		needs = seq > 0 && k == nil
		return nil
	}); err != nil {
		j.log.Error("reading the journal's checkpoints", zap.Error(err))
	}
	return needs
}

// closingCheckpoint writes, when the journal is being closed (not when the job was lost to
// another gateway), a checkpoint of the head if the newest one does not cover it: the
// records since the last checkpoint_every or checkpoint_interval are vouched for, signed
// when the journal has a key, while the gateway is down and its store file may be copied or
// backed up. A journal whose checkpoints are off (neither setting) has no such job and
// writes none.
func (j *Journal) closingCheckpoint() {
	select {
	case <-j.stop:
	default:
		return // the job was lost: the next holder checkpoints
	}
	cp, err := j.checkpoint()
	var te *TailError
	switch {
	case errors.As(err, &te):
		j.logRefusal(te)
	case err != nil && !errors.Is(err, ErrEmpty):
		j.log.Error("writing the journal's checkpoint at close", zap.Error(err))
	case err == nil:
		j.log.Info("journal closed at a checkpoint", zap.Uint64("seq", cp.Seq), zap.String("hash", cp.Hash))
	}
}

func (j *Journal) backgroundCheckpoint() {
	_, err := j.Checkpoint()
	var te *TailError
	switch {
	case errors.As(err, &te):
		j.logRefusal(te)
	case err != nil && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrClosed):
		j.log.Error("writing journal checkpoint", zap.Error(err))
	}
}

func (j *Journal) backgroundPrune(ctx context.Context, now time.Time) {
	n, err := j.prune(ctx, now, false)
	if err != nil && ctx.Err() != nil {
		return // the job was lost or the journal closes: the next holder goes on
	}
	if err != nil {
		j.log.Error("pruning journal", zap.Error(err))
		return
	}
	if n > 0 {
		j.log.Info("journal pruned", zap.Uint64("removed", n))
	}
}

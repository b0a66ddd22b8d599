package journal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/fleet"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// FormatVersion is the version of the record format (Record.Version, "v" on the wire) and of
// the storage layout. A reader refuses a journal written with a newer layout.
const FormatVersion = 1

// Record is one journal entry. The JSON tags are the wire format: the stored bytes, the JSONL
// export and the live stream all carry exactly this object (see doc.go).
type Record struct {
	Version   int       `json:"v"`
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id,omitempty"`
	// Part is set on the records of one part of a request the gateway wrote in several
	// transactions (a member change larger than one transaction holds, see package
	// provision): the request_id joins the parts, Part says which one this is.
	Part   *Part  `json:"part,omitempty"`
	Client string `json:"client,omitempty"`
	Target string `json:"target,omitempty"`
	// Gateway names, in a fleet, the gateway that appended the record (Options.Gateway:
	// its elector's id, host:pid by default). Empty on a store of one gateway, so that its
	// records are as they always were. Optional like the fields around it: a record
	// without it hashes and verifies as before, whatever version wrote it.
	Gateway      string         `json:"gateway,omitempty"`
	Action       change.Action  `json:"action"`
	ResourceType string         `json:"resource_type,omitempty"`
	SCIMID       string         `json:"scim_id,omitempty"`
	NativeID     string         `json:"native_id,omitempty"`
	Subject      string         `json:"subject,omitempty"`
	Events       []change.Event `json:"events,omitempty"`
	Outcome      change.Outcome `json:"outcome"`
	Status       int            `json:"status,omitempty"`
	Changes      []Change       `json:"changes,omitempty"`
	FilterHash   string         `json:"filter_hash,omitempty"`
	Decision     *Decision      `json:"decision,omitempty"`
	Backend      *BackendCall   `json:"backend,omitempty"`
	// Calls are every native call the change made, in order (a lookup, the event's calls,
	// catch-up memberships); Backend is the last of them, the one that decided the outcome.
	Calls    []BackendCall `json:"calls,omitempty"`
	Error    string        `json:"error,omitempty"`
	PrevHash string        `json:"prev_hash"`

	// Owner names, on an intent of a gateway in a fleet, the gateway that makes its calls
	// (its etcd lease): while that gateway lives, others leave the intent alone. It is kept
	// in the open-intent index, not in the record (neither hashed nor exported), and read
	// back only by the methods that list open intents.
	Owner string `json:"-"`
}

// Part names one part of a request applied in several parts: Index from 1 to Count. Each
// part has its own intent (when the app is called) and its own outcome.
type Part struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// Change is one changed attribute. Value is the new value (absent for a removal); a redacted
// or oversized value is dropped and flagged instead.
type Change struct {
	Path     string          `json:"path"`
	Op       string          `json:"op,omitempty"`
	Value    json.RawMessage `json:"value,omitempty"`
	Redacted bool            `json:"redacted,omitempty"`
	// Truncated is set when the value was dropped because the record would exceed
	// MaxRecordBytes.
	Truncated bool `json:"truncated,omitempty"`
}

// Decision is what the policy decided for the request.
type Decision struct {
	Allow             bool     `json:"allow"`
	Skip              bool     `json:"skip,omitempty"`
	Reasons           []string `json:"reasons,omitempty"`
	DroppedAttributes []string `json:"dropped_attributes,omitempty"`
	DroppedMembers    []string `json:"dropped_members,omitempty"`
	// Deactivate is set when the policy sent the app a deactivation instead of the change
	// (a user leaving scope): a deprovisioning, which the mass-deprovision brake counts.
	Deactivate bool `json:"deactivate,omitempty"`
	// PolicyHash is the content hash of the policy that decided (its Rego and data), so
	// that an auditor can tell which policy version decided a change.
	PolicyHash string `json:"policy_hash,omitempty"`
}

// BackendCall is the native call made to the legacy application. URL must carry no secrets.
type BackendCall struct {
	Method     string `json:"method"`
	URL        string `json:"url"`
	Status     int    `json:"status,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Attempts   int    `json:"attempts,omitempty"`
	// Error says how the call failed: the class (refused, timeout, status, unproven, ...)
	// and, for an answer that proved nothing, what came back (its media type and size,
	// never its content).
	Error string `json:"error,omitempty"`
}

// Entry is a committed record as stored: Raw is the exact stored record bytes (the bytes the
// hash covers) and Hash is hash_seq. Entries handed to subscribers are shared: do not modify.
type Entry struct {
	Record Record
	Raw    []byte
	Hash   [32]byte
}

// Options configure a Journal.
type Options struct {
	// Name identifies the journal inside the bbolt file (listing, export, admin routes).
	// Required: 1 to 64 of [A-Za-z0-9._-].
	Name string
	// Redact lists attribute paths whose values are never stored (case-insensitive, URN
	// prefix ignored, sub-paths included). "password" is always redacted.
	Redact []string
	// CheckpointEvery writes a checkpoint every this many records (0 = off).
	CheckpointEvery uint64
	// CheckpointInterval writes a checkpoint this often when records were added since the
	// last one (0 = off). The same timer runs retention.
	CheckpointInterval time.Duration
	// SigningKey signs checkpoints. Nil writes unsigned checkpoints, which only prove that the
	// chain was intact when they were written to someone who kept a copy (the Caddy log):
	// anyone with write access to the file can rewrite the chain and its unsigned checkpoints.
	SigningKey ed25519.PrivateKey
	// KeyID names SigningKey in each checkpoint, so verifiers can pick the public key.
	KeyID string
	// OnCheckpoint is called (outside any transaction) after each new checkpoint commits.
	OnCheckpoint func(Checkpoint)
	// MaxAge removes records older than this (0 = keep).
	MaxAge time.Duration
	// MaxRecords keeps at most this many records (0 = keep).
	MaxRecords uint64
	// MaxBytes keeps the stored records (their JSON and hashes) within this many bytes
	// (0 = keep). The file itself does not shrink: bbolt reuses the freed pages.
	MaxBytes uint64
	// Logger receives background errors (checkpoint and retention runs). Nil = no logging.
	Logger *zap.Logger
	// Elector elects the gateway that writes the checkpoints and runs the retention when
	// several share the store (jobs "journal/<name>/checkpoint" and ".../retention"). Nil:
	// the store is this process's alone (fleet.Solo).
	Elector fleet.Elector
	// Gateway, when set, names this gateway in every record it appends that names none
	// (Record.Gateway): set for a store that a fleet shares (fleet.Name), empty otherwise.
	Gateway string
}

// appendFillPercent is how full bbolt fills a records page before splitting it. Records are
// appended in key order, so the default (half full) would waste half of every page.
const appendFillPercent = 0.95

// MaxRecordBytes bounds one stored record. A record whose change values would make it larger
// keeps its change paths but drops the values (Change.Truncated).
const MaxRecordBytes = 1 << 20

// Errors.
var (
	ErrClosed       = errors.New("journal: closed")
	ErrEmpty        = errors.New("journal: no records")
	ErrNoJournal    = errors.New("journal: no such journal in the file")
	ErrCorrupt      = errors.New("journal: corrupt value")
	ErrBadName      = errors.New("journal: invalid name")
	ErrReadOnlyTx   = errors.New("journal: Append needs a writable transaction")
	ErrSlowConsumer = errors.New("journal: subscriber dropped: it did not keep up")
)

// Storage layout (see doc.go).
var (
	bucketRoot        = []byte("journal")
	bucketRecords     = []byte("records")
	bucketCheckpoints = []byte("checkpoints")
	keyFormat         = []byte("format")
	keySalt           = []byte("salt")
	keyHead           = []byte("head")
	keyAnchor         = []byte("anchor")
	keyBytes          = []byte("bytes")
)

// Journal is one named, hash-chained journal in a bbolt file. It is safe for concurrent use.
type Journal struct {
	db     kv.DB
	opts   Options
	name   []byte
	salt   []byte
	redact []string
	log    *zap.Logger

	// pruneMu keeps retention from deleting records under a running Verify or Export
	// (readers take it shared).
	pruneMu sync.RWMutex

	pub publisher

	checkpointReq chan struct{}
	stop          chan struct{}
	cancelJobs    context.CancelFunc // ends the checkpoint and retention jobs
	done          sync.WaitGroup
	closed        atomic.Bool
}

// Open opens (creating if needed) the journal opts.Name in db: its buckets, its random salt
// for HashFilter, and its background work (checkpoint timer, retention, live stream).
func Open(db kv.DB, opts Options) (*Journal, error) {
	if err := validName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	j := &Journal{
		db:            db,
		opts:          opts,
		name:          []byte(opts.Name),
		redact:        redactPaths(opts.Redact),
		log:           opts.Logger.With(zap.String("journal", opts.Name)),
		checkpointReq: make(chan struct{}, 1),
		stop:          make(chan struct{}),
	}
	var head uint64
	err := db.Update(func(tx kv.Tx) error {
		b, err := j.initBuckets(tx)
		if err != nil {
			return err
		}
		head, _, err = headOf(b)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening journal %q: %w", opts.Name, err)
	}
	j.pub.init(j, head)
	j.startBackground()
	return j, nil
}

// validName keeps journal names safe in URLs, file names and log lines.
func validName(name string) error {
	if len(name) == 0 || len(name) > 64 {
		return fmt.Errorf("%w %q: need 1 to 64 characters", ErrBadName, name)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w %q: only letters, digits, '.', '_' and '-' are allowed", ErrBadName, name)
		}
	}
	return nil
}

// initBuckets creates the journal's buckets and salt, checks the format version and loads the
// salt.
func (j *Journal) initBuckets(tx kv.Tx) (kv.Bucket, error) {
	root, err := tx.CreateBucketIfNotExists(bucketRoot)
	if err != nil {
		return nil, err
	}
	b, err := root.CreateBucketIfNotExists(j.name)
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketRecords, bucketCheckpoints} {
		if _, err := b.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	if err := checkFormat(b); err != nil {
		return nil, err
	}
	if b.Get(keyBytes) == nil { // a journal from before size accounting: count once
		var total uint64
		if err := b.Bucket(bucketRecords).ForEach(func(_, v []byte) error { total += uint64(len(v)); return nil }); err != nil {
			return nil, err
		}
		if err := b.Put(keyBytes, u64(total)); err != nil {
			return nil, err
		}
	}
	if err := initOpenIndex(b); err != nil {
		return nil, err
	}
	salt := b.Get(keySalt)
	if salt == nil {
		salt = make([]byte, 32)
		if _, err := rand.Read(salt); err != nil {
			return nil, fmt.Errorf("generating salt: %w", err)
		}
		if err := b.Put(keySalt, salt); err != nil {
			return nil, err
		}
	}
	j.salt = bytes.Clone(salt)
	return b, nil
}

// checkFormat writes the layout version into a new journal and refuses a newer one.
func checkFormat(b kv.Bucket) error {
	if b.Get(keyFormat) == nil {
		return b.Put(keyFormat, u64(FormatVersion))
	}
	if err := readableFormat(b); err != nil {
		return fmt.Errorf("%w; run that version, or go on with this one from the backup taken before the upgrade", err)
	}
	return nil
}

// readableFormat refuses a journal whose stored format is newer than this binary's: its
// records may follow rules this binary does not know, so it can neither append to them nor
// vouch for them (verify) nor label them as its own format (export). A journal without the
// key (none written yet) is readable.
func readableFormat(b kv.Bucket) error {
	v := b.Get(keyFormat)
	if v == nil {
		return nil
	}
	if len(v) != 8 {
		return fmt.Errorf("%w: format key", ErrCorrupt)
	}
	if got := binary.BigEndian.Uint64(v); got > FormatVersion {
		return fmt.Errorf("journal format %d is newer than this binary's %d: a newer scimgate wrote it", got, FormatVersion)
	}
	return nil
}

// Close stops the background work and ends all subscriptions. It does not close the db.
func (j *Journal) Close() error {
	if j.closed.Swap(true) {
		return nil
	}
	close(j.stop)
	j.cancelJobs()
	j.done.Wait()
	j.pub.closeAll()
	return nil
}

// storedBytes is the size of the stored records (hash and JSON), kept by Append and Prune.
func storedBytes(b kv.Bucket) uint64 {
	v := b.Get(keyBytes)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// Name is the journal's name.
func (j *Journal) Name() string { return j.opts.Name }

// DB is the bbolt database the journal lives in.
func (j *Journal) DB() kv.DB { return j.db }

// journalBucket returns the journal's bucket in tx, or ErrNoJournal.
func journalBucket(tx kv.Tx, name []byte) (kv.Bucket, error) {
	root := tx.Bucket(bucketRoot)
	if root == nil {
		return nil, ErrNoJournal
	}
	b := root.Bucket(name)
	if b == nil || b.Bucket(bucketRecords) == nil || b.Bucket(bucketCheckpoints) == nil {
		return nil, ErrNoJournal
	}
	return b, nil
}

// Append adds r to the journal inside the caller's write transaction, so the record commits
// or rolls back with the change it describes. It is Prepare and AppendPrepared in one; r
// then holds the Version, Seq, PrevHash and Time it was stored with.
func (j *Journal) Append(tx kv.Tx, r *Record) error {
	p, err := j.Prepare(r)
	if err != nil {
		return err
	}
	seq, prev, at, err := j.appendPrepared(tx, p)
	if err != nil {
		return err
	}
	r.Seq, r.PrevHash = seq, hex.EncodeToString(prev[:])
	if p.stamp {
		r.Time = at
	}
	return nil
}

// Prepared is a record encoded ahead of its transaction: everything but its sequence number,
// previous hash and (when the caller left it zero) time, which only the transaction knows.
// Encoding is most of a record's cost, and the write transaction is shared by every
// concurrent writer (group commit), so the gateway encodes outside it. A Prepared is not
// changed by AppendPrepared and may be appended again when its transaction is rerun.
type Prepared struct {
	raw   []byte   // as encoded: seq 0, zero prev_hash, zero time when stamp
	stamp bool     // the time is taken when the record is appended
	mark  openMark // what the record does to the open-intent index
}

// Encoded layout of the placeholders Prepare writes and AppendPrepared fills in. Record's
// field order puts v, seq and time first and prev_hash last; json.Marshal writes fields in
// that order, uint64 as plain digits and a hex string without escapes.
var (
	preparedHead  = []byte(`{"v":` + strconv.Itoa(FormatVersion) + `,"seq":0,"time":`)
	zeroTimeJSON  = []byte(`"0001-01-01T00:00:00Z"`)
	zeroPrevHash  = strings.Repeat("0", 2*sha256.Size)
	preparedTail  = []byte(`"prev_hash":"` + zeroPrevHash + `"}`)
	seqDigitsAt   = len(`{"v":` + strconv.Itoa(FormatVersion) + `,"seq":`)
	maxSpliceGrow = 20 + len(`"2006-01-02T15:04:05.999999999-07:00"`) // digits of a uint64, a time
)

// Prepare encodes r for AppendPrepared: it sets r's Version, makes its time UTC and redacts
// its Changes (and their redacted values from its Error and reasons), as Append does. r is not used afterwards.
func (j *Journal) Prepare(r *Record) (*Prepared, error) {
	r.Version = FormatVersion
	r.Seq = 0
	if r.Gateway == "" {
		r.Gateway = j.opts.Gateway
	}
	r.PrevHash = zeroPrevHash
	stamp := r.Time.IsZero()
	r.Time = r.Time.UTC()
	scrubRecord(r, j.redact)
	r.Changes = redactChanges(r.Changes, j.redact)
	raw, err := marshalRecord(r, maxSpliceGrow)
	if err != nil {
		return nil, fmt.Errorf("journal %s: encoding a record: %w", j.opts.Name, err)
	}
	if !bytes.HasPrefix(raw, preparedHead[:seqDigitsAt+1]) || !bytes.HasSuffix(raw, preparedTail) ||
		(stamp && !bytes.HasPrefix(raw, preparedHead)) || (stamp && !bytes.HasPrefix(raw[len(preparedHead):], zeroTimeJSON)) {
		return nil, fmt.Errorf("journal %s: a record's encoding does not have the expected layout", j.opts.Name)
	}
	return &Prepared{raw: raw, stamp: stamp, mark: markOf(r)}, nil
}

// encode appends to out p's stored bytes for record seq after prev, stamped at now when p
// takes the append time.
func (p *Prepared) encode(out []byte, seq uint64, prev [32]byte, now time.Time) ([]byte, error) {
	raw := p.raw
	out = append(out, raw[:seqDigitsAt]...)
	out = strconv.AppendUint(out, seq, 10)
	rest := raw[seqDigitsAt+1 : len(raw)-len(preparedTail)]
	if p.stamp {
		out = append(out, `,"time":`...)
		t, err := now.UTC().MarshalJSON()
		if err != nil {
			return nil, err
		}
		out = append(out, t...)
		rest = rest[len(preparedHead)-seqDigitsAt-1+len(zeroTimeJSON):]
	}
	out = append(out, rest...)
	out = append(out, `"prev_hash":"`...)
	out = hex.AppendEncode(out, prev[:])
	return append(out, `"}`...), nil
}

// AppendPrepared adds a prepared record to the journal inside the caller's write
// transaction, so the record commits or rolls back with the change it describes.
//
// It may run more than once for the same record (group commit reruns its functions after a
// failure): everything it computes comes from tx, and p is not changed. The hash covers
// exactly the stored bytes. Subscribers see the record and a CheckpointEvery checkpoint is
// triggered only after tx commits.
func (j *Journal) AppendPrepared(tx kv.Tx, p *Prepared) error {
	_, _, _, err := j.appendPrepared(tx, p)
	return err
}

func (j *Journal) appendPrepared(tx kv.Tx, p *Prepared) (seq uint64, prev [32]byte, at time.Time, err error) {
	if !tx.Writable() {
		return 0, prev, at, ErrReadOnlyTx
	}
	if j.closed.Load() {
		return 0, prev, at, ErrClosed
	}
	b, err := journalBucket(tx, j.name)
	if err != nil {
		return 0, prev, at, err
	}
	seq, prev, err = headOf(b)
	if err != nil {
		return 0, prev, at, err
	}
	seq++
	at = time.Now().UTC()
	// The stored value is the record's hash then its bytes, encoded in place.
	val, err := p.encode(make([]byte, 32, 32+len(p.raw)+maxSpliceGrow), seq, prev, at)
	if err != nil {
		return 0, prev, at, fmt.Errorf("journal %s: encoding record %d: %w", j.opts.Name, seq, err)
	}
	h := chainHash(prev, seq, val[32:])
	copy(val, h[:])
	rb := b.Bucket(bucketRecords)
	// Keys only ever grow, so pages can be filled instead of split in half.
	kv.SetFillPercent(rb, appendFillPercent)
	if err := rb.Put(u64(seq), val); err != nil {
		return 0, prev, at, fmt.Errorf("journal %s: storing record %d: %w", j.opts.Name, seq, err)
	}
	if err := b.Put(keyHead, append(u64(seq), h[:]...)); err != nil {
		return 0, prev, at, fmt.Errorf("journal %s: storing head: %w", j.opts.Name, err)
	}
	if err := b.Put(keyBytes, u64(storedBytes(b)+uint64(len(val)))); err != nil {
		return 0, prev, at, fmt.Errorf("journal %s: storing size: %w", j.opts.Name, err)
	}
	if err := applyMark(b, p.mark, seq); err != nil {
		return 0, prev, at, fmt.Errorf("journal %s: indexing record %d: %w", j.opts.Name, seq, err)
	}
	if err := b.Put(keyOpenThrough, u64(seq)); err != nil {
		return 0, prev, at, fmt.Errorf("journal %s: indexing record %d: %w", j.opts.Name, seq, err)
	}
	tx.OnCommit(func() { j.committed(seq) })
	return seq, prev, at, nil
}

// committed runs after a transaction holding record seq commits: every CheckpointEvery
// records, and a signed journal's first record (needsFirstCheckpoint), ask for a
// checkpoint.
func (j *Journal) committed(seq uint64) {
	j.pub.wake()
	if n := j.opts.CheckpointEvery; (n > 0 && seq%n == 0) || (seq == 1 && j.opts.SigningKey != nil) {
		select {
		case j.checkpointReq <- struct{}{}:
		default:
		}
	}
}

// marshalRecord encodes r, dropping change values when the record, grown by up to grow
// bytes when it is stored, would be too large.
func marshalRecord(r *Record, grow int) ([]byte, error) {
	raw, err := json.Marshal(r)
	if err != nil || len(raw)+grow <= MaxRecordBytes {
		return raw, err
	}
	changes := make([]Change, len(r.Changes))
	for i, c := range r.Changes {
		if c.Value != nil {
			c.Value, c.Truncated = nil, true
		}
		changes[i] = c
	}
	r.Changes = changes
	raw, err = json.Marshal(r)
	if err == nil && len(raw)+grow > MaxRecordBytes {
		err = fmt.Errorf("record is %d bytes, more than %d even without change values", len(raw)+grow, MaxRecordBytes)
	}
	return raw, err
}

// chainHash is hash_seq = SHA-256(hash_{seq-1} || seq as 8 bytes big-endian || raw).
func chainHash(prev [32]byte, seq uint64, raw []byte) [32]byte {
	var hdr [40]byte
	copy(hdr[:32], prev[:])
	binary.BigEndian.PutUint64(hdr[32:], seq)
	h := sha256.New()
	h.Write(hdr[:])
	h.Write(raw)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Head returns the sequence number and hash of the newest record in tx (0 and the zero hash
// for an empty journal; after pruning everything, the last pruned record's).
func (j *Journal) Head(tx kv.Tx) (seq uint64, hash [32]byte, err error) {
	b, err := journalBucket(tx, j.name)
	if err != nil {
		return 0, hash, err
	}
	return headOf(b)
}

// headOf reads the head key.
func headOf(b kv.Bucket) (uint64, [32]byte, error) {
	seq, h, ok := readHead(b)
	if !ok {
		return 0, h, fmt.Errorf("%w: head", ErrCorrupt)
	}
	return seq, h, nil
}

// readHead reads the head key; a missing head is an empty journal, ok is false for a
// malformed one.
func readHead(b kv.Bucket) (seq uint64, h [32]byte, ok bool) {
	return readSeqHash(b.Get(keyHead))
}

// readAnchor returns the first sequence number the chain starts from and the hash it
// continues from: (1, zero hash) until retention removes records.
func readAnchor(b kv.Bucket) (seq uint64, h [32]byte, ok bool) {
	v := b.Get(keyAnchor)
	if v == nil {
		return 1, h, true
	}
	return readSeqHash(v)
}

// readSeqHash decodes an 8-byte sequence number followed by a 32-byte hash; nil is (0, zero).
func readSeqHash(v []byte) (seq uint64, h [32]byte, ok bool) {
	if v == nil {
		return 0, h, true
	}
	if len(v) != 40 {
		return 0, h, false
	}
	copy(h[:], v[8:])
	return binary.BigEndian.Uint64(v[:8]), h, true
}

// splitValue splits a stored record value into its hash and record bytes.
func splitValue(v []byte) (h [32]byte, raw []byte, ok bool) {
	if len(v) < 32 {
		return h, nil, false
	}
	copy(h[:], v[:32])
	return h, v[32:], true
}

// HashFilter returns a keyed hash of a SCIM filter: records can show that two requests used
// the same filter without storing the user names filters carry. The key is random per
// journal, so hashes are stable within a journal and differ between journals.
func (j *Journal) HashFilter(filter string) string {
	return hmacHex(j.salt, filter)
}

// Backup writes a consistent snapshot of the whole store (every journal and the directory)
// to w as a bbolt file, without blocking writers: the file itself for bbolt, a copy of one
// revision for etcd.
func (j *Journal) Backup(w io.Writer) (int64, error) {
	n, err := j.db.Backup(w)
	if err != nil {
		return n, fmt.Errorf("backing up %s: %w", j.db, err)
	}
	return n, nil
}

// u64 encodes a sequence number as an 8-byte big-endian key, so cursors walk in order.
func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// Info summarises a journal for listings.
type Info struct {
	Name string `json:"name"`
	// FirstSeq is the anchor: the oldest sequence number kept (retention moves it).
	FirstSeq uint64 `json:"first_seq"`
	// LastSeq and LastHash are the head (0 and "" for an empty journal).
	LastSeq  uint64 `json:"last_seq"`
	LastHash string `json:"last_hash,omitempty"`
	// Records is how many records are kept.
	Records uint64 `json:"records"`
	// LatestCheckpoint is the newest checkpoint, if any.
	LatestCheckpoint *Checkpoint `json:"latest_checkpoint,omitempty"`
}

// Info reads the journal's head, anchor and newest checkpoint.
func (j *Journal) Info() (Info, error) {
	info := Info{Name: j.opts.Name}
	err := j.db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, j.name)
		if err != nil {
			return err
		}
		anchor, _, ok1 := readAnchor(b)
		head, h, ok2 := readHead(b)
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: head or anchor", ErrCorrupt)
		}
		info.FirstSeq, info.LastSeq = anchor, head
		if head >= anchor {
			info.Records = head - anchor + 1
		}
		if head > 0 {
			info.LastHash = hex.EncodeToString(h[:])
		}
		if k, v := b.Bucket(bucketCheckpoints).Cursor().Last(); k != nil {
			info.LatestCheckpoint = new(Checkpoint)
			if err := json.Unmarshal(v, info.LatestCheckpoint); err != nil {
				return fmt.Errorf("%w: checkpoint", ErrCorrupt)
			}
		}
		return nil
	})
	return info, err
}

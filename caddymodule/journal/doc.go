// Package journal is scimgate's tamper-evident audit journal: every action the gateway takes
// is a record, hash-chained to the one before it, stored in the same bbolt file and the same
// transaction as the directory change it describes, and verifiable, exportable and
// watchable live.
//
// # Record format (version 1)
//
// A record is one JSON object; the stored bytes are exactly what json.Marshal produced for
// Record when it was appended, and they are never re-encoded: the hash, the JSONL export and
// the live stream all carry those bytes. Fields (omitted when empty unless noted):
//
//	v              format version (always present; 1)
//	seq            sequence number, from 1, without gaps (always present)
//	time           UTC, RFC 3339 with nanoseconds (always present)
//	request_id     the request's id, to correlate with access logs
//	part           {index, count}: a request applied in several parts (a group member
//	               change larger than one transaction holds, or, on etcd, a delete whose
//	               edges do not fit one: its edges unlinked in parts, the resource deleted
//	               in the last) journals each part as a change of its own (intent and
//	               outcome when it calls the app) under the request's request_id; part
//	               says which (index from 1 to count)
//	client         the bearer token's NAME (never the token)
//	target         the legacy application
//	gateway        in a fleet (a store shared on etcd), the gateway that appended the
//	               record: its elector's id (host name:process id); absent on a store of
//	               one gateway, and in records written before it existed (an optional
//	               field like the others: the format stays version 1 and those records
//	               verify unchanged)
//	action         create | replace | patch | delete | get | list | search | reconcile |
//	               prune | cascade: a directory change the gateway made to another
//	               resource because of the request with the same request_id (always)
//	resource_type  User | Group
//	scim_id        the gateway's SCIM id
//	native_id      the legacy application's id
//	subject        userName (users) or displayName (groups)
//	events         create, update, deactivate, reactivate, delete, add_members,
//	               remove_members, rename
//	outcome        applied | rejected | failed | denied | skipped | pending | dry_run (always)
//	status         the HTTP status answered
//	changes        [{path, op, value, redacted, truncated}]: changed attributes; a change of
//	               more than 5,000 members holds {count, sha256 (of the ids sorted and joined
//	               with newlines), first (the first 100)} instead of the list
//	filter_hash    HMAC-SHA256 of the SCIM filter under a random per-journal key: equal
//	               filters give equal hashes within a journal, the filter (it carries user
//	               names) is never stored
//	decision       {allow, skip, reasons, dropped_attributes, dropped_members,
//	               deactivate: the app got a deactivation instead of the change,
//	               policy_hash: the content hash of the policy that decided}
//	backend        {method, url (without secrets), status, duration_ms, attempts, error:
//	               how the call failed (refused, timeout, status, unproven: what came back)};
//	               the last native call of the change, the one that decided its outcome
//	calls          [backend, ...]: every native call of the change, in order (a lookup, the
//	               event's calls, catch-up memberships)
//	error          error detail
//	prev_hash      hex hash of the previous record (64 zeros before the first; always)
//
// Redaction: a change whose path is "password" or a configured path (compared
// case-insensitively, without the schema URN prefix and value filters, sub-paths included:
// "name" covers "name.givenName") is stored with no value and "redacted": true. Redacted
// attributes inside an object value (a PATCH without a path, a complex attribute, an
// extension object, Entra's full-URN keys) are replaced by "[REDACTED]" and the change is
// flagged. A record larger than MaxRecordBytes keeps its change paths and drops their values
// ("truncated": true).
//
// # Hash chain
//
//	hash_n = SHA-256(hash_{n-1} || seq_n as 8 bytes big-endian || stored record bytes)
//
// with hash_0 = 32 zero bytes. Append computes it inside the write transaction, over the
// exact bytes it stores. Records are kept oldest first, so the chain can be recomputed from
// the anchor in one pass.
//
// # Storage layout
//
// In the bbolt file, bucket "journal", one sub-bucket per journal name:
//
//	records      seq (8 bytes BE) -> hash_seq (32 bytes) || record bytes
//	checkpoints  seq (8 bytes BE) -> checkpoint JSON
//	format       layout version (8 bytes BE)
//	salt         32 random bytes, the HashFilter key
//	head         seq || hash of the newest record
//	anchor       first kept seq || the hash it continues from (absent: 1 and zeros)
//	bytes        size of the stored record values (8 bytes BE), for MaxBytes
//	open         target \0 request id -> seq of an intent no later record of its request
//	             followed (Journal.OpenIntents: the crash scan reads this, not the records)
//	open_format  present once the open index covers the journal
//
// The stored hash next to each record lets verification tell which record changed: a record
// that no longer matches its stored hash was modified; a record consistent with its own
// claims but not with its predecessor shows the predecessor was modified; a record whose
// claims name another sequence number was moved.
//
// # Checkpoints
//
// A checkpoint {seq, hash, time, key_id, signature} commits to the chain up to seq. It is
// written every CheckpointEvery records, every CheckpointInterval (when records were added)
// and on demand (Journal.Checkpoint), and handed to OnCheckpoint, which the Caddy module logs
// so that an external log sink keeps a copy. With a signing key the signature (hex Ed25519)
// covers Checkpoint.SignedBytes:
//
//	"scimgate-journal-checkpoint-v1\n" || u32 len(name) || name || u64 seq ||
//	hash (32 raw bytes) || i64 time (Unix ns) || u32 len(key_id) || key_id
//
// (all integers big-endian). What checkpoints prove: verification against the newest
// checkpoint catches a truncated tail and a rewritten history even when the attacker
// recomputed every hash. Signed checkpoints prove that whoever held the private key saw the
// chain up to seq at that time; an attacker with write access to the file but not the key
// cannot forge them, though they can delete the newest ones — compare with the copies in the
// log. Unsigned checkpoints (no key) prove nothing against someone who can write the file;
// they only help against accidental damage, or together with an external copy. When a
// public key is given to verification, every checkpoint must be signed by it.
//
// # Verification
//
// Journal.Verify, VerifyFileJournal (a backup) and VerifyJSONL (an export) recompute the chain and
// stop at the first problem, named by its sequence number and kind: deleted (a gap),
// reordered (a record stored at another record's place), modified, checkpoint_mismatch (a
// recomputed chain that misses a checkpoint's hash), bad_signature, head_mismatch, truncated
// (the head or the newest checkpoint names records that are gone; an export without its end
// line) and malformed (an export line that is not what the format defines, or a stored
// checkpoint that does not decode as the checkpoint of its record). A checkpoint
// vouches for the record it follows: in an export, a checkpoint line anywhere but right
// after its record is malformed (truncated when it names a record the export does not
// reach), so that moving the lines cannot keep a rewritten chain from being compared with
// the checkpoints.
//
// Verified with public keys, a record must also be vouched for: covered by a signed
// checkpoint, which covers the records before it back to the start or to a gap. Records
// that none covers fail as unvouched, except the tail after the newest checkpoint of a
// stretch without gaps (a journal's newest records), which the report names
// (CheckpointSeq, CheckpointTime): nothing in a file can show that its newest checkpoints
// were not deleted with the records after them.
//
// # Export formats
//
// JSONL (native, verifiable) — one JSON object per line:
//
//	{"format":"scimgate-journal","version":1,"journal":NAME,"exported_at":TIME,
//	 "filtered":BOOL,"query":{...},"anchor":{"seq":S,"prev_hash":HEX}}     header
//	{"seq":N,"hash":HEX,"record":<stored record bytes, verbatim>}          per record
//	{"checkpoint":{"seq":N,"hash":HEX,"time":T,"key_id":K,"signature":S}}  after record N
//	{"checkpoint":{"seq":N,"error":TEXT}}     after record N, when the stored one is garbled
//	{"end":{"records":COUNT,"last_seq":N,"last_hash":HEX}}                 last line
//
// The anchor is the sequence number the export starts from and the hash it continues from,
// so VerifyJSONL recomputes the chain without the database. A filtered export (time range,
// SCIM id, subject, outcome) may skip records. The header's "filtered" flag is the file's
// word: VerifyJSONL takes a gap for deleted records whatever it says; VerifyJSONLWith with
// Subset accepts the gaps of a filtered export, checks that each record is one the header's
// query selects and matches its hash, and the report says Partial (a subset cannot show
// that no record its filter selects was left out).
//
// An unfiltered export of a damaged journal carries the damage, so that it does not verify
// either: its anchor is the record before the span it asked for (a missing first record is
// a gap; a missing record before the span an anchor without prev_hash), its end line names
// the record and hash the journal's head promised when the records stop short of it (or of
// to_seq) or the head's hash is not theirs, and when it reaches the head the first
// checkpoint of a record it lacks follows the records.
//
// CSV — a header row (CSVHeader) and one row per record: seq, time, client, action,
// resource_type, scim_id, subject, outcome, status, events (joined by ';'), changed_paths
// (joined by ';'), error, hash. Cells a client controls that start with = + - @ tab or CR get
// a leading apostrophe, so spreadsheets do not run them as formulas.
//
// OCSF 1.1.0 — one event per line. User records are Account Change (class_uid 3001), Group
// records Group Management (class_uid 3006), both category_uid 3 (Identity & Access
// Management); records about no resource (prune) are Base Event (class_uid 0, category 0).
// type_uid = class_uid*100 + activity_id. activity_id from the events, the most significant
// first:
//
//	3001: delete 6 Delete, create 1 Create, deactivate 5 Disable, reactivate 2 Enable,
//	      anything else 99 Other (activity_name is the action)
//	3006: delete 5 Delete, create 6 Create, add_members only 3 Add User,
//	      remove_members only 4 Remove User, anything else 99 Other
//
// except that an operator's action on a queued change (retry, drop, pause, resume) is 99
// Other whatever the change's events (activity_name is the action): it makes no change
// by itself.
//
// status_id 1 Success (applied, skipped, dry_run), 2 Failure (rejected, failed, denied),
// 0 Unknown (pending); status is the outcome, status_code the HTTP status, status_detail
// the error. severity_id 1 Informational, 2 Low (rejected), 3 Medium (denied, failed).
// time is Unix milliseconds. metadata {product {name "scimgate", vendor_name "scimgate",
// feature {name "journal"}}, version "1.1.0", uid seq, correlation_uid request_id}; user
// or group {uid scim_id, name subject}; actor {user {name client}}; unmapped {journal_hash,
// action, events, target, native_id, filter_hash, changes, decision, backend}.
//
// Exports and verification read in short transactions (10,000 records each) resuming with
// a cursor Seek, so they never hold a read transaction long enough to hurt writers.
//
// # Retention
//
// Prune (also run by the checkpoint timer, or every 10 minutes without one) removes the
// oldest records by age (MaxAge), count (MaxRecords) and/or stored size (MaxBytes), in sequence order, and moves the
// anchor in the same transaction, so the rest still verifies. It appends a "prune" record
// whose changes say how many records were removed and the new anchor.
//
// # Live stream
//
// Subscribe delivers records after their transaction commits, in sequence order. A
// subscriber that falls behind its buffer is dropped (its channel closed, Err
// ErrSlowConsumer); writers never wait for subscribers.
package journal

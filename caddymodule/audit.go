package caddymodule

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/google/uuid"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Defaults of the journal settings.
const (
	DefaultJournalName        = "scimgate"
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = caddy.Duration(5 * time.Minute)
)

// JournalConfig configures the audit journal kept in the store file. The journal of a
// store is opened with the store, once per process: when a reload changes these settings
// for a store that stays open, the change is logged and takes effect at the next start.
type JournalConfig struct {
	// Name identifies the journal in the admin API and CLI. Default: scimgate.
	Name string `json:"name,omitempty"`

	// CheckpointEvery is the number of records between signed checkpoints. Default 1000;
	// -1 turns count-based checkpoints off.
	CheckpointEvery int64 `json:"checkpoint_every,omitempty"`

	// CheckpointInterval is the time between checkpoints. Default 5m; -1 turns them off.
	CheckpointInterval caddy.Duration `json:"checkpoint_interval,omitempty"`

	// SigningKey is the Ed25519 key that signs checkpoints: a 32-byte seed or a 64-byte
	// private key, base64 or hex, usually a placeholder such as {env.SCIMGATE_JOURNAL_KEY}.
	// It is never stored in the database. Without a key checkpoints are unsigned.
	SigningKey string `json:"signing_key,omitempty"`

	// SigningKeyFile reads the signing key from a file instead (same encodings).
	SigningKeyFile string `json:"signing_key_file,omitempty"`

	// KeyID names the signing key in checkpoints, so verifiers know which public key to
	// use. Default: the first 8 bytes of the public key, hex.
	KeyID string `json:"key_id,omitempty"`

	// Redact lists attribute paths whose values are replaced by a marker in records, in
	// addition to password (always redacted).
	Redact []string `json:"redact,omitempty"`

	// MaxAge prunes records older than this (0: keep).
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// MaxRecords keeps at most this many records (0: keep all).
	MaxRecords uint64 `json:"max_records,omitempty"`

	// MaxBytes keeps the stored records within this many bytes (0: no limit).
	MaxBytes uint64 `json:"max_bytes,omitempty"`

	// Reads also journals reads (GET, list, search). Default off.
	Reads bool `json:"reads,omitempty"`
}

// journalOptions resolves the configuration into journal.Options (without logger and
// callbacks) and the public key that verifies its checkpoints.
func (c *JournalConfig) journalOptions(repl *caddy.Replacer) (journal.Options, ed25519.PublicKey, error) {
	opts := journal.Options{
		Name:   c.Name,
		Redact: c.Redact,
		KeyID:  c.KeyID,
		MaxAge: time.Duration(c.MaxAge),
	}
	if opts.Name == "" {
		opts.Name = DefaultJournalName
	}
	switch {
	case c.CheckpointEvery == 0:
		opts.CheckpointEvery = DefaultCheckpointEvery
	case c.CheckpointEvery > 0:
		opts.CheckpointEvery = uint64(c.CheckpointEvery)
	}
	switch {
	case c.CheckpointInterval == 0:
		opts.CheckpointInterval = time.Duration(DefaultCheckpointInterval)
	case c.CheckpointInterval > 0:
		opts.CheckpointInterval = time.Duration(c.CheckpointInterval)
	}
	opts.MaxRecords = c.MaxRecords
	opts.MaxBytes = c.MaxBytes

	keyText := repl.ReplaceAll(c.SigningKey, "")
	if c.SigningKeyFile != "" {
		if keyText != "" {
			return opts, nil, fmt.Errorf("journal: set signing_key or signing_key_file, not both")
		}
		path := repl.ReplaceAll(c.SigningKeyFile, "")
		data, err := os.ReadFile(path)
		if err != nil {
			return opts, nil, fmt.Errorf("journal: reading signing_key_file: %w", err)
		}
		keyText = strings.TrimSpace(string(data))
	}
	if keyText == "" {
		if c.SigningKey != "" {
			return opts, nil, fmt.Errorf("journal: signing_key %q resolves to an empty value", c.SigningKey)
		}
		return opts, nil, nil
	}
	key, err := parseSigningKey(keyText)
	if err != nil {
		return opts, nil, err
	}
	opts.SigningKey = key
	pub := key.Public().(ed25519.PublicKey)
	if opts.KeyID == "" {
		opts.KeyID = hex.EncodeToString(pub[:8])
	}
	return opts, pub, nil
}

// parseSigningKey accepts a 32-byte seed or a 64-byte private key, base64 (standard or
// URL, padded or not) or hex. The error never repeats the key.
func parseSigningKey(s string) (ed25519.PrivateKey, error) {
	var raw []byte
	if b, err := hex.DecodeString(s); err == nil {
		raw = b
	} else {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				raw = b
				break
			}
		}
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(raw), nil
	case 0:
		return nil, fmt.Errorf("journal: signing key is neither base64 nor hex")
	}
	return nil, fmt.Errorf("journal: signing key has %d bytes; want a 32-byte Ed25519 seed or a 64-byte private key", len(raw))
}

// audit carries what one request contributes to its journal record.
type audit struct {
	action   string
	typ      string
	id       string
	subject  string
	events   []string
	changes  []journal.Change
	filter   string
	target   string
	nativeID string
	backend  *journal.BackendCall
	decision *journal.Decision
}

// newRecord builds the record of a request with the given outcome and status.
func (g *Gateway) newRecord(req *request, a *audit, outcome string, status int, detail string) *journal.Record {
	rec := &journal.Record{
		RequestID:    req.id,
		Client:       req.client,
		Action:       a.action,
		ResourceType: a.typ,
		SCIMID:       a.id,
		Subject:      a.subject,
		Events:       a.events,
		Outcome:      outcome,
		Status:       status,
		Changes:      a.changes,
		Error:        detail,
		Target:       a.target,
		NativeID:     a.nativeID,
		Backend:      a.backend,
		Decision:     a.decision,
	}
	if a.filter != "" {
		rec.FilterHash = g.store.journal.HashFilter(a.filter)
	}
	return rec
}

// requestID is Caddy's request UUID when the request came through Caddy, else a new one.
func requestID(req *request) string {
	if repl, ok := req.r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if id, ok := repl.GetString("http.request.uuid"); ok && id != "" {
			return id
		}
	}
	return uuid.NewString()
}

// subjectOf is the name auditors search by: a user's userName or a group's displayName.
func subjectOf(typ string, doc scim.Resource) string {
	name := "userName"
	if typ == scim.GroupType {
		name = "displayName"
	}
	v, _ := scim.Get(doc, name)
	s, _ := v.(string)
	return s
}

// semanticEvents names what a change means: create, update, deactivate, reactivate,
// rename, add_members, remove_members, delete.
func semanticEvents(typ string, before, after scim.Resource, changes []journal.Change, added, removed int) []string {
	var ev []string
	switch {
	case before == nil:
		return []string{"create"}
	case after == nil:
		return []string{"delete"}
	}
	attrChanged := false
	for _, c := range changes {
		if c.Path != "members" {
			attrChanged = true
			break
		}
	}
	if attrChanged {
		ev = append(ev, "update")
	}
	if typ == scim.UserType {
		wasActive, isActive := activeOf(before), activeOf(after)
		switch {
		case wasActive && !isActive:
			ev = append(ev, "deactivate")
		case !wasActive && isActive:
			ev = append(ev, "reactivate")
		}
	}
	if typ == scim.GroupType && subjectOf(typ, before) != subjectOf(typ, after) {
		ev = append(ev, "rename")
	}
	if added > 0 {
		ev = append(ev, "add_members")
	}
	if removed > 0 {
		ev = append(ev, "remove_members")
	}
	return ev
}

// activeOf reads active; an absent attribute counts as active (RFC 7643 leaves it to the
// service provider, and Entra always sends it).
func activeOf(doc scim.Resource) bool {
	v, ok := scim.Get(doc, "active")
	if !ok {
		return true
	}
	b, ok := scim.Bool(v)
	return !ok || b
}

// diffChanges lists the attribute paths that differ between two documents, with their new
// values (objects are walked; arrays are compared and reported whole). The journal redacts
// sensitive values.
func diffChanges(before, after scim.Resource) []journal.Change {
	var out []journal.Change
	diffInto(&out, "", before, after)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func diffInto(out *[]journal.Change, prefix string, before, after map[string]any) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		if scim.IsURN(prefix) {
			return prefix + ":" + k
		}
		return prefix + "." + k
	}
	for k, av := range after {
		if prefix == "" && (strings.EqualFold(k, "schemas") || k == "id") {
			continue
		}
		bk, had := scim.Key(before, k)
		var bv any
		if had {
			bv = before[bk]
		}
		am, aIsMap := av.(map[string]any)
		bm, bIsMap := bv.(map[string]any)
		switch {
		case aIsMap && (bIsMap || !had):
			diffInto(out, join(k), bm, am)
		case !had:
			*out = append(*out, change(join(k), "add", av))
		case !reflect.DeepEqual(av, bv):
			*out = append(*out, change(join(k), "replace", av))
		}
	}
	for k, bv := range before {
		if prefix == "" && (strings.EqualFold(k, "schemas") || k == "id") {
			continue
		}
		if _, has := scim.Key(after, k); has {
			continue
		}
		if bm, ok := bv.(map[string]any); ok {
			diffInto(out, join(k), bm, map[string]any{})
			continue
		}
		*out = append(*out, change(join(k), "remove", nil))
	}
}

func change(path, op string, v any) journal.Change {
	c := journal.Change{Path: path, Op: op}
	if v != nil {
		if data, err := json.Marshal(v); err == nil {
			c.Value = data
		}
	}
	return c
}

// memberChanges reports member edges added and removed as two changes of path members.
func memberChanges(added, removed []string) []journal.Change {
	var out []journal.Change
	if len(added) > 0 {
		out = append(out, change("members", "add", added))
	}
	if len(removed) > 0 {
		out = append(out, change("members", "remove", removed))
	}
	return out
}

// appendRecord writes rec in the caller's write transaction.
func (g *Gateway) appendRecord(tx *store.Tx, rec *journal.Record) error {
	return g.store.journal.Append(tx.Bolt(), rec)
}

// prepareRecord encodes the record of a request's outcome ahead of the transaction that
// appends it (appendPrepared): the write transaction is shared by every concurrent writer,
// so what can be done before it is done before it. A record that cannot be encoded fails
// the request (never a change without its record).
func (g *Gateway) prepareRecord(req *request, a *audit, outcome string, status int, detail string) (*journal.Prepared, error) {
	return g.store.journal.Prepare(g.newRecord(req, a, outcome, status, detail))
}

// appendPrepared appends a record prepared by prepareRecord in tx.
func (g *Gateway) appendPrepared(tx *store.Tx, p *journal.Prepared) error {
	return g.store.journal.AppendPrepared(tx.Bolt(), p)
}

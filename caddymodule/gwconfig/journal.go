package gwconfig

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/secret"
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
	// private key, base64 or hex, given as a placeholder such as {env.SCIMGATE_JOURNAL_KEY}
	// (a key written in the config is refused: the admin API's config would show it). It
	// is never stored in the database. Without a key checkpoints are unsigned.
	SigningKey string `json:"signing_key,omitempty"`

	// SigningKeyFile reads the signing key from a file instead (same encodings).
	SigningKeyFile string `json:"signing_key_file,omitempty"`

	// KeyID names the signing key in checkpoints, so verifiers know which public key to
	// use. Default: the first 8 bytes of the public key, hex.
	KeyID string `json:"key_id,omitempty"`

	// VerifyKeys are the public keys of the journal's earlier signing keys (PEM, base64 or
	// hex; public, so written as they are): after a key rotation, checkpoints an earlier
	// key signed still verify on the instance (journal verify, the audit routes). Needs a
	// signing key.
	VerifyKeys []string `json:"verify_keys,omitempty"`

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

// JournalOptions resolves the configuration into journal.Options (without logger and
// callbacks) and the public keys that verify its checkpoints: the signing key's, then the
// earlier keys' (VerifyKeys); none when checkpoints are unsigned.
func (c *JournalConfig) JournalOptions(repl *caddy.Replacer) (journal.Options, []ed25519.PublicKey, error) {
	opts := journal.Options{
		Name:   c.Name,
		Redact: c.Redact,
		KeyID:  c.KeyID,
		MaxAge: time.Duration(c.MaxAge),
	}
	if opts.Name == "" {
		opts.Name = DefaultJournalName
	}
	// The Caddyfile refuses these; a JSON config must not turn them off by accident.
	switch {
	case c.CheckpointEvery < -1:
		return opts, nil, fmt.Errorf("journal: checkpoint_every must be positive, or -1 (off), got %d", c.CheckpointEvery)
	case c.CheckpointInterval < -1:
		return opts, nil, fmt.Errorf("journal: checkpoint_interval must be positive, or -1 (off), got %s", time.Duration(c.CheckpointInterval))
	case c.MaxAge < 0:
		return opts, nil, fmt.Errorf("journal: max_age must be positive (0: keep records of any age), got %s", time.Duration(c.MaxAge))
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

	if c.SigningKey == "" && c.SigningKeyFile == "" {
		if len(c.VerifyKeys) > 0 {
			return opts, nil, errors.New("journal: verify_key without signing_key: new checkpoints would be unsigned, and an unsigned checkpoint never verifies against a key; set the signing key, or remove verify_key")
		}
		return opts, nil, nil // checkpoints unsigned
	}
	keyText, err := secret.Resolve(repl, "journal", "signing_key", c.SigningKey, c.SigningKeyFile)
	if err != nil {
		return opts, nil, err
	}
	keyText = strings.TrimSpace(keyText) // base64 and hex hold no whitespace
	key, err := parseSigningKey(keyText)
	if err != nil {
		return opts, nil, err
	}
	opts.SigningKey = key
	pub := key.Public().(ed25519.PublicKey)
	if opts.KeyID == "" {
		opts.KeyID = hex.EncodeToString(pub[:8])
	}
	keys := []ed25519.PublicKey{pub}
	for i, v := range c.VerifyKeys {
		k, err := journal.ParsePublicKey([]byte(repl.ReplaceAll(v, "")))
		if err != nil {
			return opts, nil, fmt.Errorf("journal: verify_key %d: %v", i+1, err)
		}
		keys = append(keys, k)
	}
	return opts, keys, nil
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

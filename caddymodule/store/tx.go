package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// IndexEntry is one value of a record that Lookup can find the record by.
type IndexEntry struct {
	// Attr names the indexed attribute, e.g. "userName" or "emails.value".
	Attr string
	// Value is the value as written; the index key folds its case.
	Value string
	// Unique makes Put refuse to give (type, Attr, folded Value) to a second id.
	Unique bool
}

// Record is one stored resource.
type Record struct {
	// Type is the resource type, e.g. "User" or "Group".
	Type string
	// ID is the record's id, unique across types.
	ID           string
	Created      time.Time
	LastModified time.Time
	// Version is set by Put: 1 on insert, previous+1 on replace.
	Version uint64
	// Doc is the resource's attributes, opaque to the store.
	Doc []byte
	// Index lists the values Lookup finds this record by; Put replaces the previous list.
	Index []IndexEntry
}

// Member is one edge from a group to a member.
type Member struct {
	ID string
	// Type is the member's resource type ("User" or "Group").
	Type string
	// Display is the member's display value as last written.
	Display string
}

// Tx is a transaction on the store, valid only inside the View or Update function that
// received it. Read methods work in both; write methods return ErrReadOnly in View.
type Tx struct {
	tx       kv.Tx
	writable bool
	// key is scratch for the key of one lookup or write of a member edge or an id (the
	// backends keep their own copies of keys, see kv): a change of many members then costs
	// no key allocation per edge. A Tx is used by one goroutine.
	key []byte
}

// edgeKey is the key "a \0 b" in tx's scratch buffer, valid until the next call.
func (tx *Tx) edgeKey(a, b string) []byte {
	tx.key = append(append(append(tx.key[:0], a...), sep), b...)
	return tx.key
}

// idKey is id as a key in tx's scratch buffer, valid until the next call.
func (tx *Tx) idKey(id string) []byte {
	tx.key = append(tx.key[:0], id...)
	return tx.key
}

// KV is the underlying kv transaction, for packages (the journal) that write their own
// buckets atomically with the directory.
func (tx *Tx) KV() kv.Tx { return tx.tx }

func (tx *Tx) checkWritable() error {
	if !tx.writable {
		return ErrReadOnly
	}
	return nil
}

// records returns the bucket holding records of typ, or nil if none was ever written.
func (tx *Tx) records(typ string) kv.Bucket {
	return tx.tx.Bucket(bucketRecords).Bucket([]byte(typ))
}

func (tx *Tx) bucket(name []byte) kv.Bucket { return tx.tx.Bucket(name) }

// Get returns a copy of record (typ, id), or ErrNotFound.
func (tx *Tx) Get(typ, id string) (*Record, error) {
	if err := checkTypeID(typ, id); err != nil {
		return nil, err
	}
	b := tx.records(typ)
	if b == nil {
		return nil, ErrNotFound
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	return decodeRecord(typ, id, v)
}

// Version returns the version of a record (what Put last set) without decoding or copying
// the rest of it, or ErrNotFound: a cheap check that a record is still the one a change
// was decided on.
func (tx *Tx) Version(typ, id string) (uint64, error) {
	if err := checkTypeID(typ, id); err != nil {
		return 0, err
	}
	b := tx.records(typ)
	if b == nil {
		return 0, ErrNotFound
	}
	v := b.Get([]byte(id))
	if v == nil {
		return 0, ErrNotFound
	}
	d := decoder{b: v}
	if enc := d.byte("record encoding"); d.err == nil && enc != recordEncoding {
		return 0, fmt.Errorf("%w: %s %s has record encoding %d", ErrCorrupt, typ, id, enc)
	}
	d.time("created")
	d.time("lastModified")
	version := d.uvarint("version")
	if d.err != nil {
		return 0, fmt.Errorf("decoding %s %s: %w", typ, id, d.err)
	}
	return version, nil
}

// TypeOf returns the type of the record with id, or ErrNotFound.
func (tx *Tx) TypeOf(id string) (string, error) {
	if err := checkName("id", id); err != nil {
		return "", err
	}
	v := tx.bucket(bucketIDs).Get(tx.idKey(id))
	if v == nil {
		return "", ErrNotFound
	}
	return string(v), nil
}

// Put inserts rec, or replaces the record with the same Type and ID. It sets rec.Version
// (1 on insert, previous+1 on replace) and, when rec.Created is zero, keeps the existing
// record's Created (or, on insert, sets it to now); a zero LastModified becomes now. The
// record's previous index entries are replaced by rec.Index.
//
// If a unique entry of rec.Index is held by another id, Put returns *UniqueError and changes
// nothing. If rec.ID belongs to a record of another type, it returns an error wrapping
// ErrIDInUse. The store copies what it needs: rec.Doc may be reused after Put returns.
func (tx *Tx) Put(rec *Record) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkRecord(rec); err != nil {
		return err
	}
	if err := tx.checkIDType(rec.Type, rec.ID); err != nil {
		return err
	}
	old, err := tx.previous(tx.records(rec.Type), rec.Type, rec.ID)
	if err != nil {
		return err
	}
	if err := tx.checkUnique(rec); err != nil {
		return err
	}
	// Everything is checked: from here on Put writes.
	bucket, err := tx.tx.Bucket(bucketRecords).CreateBucketIfNotExists([]byte(rec.Type))
	if err != nil {
		return fmt.Errorf("creating bucket for %s: %w", rec.Type, err)
	}
	stored := *rec
	stored.Version, stored.Created, stored.LastModified = nextStamps(old, rec)
	if err := tx.replaceIndex(old, &stored); err != nil {
		return err
	}
	if err := bucket.Put([]byte(rec.ID), encodeRecord(&stored)); err != nil {
		return fmt.Errorf("writing %s %s: %w", rec.Type, rec.ID, err)
	}
	if old == nil {
		if err := tx.bucket(bucketIDs).Put([]byte(rec.ID), []byte(rec.Type)); err != nil {
			return fmt.Errorf("writing id %s: %w", rec.ID, err)
		}
		if err := tx.addCount(rec.Type, 1); err != nil {
			return err
		}
	}
	rec.Version, rec.Created, rec.LastModified = stored.Version, stored.Created, stored.LastModified
	return nil
}

// checkRecord validates everything that becomes part of a key before anything is written.
func checkRecord(rec *Record) error {
	if rec == nil {
		return fmt.Errorf("%w: nil record", ErrInvalidKey)
	}
	if err := checkTypeID(rec.Type, rec.ID); err != nil {
		return err
	}
	for _, e := range rec.Index {
		if err := checkName("index attribute", e.Attr); err != nil {
			return err
		}
		if k := indexKey(rec.Type, e.Attr, e.Value, rec.ID); len(k) > kv.MaxKeySize {
			return fmt.Errorf("%w: %s value of %s %s is too long to index (%d bytes)",
				ErrInvalidKey, e.Attr, rec.Type, rec.ID, len(e.Value))
		}
	}
	return nil
}

func checkTypeID(typ, id string) error {
	if err := checkName("type", typ); err != nil {
		return err
	}
	return checkName("id", id)
}

// checkIDType refuses an id already held by a record of another type.
func (tx *Tx) checkIDType(typ, id string) error {
	owner := tx.bucket(bucketIDs).Get([]byte(id))
	if owner != nil && string(owner) != typ {
		return fmt.Errorf("%w: %s is a %s, not a %s", ErrIDInUse, id, owner, typ)
	}
	return nil
}

// previous decodes the record being replaced, or returns nil on insert. bucket may be nil
// (no record of the type was ever written).
func (tx *Tx) previous(bucket kv.Bucket, typ, id string) (*Record, error) {
	if bucket == nil {
		return nil, nil
	}
	v := bucket.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	return decodeRecord(typ, id, v)
}

// nextStamps computes the version and times Put stores.
func nextStamps(old, rec *Record) (version uint64, created, modified time.Time) {
	now := time.Now().UTC()
	version, created, modified = 1, rec.Created, rec.LastModified
	if old != nil {
		version = old.Version + 1
		if created.IsZero() {
			created = old.Created
		}
	}
	if created.IsZero() {
		created = now
	}
	if modified.IsZero() {
		modified = now
	}
	return version, created, modified
}

// checkUnique returns *UniqueError if a unique entry of rec is held by another id. The
// record's own entries do not clash, so re-putting an unchanged value succeeds.
func (tx *Tx) checkUnique(rec *Record) error {
	c := tx.bucket(bucketIndex).Cursor()
	for _, e := range rec.Index {
		if !e.Unique {
			continue
		}
		prefix := indexPrefix(rec.Type, e.Attr, e.Value)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if owner := string(k[len(prefix):]); owner != rec.ID {
				return &UniqueError{Type: rec.Type, Attr: e.Attr, Value: e.Value, OwnerID: owner}
			}
		}
	}
	return nil
}

// replaceIndex removes the old record's index keys and writes the new record's. Keys present
// in both are rewritten in place, which keeps a re-put of an unchanged record cheap.
func (tx *Tx) replaceIndex(old, rec *Record) error {
	idx := tx.bucket(bucketIndex)
	keep := make(map[string]byte, len(rec.Index))
	for _, e := range rec.Index {
		k := string(indexKey(rec.Type, e.Attr, e.Value, rec.ID))
		if e.Unique {
			keep[k] = flagUnique
		} else if _, dup := keep[k]; !dup {
			keep[k] = 0
		}
	}
	if old != nil {
		for _, e := range old.Index {
			k := indexKey(old.Type, e.Attr, e.Value, old.ID)
			if _, ok := keep[string(k)]; ok {
				continue
			}
			if err := idx.Delete(k); err != nil {
				return fmt.Errorf("removing index %s of %s %s: %w", e.Attr, old.Type, old.ID, err)
			}
		}
	}
	for k, flags := range keep {
		if v := idx.Get([]byte(k)); len(v) == 1 && v[0] == flags {
			continue
		}
		if err := idx.Put([]byte(k), []byte{flags}); err != nil {
			return fmt.Errorf("writing index of %s %s: %w", rec.Type, rec.ID, err)
		}
	}
	return nil
}

// addCount adjusts the O(1) record counter of typ.
func (tx *Tx) addCount(typ string, delta int64) error {
	meta := tx.bucket(bucketMeta)
	key := countKey(typ)
	n := int64(0)
	if v := meta.Get(key); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += delta
	if n < 0 {
		n = 0
	}
	if err := meta.Put(key, encodeUint64(uint64(n))); err != nil {
		return fmt.Errorf("updating count of %s: %w", typ, err)
	}
	return nil
}

func countKey(typ string) []byte { return joinKey("count", typ) }

// Delete removes record (typ, id), its index entries and every membership edge it is part of:
// its own members if it is a group, and its membership in every group that contains it (found
// through the reverse edges, so only those groups are touched). It returns ErrNotFound if the
// record does not exist. Its writes grow with the edges: on a store with bounded
// transactions, a caller unlinks a large resource's edges (RemoveMember) in transactions of
// their own first (provision's deletes in parts).
func (tx *Tx) Delete(typ, id string) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkTypeID(typ, id); err != nil {
		return err
	}
	b := tx.records(typ)
	if b == nil {
		return ErrNotFound
	}
	old, err := tx.previous(b, typ, id)
	if err != nil {
		return err
	}
	if old == nil {
		return ErrNotFound
	}
	if err := tx.replaceIndex(old, &Record{Type: typ, ID: id}); err != nil {
		return err
	}
	if err := b.Delete([]byte(id)); err != nil {
		return fmt.Errorf("deleting %s %s: %w", typ, id, err)
	}
	if err := tx.bucket(bucketIDs).Delete([]byte(id)); err != nil {
		return fmt.Errorf("deleting id %s: %w", id, err)
	}
	if err := tx.addCount(typ, -1); err != nil {
		return err
	}
	if _, err := tx.RemoveAllMembers(id); err != nil {
		return err
	}
	return tx.removeFromAllGroups(id)
}

// removeFromAllGroups deletes every edge group->id and its reverse edge, and touches each
// group: its members are part of what it is, so its version moves.
func (tx *Tx) removeFromAllGroups(id string) error {
	for _, g := range collectSuffixes(tx.bucket(bucketMemberOf), id) {
		if err := tx.deleteEdge(g, id); err != nil {
			return err
		}
		if err := tx.Touch(g); err != nil {
			return err
		}
	}
	return nil
}

// Touch gives the record with id a new version and LastModified without changing its
// document or index entries: for a change of what the resource is made of that is kept
// outside its record (a group losing a member that was deleted), so that its ETag and
// meta.lastModified move as RFC 7644 §3.14 asks and a stale If-Match no longer matches. A
// record that does not exist is no error (nothing to touch).
func (tx *Tx) Touch(id string) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	typ, err := tx.TypeOf(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	b := tx.records(typ)
	old, err := tx.previous(b, typ, id)
	if err != nil || old == nil {
		return err
	}
	stored := *old
	stored.Version, stored.Created, stored.LastModified = nextStamps(old, &Record{})
	if err := b.Put([]byte(id), encodeRecord(&stored)); err != nil {
		return fmt.Errorf("writing %s %s: %w", typ, id, err)
	}
	return nil
}

// Lookup returns the ids of records of typ with an index entry (attr, value), compared
// case-insensitively, sorted and distinct. It costs one cursor seek plus one step per match.
func (tx *Tx) Lookup(typ, attr, value string) ([]string, error) {
	if err := checkName("type", typ); err != nil {
		return nil, err
	}
	if err := checkName("index attribute", attr); err != nil {
		return nil, err
	}
	prefix := indexPrefix(typ, attr, value)
	if len(prefix) > kv.MaxKeySize {
		return nil, nil // nothing that long can have been indexed
	}
	var ids []string
	c := tx.bucket(bucketIndex).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	return ids, nil
}

// Scan calls fn with every record of typ in id order until fn returns false or an error.
func (tx *Tx) Scan(typ string, fn func(*Record) (bool, error)) error {
	return tx.ScanFrom(typ, "", fn)
}

// ScanFrom is Scan starting at the first id >= start, so a long listing can be read in pages
// of short transactions (a long read transaction keeps bbolt from reusing pages).
func (tx *Tx) ScanFrom(typ, start string, fn func(*Record) (bool, error)) error {
	if err := checkName("type", typ); err != nil {
		return err
	}
	b := tx.records(typ)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.Seek([]byte(start)); k != nil; k, v = c.Next() {
		rec, err := decodeRecord(typ, string(k), v)
		if err != nil {
			return err
		}
		more, err := fn(rec)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// ScanIDs calls fn with the id of every record of typ in id order until fn returns false or
// an error, without decoding the records (counting or skipping them costs no decode).
func (tx *Tx) ScanIDs(typ string, fn func(id string) (bool, error)) error {
	if err := checkName("type", typ); err != nil {
		return err
	}
	b := tx.records(typ)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		more, err := fn(string(k))
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// Count returns the number of records of typ from a counter kept by Put and Delete.
func (tx *Tx) Count(typ string) (int, error) {
	if err := checkName("type", typ); err != nil {
		return 0, err
	}
	v := tx.bucket(bucketMeta).Get(countKey(typ))
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: count of %s", ErrCorrupt, typ)
	}
	return int(binary.BigEndian.Uint64(v)), nil
}

// AddMember records that m belongs to group groupID: the edge groupID->m.ID (holding m's Type
// and Display) and the reverse edge m.ID->groupID. Adding an existing member updates its Type
// and Display and returns added=false. The store does not check that either record exists or
// that the edge makes no cycle: those are the caller's rules.
func (tx *Tx) AddMember(groupID string, m Member) (added bool, err error) {
	if err := tx.checkWritable(); err != nil {
		return false, err
	}
	if err := checkEdge(groupID, m.ID); err != nil {
		return false, err
	}
	members := tx.bucket(bucketMembers)
	key := tx.edgeKey(groupID, m.ID)
	prev := members.Get(key)
	if prev != nil && memberEncoded(prev, m) {
		return false, nil
	}
	if err := members.Put(key, encodeMember(m)); err != nil {
		return false, fmt.Errorf("adding member %s to %s: %w", m.ID, groupID, err)
	}
	if err := tx.bucket(bucketMemberOf).Put(tx.edgeKey(m.ID, groupID), []byte{}); err != nil {
		return false, fmt.Errorf("adding member %s to %s: %w", m.ID, groupID, err)
	}
	return prev == nil, nil
}

func checkEdge(groupID, memberID string) error {
	if err := checkName("group id", groupID); err != nil {
		return err
	}
	return checkName("member id", memberID)
}

// RemoveMember deletes the edge groupID->memberID and its reverse; removed reports whether
// it existed.
func (tx *Tx) RemoveMember(groupID, memberID string) (removed bool, err error) {
	if err := tx.checkWritable(); err != nil {
		return false, err
	}
	if err := checkEdge(groupID, memberID); err != nil {
		return false, err
	}
	if tx.bucket(bucketMembers).Get(tx.edgeKey(groupID, memberID)) == nil {
		return false, nil
	}
	if err := tx.deleteEdge(groupID, memberID); err != nil {
		return false, err
	}
	return true, nil
}

// RemoveAllMembers deletes every edge of group groupID (and the reverse edges) and returns
// how many there were.
func (tx *Tx) RemoveAllMembers(groupID string) (int, error) {
	if err := tx.checkWritable(); err != nil {
		return 0, err
	}
	if err := checkName("group id", groupID); err != nil {
		return 0, err
	}
	members := collectSuffixes(tx.bucket(bucketMembers), groupID)
	for _, m := range members {
		if err := tx.deleteEdge(groupID, m); err != nil {
			return 0, err
		}
	}
	return len(members), nil
}

// collectSuffixes returns the second components of the keys "first \0 x" in b. Keys are
// collected before deleting because deleting under a bbolt cursor can skip keys.
func collectSuffixes(b kv.Bucket, first string) []string {
	prefix := append([]byte(first), sep)
	var out []string
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}

// deleteEdge deletes the edge groupID->memberID and its reverse edge.
func (tx *Tx) deleteEdge(groupID, memberID string) error {
	if err := tx.bucket(bucketMembers).Delete(tx.edgeKey(groupID, memberID)); err != nil {
		return fmt.Errorf("removing member %s from %s: %w", memberID, groupID, err)
	}
	if err := tx.bucket(bucketMemberOf).Delete(tx.edgeKey(memberID, groupID)); err != nil {
		return fmt.Errorf("removing member %s from %s: %w", memberID, groupID, err)
	}
	return nil
}

// HasMember reports whether memberID is a direct member of groupID.
func (tx *Tx) HasMember(groupID, memberID string) (bool, error) {
	if err := checkEdge(groupID, memberID); err != nil {
		return false, err
	}
	return tx.bucket(bucketMembers).Get(tx.edgeKey(groupID, memberID)) != nil, nil
}

// Member returns the edge groupID->memberID as stored (the member's Type and Display);
// ok is false when memberID is not a direct member.
func (tx *Tx) Member(groupID, memberID string) (m Member, ok bool, err error) {
	if err := checkEdge(groupID, memberID); err != nil {
		return Member{}, false, err
	}
	v := tx.bucket(bucketMembers).Get(joinKey(groupID, memberID))
	if v == nil {
		return Member{}, false, nil
	}
	m, err = decodeMember(memberID, v)
	return m, err == nil, err
}

// Members calls fn with each direct member of groupID in member id order, stopping at the
// first error, which it returns.
func (tx *Tx) Members(groupID string, fn func(Member) error) error {
	if err := checkName("group id", groupID); err != nil {
		return err
	}
	prefix := append([]byte(groupID), sep)
	c := tx.bucket(bucketMembers).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		m, err := decodeMember(string(k[len(prefix):]), v)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// CountMembers counts the direct members of groupID, up to upTo: it stops there, so
// a caller that only needs to know whether a group holds more than n members walks at most
// n+1 edges. Nothing is decoded.
func (tx *Tx) CountMembers(groupID string, upTo int) (int, error) {
	if err := checkName("group id", groupID); err != nil {
		return 0, err
	}
	return countPrefix(tx.bucket(bucketMembers), groupID, upTo), nil
}

// CountGroupsOf counts the groups memberID directly belongs to, up to upTo, as
// CountMembers does.
func (tx *Tx) CountGroupsOf(memberID string, upTo int) (int, error) {
	if err := checkName("member id", memberID); err != nil {
		return 0, err
	}
	return countPrefix(tx.bucket(bucketMemberOf), memberID, upTo), nil
}

// countPrefix counts the edges of id in b, up to upTo.
func countPrefix(b kv.Bucket, id string, upTo int) int {
	prefix := append([]byte(id), sep)
	c := b.Cursor()
	n := 0
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < upTo; k, _ = c.Next() {
		n++
	}
	return n
}

// GroupsOf calls fn with the id of each group memberID directly belongs to, in id order,
// stopping at the first error, which it returns.
func (tx *Tx) GroupsOf(memberID string, fn func(groupID string) error) error {
	if err := checkName("member id", memberID); err != nil {
		return err
	}
	prefix := append([]byte(memberID), sep)
	c := tx.bucket(bucketMemberOf).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if err := fn(string(k[len(prefix):])); err != nil {
			return err
		}
	}
	return nil
}

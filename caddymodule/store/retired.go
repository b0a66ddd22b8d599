package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
)

// Retired accounts: the native ids, per target, of accounts whose resource was deleted.
// An app whose delete only deactivates the account keeps it, with its login; a later
// resource with the same name (a recycled login) would find that account through the
// mapping's lookup, and a create that adopts by lookup (an earlier attempt's answer was
// lost, a reconcile's repair) would take it over, with whatever the app attached to it.
// The delete's commit retires the account (RetireNativeID), and the gateway never adopts
// or links a retired account. An entry is kept for RetiredFor, then ignored and removed.
//
//	retired    target \0 native id                           -> retired at (8 bytes, Unix seconds), SCIM id \0 name
//	retiredAt  target \0 retired at (8 bytes, big-endian) \0 native id -> (empty)

// RetiredFor is how long a retired account is remembered: 90 days, longer than the 30
// days Entra keeps a deleted user restorable and than the quarantine most apps put on a
// freed login, so that a login recycled in that time never reaches the old account; after
// it, the entry is removed (a later delete removes it: see RetireNativeID), so the index
// holds at most the deletes of the last RetiredFor (plus one), however long the gateway
// runs.
const RetiredFor = 90 * 24 * time.Hour

// retiredExpireBatch is how many expired entries one RetireNativeID removes: it adds one,
// so removing one whenever there is one keeps the index at most as large as the deletes
// of one RetiredFor, at two more writes in the delete's commit.
const retiredExpireBatch = 1

// RetiredAccount is what the store remembers of a retired account: the resource it
// belonged to (its SCIM id and name, the userName or displayName) and when its delete
// was committed.
type RetiredAccount struct {
	SCIMID, Name string
	At           time.Time
}

// RetireNativeID records that nativeID of target belonged to resource who.SCIMID (named
// who.Name), deleted at who.At, and removes up to retiredExpireBatch of target's entries
// retired more than RetiredFor before who.At. At most 5 writes: the entry, its time index,
// an earlier entry's time index (the same id retired again), one expired entry (2).
func (tx *Tx) RetireNativeID(target, nativeID string, who RetiredAccount) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkIDMapArgs(target, who.SCIMID, nativeID); err != nil {
		return err
	}
	b, byTime := tx.bucket(bucketRetired), tx.bucket(bucketRetiredAt)
	key := joinKey(target, nativeID)
	if old := b.Get(key); len(old) >= 8 {
		if err := byTime.Delete(retiredAtKey(target, int64(binary.BigEndian.Uint64(old)), nativeID)); err != nil {
			return err
		}
	}
	at := who.At.Unix()
	v := binary.BigEndian.AppendUint64(nil, uint64(at))
	v = append(append(append(v, who.SCIMID...), sep), who.Name...)
	if err := b.Put(key, v); err != nil {
		return err
	}
	if err := byTime.Put(retiredAtKey(target, at, nativeID), nil); err != nil {
		return err
	}
	return tx.expireRetired(target, who.At.Add(-RetiredFor).Unix())
}

// expireRetired removes up to retiredExpireBatch of target's entries retired before
// cutoff (keys collected before deleting: deleting under a bbolt cursor can skip keys).
func (tx *Tx) expireRetired(target string, cutoff int64) error {
	if cutoff <= 0 {
		return nil
	}
	b, byTime := tx.bucket(bucketRetired), tx.bucket(bucketRetiredAt)
	prefix := append([]byte(target), sep)
	end := retiredAtKey(target, cutoff, "")
	var old [][]byte
	c := byTime.Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(old) < retiredExpireBatch && bytes.HasPrefix(k, prefix) && bytes.Compare(k, end) < 0; k, _ = c.Next() {
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		native := string(k[len(prefix)+9:])
		if err := byTime.Delete(k); err != nil {
			return fmt.Errorf("removing an expired retired account of %s: %w", target, err)
		}
		if err := b.Delete(joinKey(target, native)); err != nil {
			return fmt.Errorf("removing an expired retired account of %s: %w", target, err)
		}
	}
	return nil
}

// Retired returns the resource nativeID of target belonged to when its delete retired it
// less than RetiredFor before now; ok is false when it is not retired (or no longer).
func (tx *Tx) Retired(target, nativeID string, now time.Time) (who RetiredAccount, ok bool, err error) {
	if err := checkIDMapArgs(target, "-", nativeID); err != nil {
		return who, false, err
	}
	v := tx.bucket(bucketRetired).Get(joinKey(target, nativeID))
	if v == nil {
		return who, false, nil
	}
	i := bytes.IndexByte(v[min(8, len(v)):], sep)
	if len(v) < 8 || i < 0 {
		return who, false, fmt.Errorf("%w: retired account %q of %s", ErrCorrupt, nativeID, target)
	}
	who = RetiredAccount{At: time.Unix(int64(binary.BigEndian.Uint64(v)), 0).UTC(), SCIMID: string(v[8 : 8+i]), Name: string(v[8+i+1:])}
	if !now.Before(who.At.Add(RetiredFor)) {
		return RetiredAccount{}, false, nil
	}
	return who, true, nil
}

func retiredAtKey(target string, at int64, nativeID string) []byte {
	k := append([]byte(target), sep)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(append(k, sep), nativeID...)
}

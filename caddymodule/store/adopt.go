package store

import (
	"encoding/binary"
)

// Adoptions are creates whose outcome in an app the gateway never learned: it sent the
// create, and then the answer was lost, came too late, proved nothing, or the commit that
// would have recorded the account failed (or the gateway stopped). The app may hold the
// account. When the same create comes again, the gateway looks the account up by its name
// (the mapping's lookup) and takes it instead of creating a second one; only names listed
// here are looked up, so a client's value never selects an account the gateway did not
// try to create. Names are folded like the uniqueness indexes (ada@x and ADA@x are one).

// SetAdoption lists the create of name (a userName or a group's displayName) of resource
// type typ in target; seq is its intent's journal sequence number (0 when not known). What
// the create sent is not known (AdoptionSent gives nil): the account is brought in line
// with the resource when it is adopted.
func (tx *Tx) SetAdoption(target, typ, name string, seq uint64) error {
	return tx.setAdoption(target, typ, name, binary.BigEndian.AppendUint64(nil, seq))
}

// SetAdoptionSent lists the create of name as SetAdoption does, with sent: a digest of
// the calls its attempt made, so that the attempt that adopts the account can tell whether
// the account holds what it would send (AdoptionSent). A create already listed with
// another digest, or with none, stays listed with none: the account may be that other
// attempt's, whose calls are not this one's.
func (tx *Tx) SetAdoptionSent(target, typ, name string, sent []byte) error {
	key, err := adoptKey(target, typ, name)
	if err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint64(nil, 0)
	if old := tx.bucket(bucketAdopt).Get(key); old == nil || (len(old) > 8 && string(old[8:]) == string(sent)) {
		v = append(v, sent...)
	}
	return tx.setAdoption(target, typ, name, v)
}

func (tx *Tx) setAdoption(target, typ, name string, v []byte) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	key, err := adoptKey(target, typ, name)
	if err != nil {
		return err
	}
	return tx.bucket(bucketAdopt).Put(key, v)
}

// Adoption reports whether the create of name is listed, and its intent's sequence number.
func (tx *Tx) Adoption(target, typ, name string) (seq uint64, ok bool) {
	key, err := adoptKey(target, typ, name)
	if err != nil {
		return 0, false
	}
	v := tx.bucket(bucketAdopt).Get(key)
	if len(v) < 8 {
		return 0, v != nil
	}
	return binary.BigEndian.Uint64(v), true
}

// AdoptionSent returns the digest SetAdoptionSent listed the create of name with, nil when
// it is not listed or what its attempts sent is not known.
func (tx *Tx) AdoptionSent(target, typ, name string) []byte {
	key, err := adoptKey(target, typ, name)
	if err != nil {
		return nil
	}
	if v := tx.bucket(bucketAdopt).Get(key); len(v) > 8 {
		return append([]byte(nil), v[8:]...)
	}
	return nil
}

// DeleteAdoption takes the create of name off the list (no error when it is not listed).
func (tx *Tx) DeleteAdoption(target, typ, name string) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	key, err := adoptKey(target, typ, name)
	if err != nil {
		return err
	}
	return tx.bucket(bucketAdopt).Delete(key)
}

func adoptKey(target, typ, name string) ([]byte, error) {
	for _, p := range []struct{ what, v string }{{"target", target}, {"resource type", typ}, {"name", name}} {
		if err := checkName(p.what, p.v); err != nil {
			return nil, err
		}
	}
	return joinKey(target, typ, fold(name)), nil
}

// Flow progress: when a change's flow of calls fails part-way, the calls it made that may
// not be repeated (not idempotent) are remembered for the resource, so that the change's
// retry does not make them again. The change's commit forgets them.

// SetProgress records what a failed flow of scimID's change made in target (the caller's
// encoding); nil or empty forgets it.
func (tx *Tx) SetProgress(target, scimID string, data []byte) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkIDMapArgs(target, scimID, "-"); err != nil {
		return err
	}
	if len(data) == 0 {
		return tx.bucket(bucketProgress).Delete(joinKey(target, scimID))
	}
	return tx.bucket(bucketProgress).Put(joinKey(target, scimID), append([]byte(nil), data...))
}

// Progress returns what SetProgress recorded for scimID in target (nil when nothing).
func (tx *Tx) Progress(target, scimID string) []byte {
	if checkIDMapArgs(target, scimID, "-") != nil {
		return nil
	}
	if v := tx.bucket(bucketProgress).Get(joinKey(target, scimID)); v != nil {
		return append([]byte(nil), v...)
	}
	return nil
}

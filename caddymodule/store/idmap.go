package store

import (
	"bytes"
	"fmt"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// The id map links each resource's SCIM id to its id in a legacy application ("target"),
// both ways. It is written in the same transaction as the resource, so after a crash the
// map and the directory agree. Deleting a resource does not touch the map: the gateway
// removes the mapping when the native delete has happened.

// NativeIDTakenError is SetNativeID's answer when the native id is already mapped to
// another resource: the app handed out an id it had given before (an app that lost its
// data and counts from 1 again, or one that merged two accounts). It wraps ErrIDInUse.
type NativeIDTakenError struct {
	Target, NativeID, Owner string
}

func (e *NativeIDTakenError) Error() string {
	return fmt.Sprintf("%v: native id %q of %s is already mapped to %s", ErrIDInUse, e.NativeID, e.Target, e.Owner)
}

func (e *NativeIDTakenError) Unwrap() error { return ErrIDInUse }

// SetNativeID maps scimID to nativeID for target, replacing an earlier mapping of scimID.
// A nativeID already mapped to another SCIM id of the same target is an error: two
// directory entries must never drive one native account.
func (tx *Tx) SetNativeID(target, scimID, nativeID string) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkIDMapArgs(target, scimID, nativeID); err != nil {
		return err
	}
	fwd, rev := tx.bucket(bucketIDMap), tx.bucket(bucketIDMapRev)
	revKey := joinKey(target, nativeID)
	if owner := rev.Get(revKey); owner != nil && !bytes.Equal(owner, []byte(scimID)) {
		return &NativeIDTakenError{Target: target, NativeID: nativeID, Owner: string(owner)}
	}
	fwdKey := joinKey(target, scimID)
	if old := fwd.Get(fwdKey); old != nil && !bytes.Equal(old, []byte(nativeID)) {
		if err := rev.Delete(joinKey(target, string(old))); err != nil {
			return err
		}
	}
	if err := fwd.Put(fwdKey, []byte(nativeID)); err != nil {
		return err
	}
	return rev.Put(revKey, []byte(scimID))
}

// NativeID returns the native id of scimID in target, or ErrNotFound.
func (tx *Tx) NativeID(target, scimID string) (string, error) {
	if err := checkIDMapArgs(target, scimID, "-"); err != nil {
		return "", err
	}
	v := tx.bucket(bucketIDMap).Get(joinKey(target, scimID))
	if v == nil {
		return "", ErrNotFound
	}
	return string(v), nil
}

// SCIMIDOf returns the SCIM id that nativeID of target is mapped to, or ErrNotFound.
func (tx *Tx) SCIMIDOf(target, nativeID string) (string, error) {
	if err := checkIDMapArgs(target, "-", nativeID); err != nil {
		return "", err
	}
	v := tx.bucket(bucketIDMapRev).Get(joinKey(target, nativeID))
	if v == nil {
		return "", ErrNotFound
	}
	return string(v), nil
}

// DeleteNativeID removes the mapping of scimID in target (no error when there is none).
func (tx *Tx) DeleteNativeID(target, scimID string) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkIDMapArgs(target, scimID, "-"); err != nil {
		return err
	}
	fwd := tx.bucket(bucketIDMap)
	key := joinKey(target, scimID)
	native := fwd.Get(key)
	if native == nil {
		return nil
	}
	if err := tx.bucket(bucketIDMapRev).Delete(joinKey(target, string(native))); err != nil {
		return err
	}
	return fwd.Delete(key)
}

func checkIDMapArgs(target, scimID, nativeID string) error {
	for _, p := range []struct{ what, v string }{{"target", target}, {"SCIM id", scimID}, {"native id", nativeID}} {
		if err := checkName(p.what, p.v); err != nil {
			return err
		}
	}
	return nil
}

// Marks (change.Mark) remember, per target, what the gateway's policy did to a resource's
// account in the app, so that later changes can undo or respect it. They are written in the
// transaction of the change that caused them.

// SetMark records mark for scimID in target; change.MarkNone removes it.
func (tx *Tx) SetMark(target, scimID string, mark change.Mark) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkIDMapArgs(target, scimID, "-"); err != nil {
		return err
	}
	key := joinKey(target, scimID)
	if mark == change.MarkNone {
		return tx.bucket(bucketMarks).Delete(key)
	}
	return tx.bucket(bucketMarks).Put(key, []byte(mark))
}

// Mark returns the mark of scimID in target, change.MarkNone when there is none.
func (tx *Tx) Mark(target, scimID string) change.Mark {
	if checkIDMapArgs(target, scimID, "-") != nil {
		return change.MarkNone
	}
	return change.Mark(tx.bucket(bucketMarks).Get(joinKey(target, scimID)))
}

package store

import "bytes"

// Roles: where an app's groups are its existing roles (the mapping's groups.roles), each
// group of the directory stands for one role of the app, found by a table or a lookup when
// the group is created or renamed. Unlike the id map, several groups may stand for one role
// ("Admins" and "Administrators" both give role_admin), so roles are kept apart from it.

// SetRole records that the group groupID stands for the role roleID in target; an empty
// roleID forgets it (the group gives no role).
func (tx *Tx) SetRole(target, groupID, roleID string) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkIDMapArgs(target, groupID, "-"); err != nil {
		return err
	}
	if roleID == "" {
		return tx.bucket(bucketRoles).Delete(joinKey(target, groupID))
	}
	return tx.bucket(bucketRoles).Put(joinKey(target, groupID), []byte(roleID))
}

// Role returns the role the group groupID stands for in target ("" when none).
func (tx *Tx) Role(target, groupID string) string {
	if checkIDMapArgs(target, groupID, "-") != nil {
		return ""
	}
	return string(tx.bucket(bucketRoles).Get(joinKey(target, groupID)))
}

// Withheld memberships: a member the policy kept out of a group that is a role (the change
// skipped, or the member dropped) is in the directory's group but must not get the role
// when a later change sends the member's list of roles.

// SetWithheld records (held true) or forgets (false) that the membership of memberID in
// groupID is kept out of target.
func (tx *Tx) SetWithheld(target, groupID, memberID string, held bool) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkIDMapArgs(target, groupID, memberID); err != nil {
		return err
	}
	key := joinKey(target, groupID, memberID)
	if !held {
		return tx.bucket(bucketWithheld).Delete(key)
	}
	return tx.bucket(bucketWithheld).Put(key, []byte{1})
}

// Withheld reports whether the membership of memberID in groupID is kept out of target.
func (tx *Tx) Withheld(target, groupID, memberID string) bool {
	if checkIDMapArgs(target, groupID, memberID) != nil {
		return false
	}
	return tx.bucket(bucketWithheld).Get(joinKey(target, groupID, memberID)) != nil
}

// Roles calls fn with each group of target that stands for a role, and the role, in the
// order of the groups' ids.
func (tx *Tx) Roles(target string, fn func(groupID, roleID string) error) error {
	if err := checkIDMapArgs(target, "-", "-"); err != nil {
		return err
	}
	prefix := joinKey(target, "")
	c := tx.bucket(bucketRoles).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(string(k[len(prefix):]), string(v)); err != nil {
			return err
		}
	}
	return nil
}

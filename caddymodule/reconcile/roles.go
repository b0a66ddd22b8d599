package reconcile

import (
	"fmt"
	"slices"

	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Groups that are the app's roles (the mapping's groups.roles) have no members in the app:
// each user holds a list of roles. Where the mapping says where a listed user holds it
// (groups.roles.read), a reconcile compares it with the list the assign call would send
// the user (UserRoles: every role of every group the user is in, without the memberships
// the policy kept out). A role the list has and the app lacks is a member missing from the
// group that gives it; a role the app has and the list lacks is a member extra, of a group
// that gives it, or of none when no group of the directory gives it. The findings are
// membership findings like a native group's, so --fix repairs them the same way: a
// members repair of the group sends the user's whole list of roles.

// roleGroup is a group of the directory that gives a role.
type roleGroup struct{ id, name string }

// compareRoles compares the roles of a linked, in-scope user the app listed as acc.
func (rn *run) compareRoles(tx *store.Tx, acc mapping.Account, scimID, subject string) error {
	have, err := rn.rc.target.Mapping.Roles().RolesIn(acc.Item)
	if err != nil {
		rn.addNote(fmt.Sprintf("the roles of user %s could not be read, so they are not compared: %v", subject, err))
		return nil
	}
	want, err := rn.rc.engine.UserRoles(tx, scimID)
	if err != nil {
		return err
	}
	member := &Member{SCIMID: scimID, NativeID: acc.NativeID, Subject: subject}
	for _, r := range want {
		if _, ok := slices.BinarySearch(have, r); ok {
			continue
		}
		g, err := rn.groupGiving(tx, r, scimID)
		if err != nil {
			return err
		}
		rn.note(Finding{Kind: MemberMissing, ResourceType: scim.GroupType, SCIMID: g.id, NativeID: r, Subject: g.name, Member: member,
			Reason: fmt.Sprintf("a member of the directory's group without its role %s in the app", r)})
	}
	for _, r := range have {
		if _, ok := slices.BinarySearch(want, r); ok {
			continue
		}
		g, err := rn.groupGiving(tx, r, "")
		if err != nil {
			return err
		}
		f := Finding{Kind: MemberExtra, ResourceType: scim.GroupType, SCIMID: g.id, NativeID: r, Subject: g.name, Member: member,
			Reason: fmt.Sprintf("role %s in the app, which the directory's groups do not give this user", r)}
		if g.id == "" {
			f.Subject = "role " + r
			f.Reason = fmt.Sprintf("role %s in the app, which no group of the directory gives", r)
		}
		rn.note(f)
	}
	return nil
}

// groupGiving returns the first group (by id) that gives role: with member set, the
// first that member is in and not withheld from; a zero roleGroup when there is none.
// The groups of each role are read once per run.
func (rn *run) groupGiving(tx *store.Tx, role, member string) (roleGroup, error) {
	t := rn.rc.target
	if rn.roleGroups == nil {
		rn.roleGroups = map[string][]string{}
		err := tx.Roles(t.Name, func(gid, r string) error {
			rn.roleGroups[r] = append(rn.roleGroups[r], gid)
			return nil
		})
		if err != nil {
			return roleGroup{}, err
		}
	}
	for _, gid := range rn.roleGroups[role] {
		if member != "" {
			has, err := tx.HasMember(gid, member)
			if err != nil {
				return roleGroup{}, err
			}
			if !has || tx.Withheld(t.Name, gid, member) {
				continue
			}
		}
		return roleGroup{id: gid, name: subjectIn(tx, scim.GroupType, gid, gid)}, nil
	}
	return roleGroup{}, nil
}

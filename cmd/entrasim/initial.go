package main

import (
	"context"
	"net/http"
	"strings"
)

// initial plays Entra's initial cycle (how-provisioning-works, entra-wire.md §5.1): the
// probe, then every user (lookup, then POST or PATCH of the differences), then the
// manager reference pass, then every group (lookup, POST without members), then the
// membership PATCHes. Each phase finishes before the next starts, as in Entra, because
// the later ones refer to ids the earlier ones learn.
func (s *sim) initial(ctx context.Context) {
	if !s.probe(ctx) {
		return
	}
	forEach(ctx, len(s.ds.Users), s.concurrency, s.syncUser)
	forEach(ctx, len(s.ds.Users), s.concurrency, s.linkManager)
	forEach(ctx, len(s.ds.Groups), s.concurrency, s.syncGroup)
	forEach(ctx, len(s.ds.Groups), s.concurrency, s.syncMembers)
}

// syncUser matches one user by userName and creates it, or PATCHes what differs. A user
// that matches exactly sends nothing more, so a second run creates no duplicates.
func (s *sim) syncUser(ctx context.Context, i int) {
	u := &s.ds.Users[i]
	res, ok := s.lookupUser(ctx, u.UserName)
	if !ok {
		return
	}
	if res == nil {
		resp, ok := s.c.call(ctx, "create", http.MethodPost, "/Users", userCreateBody(u), http.StatusCreated)
		if !ok {
			return
		}
		if id, ok := s.c.created("create", "/Users", resp); ok {
			s.setUser(u.UserName, id, "")
		}
		return
	}
	changes := userDiff(u, res, s.d)
	if len(changes) == 0 {
		s.unchanged.Add(1)
		return
	}
	s.c.call(ctx, "patch_attrs", http.MethodPatch, "/Users/"+s.userID(u.UserName), s.d.attrPatch(changes), http.StatusOK, http.StatusNoContent)
}

// userDiff lists the attributes whose target value differs from the source. Empty source
// values are skipped: Entra does not provision nulls (entra-wire.md §2.3).
func userDiff(u *User, res map[string]any, d dialect) []attrChange {
	var out []attrChange
	cmp := func(path, want, have string) {
		if want != "" && want != have {
			out = append(out, attrChange{path: path, value: want, wasNone: have == ""})
		}
	}
	cmp("externalId", u.ExternalID, strAt(res, "externalId"))
	cmp("displayName", u.DisplayName, strAt(res, "displayName"))
	cmp("title", u.Title, strAt(res, "title"))
	cmp(workEmailPath, u.Email, workEmail(res))
	cmp("name.givenName", u.GivenName, strAt(res, "name", "givenName"))
	cmp("name.familyName", u.FamilyName, strAt(res, "name", "familyName"))
	cmp(departmentPath, u.Department, strAt(res, enterpriseSchema, "department"))
	cmp(employeeNumPath, u.EmployeeNumber, strAt(res, enterpriseSchema, "employeeNumber"))
	if u.IsActive() != activeOf(res) {
		out = append(out, attrChange{path: "active", value: d.boolean(u.IsActive())})
	}
	return out
}

// linkManager is the reference pass for one user: PATCH the manager's id when the target
// does not already point to it.
func (s *sim) linkManager(ctx context.Context, i int) {
	u := &s.ds.Users[i]
	if u.Manager == "" {
		return
	}
	id := s.userID(u.UserName)
	if id == "" {
		return // the user's own lookup or create failed and was counted
	}
	managerID := s.userID(u.Manager)
	if managerID == "" {
		s.c.rec.unresolvedRef()
		return
	}
	s.mu.Lock()
	current := s.managers[strings.ToLower(u.UserName)]
	s.mu.Unlock()
	if current == managerID {
		return
	}
	if _, ok := s.c.call(ctx, "patch_manager", http.MethodPatch, "/Users/"+id, s.d.managerPatch(managerID, current != ""), http.StatusOK, http.StatusNoContent); ok {
		s.setUser(u.UserName, id, managerID)
	}
}

// syncGroup matches one group by displayName and creates it empty, or PATCHes its
// externalId when that differs.
func (s *sim) syncGroup(ctx context.Context, j int) {
	g := &s.ds.Groups[j]
	res, ok := s.lookupGroup(ctx, g.DisplayName)
	if !ok {
		return
	}
	if res == nil {
		resp, ok := s.c.call(ctx, "create_group", http.MethodPost, "/Groups", groupCreateBody(g), http.StatusCreated)
		if !ok {
			return
		}
		if id, ok := s.c.created("create_group", "/Groups", resp); ok {
			s.setGroup(g.DisplayName, id)
		}
		return
	}
	have := strAt(res, "externalId")
	if g.ExternalID == "" || g.ExternalID == have {
		s.unchanged.Add(1)
		return
	}
	body := s.d.attrPatch([]attrChange{{path: "externalId", value: g.ExternalID, wasNone: have == ""}})
	s.c.call(ctx, "patch_group", http.MethodPatch, "/Groups/"+s.groupID(g.DisplayName), body, http.StatusOK, http.StatusNoContent)
}

// syncMembers adds a group's members, membersPerOp per PATCH. Entra never reads members
// back (entra-wire.md §2.6), so a second run sends the same adds again; adding a present
// member is a no-op on a conforming server.
func (s *sim) syncMembers(ctx context.Context, j int) {
	g := &s.ds.Groups[j]
	gid := s.groupID(g.DisplayName)
	if gid == "" {
		return
	}
	ids := make([]string, 0, len(g.Members)+len(g.MemberGroups))
	for _, m := range g.Members {
		if id := s.userID(m); id != "" {
			ids = append(ids, id)
		} else {
			s.c.rec.unresolvedRef()
		}
	}
	for _, m := range g.MemberGroups {
		if id := s.groupID(m); id != "" {
			ids = append(ids, id)
		} else {
			s.c.rec.unresolvedRef()
		}
	}
	for start := 0; start < len(ids) && ctx.Err() == nil; start += membersPerOp {
		chunk := ids[start:min(start+membersPerOp, len(ids))]
		s.c.call(ctx, "patch_members", http.MethodPatch, "/Groups/"+gid, s.d.addMembersPatch(chunk), http.StatusOK, http.StatusNoContent)
	}
}

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
)

// changeKind is one kind of incremental change; its name is also the request kind the
// summary counts it under.
type changeKind string

const (
	chUpdate  changeKind = "update"         // attribute updates (PATCH)
	chDisable changeKind = "disable"        // soft delete / unassignment: PATCH active=false
	chEnable  changeKind = "enable"         // re-enable a disabled user: PATCH active=true
	chRemove  changeKind = "remove_members" // a user leaves a group
	chDelete  changeKind = "delete"         // hard delete: DELETE, 204
)

// changeMix weighs the kinds drawn: mostly updates, as in a real tenant.
var changeMix = []changeKind{chUpdate, chUpdate, chUpdate, chUpdate, chDisable, chDisable, chEnable, chRemove, chRemove, chDelete}

// change is one incremental change. User indexes Dataset.Users (the member, for a
// removal); Group indexes Dataset.Groups (removals only); Update holds the new values.
type change struct {
	Kind   changeKind
	User   int
	Group  int
	Update *User
}

// planChanges draws k changes, the same for the same seed and dataset. Every change has
// its own target (a user is updated, disabled or deleted at most once; a membership is
// removed at most once; a deleted user loses no membership in the same cycle), so the
// changes can run concurrently in any order. Fewer than k come back when the dataset
// runs out of targets.
func planChanges(seed int64, ds *Dataset, k int) []change {
	r := newRand(seed, 2)
	var active, inactive []int
	index := make(map[string]int, len(ds.Users))
	for i := range ds.Users {
		index[strings.ToLower(ds.Users[i].UserName)] = i
		if ds.Users[i].IsActive() {
			active = append(active, i)
		} else {
			inactive = append(inactive, i)
		}
	}
	var pairs [][2]int // {group, user}
	for g := range ds.Groups {
		for _, m := range ds.Groups[g].Members {
			pairs = append(pairs, [2]int{g, index[strings.ToLower(m)]})
		}
	}
	deleted, leaving := map[int]bool{}, map[int]bool{}
	out := make([]change, 0, k)
	for tries := 0; len(out) < k && tries < 4*k+20; tries++ {
		switch kind := changeMix[r.IntN(len(changeMix))]; kind {
		case chUpdate, chDisable:
			if i, ok := take(r, &active, nil); ok {
				c := change{Kind: kind, User: i}
				if kind == chUpdate {
					c.Update = updatedUser(r, &ds.Users[i], len(out))
				}
				out = append(out, c)
			}
		case chEnable:
			if i, ok := take(r, &inactive, nil); ok {
				out = append(out, change{Kind: kind, User: i})
			}
		case chDelete:
			if i, ok := take(r, &active, leaving); ok {
				deleted[i] = true
				out = append(out, change{Kind: kind, User: i})
			}
		case chRemove:
			if p, ok := takePair(r, &pairs, deleted); ok {
				leaving[p[1]] = true
				out = append(out, change{Kind: kind, Group: p[0], User: p[1]})
			}
		}
	}
	return out
}

// take removes a random element from pool, skipping (and dropping) those in avoid; a
// few tries at most.
func take(r *rand.Rand, pool *[]int, avoid map[int]bool) (int, bool) {
	for try := 0; try < 8 && len(*pool) > 0; try++ {
		p := *pool
		j := r.IntN(len(p))
		v := p[j]
		p[j] = p[len(p)-1]
		*pool = p[:len(p)-1]
		if !avoid[v] {
			return v, true
		}
	}
	return 0, false
}

func takePair(r *rand.Rand, pool *[][2]int, avoidUser map[int]bool) ([2]int, bool) {
	for try := 0; try < 8 && len(*pool) > 0; try++ {
		p := *pool
		j := r.IntN(len(p))
		v := p[j]
		p[j] = p[len(p)-1]
		*pool = p[:len(p)-1]
		if !avoidUser[v[1]] {
			return v, true
		}
	}
	return [2]int{}, false
}

// updatedUser is u after a change in the tenant: a new family name (and so display name
// and mail), department and title.
func updatedUser(r *rand.Rand, u *User, n int) *User {
	nu := *u
	nu.FamilyName = fmt.Sprintf("%s-%d", familyNames[r.IntN(len(familyNames))], n)
	nu.DisplayName = strings.TrimSpace(u.GivenName + " " + nu.FamilyName)
	local, _, _ := strings.Cut(u.UserName, "@")
	nu.Email = fmt.Sprintf("%s.u%d@mail.contoso.example", local, n)
	nu.Department = departments[r.IntN(len(departments))]
	nu.Title = titles[r.IntN(len(titles))]
	return &nu
}

// incremental plays an incremental cycle: the probe, then the planned changes at the
// chosen concurrency. Ids come from this run's initial cycle, or from a lookup.
func (s *sim) incremental(ctx context.Context, plan []change) {
	if !s.probe(ctx) {
		return
	}
	forEach(ctx, len(plan), s.concurrency, func(ctx context.Context, i int) { s.apply(ctx, &plan[i]) })
}

func (s *sim) apply(ctx context.Context, c *change) {
	u := &s.ds.Users[c.User]
	id, ok := s.resolveUser(ctx, u.UserName)
	if id == "" {
		if ok {
			s.c.rec.unresolvedRef() // not on the target: nothing to change
		}
		return
	}
	path := "/Users/" + id
	kind := string(c.Kind)
	switch c.Kind {
	case chUpdate:
		s.c.call(ctx, kind, http.MethodPatch, path, s.d.attrPatch(updateChanges(u, c.Update)), http.StatusOK, http.StatusNoContent)
	case chDisable, chEnable:
		s.c.call(ctx, kind, http.MethodPatch, path, s.d.activePatch(c.Kind == chEnable), http.StatusOK, http.StatusNoContent)
	case chDelete:
		if _, ok := s.c.call(ctx, kind, http.MethodDelete, path, nil, http.StatusNoContent); ok {
			s.forgetUser(u.UserName)
		}
	case chRemove:
		gid, ok := s.resolveGroup(ctx, s.ds.Groups[c.Group].DisplayName)
		if gid == "" {
			if ok {
				s.c.rec.unresolvedRef()
			}
			return
		}
		s.c.call(ctx, kind, http.MethodPatch, "/Groups/"+gid, s.d.removeMembersPatch([]string{id}), http.StatusOK, http.StatusNoContent)
	}
}

// updateChanges lists what an update changes, Add where the old value was empty.
func updateChanges(old, nu *User) []attrChange {
	return []attrChange{
		{path: workEmailPath, value: nu.Email, wasNone: old.Email == ""},
		{path: "name.familyName", value: nu.FamilyName, wasNone: old.FamilyName == ""},
		{path: "displayName", value: nu.DisplayName, wasNone: old.DisplayName == ""},
		{path: departmentPath, value: nu.Department, wasNone: old.Department == ""},
		{path: "title", value: nu.Title, wasNone: old.Title == ""},
	}
}

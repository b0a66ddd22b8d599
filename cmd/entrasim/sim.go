package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
)

// sim plays one provisioning job: the source tenant, the client, and the cache of target
// ids Entra keeps after a create or a match (how-provisioning-works).
type sim struct {
	ds          *Dataset
	c           *client
	d           dialect
	concurrency int

	mu       sync.Mutex
	userIDs  map[string]string // lower-case userName -> target id
	managers map[string]string // lower-case userName -> manager id the target had on lookup
	groupIDs map[string]string // lower-case displayName -> target id

	unchanged atomic.Int64
}

func newSim(ds *Dataset, c *client, d dialect, concurrency int) *sim {
	return &sim{
		ds: ds, c: c, d: d, concurrency: concurrency,
		userIDs:  make(map[string]string, len(ds.Users)),
		managers: make(map[string]string, len(ds.Users)),
		groupIDs: make(map[string]string, len(ds.Groups)),
	}
}

func (s *sim) userID(userName string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userIDs[strings.ToLower(userName)]
}

func (s *sim) groupID(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groupIDs[strings.ToLower(name)]
}

func (s *sim) setUser(userName, id, managerID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userIDs[strings.ToLower(userName)] = id
	s.managers[strings.ToLower(userName)] = managerID
}

func (s *sim) setGroup(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groupIDs[strings.ToLower(name)] = id
}

func (s *sim) forgetUser(userName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.userIDs, strings.ToLower(userName))
	delete(s.managers, strings.ToLower(userName))
}

// forEach calls fn for 0..n-1 on at most conc goroutines, and stops handing out work when
// ctx is done.
func forEach(ctx context.Context, n, conc int, fn func(ctx context.Context, i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(ctx, i)
			}
		})
	}
	wg.Wait()
}

// probe sends the start-of-cycle checks: a user and a group that cannot exist, by a random
// GUID, which must answer 200 with an empty ListResponse (entra-wire.md §1.4). It
// reports whether both did; like Entra's Test Connection, a failed probe stops the cycle
// rather than sending every object into the same error.
func (s *sim) probe(ctx context.Context) bool {
	passed := true
	for _, p := range []struct {
		resource, attr string
		exclude        bool
	}{{"Users", "userName", false}, {"Groups", "displayName", true}} {
		res, ok := s.c.lookup(ctx, "probe", p.resource, filterQuery(p.attr, uuid.NewString(), p.exclude))
		if ok && res != nil {
			s.c.rec.unexpected("probe", http.MethodGet, "/"+p.resource, http.StatusOK, "a random GUID matched a resource; the probe expects an empty ListResponse")
			ok = false
		}
		passed = passed && ok
	}
	return passed
}

// lookupUser finds a user by userName and caches its id and current manager. found is
// false when it does not exist; ok is false when the lookup failed.
func (s *sim) lookupUser(ctx context.Context, userName string) (res map[string]any, ok bool) {
	res, ok = s.c.lookup(ctx, "lookup", "Users", filterQuery("userName", userName, false))
	if ok && res != nil {
		id, _ := res["id"].(string)
		if id == "" {
			s.c.rec.unexpected("lookup", http.MethodGet, "/Users", http.StatusOK, "the matched user has no id")
			return nil, false
		}
		s.setUser(userName, id, managerOf(res))
	}
	return res, ok
}

// lookupGroup finds a group by displayName (members excluded) and caches its id.
func (s *sim) lookupGroup(ctx context.Context, name string) (map[string]any, bool) {
	res, ok := s.c.lookup(ctx, "lookup_group", "Groups", filterQuery("displayName", name, true))
	if ok && res != nil {
		id, _ := res["id"].(string)
		if id == "" {
			s.c.rec.unexpected("lookup_group", http.MethodGet, "/Groups", http.StatusOK, "the matched group has no id")
			return nil, false
		}
		s.setGroup(name, id)
	}
	return res, ok
}

// resolveUser returns a user's cached id, looking it up when this run has not seen it (an
// incremental phase run on its own). An empty id with ok true means the user does not
// exist on the target; ok false means the lookup failed (and was counted).
func (s *sim) resolveUser(ctx context.Context, userName string) (id string, ok bool) {
	if id := s.userID(userName); id != "" {
		return id, true
	}
	_, ok = s.lookupUser(ctx, userName)
	return s.userID(userName), ok
}

// resolveGroup is resolveUser for groups.
func (s *sim) resolveGroup(ctx context.Context, name string) (id string, ok bool) {
	if id := s.groupID(name); id != "" {
		return id, true
	}
	_, ok = s.lookupGroup(ctx, name)
	return s.groupID(name), ok
}

// attribute reading on target resources: SCIM names are case-insensitive.

func field(m map[string]any, name string) any {
	if v, ok := m[name]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func strAt(m map[string]any, path ...string) string {
	var cur any = m
	for _, p := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = field(obj, p)
	}
	s, _ := cur.(string)
	return s
}

// workEmail is emails[type eq "work"].value.
func workEmail(m map[string]any) string {
	list, _ := field(m, "emails").([]any)
	for _, e := range list {
		if em, ok := e.(map[string]any); ok && strings.EqualFold(strAt(em, "type"), "work") {
			return strAt(em, "value")
		}
	}
	return ""
}

// activeOf reads active as a boolean or a "True"/"False" string; absent means true.
func activeOf(m map[string]any) bool {
	switch v := field(m, "active").(type) {
	case bool:
		return v
	case string:
		return !strings.EqualFold(v, "false")
	}
	return true
}

// managerOf reads the enterprise manager as {"value": id} or a bare id.
func managerOf(m map[string]any) string {
	ext, _ := field(m, enterpriseSchema).(map[string]any)
	switch v := field(ext, "manager").(type) {
	case string:
		return v
	case map[string]any:
		return strAt(v, "value")
	}
	return ""
}

package demoapp

import (
	"net/http"
	"slices"
	"sync"
	"time"
)

// limits bound the state. They come from the config of the handler serving the request,
// so that a reload that changes them applies at once to the shared state.
type limits struct {
	accounts, teams, memberships int
}

// state is the app's whole in-memory database. One RWMutex guards everything: the demo app
// is a test fixture, and a single lock makes every request atomic and the dump consistent.
// Records are stored by value (accounts packed, see packed) and returned as copies, so
// callers never share memory with the state.
type state struct {
	mu  sync.RWMutex
	now func() time.Time

	nextAccount int64
	accounts    map[int64]packed // see packed
	accountIDs  []int64          // sorted, for cursor pagination
	byLogin     map[string]int64 // foldKey(login) -> id
	teamsOf     map[int64]map[int64]struct{}

	nextTeam    int64
	teams       map[int64]*teamRecord
	teamIDs     []int64          // sorted
	byName      map[string]int64 // foldKey(name) -> id
	memberships int

	calls int64 // API calls answered since the start or the last reset (not _state, _reset)

	persist *persister // keeps the state in its state_file; nil without one
	pinned  time.Time  // when set, the time of every timestamp (a change being logged or replayed)
}

// teamRecord is a team with its members, kept sorted so that pages walk in id order and
// membership tests are a binary search.
type teamRecord struct {
	Team
	members []int64
}

func newState(now func() time.Time) *state {
	s := &state{now: now}
	s.resetLocked()
	return s
}

// resetLocked empties the state and restarts both id sequences at 1.
func (s *state) resetLocked() {
	s.nextAccount, s.nextTeam = 1, 1
	s.accounts = map[int64]packed{}
	s.accountIDs = nil
	s.byLogin = map[string]int64{}
	s.teamsOf = map[int64]map[int64]struct{}{}
	s.teams = map[int64]*teamRecord{}
	s.teamIDs = nil
	s.byName = map[string]int64{}
	s.memberships = 0
	s.calls = 0
}

// countCall counts one API call (the benchmarks compare how many calls a gateway makes).
func (s *state) countCall() {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
}

func (s *state) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

// timeFormat is the app's time format: UTC, millisecond precision, fixed width.
const timeFormat = "2006-01-02T15:04:05.000Z"

// timestamp is the time now (or the pinned time) in the app's format.
func (s *state) timestamp() string {
	t := s.pinned
	if t.IsZero() {
		t = s.now()
	}
	return t.UTC().Format(timeFormat)
}

// ---- accounts ----

func (s *state) createAccount(in accountCreate, lim limits) (Account, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.accounts) >= lim.accounts {
		return Account{}, limitReached("accounts", lim.accounts)
	}
	return s.createAccountLocked(in)
}

// createAccountLocked checks and creates one account; s.mu is held and the limit checked.
func (s *state) createAccountLocked(in accountCreate) (Account, *apiError) {
	if err := in.validate(); err != nil {
		return Account{}, err
	}
	if err := s.checkAccountFieldsLocked(0, &in.accountFields); err != nil {
		return Account{}, err
	}
	ts := s.timestamp()
	a := &Account{ID: s.nextAccount, Locked: in.Locked, CreatedAt: ts, UpdatedAt: ts}
	a.setFields(in.accountFields)
	s.nextAccount++
	p := pack(a)
	s.accounts[a.ID] = p
	s.accountIDs = append(s.accountIDs, a.ID) // ids only grow, so the slice stays sorted
	s.byLogin[foldKey(p.field(pLogin))] = a.ID
	return p.account(a.ID), nil
}

func (a *Account) setFields(f accountFields) {
	a.Login, a.Person, a.Contact, a.Org = f.Login, f.Person, f.Contact, f.Org
}

func (a *Account) fields() accountFields {
	return accountFields{Login: a.Login, Person: a.Person, Contact: a.Contact, Org: a.Org}
}

// checkAccountFieldsLocked checks what needs the rest of the state: login uniqueness and
// the manager reference. self is the account being updated, 0 on create.
func (s *state) checkAccountFieldsLocked(self int64, f *accountFields) *apiError {
	if owner, ok := s.byLogin[foldKey(f.Login)]; ok && owner != self {
		return errorf(http.StatusConflict, CodeDuplicateLogin, "login %q is taken by account %d", f.Login, owner)
	}
	if m := f.Org.ManagerID; m != nil {
		if *m == self {
			return errorf(http.StatusUnprocessableEntity, CodeInvalidManager, "account %d cannot be its own manager", self)
		}
		if _, ok := s.accounts[*m]; !ok {
			return errorf(http.StatusUnprocessableEntity, CodeUnknownManager, "org.manager_id %d names no account", *m)
		}
	}
	return nil
}

func (s *state) getAccount(id int64) (Account, *apiError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.accounts[id]
	if !ok {
		return Account{}, accountNotFound(id)
	}
	return p.account(id), nil
}

// updateAccount replaces the writable fields of account id with what change returns.
// change runs under the lock with the current fields, so a PATCH merges into the state it
// validates against; no other request can interleave.
func (s *state) updateAccount(id int64, change func(accountFields) (accountFields, *apiError)) (Account, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.accounts[id]
	if !ok {
		return Account{}, accountNotFound(id)
	}
	a := p.account(id)
	f, err := change(a.fields())
	if err != nil {
		return Account{}, err
	}
	if err := f.validate(); err != nil {
		return Account{}, err
	}
	if err := s.checkAccountFieldsLocked(id, &f); err != nil {
		return Account{}, err
	}
	delete(s.byLogin, foldKey(a.Login))
	a.setFields(f)
	a.UpdatedAt = s.timestamp()
	p = pack(&a)
	s.accounts[id] = p
	s.byLogin[foldKey(p.field(pLogin))] = id
	return p.account(id), nil
}

// setLocked locks or unlocks an account. Setting the state it already has is a success
// that changes nothing, not even updated_at, so that retries are harmless.
func (s *state) setLocked(id int64, locked bool) (Account, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.accounts[id]
	if !ok {
		return Account{}, accountNotFound(id)
	}
	a := p.account(id)
	if a.Locked != locked {
		a.Locked = locked
		a.UpdatedAt = s.timestamp()
		p = pack(&a)
		s.accounts[id] = p
	}
	return p.account(id), nil
}

// deleteAccount removes an account, its memberships, and clears org.manager_id of the
// accounts it managed (as a directory does when a manager leaves).
func (s *state) deleteAccount(id int64) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.accounts[id]
	if !ok {
		return accountNotFound(id)
	}
	for tid := range s.teamsOf[id] {
		t := s.teams[tid]
		t.members = removeSorted(t.members, id)
		t.MemberCount = len(t.members)
		s.memberships--
	}
	delete(s.teamsOf, id)
	delete(s.byLogin, foldKey(p.field(pLogin)))
	delete(s.accounts, id)
	s.accountIDs = removeSorted(s.accountIDs, id)
	for oid, other := range s.accounts {
		if other.manager == id {
			a := other.account(oid)
			a.Org.ManagerID = nil
			a.UpdatedAt = s.timestamp()
			s.accounts[oid] = pack(&a)
		}
	}
	return nil
}

// listAccounts returns up to limit accounts with ids above after, in id order, and whether
// more follow. A non-empty login restricts the list to that login (case-insensitively).
func (s *state) listAccounts(login string, after int64, limit int) ([]Account, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if login != "" {
		id, ok := s.byLogin[foldKey(login)]
		if !ok || id <= after {
			return []Account{}, false
		}
		return []Account{s.accounts[id].account(id)}, false
	}
	ids, more := pageOf(s.accountIDs, after, limit)
	out := make([]Account, len(ids))
	for i, id := range ids {
		out[i] = s.accounts[id].account(id)
	}
	return out, more
}

// ---- teams ----

func (s *state) createTeam(f teamFields, lim limits) (Team, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.teams) >= lim.teams {
		return Team{}, limitReached("teams", lim.teams)
	}
	return s.createTeamLocked(f)
}

// createTeamLocked checks and creates one team; s.mu is held and the limit checked.
func (s *state) createTeamLocked(f teamFields) (Team, *apiError) {
	if err := f.validate(); err != nil {
		return Team{}, err
	}
	if err := s.checkTeamNameLocked(0, f.Name); err != nil {
		return Team{}, err
	}
	ts := s.timestamp()
	t := &teamRecord{Team: Team{ID: s.nextTeam, Name: f.Name, Description: f.Description, CreatedAt: ts, UpdatedAt: ts}}
	s.nextTeam++
	s.teams[t.ID] = t
	s.teamIDs = append(s.teamIDs, t.ID)
	s.byName[foldKey(t.Name)] = t.ID
	return t.Team, nil
}

func (s *state) checkTeamNameLocked(self int64, name string) *apiError {
	if owner, ok := s.byName[foldKey(name)]; ok && owner != self {
		return errorf(http.StatusConflict, CodeDuplicateTeamName, "team name %q is taken by team %d", name, owner)
	}
	return nil
}

func (s *state) getTeam(id int64) (Team, *apiError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.teams[id]
	if !ok {
		return Team{}, teamNotFound(id)
	}
	return t.Team, nil
}

// updateTeam replaces the writable fields of team id with what change returns, under the
// lock (see updateAccount).
func (s *state) updateTeam(id int64, change func(teamFields) (teamFields, *apiError)) (Team, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.teams[id]
	if !ok {
		return Team{}, teamNotFound(id)
	}
	f, err := change(teamFields{Name: t.Name, Description: t.Description})
	if err != nil {
		return Team{}, err
	}
	if err := f.validate(); err != nil {
		return Team{}, err
	}
	if err := s.checkTeamNameLocked(id, f.Name); err != nil {
		return Team{}, err
	}
	delete(s.byName, foldKey(t.Name))
	s.byName[foldKey(f.Name)] = id
	t.Name, t.Description = f.Name, f.Description
	t.UpdatedAt = s.timestamp()
	return t.Team, nil
}

func (s *state) deleteTeam(id int64) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.teams[id]
	if !ok {
		return teamNotFound(id)
	}
	for _, aid := range t.members {
		delete(s.teamsOf[aid], id)
		if len(s.teamsOf[aid]) == 0 {
			delete(s.teamsOf, aid)
		}
	}
	s.memberships -= len(t.members)
	delete(s.byName, foldKey(t.Name))
	delete(s.teams, id)
	s.teamIDs = removeSorted(s.teamIDs, id)
	return nil
}

func (s *state) listTeams(name string, after int64, limit int) ([]Team, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if name != "" {
		id, ok := s.byName[foldKey(name)]
		if !ok || id <= after {
			return []Team{}, false
		}
		return []Team{s.teams[id].Team}, false
	}
	ids, more := pageOf(s.teamIDs, after, limit)
	out := make([]Team, len(ids))
	for i, id := range ids {
		out[i] = s.teams[id].Team
	}
	return out, more
}

// ---- members ----

// listMembers returns a page of a team's members in account id order.
func (s *state) listMembers(team, after int64, limit int) ([]Member, bool, *apiError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.teams[team]
	if !ok {
		return nil, false, teamNotFound(team)
	}
	ids, more := pageOf(t.members, after, limit)
	out := make([]Member, len(ids))
	for i, id := range ids {
		out[i] = Member{AccountID: id, Login: s.accounts[id].field(pLogin)}
	}
	return out, more, nil
}

// batchResult is the body of a successful members:batch call.
type batchResult struct {
	Added       int `json:"added"`
	Removed     int `json:"removed"`
	MemberCount int `json:"member_count"`
}

// changeMembers adds and removes members of a team in one atomic step: if any added
// account does not exist, or the membership limit would be exceeded, nothing changes.
// Adding a member twice or removing a non-member is not an error (the call is idempotent);
// the counts say what actually changed.
func (s *state) changeMembers(team int64, add, remove []int64, lim limits) (batchResult, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.teams[team]
	if !ok {
		return batchResult{}, teamNotFound(team)
	}
	var unknown []int64
	newOnes := 0
	for _, id := range add {
		if _, ok := s.accounts[id]; !ok {
			unknown = append(unknown, id)
		} else if !containsSorted(t.members, id) {
			newOnes++
		}
	}
	if len(unknown) > 0 {
		return batchResult{}, errorf(http.StatusUnprocessableEntity, CodeUnknownAccount, "no account with id %s", joinIDs(unknown))
	}
	if s.memberships+newOnes > lim.memberships {
		return batchResult{}, limitReached("memberships", lim.memberships)
	}
	var res batchResult
	for _, id := range add {
		if s.addMemberLocked(t, id) {
			res.Added++
		}
	}
	for _, id := range remove {
		if s.removeMemberLocked(t, id) {
			res.Removed++
		}
	}
	if res.Added+res.Removed > 0 {
		t.UpdatedAt = s.timestamp()
	}
	res.MemberCount = len(t.members)
	return res, nil
}

// removeMember removes one member; unlike the batch call, removing a non-member is a 404,
// so that a client learns its view was stale.
func (s *state) removeMember(team, account int64) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.teams[team]
	if !ok {
		return teamNotFound(team)
	}
	if !s.removeMemberLocked(t, account) {
		return errorf(http.StatusNotFound, CodeNotAMember, "account %d is not a member of team %d", account, team)
	}
	t.UpdatedAt = s.timestamp()
	return nil
}

func (s *state) addMemberLocked(t *teamRecord, id int64) bool {
	i, found := slices.BinarySearch(t.members, id)
	if found {
		return false
	}
	t.members = slices.Insert(t.members, i, id)
	t.MemberCount = len(t.members)
	if s.teamsOf[id] == nil {
		s.teamsOf[id] = map[int64]struct{}{}
	}
	s.teamsOf[id][t.ID] = struct{}{}
	s.memberships++
	return true
}

func (s *state) removeMemberLocked(t *teamRecord, id int64) bool {
	if !containsSorted(t.members, id) {
		return false
	}
	t.members = removeSorted(t.members, id)
	t.MemberCount = len(t.members)
	delete(s.teamsOf[id], t.ID)
	if len(s.teamsOf[id]) == 0 {
		delete(s.teamsOf, id)
	}
	s.memberships--
	return true
}

// snapshot copies the whole state in a deterministic order.
func (s *state) snapshot() Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snapshotLocked()
}

// snapshotLocked is snapshot with s.mu held.
func (s *state) snapshotLocked() Snapshot {
	snap := Snapshot{
		Accounts:    make([]Account, 0, len(s.accountIDs)),
		Teams:       make([]Team, 0, len(s.teamIDs)),
		Memberships: make([]Membership, 0, s.memberships),
		Calls:       s.calls,
	}
	for _, id := range s.accountIDs {
		snap.Accounts = append(snap.Accounts, s.accounts[id].account(id))
	}
	for _, id := range s.teamIDs {
		t := s.teams[id]
		snap.Teams = append(snap.Teams, t.Team)
		for _, aid := range t.members {
			snap.Memberships = append(snap.Memberships, Membership{TeamID: id, AccountID: aid})
		}
	}
	return snap
}

// ---- sorted id slices ----

// pageOf returns up to limit ids of sorted that are greater than after, and whether more
// follow. The result aliases sorted and must be used under the lock.
func pageOf(sorted []int64, after int64, limit int) ([]int64, bool) {
	i, found := slices.BinarySearch(sorted, after)
	if found {
		i++
	}
	rest := sorted[i:]
	if len(rest) > limit {
		return rest[:limit], true
	}
	return rest, false
}

func containsSorted(sorted []int64, id int64) bool {
	_, found := slices.BinarySearch(sorted, id)
	return found
}

func removeSorted(sorted []int64, id int64) []int64 {
	i, found := slices.BinarySearch(sorted, id)
	if !found {
		return sorted
	}
	return slices.Delete(sorted, i, i+1)
}

package demoapp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
)

// stateFileFormat is the version of the state file's layout; a file of another version is
// refused rather than misread.
const stateFileFormat = 1

// savedState is the state file: everything the app holds, as the _state dump has it, and
// the next ids, so that ids are never reused across restarts either.
type savedState struct {
	Format      int          `json:"format"`
	NextAccount int64        `json:"next_account"`
	NextTeam    int64        `json:"next_team"`
	Accounts    []Account    `json:"accounts"`
	Teams       []Team       `json:"teams"`
	Memberships []Membership `json:"memberships"`
}

// Saving waits this long after a change, so that a burst of changes is one write, and at
// least saveSpacing times the last save's duration between two saves, so that a large
// state under constant change costs a bounded share of a core.
const (
	saveDelay   = 250 * time.Millisecond
	saveSpacing = 4
)

// persister keeps a state in its file: a change marks it dirty, a goroutine writes it (a
// new file, synced, renamed over the old one, so that a crash leaves the old state or the
// new one, never half of one), and stop writes what is left.
type persister struct {
	path   string
	logger *zap.Logger
	dirty  chan struct{} // capacity 1: a change pending
	quit   chan struct{}
	done   chan struct{}
}

// filesInUse are the state files of this process's states, so that two names never write
// one file.
var (
	filesMu     sync.Mutex
	filesInUse  = map[string]string{} // absolute path -> state name
	errFileUsed = errors.New("is already the state file of another demo app state")
)

// loadState returns the state kept in path (a new, empty one if the file does not exist)
// with a persister that keeps it there. A file that cannot be read or holds a state the
// app could not have produced is an error: it is left as it is, for the user to look at.
func loadState(name, path string, clock func() time.Time, logger *zap.Logger) (*state, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("state_file %q: %w", path, err)
	}
	filesMu.Lock()
	if other, ok := filesInUse[abs]; ok {
		filesMu.Unlock()
		return nil, fmt.Errorf("state_file %s %w (%q); give each state its own file", abs, errFileUsed, other)
	}
	filesInUse[abs] = name
	filesMu.Unlock()
	s, err := readState(abs, clock)
	if err != nil {
		releaseFile(abs)
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		releaseFile(abs)
		return nil, fmt.Errorf("state_file %s: creating its directory: %w", abs, err)
	}
	p := &persister{path: abs, logger: logger, dirty: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	s.persist = p
	go p.run(s)
	return s, nil
}

func releaseFile(abs string) {
	filesMu.Lock()
	delete(filesInUse, abs)
	filesMu.Unlock()
}

// readState reads the state file at path; a missing file is an empty state.
func readState(path string, clock func() time.Time) (*state, error) {
	s := newState(clock)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state_file %s: %w", path, err)
	}
	defer f.Close()
	var saved savedState
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&saved); err != nil {
		return nil, fmt.Errorf("state_file %s is not a demo app state (%v); move it away to start empty", path, err)
	}
	if err := s.restore(&saved); err != nil {
		return nil, fmt.Errorf("state_file %s holds a state the app cannot hold: %v; move it away to start empty", path, err)
	}
	return s, nil
}

// restore fills the empty state s with saved, checking everything the app's own requests
// would have checked (field bounds, unique logins and names, managers and members that
// exist, ids below the next ones) and that records come in id order.
func (s *state) restore(saved *savedState) error {
	if saved.Format != stateFileFormat {
		return fmt.Errorf("format %d, want %d", saved.Format, stateFileFormat)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var last int64
	for i := range saved.Accounts {
		a := &saved.Accounts[i]
		if a.ID <= last || a.ID >= saved.NextAccount {
			return fmt.Errorf("account %d: ids must ascend and stay below next_account %d", a.ID, saved.NextAccount)
		}
		last = a.ID
		f := a.fields()
		if err := f.validate(); err != nil {
			return fmt.Errorf("account %d: %s", a.ID, err.message)
		}
		if err := checkTimes(a.CreatedAt, a.UpdatedAt); err != nil {
			return fmt.Errorf("account %d: %v", a.ID, err)
		}
		if owner, ok := s.byLogin[foldKey(a.Login)]; ok {
			return fmt.Errorf("account %d: login %q is also account %d's", a.ID, a.Login, owner)
		}
		s.accounts[a.ID] = pack(a)
		s.accountIDs = append(s.accountIDs, a.ID)
		s.byLogin[foldKey(a.Login)] = a.ID
	}
	for _, a := range saved.Accounts {
		if m := a.Org.ManagerID; m != nil {
			if _, ok := s.accounts[*m]; !ok || *m == a.ID {
				return fmt.Errorf("account %d: manager %d is not another account", a.ID, *m)
			}
		}
	}
	last = 0
	for _, t := range saved.Teams {
		if t.ID <= last || t.ID >= saved.NextTeam {
			return fmt.Errorf("team %d: ids must ascend and stay below next_team %d", t.ID, saved.NextTeam)
		}
		last = t.ID
		f := teamFields{Name: t.Name, Description: t.Description}
		if err := f.validate(); err != nil {
			return fmt.Errorf("team %d: %s", t.ID, err.message)
		}
		if err := checkTimes(t.CreatedAt, t.UpdatedAt); err != nil {
			return fmt.Errorf("team %d: %v", t.ID, err)
		}
		if owner, ok := s.byName[foldKey(t.Name)]; ok {
			return fmt.Errorf("team %d: name %q is also team %d's", t.ID, t.Name, owner)
		}
		t.MemberCount = 0
		s.teams[t.ID] = &teamRecord{Team: t}
		s.teamIDs = append(s.teamIDs, t.ID)
		s.byName[foldKey(t.Name)] = t.ID
	}
	for _, m := range saved.Memberships {
		t, ok := s.teams[m.TeamID]
		if !ok {
			return fmt.Errorf("membership of account %d in team %d: no such team", m.AccountID, m.TeamID)
		}
		if _, ok := s.accounts[m.AccountID]; !ok {
			return fmt.Errorf("membership of account %d in team %d: no such account", m.AccountID, m.TeamID)
		}
		s.addMemberLocked(t, m.AccountID)
	}
	s.nextAccount = max(saved.NextAccount, 1)
	s.nextTeam = max(saved.NextTeam, 1)
	return nil
}

// checkTimes checks a record's timestamps have the app's format.
func checkTimes(created, updated string) error {
	for _, ts := range []string{created, updated} {
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", ts); err != nil {
			return fmt.Errorf("timestamp %q is not the app's format", ts)
		}
	}
	return nil
}

// changed tells the persister, if any, that the state may have changed.
func (s *state) changed() {
	if s.persist == nil {
		return
	}
	select {
	case s.persist.dirty <- struct{}{}:
	default: // a save is already pending
	}
}

// run saves the state after each burst of changes until stop, then once more.
func (p *persister) run(s *state) {
	defer close(p.done)
	for {
		select {
		case <-p.quit:
			return
		case <-p.dirty:
		}
		wait := time.NewTimer(saveDelay)
		select {
		case <-p.quit:
			wait.Stop()
			return
		case <-wait.C:
		}
		start := time.Now()
		if err := p.save(s); err != nil {
			p.logger.Error("saving the demo app's state", zap.String("state_file", p.path), zap.Error(err))
		}
		// Space the saves by a multiple of what one costs.
		rest := time.NewTimer(saveSpacing * time.Since(start))
		select {
		case <-p.quit:
			rest.Stop()
			return
		case <-rest.C:
		}
	}
}

// stop ends the saving goroutine and writes the state a last time.
func (p *persister) stop(s *state) error {
	close(p.quit)
	<-p.done
	defer releaseFile(p.path)
	return p.save(s)
}

// save writes the state to a new file beside the state file, syncs it and renames it over
// the old one.
func (p *persister) save(s *state) error {
	saved := s.saved()
	tmp, err := os.CreateTemp(filepath.Dir(p.path), filepath.Base(p.path)+".*.tmp")
	if err != nil {
		return err
	}
	enc := json.NewEncoder(tmp)
	enc.SetEscapeHTML(false)
	err = enc.Encode(&saved)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if dir, err := os.Open(filepath.Dir(p.path)); err == nil {
		_ = dir.Sync()
		_ = dir.Close()
	}
	return nil
}

// saved copies the state as the state file holds it.
func (s *state) saved() savedState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := s.snapshotLocked()
	return savedState{
		Format: stateFileFormat, NextAccount: s.nextAccount, NextTeam: s.nextTeam,
		Accounts: snap.Accounts, Teams: snap.Teams, Memberships: snap.Memberships,
	}
}

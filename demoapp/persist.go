package demoapp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The state file keeps the state across restarts and crashes, as a real app's database
// would: the gateway in front of the app (in the same process in Caddyfile.example) must
// find after a kill -9 every change it was told was made.
//
//   - <state_file> is a snapshot: the state as the _state dump has it, the next ids, and
//     the number of the first log to replay after it.
//   - <state_file>.<n>.log are logs: each change the app answered with success, one JSON
//     line (method, path, body, time), appended and synced before the answer is sent.
//
// Loading reads the snapshot and replays the logs from its number on, through the app's own
// endpoints; a last line cut short (a crash while it was written, before its answer) is left
// out. When the current log outgrows the snapshot, a background compaction starts a new log,
// writes a snapshot naming it (a new file, synced, renamed over the old one) and removes the
// older logs; a crash at any point leaves a snapshot and the logs that complete it. A stop
// writes a last snapshot and removes the logs.

// stateFileFormat is the version of the snapshot's layout; a file of another version is
// refused rather than misread.
const stateFileFormat = 1

// savedState is the snapshot.
type savedState struct {
	Format      int          `json:"format"`
	NextAccount int64        `json:"next_account"`
	NextTeam    int64        `json:"next_team"`
	Log         uint64       `json:"log"` // the first log to replay after this snapshot
	Accounts    []Account    `json:"accounts"`
	Teams       []Team       `json:"teams"`
	Memberships []Membership `json:"memberships"`
}

// logRecord is one logged change: the request that made it and the time it was made at
// (the records' timestamps), so that replaying it makes the same change.
type logRecord struct {
	Time   time.Time       `json:"time"`
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// Compaction starts when the current log is larger than the last snapshot and than
// minCompactBytes; then not again for compactSpacing times what the last one took, so
// that a large state under constant change costs a bounded share of a core.
var (
	minCompactBytes int64 = 1 << 20
	compactSpacing        = 4
)

// testHookCompact, when set, is called at each step of a compaction (tests take what a
// crash would leave there).
var testHookCompact func(step string)

// persister keeps a state in its files.
type persister struct {
	path   string
	logger *zap.Logger

	// mu is held by each change from before it touches the state until its record is in
	// the log, so the log's order is the order of the changes; compaction holds it to copy
	// the state and start a new log.
	mu       sync.Mutex
	log      *os.File // the current log, appended to
	logSeq   uint64
	logSize  int64
	snapSize int64
	broken   error // a record could not be written: no change is made any more

	grown chan struct{} // capacity 1: the log may have outgrown the snapshot
	quit  chan struct{}
	done  chan struct{}
}

// filesInUse are the state files of this process's states, so that two names never write
// one file.
var (
	filesMu     sync.Mutex
	filesInUse  = map[string]string{} // absolute path -> state name
	errFileUsed = errors.New("is already the state file of another demo app state")
)

// loadState returns the state kept in abs (an absolute path; a new, empty state if there is
// none yet) with a persister that keeps it there. Files that cannot be read or hold a state
// the app could not have produced are an error, and are left as they are for the user to
// look at.
func loadState(name, abs string, clock func() time.Time, logger *zap.Logger) (*state, error) {
	filesMu.Lock()
	if other, ok := filesInUse[abs]; ok {
		filesMu.Unlock()
		return nil, fmt.Errorf("state_file %s %w (%q); give each state its own file", abs, errFileUsed, other)
	}
	filesInUse[abs] = name
	filesMu.Unlock()
	s, p, err := openState(abs, clock, logger)
	if err != nil {
		releaseFile(abs)
		return nil, err
	}
	s.persist = p
	go p.run(s)
	return s, nil
}

func releaseFile(abs string) {
	filesMu.Lock()
	delete(filesInUse, abs)
	filesMu.Unlock()
}

// openState reads the snapshot and replays the logs after it, then compacts: a snapshot of
// what was read, naming a new log, and no older logs.
func openState(path string, clock func() time.Time, logger *zap.Logger) (*state, *persister, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("state_file %s: creating its directory: %w", path, err)
	}
	s, first, err := readSnapshot(path, clock)
	if err != nil {
		return nil, nil, err
	}
	logs, err := listLogs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("state_file %s: listing its logs: %w", path, err)
	}
	last := first
	for i, seq := range logs {
		if seq < first {
			continue // compacted into the snapshot already
		}
		if err := s.replayLog(logPath(path, seq), i == len(logs)-1); err != nil {
			return nil, nil, fmt.Errorf("state_file %s: %w; move the state file and its logs away to start empty", path, err)
		}
		last = seq
	}
	p := &persister{path: path, logger: logger, logSeq: last,
		grown: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	if err := p.compact(s); err != nil {
		if p.log != nil {
			_ = p.log.Close()
		}
		return nil, nil, fmt.Errorf("state_file %s: %w", path, err)
	}
	return s, p, nil
}

// readSnapshot reads the snapshot at path (a missing one is an empty state) and returns it
// with the number of the first log to replay.
func readSnapshot(path string, clock func() time.Time) (*state, uint64, error) {
	s := newState(clock)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("state_file %s: %w", path, err)
	}
	defer f.Close()
	var saved savedState
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&saved); err != nil {
		return nil, 0, fmt.Errorf("state_file %s is not a demo app state (%v); move it away to start empty", path, err)
	}
	if err := s.restore(&saved); err != nil {
		return nil, 0, fmt.Errorf("state_file %s holds a state the app cannot hold: %v; move it away to start empty", path, err)
	}
	return s, saved.Log, nil
}

// logPath is the name of log seq of the state file path.
func logPath(path string, seq uint64) string {
	return path + "." + strconv.FormatUint(seq, 10) + ".log"
}

// listLogs returns the numbers of path's logs, in order.
func listLogs(path string) ([]uint64, error) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	prefix := filepath.Base(path) + "."
	var seqs []uint64
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), prefix)
		if n, ok2 := strings.CutSuffix(n, ".log"); ok && ok2 {
			if seq, err := strconv.ParseUint(n, 10, 64); err == nil {
				seqs = append(seqs, seq)
			}
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// replayLog makes the changes of the log at path again. A last line without its newline is
// a record a crash cut short: its change was never answered, and it is left out when the
// log is the newest (lastLog); anywhere else, and any record that does not apply, is an
// error.
func (s *state) replayLog(path string, lastLog bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	rd := bufio.NewReader(bytes.NewReader(data))
	replayer := &App{state: s, limits: limits{math.MaxInt, math.MaxInt, math.MaxInt}, logger: zap.NewNop()}
	for n := 1; ; n++ {
		line, err := rd.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 && !lastLog {
				return fmt.Errorf("%s: record %d is cut short in a log that is not the newest", filepath.Base(path), n)
			}
			return nil
		}
		var rec logRecord
		if err := json.Unmarshal(line, &rec); err != nil || rec.Method == "" || !owns(rec.Path) {
			return fmt.Errorf("%s: record %d is not a change of the app", filepath.Base(path), n)
		}
		if apiErr := replayer.replay(rec); apiErr != nil {
			return fmt.Errorf("%s: record %d (%s %s) does not apply again: %s", filepath.Base(path), n, rec.Method, rec.Path, apiErr.message)
		}
	}
}

// replay makes rec's change through the app's endpoints, at rec's time.
func (a *App) replay(rec logRecord) *apiError {
	req, err := http.NewRequest(rec.Method, "http://replay"+rec.Path, bytes.NewReader(rec.Body))
	if err != nil {
		return errorf(http.StatusBadRequest, CodeRouteNotFound, "%v", err)
	}
	if len(rec.Body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	a.state.pin(rec.Time)
	defer a.state.pin(time.Time{})
	_, apiErr := a.dispatch(discard{}, req)
	return apiErr
}

// discard is a ResponseWriter for replayed requests, whose answers nobody reads.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// pin makes the state's timestamps t until pin(time.Time{}).
func (s *state) pin(t time.Time) {
	s.mu.Lock()
	s.pinned = t
	s.mu.Unlock()
}

// change makes one change through dispatch, durably: with mu held, at a pinned time, and
// its record synced to the log before it returns. A change the app refuses changes nothing
// and is not logged. When a record cannot be written the change is answered 503 (the
// client sends it again; it is in memory, so it may then be answered as already made), and
// every later change too: the file would no longer hold what the app answered.
func (p *persister) change(a *App, w http.ResponseWriter, r *http.Request) (reply, *apiError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return reply{}, errorf(http.StatusBadRequest, CodeInvalidJSON, "reading the body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken != nil {
		return reply{}, errorf(http.StatusServiceUnavailable, CodeStorage, "the app cannot keep changes in its state file: %v", p.broken)
	}
	a.state.mu.RLock()
	clock := a.state.now
	a.state.mu.RUnlock()
	at := clock().UTC().Truncate(time.Millisecond)
	a.state.pin(at)
	rep, apiErr := a.dispatch(w, r)
	a.state.pin(time.Time{})
	if apiErr != nil {
		return rep, apiErr
	}
	rec := logRecord{Time: at, Method: r.Method, Path: r.URL.Path}
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 {
		rec.Body = trimmed
	}
	if err := p.append(rec); err != nil {
		p.broken = err
		p.logger.Error("the demo app cannot write its state file's log; it refuses changes until restarted", zap.String("state_file", p.path), zap.Error(err))
		return reply{}, errorf(http.StatusServiceUnavailable, CodeStorage, "the change was made but could not be kept in the state file: %v", err)
	}
	return rep, nil
}

// append writes rec to the current log and syncs it; mu is held.
func (p *persister) append(rec logRecord) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if _, err := p.log.Write(line); err != nil {
		return err
	}
	if err := p.log.Sync(); err != nil {
		return err
	}
	p.logSize += int64(len(line))
	if p.logSize > max(minCompactBytes, p.snapSize) {
		select {
		case p.grown <- struct{}{}:
		default:
		}
	}
	return nil
}

// run compacts the files when the log has grown, until stop.
func (p *persister) run(s *state) {
	defer close(p.done)
	for {
		select {
		case <-p.quit:
			return
		case <-p.grown:
		}
		start := time.Now()
		if err := p.compact(s); err != nil {
			p.logger.Error("compacting the demo app's state file", zap.String("state_file", p.path), zap.Error(err))
		}
		rest := time.NewTimer(time.Duration(compactSpacing) * time.Since(start))
		select {
		case <-p.quit:
			rest.Stop()
			return
		case <-rest.C:
		}
	}
}

// compact starts a new log and writes a snapshot that names it, then removes the older
// logs. Changes wait only while the state is copied and the new log created.
func (p *persister) compact(s *state) error {
	p.mu.Lock()
	saved := s.saved()
	next := p.logSeq + 1
	f, err := os.OpenFile(logPath(p.path, next), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("starting log %d: %w", next, err)
	}
	if p.log != nil {
		_ = p.log.Close()
	}
	p.log, p.logSeq, p.logSize = f, next, 0
	p.mu.Unlock()
	if testHookCompact != nil {
		testHookCompact("log started")
	}
	saved.Log = next
	return p.writeSnapshot(&saved, next)
}

// writeSnapshot writes saved to a new file beside the state file, syncs it, renames it
// over the old one, and removes the logs before first.
func (p *persister) writeSnapshot(saved *savedState, first uint64) error {
	dir := filepath.Dir(p.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(p.path)+".*.tmp")
	if err != nil {
		return err
	}
	enc := json.NewEncoder(tmp)
	enc.SetEscapeHTML(false)
	err = enc.Encode(saved)
	var size int64
	if err == nil {
		size, err = tmp.Seek(0, io.SeekCurrent)
	}
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
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	p.mu.Lock()
	p.snapSize = size
	p.mu.Unlock()
	if testHookCompact != nil {
		testHookCompact("snapshot renamed")
	}
	logs, err := listLogs(p.path)
	if err != nil {
		return err
	}
	for _, seq := range logs {
		if seq < first {
			if err := os.Remove(logPath(p.path, seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// stop ends the compactions and writes a last snapshot, with no log after it.
func (p *persister) stop(s *state) error {
	close(p.quit)
	<-p.done
	defer releaseFile(p.path)
	p.mu.Lock()
	saved := s.saved()
	saved.Log = p.logSeq + 1
	if p.log != nil {
		_ = p.log.Close()
		p.log = nil
	}
	p.mu.Unlock()
	return p.writeSnapshot(&saved, saved.Log)
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
		if _, err := time.Parse(timeFormat, ts); err != nil {
			return fmt.Errorf("timestamp %q is not the app's format", ts)
		}
	}
	return nil
}

// saved copies the state as the snapshot holds it (without the log's number).
func (s *state) saved() savedState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := s.snapshotLocked()
	return savedState{
		Format: stateFileFormat, NextAccount: s.nextAccount, NextTeam: s.nextTeam,
		Accounts: snap.Accounts, Teams: snap.Teams, Memberships: snap.Memberships,
	}
}

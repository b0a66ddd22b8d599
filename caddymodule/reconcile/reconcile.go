package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Defaults of Options.
const (
	DefaultBatch       = 500
	DefaultMaxFindings = 10000
	DefaultKeep        = 20
)

// Orphan policies: what --fix does with orphaned accounts.
const (
	OrphansReport  = "report"  // report them only (the default)
	OrphansDisable = "disable" // deactivate them (never delete)
)

// Options tune a Reconciler. Zero values are the defaults.
type Options struct {
	// Batch is how many listed accounts are looked up in the directory per read
	// transaction, and how many directory records one read transaction scans (default 500).
	Batch int
	// MaxFindings bounds the findings a report lists (default 10,000); the counts are
	// always complete.
	MaxFindings int
	// Keep is how many reports the store keeps (default 20); older ones are deleted.
	Keep int
	// Orphans is what --fix does with orphaned accounts: OrphansReport (default) or
	// OrphansDisable.
	Orphans string
	// TempDir is where a run writes the list of the accounts it has seen once it passes
	// 8,192 (sorted runs of 8-byte hashes, unlinked as they are made, so a run's memory
	// stays bounded whatever the app's size). Default: the directory of the store's file,
	// which is sized for the directory's data, unlike a /tmp that may be small or in
	// memory; on a store without a file (etcd), the system's temporary directory.
	TempDir string
}

// Reconciler compares one target's app with the directory and, on request, repairs it.
type Reconciler struct {
	store   *store.Store
	journal *journal.Journal
	engine  *provision.Engine
	target  *provision.Target
	opts    Options
	logger  *zap.Logger

	mu sync.Mutex // one run at a time per reconciler
	// batchDone, when set, is called after each batch of the app or the directory, on the
	// run's goroutine (the benchmark measures the memory a run holds there).
	batchDone func()
}

// New returns the reconciler of a target. The engine is the one that applies Entra's
// changes to it (repairs go through it).
func New(s *store.Store, j *journal.Journal, eng *provision.Engine, t *provision.Target, opts Options, logger *zap.Logger) (*Reconciler, error) {
	if s == nil || j == nil || eng == nil || t == nil {
		return nil, errors.New("reconcile: a store, its journal, an engine and a target are required")
	}
	if !t.Mapping.CanList(scim.UserType) && !t.Mapping.CanList(scim.GroupType) {
		return nil, fmt.Errorf("reconcile: the mapping of %s has no list call (users.list or groups.list): the app's accounts cannot be read", t.Name)
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if f, ok := s.DB().(interface{ Path() string }); ok && opts.TempDir == "" {
		opts.TempDir = filepath.Dir(f.Path())
	}
	if opts.MaxFindings <= 0 {
		opts.MaxFindings = DefaultMaxFindings
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	switch opts.Orphans {
	case "":
		opts.Orphans = OrphansReport
	case OrphansReport, OrphansDisable:
	default:
		return nil, fmt.Errorf("reconcile: orphans must be %s or %s, not %q", OrphansReport, OrphansDisable, opts.Orphans)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Reconciler{store: s, journal: j, engine: eng, target: t, opts: opts, logger: logger}, nil
}

// Target is the name of the reconciler's target.
func (rc *Reconciler) Target() string { return rc.target.Name }

// ErrBusy is returned when a reconcile of the target is already running.
var ErrBusy = errors.New("a reconcile of this target is already running")

// Run reconciles the app with the directory: it reads every account (and group, and
// group's members) of the app through the mapping's list calls and compares them with the
// directory through the id map. With fix it then makes the repairs (see Fix). The report
// is stored and a summary record journaled; both carry the run's id.
//
// Memory: one page of the app and one batch of the directory are held at a time, plus
// the newest of the app's accounts listed (the seen set: at most about 100 KB of 8-byte
// hashes, the rest in temporary files, with 8 bytes per 512 of them in memory), plus the
// findings listed (at most MaxFindings). No write transaction
// is held while the app is read: the directory is read in short read transactions, and
// the report is written in one short transaction at the end.
func (rc *Reconciler) Run(ctx context.Context, fix bool, by string) (*Report, error) {
	if !rc.mu.TryLock() {
		return nil, ErrBusy
	}
	defer rc.mu.Unlock()
	r := &Report{Run: "reconcile-" + uuid.NewString(), Target: rc.target.Name, By: by, Fix: fix, Started: time.Now().UTC(), Complete: true, Findings: []Finding{}}
	rn := &run{rc: rc, ctx: ctx, report: r, relisted: map[string]int{}, seen: map[string]*seenSet{}}
	defer func() {
		for _, s := range rn.seen {
			s.close()
		}
	}()
	for _, typ := range []string{scim.UserType, scim.GroupType} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !rc.target.Mapping.CanList(typ) {
			note := fmt.Sprintf("%s are not compared: the mapping has no %s.list call", sectionOf(typ), sectionOf(typ))
			if roles := rc.target.Mapping.Roles(); typ == scim.GroupType && roles != nil {
				note = "groups are the app's roles: their members are compared through the roles each listed user holds (groups.roles.read)"
				if !roles.CanRead() {
					note = "groups are the app's roles, and the mapping says nowhere where a listed user holds them (groups.roles.read): they are not compared"
				}
			}
			r.Notes = append(r.Notes, note)
			continue
		}
		if err := rn.compare(typ); err != nil {
			return nil, err
		}
	}
	if fix && r.Complete {
		rn.fix()
	}
	r.Finished = time.Now().UTC()
	if err := rc.save(r); err != nil {
		return nil, err
	}
	rc.logger.Info("reconcile finished", zap.String("target", r.Target), zap.Uint64("report", r.ID), zap.String("run", r.Run),
		zap.Int("findings", r.Counts.Findings()), zap.Bool("complete", r.Complete), zap.Bool("fix", fix), zap.Int("fixed", r.Counts.Fixed))
	return r, nil
}

func sectionOf(typ string) string {
	if typ == scim.GroupType {
		return "groups"
	}
	return "users"
}

// save stores the report and journals its summary, in one transaction.
func (rc *Reconciler) save(r *Report) error {
	return rc.store.Update(func(tx *store.Tx) error {
		_, err := tx.PutReport(rc.opts.Keep, func(id uint64) ([]byte, []byte, error) {
			r.ID = id
			sum, err := json.Marshal(r.Summary())
			if err != nil {
				return nil, nil, err
			}
			full, err := json.Marshal(r)
			return sum, full, err
		})
		if err != nil {
			return err
		}
		return rc.journal.Append(tx.KV(), summaryRecord(r))
	})
}

// summaryRecord is the journal's record of a run: its counts as changes, the report's id
// in the subject.
func summaryRecord(r *Report) *journal.Record {
	c := r.Counts
	outcome, detail := change.Applied, ""
	if !r.Complete {
		outcome, detail = change.Failed, "the app could not be listed in full; see the report's notes"
	}
	count := func(path string, n int) journal.Change {
		return journal.Change{Path: path, Op: "count", Value: json.RawMessage(strconv.Itoa(n))}
	}
	changes := []journal.Change{
		count("app_users", c.AppUsers), count("app_groups", c.AppGroups),
		count(string(Orphaned), c.Orphaned), count(string(Missing), c.Missing), count(string(NotDisabled), c.NotDisabled),
		count(string(Drifted), c.Drifted), count("members_missing", c.MembersMissing), count("members_extra", c.MembersExtra),
		count("fixed", c.Fixed), count("fix_failed", c.FixFailed),
	}
	if c.FixSkipped > 0 {
		changes = append(changes, count("fix_skipped", c.FixSkipped))
	}
	if c.Unlinked > 0 {
		changes = append(changes, count("unlinked", c.Unlinked))
	}
	return &journal.Record{
		RequestID: r.Run,
		Client:    "reconcile:" + r.By,
		Target:    r.Target,
		Action:    change.ActionReconcile,
		Subject:   "report " + strconv.FormatUint(r.ID, 10),
		Outcome:   outcome,
		Error:     detail,
		Changes:   changes,
	}
}

// Load reads a stored report by id (store.ErrNotFound when it is gone).
func Load(s *store.Store, id uint64) (*Report, error) {
	var data []byte
	err := s.View(func(tx *store.Tx) error {
		var err error
		data, err = tx.Report(id)
		return err
	})
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("reading report %d: %w", id, err)
	}
	return &r, nil
}

// Summaries lists the stored reports of the store, newest first.
func Summaries(s *store.Store) ([]Summary, error) {
	out := []Summary{}
	err := s.View(func(tx *store.Tx) error {
		return tx.ReportSummaries(func(_ uint64, data []byte) bool {
			var sm Summary
			if json.Unmarshal(data, &sm) == nil {
				out = append(out, sm)
			}
			return true
		})
	})
	return out, err
}

// FixReport makes the repairs of a stored report's findings (an admin's decision on a
// report read earlier), as Run with fix does, and stores and journals the result as a new
// report whose findings say what was done. Each repair reads the directory afresh: a
// finding the directory no longer supports (a user reactivated since, a member removed)
// is refused or skipped by the engine, never forced.
func (rc *Reconciler) FixReport(ctx context.Context, id uint64, by string) (*Report, error) {
	if !rc.mu.TryLock() {
		return nil, ErrBusy
	}
	defer rc.mu.Unlock()
	old, err := Load(rc.store, id)
	if err != nil {
		return nil, err
	}
	if old.Target != rc.target.Name {
		return nil, fmt.Errorf("report %d is of target %s, not %s", id, old.Target, rc.target.Name)
	}
	if !old.Complete {
		return nil, fmt.Errorf("report %d is incomplete (the app was not read in full): run a new reconcile", id)
	}
	r := &Report{Run: "reconcile-" + uuid.NewString(), Target: old.Target, By: by, Fix: true, Started: time.Now().UTC(), Complete: true,
		Counts: old.Counts, Findings: old.Findings, Truncated: old.Truncated,
		Notes: append(old.Notes, fmt.Sprintf("the repairs of report %d (run %s)", old.ID, old.Run))}
	r.Counts.Fixed, r.Counts.FixFailed, r.Counts.FixSkipped, r.Counts.Unlinked = 0, 0, 0, 0
	for i := range r.Findings {
		r.Findings[i].Fix = ""
	}
	(&run{rc: rc, ctx: ctx, report: r}).fix()
	r.Finished = time.Now().UTC()
	if err := rc.save(r); err != nil {
		return nil, err
	}
	return r, nil
}

// Report reads one of the target's stored reports.
func (rc *Reconciler) Report(id uint64) (*Report, error) {
	r, err := Load(rc.store, id)
	if err != nil {
		return nil, err
	}
	if r.Target != rc.target.Name {
		return nil, store.ErrNotFound
	}
	return r, nil
}

// Summaries lists the target's stored reports, newest first.
func (rc *Reconciler) Summaries() ([]Summary, error) {
	all, err := Summaries(rc.store)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, s := range all {
		if s.Target == rc.target.Name {
			out = append(out, s)
		}
	}
	return out, nil
}

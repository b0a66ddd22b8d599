package provision

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Impact is what a proposed policy would change for the resources of the directory,
// against the policy in force: every user and group is decided by both as a re-sync of
// the resource as it stands (Entra's periodic cycle sends each one again), and each
// resource whose decision differs is one Entry.
type Impact struct {
	Target      string         `json:"target"`
	CurrentHash string         `json:"current_policy"`
	NewHash     string         `json:"new_policy"`
	Users       int            `json:"users"`
	Groups      int            `json:"groups"`
	Counts      map[Effect]int `json:"counts"`
	// Deprovisions is how many app accounts the proposed policy deactivates or takes out
	// of scope: the number the reload brake compares with the mass-deprovision limit.
	// Users already inactive in the directory are listed but not counted: their accounts
	// are not deprovisioned by the policy (Entra disabled them).
	Deprovisions int     `json:"deprovisions"`
	Entries      []Entry `json:"entries"`
	// Truncated is how many entries were left out past ImpactOptions.MaxEntries (the
	// counts include them).
	Truncated int `json:"truncated,omitempty"`
}

// Effect is what a proposed policy does to one resource that the policy in force does not.
type Effect string

// The effects, from the most to the least severe; a resource gets the first that applies.
const (
	EffectDenied          Effect = "denied"           // its changes are refused (403)
	EffectDeactivated     Effect = "deactivated"      // the app gets a deactivation instead
	EffectLeavesScope     Effect = "leaves_scope"     // skipped, and it has an account in the app
	EffectSkipped         Effect = "skipped"          // skipped; no account in the app
	EffectDropsAttributes Effect = "drops_attributes" // the app stops receiving these attributes
	EffectDropsMembers    Effect = "drops_members"    // the app stops receiving these memberships
	EffectPasses          Effect = "passes"           // denied, skipped or deactivated today; passes
)

// Entry is one resource the proposed policy treats differently.
type Entry struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Name     string `json:"name"` // userName or displayName
	NativeID string `json:"native_id,omitempty"`
	Effect   Effect `json:"effect"`
	// Attributes and Members are what the proposed policy drops that the current does not
	// (members by SCIM id).
	Attributes []string `json:"attributes,omitempty"`
	Members    []string `json:"members,omitempty"`
	// Reasons are the proposed policy's reasons for this resource.
	Reasons []string `json:"reasons,omitempty"`
}

// ImpactOptions tune PolicyImpact.
type ImpactOptions struct {
	// MaxEntries bounds Impact.Entries; 0 lists every resource that differs.
	MaxEntries int
	// PageSize is how many records one read transaction loads. Default 512.
	PageSize int
	// Workers decide in parallel. Default GOMAXPROCS.
	Workers int
	// Timeout bounds each decision (instead of the policies' own request timeout: a
	// preview competes with live traffic for the cores). Default 10s.
	Timeout time.Duration
}

// previewClient is the input's client for preview decisions: a policy can tell them from
// real requests, and they never count in the brake's stats.
const previewClient = "scimgate-preview"

// PolicyImpact decides every user and group of the directory under current (nil: every
// change allowed) and proposed, and reports the resources whose decisions differ. It reads
// the store in pages of short read transactions (never the write lock), so it runs beside
// live traffic; nothing is written, no app is called, and the brake's counts are neither
// read nor changed (every decision sees an empty last hour).
func (e *Engine) PolicyImpact(ctx context.Context, current, proposed *policy.Engine, opts ImpactOptions) (*Impact, error) {
	if proposed == nil {
		return nil, errors.New("provision: no proposed policy to preview")
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 512
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	im := &Impact{Target: e.targetName(), NewHash: proposed.Hash(), Counts: map[Effect]int{}}
	proposed = proposed.WithTimeout(opts.Timeout)
	if current != nil {
		im.CurrentHash = current.Hash()
		current = current.WithTimeout(opts.Timeout)
	}
	for _, typ := range []string{scim.UserType, scim.GroupType} {
		if err := e.impactOf(ctx, typ, current, proposed, opts, im); err != nil {
			return nil, err
		}
	}
	return im, nil
}

// impactOf walks the records of typ page by page.
func (e *Engine) impactOf(ctx context.Context, typ string, current, proposed *policy.Engine, opts ImpactOptions, im *Impact) error {
	workers := make([]*previewWorker, opts.Workers) // kept from page to page, with their memos
	for i := range workers {
		workers[i] = &previewWorker{proposed: proposed.NewMemo()}
		if current != nil {
			workers[i].current = current.NewMemo()
		}
	}
	start := ""
	for {
		page, next, err := e.previewPage(typ, start, opts.PageSize)
		if err != nil {
			return err
		}
		if err := decidePage(ctx, page, current, proposed, workers); err != nil {
			return err
		}
		for _, c := range page {
			if typ == scim.UserType {
				im.Users++
			} else {
				im.Groups++
			}
			if c.entry == nil {
				continue
			}
			im.Counts[c.entry.Effect]++
			if (c.entry.Effect == EffectDeactivated || c.entry.Effect == EffectLeavesScope) && !c.inactive {
				im.Deprovisions++
			}
			if opts.MaxEntries > 0 && len(im.Entries) >= opts.MaxEntries {
				im.Truncated++
				continue
			}
			im.Entries = append(im.Entries, *c.entry)
		}
		if next == "" {
			return nil
		}
		start = next
	}
}

// previewCase is one resource to decide, and the entry when its decisions differ.
type previewCase struct {
	typ, id, name, nativeID string
	inactive                bool // a user whose active is false in the directory
	in                      policy.Input
	entry                   *Entry
}

// previewPage loads up to size records of typ from start in one read transaction, with
// what a decision needs (native id; a group's members as a re-sync adds them). next is
// the id to resume from, "" after the last page.
func (e *Engine) previewPage(typ, start string, size int) (page []*previewCase, next string, err error) {
	err = e.store.View(func(tx *store.Tx) error {
		return tx.ScanFrom(typ, start, func(rec *store.Record) (bool, error) {
			if len(page) == size {
				next = rec.ID
				return false, nil
			}
			doc, err := DecodeDoc(rec)
			if err != nil {
				return false, fmt.Errorf("previewing %s %s: %w", typ, rec.ID, err)
			}
			c := &previewCase{typ: typ, id: rec.ID, name: displayOf(rec)}
			if e.target != nil {
				c.nativeID, err = tx.NativeID(e.target.mapKey(typ), rec.ID)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return false, err
				}
			}
			res := scim.Canonical(typ, withID(doc, rec.ID))
			c.inactive = typ == scim.UserType && !activeOf(res)
			events := []string{string(change.Update)}
			var members []string
			if typ == scim.GroupType {
				err := tx.Members(rec.ID, func(m store.Member) error { members = append(members, m.ID); return nil })
				if err != nil {
					return false, err
				}
				if len(members) > 0 {
					events = append(events, string(change.AddMembers))
				}
			}
			c.in = policy.Input{
				Action: string(change.ActionReplace), ResourceType: typ, Events: events, Client: previewClient,
				Target: e.targetName(), NativeID: c.nativeID, Resource: res, Previous: res,
				Members: policy.Members{Add: memberRefs(tx, members)},
			}
			page = append(page, c)
			return true, nil
		})
	})
	return page, next, err
}

// decidePage decides every case under both policies, one goroutine per worker (at most
// one per case). The first case that fails ends the page: no other case is started, and
// the ones the other workers are deciding are stopped (a policy that cannot decide in
// time would otherwise take its whole timeout for every case of the page).
func decidePage(ctx context.Context, page []*previewCase, current, proposed *policy.Engine, workers []*previewWorker) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	pageCtx, stop := context.WithCancel(ctx)
	defer stop()
	cases := make(chan *previewCase)
	for _, w := range workers[:min(len(workers), len(page))] {
		wg.Go(func() {
			for c := range cases {
				if pageCtx.Err() != nil {
					continue // the page has failed: drain
				}
				if err := c.decide(pageCtx, current, proposed, w); err != nil {
					mu.Lock()
					if first == nil && pageCtx.Err() == nil {
						first = err // not a case stopped because another failed
					}
					mu.Unlock()
					stop()
				}
			}
		})
	}
feed:
	for _, c := range page {
		select {
		case cases <- c:
		case <-pageCtx.Done():
			break feed
		}
	}
	close(cases)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("previewing the policy: %w", err)
	}
	return first
}

// previewWorker is what one worker of decidePage carries from case to case (and page to
// page): its previous input, to share its constant parts, and for each policy the values
// of the rules that do not depend on the resource (policy.Memo). A worker is used by one
// goroutine at a time.
type previewWorker struct {
	last              *policy.Prepared
	current, proposed *policy.Memo
}

// decide evaluates the case under both policies and sets its entry when they differ. A
// policy that times out fails the preview (a preview must not guess); a policy error is a
// denial, as in a real request. The input is converted once for both, sharing what it has
// in common with the worker's previous one; two policies of the same content decide
// alike, so the case is then not decided at all.
func (c *previewCase) decide(ctx context.Context, current, proposed *policy.Engine, w *previewWorker) error {
	if current != nil && current.Hash() == proposed.Hash() {
		return nil
	}
	in, prepErr := c.in.PrepareLike(w.last)
	if prepErr == nil {
		w.last = in
	}
	decide := func(e *policy.Engine, m *policy.Memo) (policy.Decision, error) {
		if prepErr != nil {
			return e.Decide(ctx, &c.in) // denies with the input error, as a request would be
		}
		return m.Decide(ctx, in)
	}
	now := policy.Decision{Allow: true}
	if current != nil {
		d, err := decide(current, w.current)
		if errors.Is(err, policy.ErrTimeout) {
			return fmt.Errorf("the policy in force did not decide %s %s: %w", c.typ, c.id, err)
		}
		now = d
	}
	then, err := decide(proposed, w.proposed)
	if errors.Is(err, policy.ErrTimeout) {
		return fmt.Errorf("the proposed policy did not decide %s %s: %w", c.typ, c.id, err)
	}
	c.entry = compareDecisions(now, then, c.nativeID != "")
	if c.entry != nil {
		c.entry.Type, c.entry.ID, c.entry.Name, c.entry.NativeID = c.typ, c.id, c.name, c.nativeID
		c.entry.Reasons = then.Reasons
	}
	return nil
}

// compareDecisions names what the proposed decision (then) does that the current (now)
// does not; nil when nothing.
func compareDecisions(now, then policy.Decision, hasAccount bool) *Entry {
	blocked := func(d policy.Decision) bool { return !d.Allow || d.Skip || d.Deactivate }
	// As the gateway carries them out: a skip sends nothing, deactivate or not.
	deactivates := func(d policy.Decision) bool { return d.Allow && d.Deactivate && !d.Skip }
	switch {
	case !then.Allow && now.Allow:
		return &Entry{Effect: EffectDenied}
	case deactivates(then) && !deactivates(now):
		return &Entry{Effect: EffectDeactivated}
	case then.Allow && then.Skip && !(now.Allow && now.Skip):
		if hasAccount {
			return &Entry{Effect: EffectLeavesScope}
		}
		return &Entry{Effect: EffectSkipped}
	case blocked(then):
		return nil // blocked both ways
	case blocked(now):
		return &Entry{Effect: EffectPasses}
	}
	attrs := newOnly(then.DropAttributes, now.DropAttributes)
	members := newOnly(then.DropMembers, now.DropMembers)
	switch {
	case len(attrs) > 0:
		return &Entry{Effect: EffectDropsAttributes, Attributes: attrs, Members: members}
	case len(members) > 0:
		return &Entry{Effect: EffectDropsMembers, Members: members}
	}
	return nil
}

// newOnly lists the values of a that are not in b, sorted.
func newOnly(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

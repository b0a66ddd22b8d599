// Package fleet decides which gateway of a fleet runs each background job: the delivery of
// a target's outbox, its scheduled reconciles, a journal's checkpoints and its retention.
// Exactly one gateway runs a job at a time; when it dies, another takes the job over within
// the lease TTL.
//
// An Elector runs a job's work while this process holds the job (Run) and answers, cheaply
// and without a network call, whether it still holds it (Holding, Check). Two
// implementations: Solo, for a store only this process writes (bbolt): it always holds
// every job; and Etcd, which elects through etcd leases (one lease per process, one
// election per job under the store's prefix + "e/").
//
// The guarantee a holder gets: Holding turns false, and the work's context is cancelled,
// before the lease can have expired on the etcd server, that is before another gateway can
// be elected. A call made after checking Holding (or Check on the work's context, which the
// legacy client does right before sending each request) therefore never overlaps with the
// next holder's calls, except a call already in flight when the lease is lost: etcd cannot
// fence an application's REST API. The store needs no fence of its own: every commit is a
// transaction that checks what it read (a task that the next holder already delivered is
// gone, and a stale holder's update of it fails with store.ErrNotFound).
package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// ErrNotHolder is returned by Check when the job the context was handed out for is no
// longer held by this process.
var ErrNotHolder = errors.New("fleet: this gateway no longer holds the job")

// Elector elects, among the gateways sharing a store, the one that runs each job.
type Elector interface {
	// Run calls work each time this process becomes the holder of job, with a context that
	// is cancelled the moment the job is lost (the lease lapsed or was revoked) or ctx ends.
	// After a loss Run waits for work to return and campaigns again. It returns when ctx
	// ends (resigning the job) or when work returns while still the holder (resigning it
	// too); the error is ctx's, or why job is not a valid name.
	Run(ctx context.Context, job string, work func(ctx context.Context)) error
	// Holding reports whether this process holds job now. It is cheap (no network call)
	// and turns false before another process can be elected.
	Holding(job string) bool
	// Term returns the current term of job when this process holds it: a fencing token
	// for writes that must not come from a stale holder.
	Term(job string) (Term, bool)
	// Owner names this process among the fleet's gateways for as long as it lives: its
	// lease's id ("" for Solo). A gateway records it with the intents whose calls it makes.
	Owner(ctx context.Context) (string, error)
	// Alive reports whether the gateway named owner still holds its lease: a dead one's
	// intents need not wait for their time bound. Solo: always true.
	Alive(ctx context.Context, owner string) (bool, error)
	// Owns reports whether owner (as Owner returned it) still names this process's lease,
	// cheaply and without a network call: it turns false, for good, before that lease can
	// have expired on the etcd server, that is before another gateway's Alive can report
	// it dead. A call made for an intent that names owner checks it right before it goes
	// (see OwnerGuard). Solo: true for "".
	Owns(owner string) bool
	// Close resigns every job and releases the elector's resources; Runs still going end.
	Close() error
}

// Term is one holding of a job.
type Term struct {
	// Job is the job's name.
	Job string
	// Lease is the etcd lease the holding is bound to (0 for Solo).
	Lease int64
	// Key is the election key this process created for the job; Rev is its create
	// revision, which grows with every new holder (0 for Solo).
	Key string
	Rev int64
}

// CheckJob returns an error for a job name the electors refuse: it must be 1 to 512 bytes
// of printable ASCII without spaces, segments separated by single '/' (none empty).
func CheckJob(job string) error {
	if job == "" || len(job) > 512 {
		return fmt.Errorf("fleet: job name must be 1 to 512 bytes, got %d", len(job))
	}
	for _, c := range []byte(job) {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("fleet: job name %q has a space, a control character or non-ASCII", job)
		}
	}
	if strings.HasPrefix(job, "/") || strings.HasSuffix(job, "/") || strings.Contains(job, "//") {
		return fmt.Errorf("fleet: job name %q has an empty segment", job)
	}
	return nil
}

type guardKey struct{}

// WithGuard returns ctx carrying held, which Check consults: the context an Elector hands
// to a job's work carries one (whether the term still holds); work run on another
// process's behalf may carry its own. A guard ctx carries already still counts: Check
// fails when either says no.
func WithGuard(ctx context.Context, held func() bool) context.Context {
	if outer, ok := ctx.Value(guardKey{}).(func() bool); ok {
		inner := held
		held = func() bool { return outer() && inner() }
	}
	return context.WithValue(ctx, guardKey{}, held)
}

// OwnerGuard returns ctx guarded (WithGuard) by el.Owns(owner): the calls of an intent
// that names owner go only while this process still holds that lease, since once it is
// gone another gateway may take the intent over (look the account up, create it) and a
// paused or partitioned gateway resuming its calls would act twice. ctx itself for no owner.
func OwnerGuard(ctx context.Context, el Elector, owner string) context.Context {
	if el == nil || owner == "" {
		return ctx
	}
	return WithGuard(ctx, func() bool { return el.Owns(owner) })
}

// Check returns ErrNotHolder when ctx is (derived from) the context an Elector handed to a
// job's work and this process no longer holds the job; nil otherwise, and for any other
// context. Callers making an external call on a job's behalf check it right before each
// call: it is cheap (no network call, no lock).
func Check(ctx context.Context) error {
	if held, ok := ctx.Value(guardKey{}).(func() bool); ok && !held() {
		return ErrNotHolder
	}
	return nil
}

// Solo is the Elector of a store that only this process writes: it holds every job always.
type Solo struct{}

// NewSolo returns a Solo elector.
func NewSolo() *Solo { return &Solo{} }

// Run calls work once with ctx and returns when ctx ends, or when work returns.
func (s *Solo) Run(ctx context.Context, job string, work func(ctx context.Context)) error {
	if err := CheckJob(job); err != nil {
		return err
	}
	work(ctx)
	return ctx.Err()
}

// Holding is always true: nobody else writes the store.
func (s *Solo) Holding(string) bool { return true }

// Term is the zero term (no lease, no key) for every job.
func (s *Solo) Term(job string) (Term, bool) { return Term{Job: job}, true }

// Close does nothing: Solo holds no resources.
func (s *Solo) Close() error { return nil }

// Owner is "": a single gateway's intents have no other gateway to tell apart from.
func (s *Solo) Owner(context.Context) (string, error) { return "", nil }

// Alive is always true for Solo.
func (s *Solo) Alive(context.Context, string) (bool, error) { return true, nil }

// Owns is true for "", the only owner Solo names.
func (s *Solo) Owns(owner string) bool { return owner == "" }

// EtcdStore is what a store backed by etcd offers for elections (kv/etcdkv.DB does): its
// client and the key prefix it keeps its data under.
type EtcdStore interface {
	Client() *clientv3.Client
	Prefix() string
}

// ElectionPrefix is where a store with key prefix p keeps its elections: p + "e/", which
// the etcd store leaves to them.
func ElectionPrefix(p string) string { return p + "e/" }

// For returns the Elector for db: Etcd on db's client and election prefix when db is shared
// and backed by etcd (EtcdStore), Solo otherwise.
func For(db kv.DB, opts EtcdOptions) (Elector, error) {
	if es, ok := db.(EtcdStore); ok && db.Shared() {
		return NewEtcd(es.Client(), ElectionPrefix(es.Prefix()), opts)
	}
	return NewSolo(), nil
}

// Name names the gateway el elects for among a fleet's: its etcd elector's ID (host name
// and process id by default), stable while the process lives. It is "" for Solo: a store
// only this process writes needs no name.
func Name(el Elector) string {
	if e, ok := el.(*Etcd); ok {
		return e.ID()
	}
	return ""
}

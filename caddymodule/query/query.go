// Package query runs a SCIM list or search (RFC 7644 §3.4.2, §3.4.3) over the directory:
// it reads the paging, projection and filter a client sent, picks the resources the filter
// can match (ids and index lookups, or a scan of the type), matches them, and cuts the
// page. Turning a stored record into the resource a client reads is the caller's
// (Renderer): the query knows the directory and the protocol, not the HTTP answer.
package query

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Params are a query's parameters as the client sent them, from the URL of a GET or the
// body of a POST .search.
type Params struct {
	Filter, StartIndex, Count, Attributes, ExcludedAttributes string
}

// ParamsFromBody reads a .search body's parameters (RFC 7644 §3.4.3): strings, numbers for
// startIndex and count, and lists of strings for attributes and excludedAttributes.
func ParamsFromBody(body scim.Resource) (Params, error) {
	str := func(name string) (string, error) {
		v, ok := scim.Get(body, name)
		if !ok || v == nil {
			return "", nil
		}
		switch x := v.(type) {
		case string:
			return x, nil
		case []any:
			parts := make([]string, 0, len(x))
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return "", scim.BadRequest(scim.TypeInvalidValue, "%s must be a list of strings", name)
				}
				parts = append(parts, s)
			}
			return strings.Join(parts, ","), nil
		default:
			if n, ok := v.(interface{ String() string }); ok {
				return n.String(), nil
			}
		}
		return "", scim.BadRequest(scim.TypeInvalidValue, "%s has the wrong type", name)
	}
	var p Params
	for _, f := range []struct {
		name string
		dst  *string
	}{{"filter", &p.Filter}, {"startIndex", &p.StartIndex}, {"count", &p.Count}, {"attributes", &p.Attributes}, {"excludedAttributes", &p.ExcludedAttributes}} {
		var err error
		if *f.dst, err = str(f.name); err != nil {
			return Params{}, err
		}
	}
	return p, nil
}

// MaxReadMembers is the most members (of groups) and groups (of users) one read renders:
// in all on the page of a list or search, for one resource read by id, and for each
// resource a filter naming members or groups is evaluated against. Each member rendered
// costs about 1.7 KB of memory and 140 bytes of answer, built in memory before it is sent:
// unbounded, a page of 200 groups of 50,000 members would have been a 1.4 GB answer. Past
// it the read is 400 tooMany (RFC 7644 §3.12) saying what to ask instead.
const MaxReadMembers = 100_000

// Query is a parsed list or search over one resource type, or at the root over every type.
type Query struct {
	// Types are the resource types covered, in the order results are listed.
	Types []string
	// Filter is nil for every resource of Types.
	Filter     scim.Filter
	StartIndex int
	Count      int
	Proj       scim.Projection
	// MaxComputed is the bound of MaxReadMembers for this query.
	MaxComputed int
}

// Parse reads p for a query on typ's endpoint, or at the root (typ "": every type, RFC 7644
// §3.4.2, "A query against a server root indicates that all resources within the server
// SHALL be included, subject to filtering"). A count above maxResults is capped to it.
func Parse(typ string, p Params, maxResults int) (*Query, error) {
	q := &Query{Types: Types(typ), StartIndex: 1, Count: maxResults, MaxComputed: MaxReadMembers}
	if p.StartIndex != "" {
		n, err := pagingInt("startIndex", p.StartIndex)
		if err != nil {
			return nil, err
		}
		if n > 1 {
			q.StartIndex = n
		}
	}
	if p.Count != "" {
		n, err := pagingInt("count", p.Count)
		if err != nil {
			return nil, err
		}
		q.Count = max(0, min(n, maxResults))
	}
	var err error
	if q.Proj, err = scim.ParseProjection(p.Attributes, p.ExcludedAttributes); err != nil {
		return nil, err
	}
	if text := strings.TrimSpace(p.Filter); text != "" {
		if q.Filter, err = scim.ParseFilter(text); err != nil {
			return nil, err
		}
		// Misused operators (active gt true) are errors whatever the data, even when the
		// index finds no candidate to evaluate.
		for _, t := range q.Types {
			if err := scim.ValidateFilter(q.Filter, t); err != nil {
				return nil, err
			}
		}
	}
	return q, nil
}

// Types are the resource types a query covers: typ, or at the root (typ "") every type, in
// the order its results are listed: Users, then Groups (as /ResourceTypes lists them).
func Types(typ string) []string {
	if typ != "" {
		return []string{typ}
	}
	var out []string
	for _, rt := range scim.ResourceTypes() {
		out = append(out, rt.Name)
	}
	return out
}

// pagingInt reads startIndex or count. An integer too large for an int is clamped to the
// int range rather than refused: a startIndex past every result gives an empty page and a
// count above max_results is capped anyway, as for any other large value (RFC 7644
// §3.4.2.4; below 1 and below 0 they mean 1 and 0).
func pagingInt(name, raw string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(raw))
	if errors.Is(err, strconv.ErrRange) {
		return n, nil // Atoi's clamped value
	}
	if err != nil {
		return 0, scim.BadRequest(scim.TypeInvalidValue, "%s must be an integer, got %q", name, raw)
	}
	return n, nil
}

// Computed says which computed attributes a rendering holds: a group's members and a user's
// groups (each costs reads beyond the record).
type Computed struct {
	Members bool
	Groups  bool
}

// ComputedFor is what a projection wants of them.
func ComputedFor(p scim.Projection) Computed {
	return Computed{Members: p.Wants("members"), Groups: p.Wants("groups")}
}

// Renderer turns stored records into the resources a client reads.
type Renderer interface {
	// Render is rec as a resource with id, schemas, meta and the computed attributes c
	// asks for.
	Render(tx *store.Tx, rec *store.Record, c Computed) (scim.Resource, error)
	// AddComputed adds to res, rendered from rec, the computed attributes c asks for.
	AddComputed(tx *store.Tx, rec *store.Record, res scim.Resource, c Computed) error
}

// Run answers q on tx as one list: every match of the first type in the store's order,
// then of the next, with StartIndex and Count applied to the whole. Each resource is
// projected by the rules of its own type; an attribute that only one type defines simply
// matches nothing in the other. total counts every match, page holds the projected ones
// the paging asks for.
func (q *Query) Run(tx *store.Tx, r Renderer) (page []any, total int, err error) {
	// Matching renders members or groups only when the filter mentions them; the page adds
	// what it wants and matching did not need, without decoding again.
	match := Computed{Members: mentions(q.Filter, "members"), Groups: mentions(q.Filter, "groups")}
	want := ComputedFor(q.Proj)
	more := Computed{Members: want.Members && !match.Members, Groups: want.Groups && !match.Groups}
	onPage := 0 // members and groups the page holds so far
	for _, typ := range q.Types {
		// consider takes the record, or only its id (rec nil) when there is no filter: a
		// resource off the page is then only counted, never read nor decoded (decoding
		// every user made GET /Users?count=1 cost a decode of the whole directory).
		consider := func(id string, rec *store.Record) error {
			var res scim.Resource
			if q.Filter != nil {
				n, err := computedCount(tx, rec, match, q.MaxComputed+1)
				if err != nil {
					return err
				}
				if n > q.MaxComputed {
					return scim.BadRequest(scim.TypeTooMany, "the filter names %s, and %s %s has more than %d of them, the most the gateway evaluates a filter against; filter on other attributes",
						computedName(rec.Type), rec.Type, rec.ID, q.MaxComputed)
				}
				if res, err = r.Render(tx, rec, match); err != nil {
					return err
				}
				ok, err := scim.Match(q.Filter, typ, res)
				if err != nil || !ok {
					return err
				}
			}
			total++
			if total < q.StartIndex || len(page) >= q.Count {
				return nil
			}
			if rec == nil {
				var err error
				if rec, err = tx.Get(typ, id); err != nil {
					return err
				}
			}
			n, err := computedCount(tx, rec, want, q.MaxComputed-onPage+1)
			if err != nil {
				return err
			}
			if onPage += n; onPage > q.MaxComputed {
				return q.tooMany(rec, len(page))
			}
			if res == nil {
				var err error
				if res, err = r.Render(tx, rec, match); err != nil {
					return err
				}
			}
			if err := r.AddComputed(tx, rec, res, more); err != nil {
				return err
			}
			page = append(page, q.Proj.Apply(typ, res))
			return nil
		}
		if err := eachCandidate(tx, typ, q.Filter, consider); err != nil {
			return nil, 0, err
		}
	}
	return page, total, nil
}

// computedCount is how many members (a group's) or groups (a user's) rendering rec with c
// adds, counted up to upTo.
func computedCount(tx *store.Tx, rec *store.Record, c Computed, upTo int) (int, error) {
	switch {
	case rec.Type == scim.GroupType && c.Members:
		return tx.CountMembers(rec.ID, upTo)
	case rec.Type == scim.UserType && c.Groups:
		return tx.CountGroupsOf(rec.ID, upTo)
	}
	return 0, nil
}

// computedName is the computed attribute of a resource type.
func computedName(typ string) string {
	if typ == scim.UserType {
		return "groups"
	}
	return "members"
}

// tooMany is the 400 for a page whose resources, rec the first past the bound, hold more
// members or groups than MaxComputed.
func (q *Query) tooMany(rec *store.Record, before int) *scim.Error {
	name := computedName(rec.Type)
	if before == 0 {
		return tooManyOne(rec, q.MaxComputed)
	}
	return scim.BadRequest(scim.TypeTooMany, "the resources of this page from startIndex %d on hold more than %d %s in all, the most one answer holds; ask with excludedAttributes=%s (as Entra does), or with count=%d",
		q.StartIndex, q.MaxComputed, name, name, before)
}

func tooManyOne(rec *store.Record, limit int) *scim.Error {
	name := computedName(rec.Type)
	return scim.BadRequest(scim.TypeTooMany, "%s %s has more than %d %s, the most one answer holds; ask with excludedAttributes=%s (as Entra does)",
		rec.Type, rec.ID, limit, name, name)
}

// CheckRead refuses, with 400 tooMany, to answer rec with the computed attributes c when
// they hold more than MaxReadMembers values (a GET of a group of 200,000 members).
func CheckRead(tx *store.Tx, rec *store.Record, c Computed) error {
	n, err := computedCount(tx, rec, c, MaxReadMembers+1)
	if err != nil {
		return err
	}
	if n > MaxReadMembers {
		return tooManyOne(rec, MaxReadMembers)
	}
	return nil
}

// indexable maps filter attributes to store indexes, per resource type.
var indexable = map[string]map[string]string{
	scim.UserType:  {"username": "userName", "externalid": "externalId", "emails.value": "emails.value"},
	scim.GroupType: {"displayname": "displayName", "externalid": "externalId"},
}

// indexesEmpty says which indexes hold a resource whose value is the empty string: the
// store indexes a userName and a group's displayName always, an externalId and an
// emails.value only when not empty (provision.IndexEntries). An externalId eq "" is found
// by a scan: a lookup of "" would miss the resources that hold it.
var indexesEmpty = map[string]bool{"userName": true, "displayName": true}

// MaxIndexedLookups is the most index lookups (and reads by id) that find the candidates
// of one resource type: an or whose every branch an index serves (userName eq "a" or
// userName eq "b") is one lookup per branch, the union of their ids then matched against
// the whole filter. A filter that needs more lookups scans, taking a max_scans slot.
// (The parser allows at most scim.MaxFilterTerms comparisons in a filter.)
const MaxIndexedLookups = 32

// access is how the resources of a type that a filter can match are found.
type access int

const (
	accessAll    access = iota // no filter: every resource matches, only ids are read
	accessScan                 // every resource of the type is read, decoded and matched
	accessLookup               // the union of index lookups and ids (none: no resource can match)
)

// lookup is one way to a set of candidates: the ids an index holds for a value, or one id
// (attr "").
type lookup struct {
	attr, value string
}

// plan is the access a query on one type takes, with its lookups (accessLookup).
type plan struct {
	access  access
	lookups []lookup
}

// planFor picks the cheapest way to find the resources of typ that f can match, from the
// filter alone: the store is not read, so it can be decided before a transaction opens.
func planFor(typ string, f scim.Filter) plan {
	if f == nil {
		return plan{access: accessAll}
	}
	if l, ok := lookupsFor(typ, f, nil, 0); ok {
		return plan{access: accessLookup, lookups: l}
	}
	return plan{access: accessScan}
}

// lookupsFor returns lookups whose ids together hold every resource of typ that f can
// match (more is harmless: Run matches each candidate against the whole filter), or false
// when none are known or more than MaxIndexedLookups are needed. An equality on the id or
// an indexed attribute is one lookup (none for an id no resource can have); of an and,
// the side needing fewer lookups (the left one on a tie); of an or, both sides'. A
// top-level attr[...] applies to its inner filter re-rooted on attr: an element matching
// it matches one branch of an inner or and each side of an inner and.
func lookupsFor(typ string, f scim.Filter, root *scim.AttrPath, depth int) ([]lookup, bool) {
	if depth > 2*(scim.MaxFilterTerms+scim.MaxFilterDepth) {
		return nil, false
	}
	switch x := f.(type) {
	case *scim.CompareFilter:
		if x != nil {
			return termLookup(typ, x, root)
		}
	case *scim.AndFilter:
		if x != nil {
			l, lok := lookupsFor(typ, x.Left, root, depth+1)
			r, rok := lookupsFor(typ, x.Right, root, depth+1)
			switch {
			case lok && (!rok || len(l) <= len(r)):
				return l, true
			case rok:
				return r, true
			}
		}
	case *scim.OrFilter:
		if x != nil {
			l, ok := lookupsFor(typ, x.Left, root, depth+1)
			if !ok {
				return nil, false
			}
			r, ok := lookupsFor(typ, x.Right, root, depth+1)
			if !ok || len(l)+len(r) > MaxIndexedLookups {
				return nil, false
			}
			return append(l[:len(l):len(l)], r...), true
		}
	case *scim.ValuePathFilter:
		if x != nil && root == nil && x.Attr.Sub == "" {
			return lookupsFor(typ, x.Inner, &x.Attr, depth+1)
		}
	}
	return nil, false
}

// termLookup is the lookup that finds the resources of typ an equality c (inside root[...]
// when root is not nil) can match, if one does.
func termLookup(typ string, c *scim.CompareFilter, root *scim.AttrPath) ([]lookup, bool) {
	// Numbers are left out: a stored number would not be found under its text in a string
	// index (as scim.EqualityTerms).
	value, ok := c.Value.(string)
	if c.Op != scim.OpEq || !ok {
		return nil, false
	}
	attr := c.Attr
	if root != nil {
		if attr.URN != "" || attr.Sub != "" {
			return nil, false
		}
		attr = scim.AttrPath{URN: root.URN, Name: root.Name, Sub: c.Attr.Name}
	}
	if attr.URN != "" && !strings.EqualFold(attr.URN, scim.ResourceTypeByName(typ).Schema) {
		return nil, false
	}
	name := strings.ToLower(attr.Name)
	if attr.Sub != "" {
		name += "." + strings.ToLower(attr.Sub)
	}
	if name == "id" {
		if scim.IDProblem(value) != "" {
			return nil, true // no resource has it; the store would refuse the key
		}
		return []lookup{{value: value}}, true
	}
	index, ok := indexable[typ][name]
	if !ok || (value == "" && !indexesEmpty[index]) {
		return nil, false
	}
	return []lookup{{attr: index, value: value}}, true
}

// NeedsScan reports whether a query on typ with filter f reads and decodes every resource
// of typ: no equality on the id or an indexed attribute narrows it (userName co "x", a
// pr, a not(...), an or with a branch no index serves, or with more than
// MaxIndexedLookups branches). A nil filter is no scan: its resources are only counted.
// It is what Run does, decided without the store.
func NeedsScan(typ string, f scim.Filter) bool {
	return planFor(typ, f).access == accessScan
}

// Scans reports whether q scans any of its types in full (NeedsScan).
func (q *Query) Scans() bool {
	for _, typ := range q.Types {
		if NeedsScan(typ, q.Filter) {
			return true
		}
	}
	return false
}

// candidates are the resources of typ that a filter f can match, as planFor decides: the
// ids its lookups find, sorted (the order of a scan) and distinct, or scan=true for a full
// scan. Without a filter (accessAll) eachCandidate reads the ids itself.
func candidates(tx *store.Tx, typ string, f scim.Filter) (ids []string, scan bool, err error) {
	p := planFor(typ, f)
	switch p.access {
	case accessScan:
		return nil, true, nil
	case accessLookup:
		for _, l := range p.lookups {
			if l.attr == "" {
				ids = append(ids, l.value)
				continue
			}
			found, err := tx.Lookup(typ, l.attr, l.value)
			if err != nil {
				return nil, false, err
			}
			ids = append(ids, found...)
		}
		if len(p.lookups) > 1 {
			slices.Sort(ids)
			ids = slices.Compact(ids)
		}
		return ids, false, nil
	}
	return nil, false, nil
}

// eachCandidate calls consider with every stored resource of typ that f may match, in a
// stable order: the index's or the id's candidates, or a full scan. Without a filter only
// ids are read (rec is nil): every resource matches.
func eachCandidate(tx *store.Tx, typ string, f scim.Filter, consider func(id string, rec *store.Record) error) error {
	if f == nil {
		return tx.ScanIDs(typ, func(id string) (bool, error) {
			return true, consider(id, nil)
		})
	}
	ids, scan, err := candidates(tx, typ, f)
	if err != nil {
		return err
	}
	if scan {
		return tx.Scan(typ, func(rec *store.Record) (bool, error) {
			return true, consider(rec.ID, rec)
		})
	}
	for _, id := range ids {
		rec, err := tx.Get(typ, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := consider(id, rec); err != nil {
			return err
		}
	}
	return nil
}

// mentions reports whether f refers to the top-level attribute name.
func mentions(f scim.Filter, name string) bool {
	switch x := f.(type) {
	case *scim.CompareFilter:
		return x.Attr.URN == "" && strings.EqualFold(x.Attr.Name, name)
	case *scim.ValuePathFilter:
		return x.Attr.URN == "" && strings.EqualFold(x.Attr.Name, name)
	case *scim.AndFilter:
		return mentions(x.Left, name) || mentions(x.Right, name)
	case *scim.OrFilter:
		return mentions(x.Left, name) || mentions(x.Right, name)
	case *scim.NotFilter:
		return mentions(x.Inner, name)
	}
	return false
}

package caddymodule

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// query is a list or search request: GET /Users?filter=..., POST /Users/.search, or, at
// the root, GET /?filter=... or POST /.search, which cover every resource type.
type query struct {
	filter     string
	startIndex int
	count      int
	proj       scim.Projection
}

// list answers GET on a resource type's endpoint, or at the root for every type (typ "";
// RFC 7644 §3.4.2: "A query against a server root indicates that all resources within the
// server SHALL be included, subject to filtering").
func (g *Handler) list(req *request, typ string) {
	v := req.r.URL.Query()
	if g.engine.JournalsReads() {
		req.trail = &provision.Trail{Action: change.ActionList, Type: typ, Filter: v.Get("filter")}
	}
	q, err := g.parseQuery(v.Get("filter"), v.Get("startIndex"), v.Get("count"), v.Get("attributes"), v.Get("excludedAttributes"))
	if err != nil {
		g.writeError(req, err)
		return
	}
	g.runQuery(req, queryTypes(typ), q)
}

// search answers POST /.search (RFC 7644 §3.4.3) with the same engine as GET: on one
// resource type's endpoint, or at the root for every type (typ "").
func (g *Handler) search(req *request, typ string) {
	if g.engine.JournalsReads() {
		req.trail = &provision.Trail{Action: change.ActionSearch, Type: typ}
	}
	body, err := g.readBody(req)
	if err != nil {
		g.writeError(req, err)
		return
	}
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
	var fields [5]string
	for i, name := range []string{"filter", "startIndex", "count", "attributes", "excludedAttributes"} {
		if fields[i], err = str(name); err != nil {
			g.writeError(req, err)
			return
		}
	}
	if req.trail != nil {
		req.trail.Filter = fields[0]
	}
	q, err := g.parseQuery(fields[0], fields[1], fields[2], fields[3], fields[4])
	if err != nil {
		g.writeError(req, err)
		return
	}
	g.runQuery(req, queryTypes(typ), q)
}

// queryTypes are the resource types a query covers: typ, or at the root (typ "") every
// type, in the order its results are listed: Users, then Groups (as /ResourceTypes lists
// them).
func queryTypes(typ string) []string {
	if typ != "" {
		return []string{typ}
	}
	var out []string
	for _, rt := range scim.ResourceTypes() {
		out = append(out, rt.Name)
	}
	return out
}

func (g *Handler) parseQuery(filter, startIndex, count, attrs, excluded string) (*query, error) {
	q := &query{filter: strings.TrimSpace(filter), startIndex: 1, count: g.MaxResults}
	if startIndex != "" {
		n, err := pagingInt("startIndex", startIndex)
		if err != nil {
			return nil, err
		}
		if n > 1 {
			q.startIndex = n
		}
	}
	if count != "" {
		n, err := pagingInt("count", count)
		if err != nil {
			return nil, err
		}
		q.count = max(0, min(n, g.MaxResults))
	}
	var err error
	q.proj, err = scim.ParseProjection(attrs, excluded)
	return q, err
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

// indexable maps filter attributes to store indexes, per resource type.
var indexable = map[string]map[string]string{
	scim.UserType:  {"username": "userName", "externalid": "externalId", "emails.value": "emails.value"},
	scim.GroupType: {"displayname": "displayName", "externalid": "externalId"},
}

// candidates picks the cheapest way to find the resources a filter can match: one id, an
// index lookup (O(log n)), or nil with scan=true for a full scan.
func candidates(tx *store.Tx, typ string, f scim.Filter) (ids []string, scan bool, err error) {
	if f == nil {
		return nil, true, nil
	}
	for _, t := range scim.EqualityTerms(f) {
		if t.Attr.URN != "" && !strings.EqualFold(t.Attr.URN, scim.ResourceTypeByName(typ).Schema) {
			continue
		}
		value, ok := termString(t.Value)
		if !ok {
			continue
		}
		name := strings.ToLower(t.Attr.Name)
		if t.Attr.Sub != "" {
			name += "." + strings.ToLower(t.Attr.Sub)
		}
		if name == "id" {
			if scim.IDProblem(value) != "" {
				return nil, false, nil // no resource has it; the store would refuse the key
			}
			return []string{value}, false, nil
		}
		if attr, ok := indexable[typ][name]; ok {
			ids, err := tx.Lookup(typ, attr, value)
			return ids, false, err
		}
	}
	return nil, true, nil
}

func termString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case interface{ String() string }: // json.Number
		return x.String(), true
	}
	return "", false
}

// runQuery answers a query over the resource types given, as one list: every match of the
// first type in the store's order, then of the next, with startIndex and count applied to
// the whole. Each resource is projected by the rules of its own type; an attribute that
// only one type defines simply matches nothing in the other.
func (g *Handler) runQuery(req *request, types []string, q *query) {
	var f scim.Filter
	if q.filter != "" {
		var err error
		if f, err = scim.ParseFilter(q.filter); err != nil {
			g.writeError(req, err)
			return
		}
		// Misused operators (active gt true) are errors whatever the data, even when the
		// index finds no candidate to evaluate.
		for _, typ := range types {
			if err = scim.ValidateFilter(f, typ); err != nil {
				g.writeError(req, err)
				return
			}
		}
	}
	// Matching needs members or groups only when the filter mentions them.
	matchOpts := renderOpts{members: filterMentions(f, "members"), groups: filterMentions(f, "groups")}
	pageOpts := optsFor(q.proj)
	var page []any
	total := 0
	err := g.store.ViewRecentFound(func(tx *store.Tx) (bool, error) {
		page, total = nil, 0
		for _, typ := range types {
			consider := func(rec *store.Record) error {
				res, err := g.render(tx, req, rec, matchOpts)
				if err != nil {
					return err
				}
				if f != nil {
					ok, err := scim.Match(f, typ, res)
					if err != nil || !ok {
						return err
					}
				}
				total++
				if total < q.startIndex || len(page) >= q.count {
					return nil
				}
				// Add what the page wants and matching did not need, without decoding again.
				more := renderOpts{members: pageOpts.members && !matchOpts.members, groups: pageOpts.groups && !matchOpts.groups}
				if err := g.addComputed(tx, req, rec, res, more); err != nil {
					return err
				}
				page = append(page, q.proj.Apply(typ, res))
				return nil
			}
			if err := eachCandidate(tx, typ, f, consider); err != nil {
				return false, err
			}
		}
		return total > 0, nil
	})
	if err == nil && req.trail != nil {
		err = g.engine.Read(req.engineRequest(), req.trail)
	}
	if err != nil {
		g.writeError(req, err)
		return
	}
	g.writeJSON(req, http.StatusOK, scim.ListResponse(page, total, q.startIndex))
}

// eachCandidate calls consider with every stored resource of typ that f may match, in a
// stable order: the index's or the id's candidates, or a full scan.
func eachCandidate(tx *store.Tx, typ string, f scim.Filter, consider func(*store.Record) error) error {
	ids, scan, err := candidates(tx, typ, f)
	if err != nil {
		return err
	}
	if scan {
		return tx.Scan(typ, func(rec *store.Record) (bool, error) {
			return true, consider(rec)
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
		if err := consider(rec); err != nil {
			return err
		}
	}
	return nil
}

// filterMentions reports whether f refers to the top-level attribute name.
func filterMentions(f scim.Filter, name string) bool {
	switch x := f.(type) {
	case *scim.CompareFilter:
		return x.Attr.URN == "" && strings.EqualFold(x.Attr.Name, name)
	case *scim.ValuePathFilter:
		return x.Attr.URN == "" && strings.EqualFold(x.Attr.Name, name)
	case *scim.AndFilter:
		return filterMentions(x.Left, name) || filterMentions(x.Right, name)
	case *scim.OrFilter:
		return filterMentions(x.Left, name) || filterMentions(x.Right, name)
	case *scim.NotFilter:
		return filterMentions(x.Inner, name)
	}
	return false
}

package caddymodule

import (
	"errors"
	"net/http"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/query"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// list answers GET on a resource type's endpoint, or at the root for every type (typ "").
func (g *Handler) list(req *request, typ string) {
	v := req.r.URL.Query()
	if g.engine.JournalsReads() {
		req.trail = &provision.Trail{Action: change.ActionList, Type: typ, Filter: v.Get("filter")}
	}
	g.runQuery(req, typ, query.Params{Filter: v.Get("filter"), StartIndex: v.Get("startIndex"), Count: v.Get("count"),
		Attributes: v.Get("attributes"), ExcludedAttributes: v.Get("excludedAttributes")})
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
	p, err := query.ParamsFromBody(body)
	if err != nil {
		g.writeError(req, err)
		return
	}
	if req.trail != nil {
		req.trail.Filter = p.Filter
	}
	g.runQuery(req, typ, p)
}

// runQuery answers a list or search. A query that finds nothing on a read_staleness
// snapshot is read again at the head (Store.ViewRecentFound).
func (g *Handler) runQuery(req *request, typ string, p query.Params) {
	q, err := query.Parse(typ, p, g.MaxResults)
	if err != nil {
		g.writeError(req, err)
		return
	}
	// A full scan waits for a slot before its read transaction opens (NeedsScan decides it
	// from the filter alone) and frees it once the transaction is over.
	release, err := g.scans.Admit(req.r.Context(), q)
	if err != nil {
		g.writeError(req, scanAdmission(req, err))
		return
	}
	var page []any
	total := 0
	r := requestRenderer{g: g, req: req}
	err = func() error {
		defer release()
		if g.scanning != nil && q.Scans() {
			g.scanning()
		}
		return g.store.ViewRecentFound(func(tx *store.Tx) (bool, error) {
			var err error
			page, total, err = q.Run(tx, r)
			return total > 0, err
		})
	}()
	if err == nil && req.trail != nil {
		err = g.engine.Read(req.engineRequest(), req.trail)
	}
	if err != nil {
		g.writeError(req, err)
		return
	}
	g.writeJSON(req, http.StatusOK, scim.ListResponse(page, total, q.StartIndex))
}

// scanAdmission is the answer to a full scan that found no slot: 503 with Retry-After
// while other scans run, or nothing useful when the client left.
func scanAdmission(req *request, err error) error {
	if errors.Is(err, query.ErrScansBusy) {
		req.w.Header().Set("Retry-After", largeBodyRetryAfter)
		return err
	}
	return scim.BadRequest("", "the request ended while it waited for a turn to search: %v", err)
}

// requestRenderer renders records for a query as the request's client reads them.
type requestRenderer struct {
	g   *Handler
	req *request
}

func (r requestRenderer) Render(tx *store.Tx, rec *store.Record, c query.Computed) (scim.Resource, error) {
	return r.g.render(tx, r.req, rec, c)
}

func (r requestRenderer) AddComputed(tx *store.Tx, rec *store.Record, res scim.Resource, c query.Computed) error {
	return r.g.addComputed(tx, r.req, rec, res, c)
}

package caddymodule

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/query"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// serveResources routes /Users and /Groups requests.
func (g *Handler) serveResources(req *request, typ string, rest []string) {
	m := req.r.Method
	switch {
	case len(rest) == 0:
		switch m {
		case http.MethodGet, http.MethodHead:
			g.list(req, typ)
		case http.MethodPost:
			g.create(req, typ)
		default:
			g.methodNotAllowed(req, "GET, HEAD, POST")
		}
	case len(rest) == 1 && strings.EqualFold(rest[0], ".search"): // endpoint names match in any case
		if m != http.MethodPost {
			g.methodNotAllowed(req, "POST")
			return
		}
		g.search(req, typ)
	case len(rest) == 1:
		id := rest[0]
		action, ok := idActions[m]
		if !ok {
			g.methodNotAllowed(req, "GET, HEAD, PUT, PATCH, DELETE")
			return
		}
		if problem := scim.IDProblem(id); problem != "" {
			g.rejectID(req, typ, action, id, problem)
			return
		}
		switch action {
		case change.ActionGet:
			g.get(req, typ, id)
		case change.ActionReplace:
			g.replace(req, typ, id)
		case change.ActionPatch:
			g.patch(req, typ, id)
		case change.ActionDelete:
			g.remove(req, typ, id)
		}
	default:
		g.writeError(req, scim.NotFound("no SCIM endpoint at %s", req.r.URL.Path))
	}
}

// idActions are the actions on one resource, by method.
var idActions = map[string]change.Action{
	http.MethodGet: change.ActionGet, http.MethodHead: change.ActionGet, http.MethodPut: change.ActionReplace,
	http.MethodPatch: change.ActionPatch, http.MethodDelete: change.ActionDelete,
}

// rejectID answers 404 for an id no resource can have (see scim.IDProblem) before anything
// looks it up: the store refuses such keys, which would be a storage error (503), and Entra
// expects 404 for an id it does not know. The rejection is journaled like any other, with
// the id quoted and cut (it may be 15,000 bytes or hold a NUL).
func (g *Handler) rejectID(req *request, typ string, action change.Action, id, problem string) {
	if action != change.ActionGet || g.engine.JournalsReads() {
		req.trail = &provision.Trail{Action: action, Type: typ, ID: scim.QuoteForDetail(id)}
	}
	g.writeError(req, scim.NotFound("no %s with that id: %s", typ, problem))
}

func (g *Handler) methodNotAllowed(req *request, allow string) {
	req.w.Header().Set("Allow", allow)
	g.writeError(req, scim.Errorf(http.StatusMethodNotAllowed, "", "%s is not allowed on %s; allowed: %s", req.r.Method, req.r.URL.Path, allow))
}

// render turns a stored record into the resource Entra reads back: the attributes exactly
// as written, plus id, schemas, meta, and a group's members or a user's groups.
func (g *Handler) render(tx *store.Tx, req *request, rec *store.Record, o query.Computed) (scim.Resource, error) {
	doc, err := decodeRecord(req, rec)
	if err != nil {
		return nil, err
	}
	return doc, g.addComputed(tx, req, rec, doc, o)
}

// renderWritten is render for a record the request has just written from doc (its
// attributes as stored, a map of its own at the top level): the answer is built from doc
// instead of decoding the bytes again, inside the commit every concurrent writer waits for.
// doc's top level gains id, schemas and meta.
func (g *Handler) renderWritten(tx *store.Tx, req *request, rec *store.Record, doc scim.Resource, o query.Computed) (scim.Resource, error) {
	doc = managerAsValue(rec, doc)
	decorate(req, rec, doc)
	return doc, g.addComputed(tx, req, rec, doc, o)
}

// decodeRecord is the stored document with id, schemas and meta.
func decodeRecord(req *request, rec *store.Record) (scim.Resource, error) {
	doc, err := provision.DecodeDoc(rec)
	if err != nil {
		return nil, err
	}
	doc = managerAsValue(rec, doc)
	decorate(req, rec, doc)
	return doc, nil
}

// managerAsValue answers a user's manager as {"value": id} alone, also when an earlier
// version stored the "$ref" or "displayName" a client sent (scim.ManagerAsValue): a link
// the gateway did not write is never handed to other clients. Only a stored document that
// names a manager is looked at.
func managerAsValue(rec *store.Record, doc scim.Resource) scim.Resource {
	if rec.Type != scim.UserType || !bytes.Contains(rec.Doc, []byte(`"manager"`)) {
		return doc
	}
	return scim.ManagerAsValue(doc)
}

// decorate adds id, schemas and meta to a record's attributes.
func decorate(req *request, rec *store.Record, doc scim.Resource) {
	rt := scim.ResourceTypeByName(rec.Type)
	doc["id"] = rec.ID
	setSchemas(doc, rt)
	doc["meta"] = map[string]any{
		"resourceType": rec.Type,
		"created":      formatTime(rec.Created),
		"lastModified": formatTime(rec.LastModified),
		"location":     req.base + rt.Endpoint + "/" + rec.ID,
		"version":      provision.ETag(rec.Version),
	}
}

// addComputed adds the attributes kept outside the document: a group's members (edges)
// and a user's groups (reverse edges), as o asks.
func (g *Handler) addComputed(tx *store.Tx, req *request, rec *store.Record, doc scim.Resource, o query.Computed) error {
	switch {
	case rec.Type == scim.GroupType && o.Members:
		var members []any
		err := tx.Members(rec.ID, func(m store.Member) error {
			members = append(members, g.memberJSON(req, m))
			return nil
		})
		if err != nil {
			return err
		}
		if len(members) > 0 { // no members: unassigned, not [] (RFC 7643 §2.5), like a user's groups
			doc["members"] = members
		}
	case rec.Type == scim.UserType && o.Groups:
		var groups []any
		err := tx.GroupsOf(rec.ID, func(gid string) error {
			gr, err := tx.Get(scim.GroupType, gid)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			entry := map[string]any{"value": gid, "$ref": req.base + "/Groups/" + gid, "type": "direct"}
			if name := displayNameOf(gr.Doc); name != "" {
				entry["display"] = name
			}
			groups = append(groups, entry)
			return nil
		})
		if err != nil {
			return err
		}
		if len(groups) > 0 {
			doc["groups"] = groups
		}
	}
	return nil
}

func (g *Handler) memberJSON(req *request, m store.Member) map[string]any {
	out := map[string]any{"value": m.ID}
	if m.Type != "" {
		out["type"] = m.Type
		if rt := scim.ResourceTypeByName(m.Type); rt != nil {
			out["$ref"] = req.base + rt.Endpoint + "/" + m.ID
		}
	}
	if m.Display != "" {
		out["display"] = m.Display
	}
	return out
}

// setSchemas lists the core schema, the schemas the client listed, and every extension
// whose attributes the resource holds (Entra omits custom extension URNs from schemas[]).
func setSchemas(doc map[string]any, rt *scim.ResourceTypeDef) {
	list := []any{rt.Schema}
	has := map[string]bool{strings.ToLower(rt.Schema): true}
	add := func(s string) {
		if !has[strings.ToLower(s)] {
			has[strings.ToLower(s)] = true
			list = append(list, s)
		}
	}
	if k, ok := scim.Key(doc, "schemas"); ok {
		if given, ok := doc[k].([]any); ok {
			for _, e := range given {
				if s, ok := e.(string); ok {
					add(s)
				}
			}
		}
		delete(doc, k)
	}
	for k, v := range doc {
		if _, isObj := v.(map[string]any); isObj && scim.IsURN(k) {
			add(k)
		}
	}
	doc["schemas"] = list
}

func displayNameOf(doc []byte) string {
	if r := gjson.GetBytes(doc, "displayName"); r.Type == gjson.String {
		return r.Str
	}
	v, err := scim.Decode(doc) // the name was written in another case
	if err != nil {
		return ""
	}
	m, _ := v.(map[string]any)
	s, _ := scim.Get(m, "displayName")
	name, _ := s.(string)
	return name
}

func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

func (g *Handler) get(req *request, typ, id string) {
	if g.engine.JournalsReads() {
		req.trail = &provision.Trail{Action: change.ActionGet, Type: typ, ID: id}
	}
	proj, err := projection(req)
	if err != nil {
		g.writeError(req, err)
		return
	}
	var out scim.Resource
	var version uint64
	found := false
	err = g.store.ViewRecentFound(func(tx *store.Tx) (bool, error) {
		rec, err := tx.Get(typ, id)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		} else if err != nil {
			return false, err
		}
		found, version = true, rec.Version
		c := query.ComputedFor(proj)
		if err := query.CheckRead(tx, rec, c); err != nil {
			return true, err
		}
		out, err = g.render(tx, req, rec, c)
		return true, err
	})
	if err == nil && !found {
		err = scim.NotFound("%s %s not found", typ, id)
	}
	if err == nil && req.trail != nil {
		req.trail.Subject = provision.SubjectOf(typ, out)
		err = g.engine.Read(req.engineRequest(), req.trail)
	}
	if err != nil {
		g.writeError(req, err)
		return
	}
	req.w.Header().Set("ETag", provision.ETag(version))
	if inm := req.r.Header.Values("If-None-Match"); len(inm) > 0 && provision.ETagListMatches(strings.Join(inm, ","), version) {
		// RFC 7644 §3.14, RFC 9110 §13.1.2: the client's copy is current. A 304 carries the
		// ETag and Cache-Control a 200 would, and no body.
		req.w.Header().Set("Cache-Control", "no-store")
		req.w.WriteHeader(http.StatusNotModified)
		return
	}
	g.writeJSON(req, http.StatusOK, proj.Apply(typ, out))
}

// readResource reads and prepares a POST or PUT body, and the projection of its answer.
func (g *Handler) readResource(req *request, typ string) (*scim.Prepared, scim.Projection, error) {
	proj, err := projection(req)
	if err != nil {
		return nil, proj, err
	}
	body, err := g.readBody(req)
	if err != nil {
		return nil, proj, err
	}
	p, err := scim.PrepareResource(typ, body)
	return p, proj, err
}

// apply hands a write to the engine and answers what it did: the resource (or nothing,
// as the operation's success status says), or the SCIM error, already journaled.
func (g *Handler) apply(req *request, op *provision.Op) {
	// op is not held during Apply: the engine lets go of a large member list as it goes.
	action, typ := op.Action, op.Type
	res := g.engine.Apply(req.engineRequest(), op)
	if res.Err != nil {
		g.answerError(req, res)
		return
	}
	if action == change.ActionCreate {
		req.w.Header().Set("Location", req.base+scim.ResourceTypeByName(typ).Endpoint+"/"+res.ID)
	}
	if res.Version != 0 {
		req.w.Header().Set("ETag", provision.ETag(res.Version))
	}
	if res.Answer == nil {
		req.w.WriteHeader(res.Status)
		return
	}
	g.writeJSON(req, res.Status, res.Answer)
}

// projection is the request's attributes or excludedAttributes, which shape the resource
// any operation answers (RFC 7644 §3.9), writes included.
func projection(req *request) (scim.Projection, error) {
	q := req.r.URL.Query()
	return scim.ParseProjection(q.Get("attributes"), q.Get("excludedAttributes"))
}

// projectedRenderer renders, inside the commit, the resource a write has just stored, with
// the computed attributes proj asks for, and applies proj to it.
func (g *Handler) projectedRenderer(req *request, typ string, proj scim.Projection) func(*store.Tx, *store.Record, scim.Resource) (any, error) {
	c := query.ComputedFor(proj)
	return func(tx *store.Tx, rec *store.Record, doc scim.Resource) (any, error) {
		out, err := g.renderWritten(tx, req, rec, doc, c)
		if err != nil {
			return nil, err
		}
		return proj.Apply(typ, out), nil
	}
}

func (g *Handler) create(req *request, typ string) {
	req.trail = &provision.Trail{Action: change.ActionCreate, Type: typ}
	p, proj, err := g.readResource(req, typ)
	if err != nil {
		g.writeError(req, err)
		return
	}
	g.apply(req, &provision.Op{
		Action: change.ActionCreate, Type: typ, Resource: p, Status: http.StatusCreated,
		Render: g.projectedRenderer(req, typ, proj),
	})
}

func (g *Handler) replace(req *request, typ, id string) {
	req.trail = &provision.Trail{Action: change.ActionReplace, Type: typ, ID: id}
	p, proj, err := g.readResource(req, typ)
	if err != nil {
		g.writeError(req, err)
		return
	}
	if p.ID != "" && p.ID != id {
		g.writeError(req, scim.BadRequest(scim.TypeMutability, "id %q in the body differs from %q in the URL; id is assigned by the gateway and cannot change", p.ID, id))
		return
	}
	g.apply(req, &provision.Op{
		Action: change.ActionReplace, Type: typ, ID: id, Resource: p, IfMatch: strings.Join(req.r.Header.Values("If-Match"), ","),
		Status: http.StatusOK, Render: g.projectedRenderer(req, typ, proj),
	})
}

func (g *Handler) patch(req *request, typ, id string) {
	req.trail = &provision.Trail{Action: change.ActionPatch, Type: typ, ID: id}
	body, err := g.readBodyWith(req, scim.DecodePatchBody)
	if err != nil {
		g.writeError(req, err)
		return
	}
	ops, err := scim.ParsePatch(body)
	if err != nil {
		g.writeError(req, err)
		return
	}
	proj, err := projection(req)
	if err != nil {
		g.writeError(req, err)
		return
	}
	op := &provision.Op{
		Action: change.ActionPatch, Type: typ, ID: id, Patch: ops, IfMatch: strings.Join(req.r.Header.Values("If-Match"), ","),
		Status: http.StatusNoContent,
	}
	if g.patchWantsBody(req.r, typ) {
		op.Status = http.StatusOK
		op.Render = g.projectedRenderer(req, typ, proj)
	}
	g.apply(req, op)
}

// patchWantsBody decides between 200 with the resource and 204: users get the resource
// (Microsoft's Validator expects it) unless configured otherwise; groups get 204 (the
// Tutorial's recommendation: never send a large member list back). Prefer (RFC 7240)
// overrides both.
func (g *Handler) patchWantsBody(r *http.Request, typ string) bool {
	for _, p := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(p, ",") {
			switch strings.ToLower(strings.ReplaceAll(strings.TrimSpace(part), " ", "")) {
			case "return=minimal":
				return false
			case "return=representation":
				return true
			}
		}
	}
	return typ == scim.UserType && g.UserPatchResponse != "no_content"
}

func (g *Handler) remove(req *request, typ, id string) {
	req.trail = &provision.Trail{Action: change.ActionDelete, Type: typ, ID: id}
	g.apply(req, &provision.Op{
		Action: change.ActionDelete, Type: typ, ID: id, IfMatch: strings.Join(req.r.Header.Values("If-Match"), ","),
		Status: http.StatusNoContent,
	})
}

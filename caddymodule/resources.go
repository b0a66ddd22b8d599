package caddymodule

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// serveResources routes /Users and /Groups requests.
func (g *Gateway) serveResources(req *request, typ string, rest []string) {
	m := req.r.Method
	switch {
	case len(rest) == 0:
		switch m {
		case http.MethodGet, http.MethodHead:
			g.list(req, typ)
		case http.MethodPost:
			g.create(req, typ)
		default:
			g.methodNotAllowed(req, "GET, POST")
		}
	case len(rest) == 1 && rest[0] == ".search":
		if m != http.MethodPost {
			g.methodNotAllowed(req, "POST")
			return
		}
		g.search(req, typ)
	case len(rest) == 1:
		id := rest[0]
		switch m {
		case http.MethodGet, http.MethodHead:
			g.get(req, typ, id)
		case http.MethodPut:
			g.replace(req, typ, id)
		case http.MethodPatch:
			g.patch(req, typ, id)
		case http.MethodDelete:
			g.remove(req, typ, id)
		default:
			g.methodNotAllowed(req, "GET, PUT, PATCH, DELETE")
		}
	default:
		g.writeError(req, scim.NotFound("no SCIM endpoint at %s", req.r.URL.Path))
	}
}

func (g *Gateway) methodNotAllowed(req *request, allow string) {
	req.w.Header().Set("Allow", allow)
	g.writeError(req, scim.Errorf(http.StatusMethodNotAllowed, "", "%s is not allowed on %s; allowed: %s", req.r.Method, req.r.URL.Path, allow))
}

// renderOpts says which computed attributes a rendering needs: a group's members and a
// user's groups cost store reads, so they are loaded only when wanted.
type renderOpts struct {
	members bool
	groups  bool
}

func optsFor(p scim.Projection) renderOpts {
	return renderOpts{members: p.Wants("members"), groups: p.Wants("groups")}
}

// render turns a stored record into the resource Entra reads back: the attributes exactly
// as written, plus id, schemas, meta, and a group's members or a user's groups.
func (g *Gateway) render(tx *store.Tx, req *request, rec *store.Record, o renderOpts) (scim.Resource, error) {
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
func (g *Gateway) renderWritten(tx *store.Tx, req *request, rec *store.Record, doc scim.Resource, o renderOpts) (scim.Resource, error) {
	decorate(req, rec, doc)
	return doc, g.addComputed(tx, req, rec, doc, o)
}

// decodeRecord is the stored document with id, schemas and meta.
func decodeRecord(req *request, rec *store.Record) (scim.Resource, error) {
	v, err := scim.Decode(rec.Doc)
	if err != nil {
		return nil, err
	}
	doc, _ := v.(map[string]any)
	if doc == nil {
		doc = map[string]any{}
	}
	decorate(req, rec, doc)
	return doc, nil
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
		"version":      etag(rec.Version),
	}
}

// addComputed adds the attributes kept outside the document: a group's members (edges)
// and a user's groups (reverse edges), as o asks.
func (g *Gateway) addComputed(tx *store.Tx, req *request, rec *store.Record, doc scim.Resource, o renderOpts) error {
	switch {
	case rec.Type == scim.GroupType && o.members:
		members := []any{}
		err := tx.Members(rec.ID, func(m store.Member) error {
			members = append(members, g.memberJSON(req, m))
			return nil
		})
		if err != nil {
			return err
		}
		doc["members"] = members
	case rec.Type == scim.UserType && o.groups:
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

func (g *Gateway) memberJSON(req *request, m store.Member) map[string]any {
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

func etag(version uint64) string { return `W/"` + strconv.FormatUint(version, 10) + `"` }

// indexEntries are the store indexes of a resource: userName (unique), externalId and every
// emails.value for users; displayName (unique) and externalId for groups.
func indexEntries(typ string, doc scim.Resource) []store.IndexEntry {
	var out []store.IndexEntry
	str := func(name string) string {
		v, _ := scim.Get(doc, name)
		s, _ := v.(string)
		return s
	}
	if typ == scim.UserType {
		out = append(out, store.IndexEntry{Attr: "userName", Value: str("userName"), Unique: true})
		if emails, ok := scim.Get(doc, "emails"); ok {
			list, _ := emails.([]any)
			for _, e := range list {
				if em, ok := e.(map[string]any); ok {
					if v, _ := scim.Get(em, "value"); v != nil {
						if s, ok := v.(string); ok && s != "" {
							out = append(out, store.IndexEntry{Attr: "emails.value", Value: s})
						}
					}
				}
			}
		}
	} else {
		out = append(out, store.IndexEntry{Attr: "displayName", Value: str("displayName"), Unique: true})
	}
	if ext := str("externalId"); ext != "" {
		out = append(out, store.IndexEntry{Attr: "externalId", Value: ext})
	}
	return out
}

func (g *Gateway) get(req *request, typ, id string) {
	if g.journalReads() {
		req.audit = &audit{action: "get", typ: typ, id: id}
	}
	proj, err := scim.ParseProjection(req.r.URL.Query().Get("attributes"), req.r.URL.Query().Get("excludedAttributes"))
	if err != nil {
		g.writeError(req, err)
		return
	}
	var out scim.Resource
	var version uint64
	err = g.store.View(func(tx *store.Tx) error {
		rec, err := tx.Get(typ, id)
		if err != nil {
			return notFound(err, typ, id)
		}
		version = rec.Version
		out, err = g.render(tx, req, rec, optsFor(proj))
		return err
	})
	if err == nil && req.audit != nil {
		req.audit.subject = subjectOf(typ, out)
		err = g.journalRead(req, http.StatusOK)
	}
	if err != nil {
		g.writeError(req, err)
		return
	}
	req.w.Header().Set("ETag", etag(version))
	g.writeJSON(req, http.StatusOK, proj.Apply(typ, out))
}

// journalReads reports whether reads are journaled too.
func (g *Gateway) journalReads() bool { return g.Journal != nil && g.Journal.Reads }

// journalRead records a successful read (reads are journaled only when configured).
func (g *Gateway) journalRead(req *request, status int) error {
	rec := g.newRecord(req, req.audit, "applied", status, "")
	if err := g.store.Update(func(tx *store.Tx) error { return g.appendRecord(tx, rec) }); err != nil {
		return err
	}
	req.audit = nil
	return nil
}

func notFound(err error, typ, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return scim.NotFound("%s %s not found", typ, id)
	}
	return err
}

// readResource reads a POST or PUT body and prepares the document to store, encoded.
func (g *Gateway) readResource(req *request, typ string) (*scim.Prepared, []byte, error) {
	body, err := g.readBody(req)
	if err != nil {
		return nil, nil, err
	}
	p, err := scim.PrepareResource(typ, body)
	if err != nil {
		return nil, nil, err
	}
	// p.Doc keeps a password for the journal's (redacted) change list; the store never
	// holds it.
	docBytes, err := json.Marshal(scim.WithoutWriteOnly(typ, p.Doc))
	return p, docBytes, err
}

func (g *Gateway) create(req *request, typ string) {
	req.audit = &audit{action: "create", typ: typ}
	p, docBytes, err := g.readResource(req, typ)
	if err != nil {
		g.writeError(req, err)
		return
	}
	// The id and timestamps are fixed before the transaction: group commit may run it twice.
	id := uuid.NewString()
	now := g.now().UTC()
	req.audit.id, req.audit.subject = id, subjectOf(typ, p.Doc)
	var out scim.Resource
	var version uint64
	op := &writeOp{
		lockKey: "create:" + typ + ":" + strings.ToLower(subjectOf(typ, p.Doc)),
		status:  http.StatusCreated,
		decide: func(tx *store.Tx) (*plan, error) {
			if err := checkUnique(tx, typ, p.Doc); err != nil {
				return nil, err
			}
			added, _, err := planMembers(tx, id, false, nil, p.Members)
			if err != nil {
				return nil, err
			}
			events := []string{"create"}
			if len(added) > 0 {
				events = append(events, "add_members")
			}
			after := withID(p.Doc, id)
			ch := diffChanges(nil, p.Doc)
			return &plan{typ: typ, id: id, after: after, events: events, changes: ch, changed: changedPathsOf(ch), added: added}, nil
		},
		apply: func(tx *store.Tx, _ *plan) error {
			rec := &store.Record{Type: typ, ID: id, Created: now, LastModified: now, Doc: docBytes, Index: indexEntries(typ, p.Doc)}
			if err := tx.Put(rec); err != nil {
				return err
			}
			if typ == scim.GroupType {
				if _, err := addMembers(tx, id, p.Members); err != nil {
					return err
				}
			}
			version = rec.Version
			var err error
			out, err = g.renderWritten(tx, req, rec, maps.Clone(scim.WithoutWriteOnly(typ, p.Doc)), renderOpts{members: true, groups: true})
			return err
		},
	}
	if err := g.runWrite(req, op); err != nil {
		g.writeError(req, err)
		return
	}
	loc := req.base + scim.ResourceTypeByName(typ).Endpoint + "/" + id
	req.w.Header().Set("Location", loc)
	req.w.Header().Set("ETag", etag(version))
	g.writeJSON(req, http.StatusCreated, out)
}

// checkUnique refuses a create whose userName (or group displayName) is taken, before any
// native call is made. The store enforces it again when the record is written.
func checkUnique(tx *store.Tx, typ string, doc scim.Resource) error {
	attr := "userName"
	if typ == scim.GroupType {
		attr = "displayName"
	}
	value := subjectOf(typ, doc)
	ids, err := tx.Lookup(typ, attr, value)
	if err != nil || len(ids) == 0 {
		return err
	}
	return &store.UniqueError{Type: typ, Attr: attr, Value: value, OwnerID: ids[0]}
}

// addMembers adds member edges and returns the ids that were not members before.
func addMembers(tx *store.Tx, groupID string, members []scim.MemberRef) ([]string, error) {
	var added []string
	for _, m := range members {
		had, err := tx.HasMember(groupID, m.Value)
		if err != nil {
			return nil, err
		}
		if err := addMember(tx, groupID, m); err != nil {
			return nil, err
		}
		if !had {
			added = append(added, m.Value)
		}
	}
	return added, nil
}

// addMember adds one member edge, resolving the member's type from the store (Entra sends
// nested groups without a type). A member id that names no resource is kept as given:
// Entra's reference pass may race with deletes, and failing the whole PATCH would hide the
// other members' changes.
func addMember(tx *store.Tx, groupID string, m scim.MemberRef) error {
	if m.Value == groupID {
		return scim.BadRequest(scim.TypeInvalidValue, "group %s cannot be a member of itself", groupID)
	}
	typ, err := tx.TypeOf(m.Value)
	switch {
	case errors.Is(err, store.ErrNotFound):
		typ = ""
		if rt := scim.ResourceTypeByName(m.Type); rt != nil {
			typ = rt.Name
		}
	case err != nil:
		return err
	}
	_, err = tx.AddMember(groupID, store.Member{ID: m.Value, Type: typ, Display: m.Display})
	return err
}

// checkIfMatch enforces an If-Match precondition against the current version.
func checkIfMatch(r *http.Request, version uint64) error {
	h := r.Header.Get("If-Match")
	if h == "" {
		return nil
	}
	cur := strconv.FormatUint(version, 10)
	for _, t := range strings.Split(h, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.Trim(strings.TrimPrefix(t, "W/"), `"`) == cur {
			return nil
		}
	}
	return scim.Errorf(http.StatusPreconditionFailed, "", "If-Match %s does not match the current version %s; read the resource again", h, etag(version))
}

func (g *Gateway) replace(req *request, typ, id string) {
	req.audit = &audit{action: "replace", typ: typ, id: id}
	p, docBytes, err := g.readResource(req, typ)
	if err != nil {
		g.writeError(req, err)
		return
	}
	if p.ID != "" && p.ID != id {
		g.writeError(req, scim.BadRequest(scim.TypeMutability, "id %q in the body differs from %q in the URL; id is assigned by the gateway and cannot change", p.ID, id))
		return
	}
	now := g.now().UTC()
	var out scim.Resource
	var version uint64
	op := &writeOp{
		lockKey: typ + ":" + id,
		status:  http.StatusOK,
		decide: func(tx *store.Tx) (*plan, error) {
			cur, before, err := loadCurrent(tx, req, typ, id)
			if err != nil {
				return nil, err
			}
			var added, removed []string
			if typ == scim.GroupType && p.HasMembers {
				keep := map[string]bool{}
				for _, m := range p.Members {
					keep[m.Value] = true
				}
				var drop []string
				err := tx.Members(id, func(m store.Member) error {
					if !keep[m.ID] {
						drop = append(drop, m.ID)
					}
					return nil
				})
				if err != nil {
					return nil, err
				}
				if added, removed, err = planMembers(tx, id, false, drop, p.Members); err != nil {
					return nil, err
				}
			}
			pl := &plan{typ: typ, id: id, version: cur.Version, before: withID(before, id), after: withID(p.Doc, id), added: added, removed: removed}
			pl.changes = diffChanges(before, p.Doc)
			pl.changed = changedPathsOf(pl.changes)
			pl.events = semanticEvents(typ, before, p.Doc, pl.changes, len(added), len(removed))
			return pl, nil
		},
		apply: func(tx *store.Tx, pl *plan) error {
			cur, err := tx.Get(typ, id)
			if err != nil {
				return notFound(err, typ, id)
			}
			rec := &store.Record{Type: typ, ID: id, Created: cur.Created, LastModified: now, Doc: docBytes, Index: indexEntries(typ, p.Doc)}
			if err := tx.Put(rec); err != nil {
				return err
			}
			// PUT replaces the member set when the body has one; without a members
			// attribute the members are left as they are (no implicit wipe).
			if typ == scim.GroupType && p.HasMembers {
				if _, _, err := replaceMembers(tx, id, p.Members); err != nil {
					return err
				}
			}
			version = rec.Version
			out, err = g.renderWritten(tx, req, rec, maps.Clone(scim.WithoutWriteOnly(typ, p.Doc)), renderOpts{members: true, groups: true})
			return err
		},
	}
	if err := g.runWrite(req, op); err != nil {
		g.writeError(req, err)
		return
	}
	req.w.Header().Set("ETag", etag(version))
	g.writeJSON(req, http.StatusOK, out)
}

// replaceMembers makes members the group's member set, reporting the ids added and removed.
func replaceMembers(tx *store.Tx, groupID string, members []scim.MemberRef) (added, removed []string, err error) {
	keep := make(map[string]bool, len(members))
	for _, m := range members {
		keep[m.Value] = true
	}
	err = tx.Members(groupID, func(m store.Member) error {
		if !keep[m.ID] {
			removed = append(removed, m.ID)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for _, id := range removed {
		if _, err := tx.RemoveMember(groupID, id); err != nil {
			return nil, nil, err
		}
	}
	added, err = addMembers(tx, groupID, members)
	return added, removed, err
}

// loadCurrent reads the resource a write changes, checks the request's If-Match against
// it and decodes its attributes.
func loadCurrent(tx *store.Tx, req *request, typ, id string) (*store.Record, scim.Resource, error) {
	cur, err := tx.Get(typ, id)
	if err != nil {
		return nil, nil, notFound(err, typ, id)
	}
	if err := checkIfMatch(req.r, cur.Version); err != nil {
		return nil, nil, err
	}
	doc, err := decodeDoc(cur)
	return cur, doc, err
}

// decodeDoc decodes a stored record's attributes.
func decodeDoc(rec *store.Record) (scim.Resource, error) {
	v, err := scim.Decode(rec.Doc)
	if err != nil {
		return nil, err
	}
	doc, _ := v.(map[string]any)
	if doc == nil {
		doc = scim.Resource{}
	}
	return doc, nil
}

func (g *Gateway) patch(req *request, typ, id string) {
	req.audit = &audit{action: "patch", typ: typ, id: id}
	body, err := g.readBody(req)
	if err != nil {
		g.writeError(req, err)
		return
	}
	ops, err := scim.ParsePatch(body)
	if err != nil {
		g.writeError(req, err)
		return
	}
	proj, err := scim.ParseProjection(req.r.URL.Query().Get("attributes"), req.r.URL.Query().Get("excludedAttributes"))
	if err != nil {
		g.writeError(req, err)
		return
	}
	wantBody := g.patchWantsBody(req.r, typ)
	now := g.now().UTC()
	var out scim.Resource
	var version uint64
	var delta *scim.MemberDelta
	op := &writeOp{
		lockKey: typ + ":" + id,
		status:  answerStatus(wantBody),
		decide: func(tx *store.Tx) (*plan, error) {
			cur, before, err := loadCurrent(tx, req, typ, id)
			if err != nil {
				return nil, err
			}
			after, d, err := scim.ApplyPatch(typ, before, ops, g.patchOpts)
			if err != nil {
				return nil, err
			}
			if err := scim.CheckTypes(typ, after); err != nil {
				return nil, err
			}
			if err := scim.CheckRequired(typ, after); err != nil {
				return nil, err
			}
			delta = d
			var added, removed []string
			if d != nil {
				if added, removed, err = planMembers(tx, id, d.RemoveAll, d.Remove, d.Add); err != nil {
					return nil, err
				}
			}
			pl := &plan{typ: typ, id: id, version: cur.Version, before: withID(before, id), after: withID(after, id), added: added, removed: removed}
			pl.changes = diffChanges(before, after)
			pl.changed = changedPathsOf(pl.changes)
			pl.events = semanticEvents(typ, before, after, pl.changes, len(added), len(removed))
			// The record to store is built here, so that with a target (decided before the
			// native calls) the shared commit only writes it.
			pl.stored = scim.WithoutWriteOnly(typ, after)
			if pl.doc, err = json.Marshal(pl.stored); err != nil {
				return nil, err
			}
			pl.index = indexEntries(typ, pl.stored)
			return pl, nil
		},
		apply: func(tx *store.Tx, pl *plan) error {
			cur, err := tx.Get(typ, id)
			if err != nil {
				return notFound(err, typ, id)
			}
			if _, _, err := applyDelta(tx, id, delta); err != nil {
				return err
			}
			rec := cur
			if len(pl.changed) > 0 || len(pl.added)+len(pl.removed) > 0 {
				rec = &store.Record{Type: typ, ID: id, Created: cur.Created, LastModified: now, Doc: pl.doc, Index: pl.index}
				if err := tx.Put(rec); err != nil {
					return err
				}
			}
			version = rec.Version
			if wantBody {
				out, err = g.renderWritten(tx, req, rec, maps.Clone(pl.stored), optsFor(proj))
			}
			return err
		},
	}
	if err := g.runWrite(req, op); err != nil {
		g.writeError(req, err)
		return
	}
	req.w.Header().Set("ETag", etag(version))
	if !wantBody {
		req.w.WriteHeader(http.StatusNoContent)
		return
	}
	g.writeJSON(req, http.StatusOK, proj.Apply(typ, out))
}

// withoutID drops the id that withID added.
func withoutID(doc scim.Resource) scim.Resource {
	out := make(scim.Resource, len(doc))
	for k, v := range doc {
		if k != "id" {
			out[k] = v
		}
	}
	return out
}

// patchWantsBody decides between 200 with the resource and 204: users get the resource
// (Microsoft's Validator expects it) unless configured otherwise; groups get 204 (the
// Tutorial's recommendation: never send a large member list back). Prefer (RFC 7240)
// overrides both.
func (g *Gateway) patchWantsBody(r *http.Request, typ string) bool {
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

// applyDelta applies a group's member changes as edges and reports the ids actually added
// and removed.
func applyDelta(tx *store.Tx, groupID string, d *scim.MemberDelta) (added, removed []string, err error) {
	if d == nil {
		return nil, nil, nil
	}
	if d.RemoveAll {
		err := tx.Members(groupID, func(m store.Member) error {
			removed = append(removed, m.ID)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if _, err := tx.RemoveAllMembers(groupID); err != nil {
			return nil, nil, err
		}
	}
	for _, id := range d.Remove {
		ok, err := tx.RemoveMember(groupID, id)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			removed = append(removed, id)
		}
	}
	added, err = addMembers(tx, groupID, d.Add)
	return added, removed, err
}

func (g *Gateway) remove(req *request, typ, id string) {
	req.audit = &audit{action: "delete", typ: typ, id: id}
	op := &writeOp{
		lockKey: typ + ":" + id,
		status:  http.StatusNoContent,
		decide: func(tx *store.Tx) (*plan, error) {
			cur, before, err := loadCurrent(tx, req, typ, id)
			if err != nil {
				return nil, err
			}
			return &plan{typ: typ, id: id, version: cur.Version, before: withID(before, id), events: []string{"delete"}, changes: diffChanges(before, nil)}, nil
		},
		apply: func(tx *store.Tx, _ *plan) error { return tx.Delete(typ, id) },
	}
	if err := g.runWrite(req, op); err != nil {
		g.writeError(req, err)
		return
	}
	req.w.WriteHeader(http.StatusNoContent)
}

package mapping

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// listCall names a resource type's list call: every account of the app, page by page,
// for a reconcile of the whole app.
const listCall change.Event = "list"

// listMembersCall names a group type's member list: every member of one group (its
// native id is {id}), page by page, for a reconcile of memberships.
const listMembersCall change.Event = "list_members"

// isList reports whether ev names a list call (of accounts, or of a group's members).
func isList(ev change.Event) bool { return ev == listCall || ev == listMembersCall }

// filePaging is a lookup's or a list's "paging" as written.
type filePaging struct {
	Type      string `json:"type"`
	Param     string `json:"param"`
	Cursor    string `json:"cursor"`
	Start     int    `json:"start"`
	Size      int    `json:"size"`
	SizeParam string `json:"size_param"`
	MaxPages  int    `json:"max_pages"`
	Total     string `json:"total"`
}

// compileListOptions checks "items" and "paging" (lookup and list) and "match" (lookup).
func (c *compiler) compileListOptions(cl *call, fc *fileCall) error {
	read := isList(cl.event) || cl.event == lookupCall
	switch {
	case fc.Items != "" && !read:
		return c.errf(cl.rule+".items", "applies to lookup and list calls only")
	case fc.Match != nil && cl.event != lookupCall:
		return c.errf(cl.rule+".match", "applies to a lookup only")
	case fc.Match != nil && fc.Items == "":
		return c.errf(cl.rule+".match", "compares fields of each item: give \"items\", the path of the answer's list")
	case isList(cl.event) && fc.Items == "":
		return c.errf(cl.rule+".items", "missing: a list needs the gjson path of each page's list of accounts (e.g. \"items\")")
	case fc.Paging != nil && !isList(cl.event) && cl.event != lookupCall:
		return c.errf(cl.rule+".paging", "applies to lookup and list calls only")
	}
	if cl.event == listCall && (len(cl.path.sources()) > 0 || len(cl.fields) > 0) {
		return c.errf(cl.rule, "a list reads every account, of no resource in particular: its path has no placeholders and it has no body")
	}
	if cl.event == listMembersCall {
		if len(cl.fields) > 0 || !cl.path.uses(srcNativeID) || len(cl.path.sources()) != 1 {
			return c.errf(cl.rule, "a member list reads the members of one group: its path has the group's native id, {id}, as its only placeholder, and it has no body")
		}
	}
	if fc.Items != "" {
		if err := compileGJSONPath(fc.Items); err != nil {
			return c.wrap(cl.rule+".items", err)
		}
		cl.items = fc.Items
	}
	if fc.Read != nil {
		if cl.event != listCall {
			return c.errf(cl.rule+".read", "applies to a list only: where a listed account holds the fields the calls write")
		}
		cl.read = make(map[string]string, len(fc.Read))
		for native, at := range fc.Read {
			_, comps, err := compileNativePath(at)
			if err != nil {
				return c.wrap(cl.rule+".read."+native, err)
			}
			cl.read[native] = gjsonPathOf(comps)
		}
	}
	if err := c.compileMatch(cl, fc.Match); err != nil {
		return err
	}
	if fc.Paging == nil {
		return nil
	}
	fp := fc.Paging
	p := &legacy.Paging{Kind: legacy.PagingKind(fp.Type), Param: fp.Param, CursorPath: fp.Cursor, ItemsPath: cl.items,
		Start: fp.Start, Size: fp.Size, SizeParam: fp.SizeParam, MaxPages: fp.MaxPages, TotalPath: fp.Total}
	if p.CursorPath != "" {
		if err := compileGJSONPath(p.CursorPath); err != nil {
			return c.wrap(cl.rule+".paging.cursor", err)
		}
	}
	if p.TotalPath != "" {
		if err := compileGJSONPath(p.TotalPath); err != nil {
			return c.wrap(cl.rule+".paging.total", err)
		}
	}
	if fp.MaxPages == 0 {
		p.MaxPages = legacy.DefaultMaxPages
	}
	if err := p.Validate(); err != nil {
		return c.wrap(cl.rule+".paging", err)
	}
	cl.paging = p
	return nil
}

// checkListRead checks that every key of the list's "read" names a field that the
// resource's create or update calls write (a misspelt one would silently compare nothing).
func (c *compiler) checkListRead(rm *resourceMapping) error {
	if rm.list == nil {
		return nil
	}
	for _, native := range sortedKeys(rm.list.read) {
		if !rm.writes(native) {
			return c.errf(rm.list.rule+".read."+native, "no create or update call of %s writes a field %q: a key of read is a native path of the body, as the calls write it", sectionOf[rm.typ], native)
		}
	}
	return nil
}

// writes reports whether a create or update call of rm has a body field at native.
func (rm *resourceMapping) writes(native string) bool {
	for _, ev := range []change.Event{change.Create, change.Update} {
		for _, cl := range rm.calls[ev] {
			for _, f := range cl.fields {
				if f.native == native {
					return true
				}
			}
		}
	}
	return false
}

// itemPath is the gjson path at which a listed account holds field f: where the list's
// "read" says, else the field's own native path.
func (rm *resourceMapping) itemPath(f *field) string {
	if rm.list != nil {
		if p, ok := rm.list.read[f.native]; ok {
			return p
		}
	}
	return gjsonPathOf(f.comps)
}

// ListRequest builds the list call of the resource type; ok is false without one.
func (m *Mapping) ListRequest(resourceType string) (*Request, bool, error) {
	rm := m.resource(resourceType)
	if rm == nil || rm.list == nil {
		return nil, false, nil
	}
	in := &Input{ResourceType: rm.typ, Event: listCall}
	req, _, err := rm.list.build(&evalCtx{in: in}, nil)
	if err != nil {
		return nil, true, err
	}
	return &req, true, nil
}

// CanList reports whether the resource type's accounts can be listed (a "list" call).
func (m *Mapping) CanList(resourceType string) bool {
	rm := m.resource(resourceType)
	return rm != nil && rm.list != nil
}

// CanListMembers reports whether a group's members can be listed (groups.list_members).
func (m *Mapping) CanListMembers() bool {
	rm := m.resource(scim.GroupType)
	return rm != nil && rm.listMembers != nil
}

// listMembersRequest builds the member list of the group with native id groupID.
func (m *Mapping) listMembersRequest(groupID string) (*Request, error) {
	rm := m.resource(scim.GroupType)
	if rm == nil || rm.listMembers == nil {
		return nil, fmt.Errorf("mapping %s: groups have no list_members call", m.name)
	}
	in := &Input{ResourceType: scim.GroupType, Event: listMembersCall, NativeID: groupID}
	req, _, err := rm.listMembers.build(&evalCtx{in: in}, nil)
	if err != nil {
		return nil, err
	}
	return &req, nil
}

// Members lists the members of the group whose native id is groupID through the mapping's
// list_members call, page by page, as Accounts lists accounts (NativeID is the member's
// native id).
func (m *Mapping) Members(ctx context.Context, c *legacy.Client, header http.Header, groupID string) iter.Seq2[Account, error] {
	return func(yield func(Account, error) bool) {
		req, err := m.listMembersRequest(groupID)
		if err != nil {
			yield(Account{}, err)
			return
		}
		listPages(ctx, c, header, req, yield)
	}
}

// Account is one account of the app, as its list call gives it.
type Account struct {
	NativeID string
	// Item is the account's JSON as the app listed it (a copy).
	Item []byte
}

// Accounts lists every account of the resource type through the mapping's list call,
// page by page: one page is held in memory at a time, however many accounts the app
// has. header is added to every call (the target's own headers). An item without a
// usable id yields an error and the listing goes on if the caller continues; a failed
// page, or more pages than the call's max_pages, yields an error and ends it.
func (m *Mapping) Accounts(ctx context.Context, c *legacy.Client, header http.Header, resourceType string) iter.Seq2[Account, error] {
	return func(yield func(Account, error) bool) {
		req, ok, err := m.ListRequest(resourceType)
		if err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("mapping %s: %s have no list call", m.name, resourceType)
			}
			yield(Account{}, err)
			return
		}
		listPages(ctx, c, header, req, yield)
	}
}

// listPages makes a list call page by page and yields the items of each.
func listPages(ctx context.Context, c *legacy.Client, header http.Header, req *Request, yield func(Account, error) bool) {
	h := req.Header.Clone()
	for k, v := range header {
		h[k] = v
	}
	lr := legacy.Request{Method: req.Method, Path: req.Path, Header: h, Idempotent: true, Expect: req.Expect}
	pages := func(yield func(*legacy.Response, error) bool) {
		if req.Paging == nil {
			resp, err := c.Do(ctx, lr)
			yield(resp, err)
			return
		}
		c.Pages(ctx, lr, *req.Paging)(yield)
	}
	page := 0
	for resp, err := range pages {
		if err != nil {
			yield(Account{}, err)
			return
		}
		page++
		if !yieldItems(page, resp.Body, req.ItemsPath, req.IDPath, yield) {
			return
		}
	}
}

// yieldItems yields the accounts of one page (the listing's page-th); false when the caller
// stopped, or when the page proves nothing (not JSON, or without its list: a proxy's {} is
// no empty page), which ends the listing with an error naming the page, never as a page
// without accounts.
func yieldItems(page int, body []byte, itemsPath, idPath string, yield func(Account, error) bool) bool {
	items, err := listAt(body, itemsPath)
	if err != nil {
		yield(Account{}, &legacy.PageError{Page: page, Err: fmt.Errorf("the answer: %w", err)})
		return false
	}
	goOn, n := true, 0
	items.ForEach(func(_, item gjson.Result) bool {
		n++
		raw := []byte(item.Raw)
		id, err := extractID(raw, idPath)
		if err != nil {
			goOn = yield(Account{}, &legacy.PageError{Page: page, Err: fmt.Errorf("its account %d: %w", n, err)})
			return goOn
		}
		goOn = yield(Account{NativeID: id, Item: append([]byte(nil), raw...)}, nil)
		return goOn
	})
	return goOn
}

// listAt is the list at path in a lookup's or a listing's answer; an error when the answer
// is not JSON or holds no list there (a proxy's {} proves nothing: it is no empty list).
func listAt(body []byte, path string) (gjson.Result, error) {
	if !gjson.ValidBytes(body) {
		return gjson.Result{}, errors.New("not valid JSON")
	}
	if err := ambiguous(body); err != nil {
		return gjson.Result{}, err
	}
	items := gjson.GetBytes(body, path)
	switch {
	case !items.Exists():
		return items, fmt.Errorf("no list at %q", path)
	case !items.IsArray():
		return items, fmt.Errorf("%q holds %s, not a list", path, gjsonTypeName(items))
	}
	return items, nil
}

// matchRule is one field a lookup's item must hold: the value at a gjson path in the item
// equals the rendered template (compared case-insensitively).
type matchRule struct {
	path string
	tpl  *template
}

func (c *compiler) compileMatch(cl *call, match map[string]string) error {
	for _, path := range sortedKeys(match) {
		if err := compileGJSONPath(path); err != nil {
			return c.wrap(fmt.Sprintf("%s.match[%q]", cl.rule, path), err)
		}
		tpl, err := compileTemplate(cl.rt, match[path], false, c.tables)
		if err != nil {
			return c.wrap(fmt.Sprintf("%s.match[%q]", cl.rule, path), err)
		}
		cl.match = append(cl.match, matchRule{path: path, tpl: tpl})
	}
	return nil
}

// FindID reads a lookup's answer (one page of it): the native id at IDPath, or, with
// ItemsPath, the id of the first item that holds every Match value. found is false when
// the answer proves that the app has no such account: with ItemsPath, the list is there
// (a JSON list) and no item matches; without it, the id's path runs into a list that is
// there but has no such item (IDPath "items.0.id" and an answer {"items": []}). Any other
// answer proves nothing (it is not JSON, the list is absent or not a list, {} where the
// app answers with the account, a matching item without a usable id): err says why, and
// the caller must take it as an outage, never as "not found", which would create a second
// account.
func (r *Request) FindID(body []byte) (id string, found bool, err error) {
	if r.ItemsPath == "" {
		if !gjson.ValidBytes(body) {
			return "", false, errors.New("the lookup's answer is not JSON")
		}
		if err := ambiguous(body); err != nil {
			return "", false, fmt.Errorf("the lookup's answer: %w", err) // never "not found"
		}
		id, err := ExtractID(body, r.IDPath)
		switch {
		case err == nil:
			return id, true, nil
		case provesAbsent(gjson.ParseBytes(body), splitGJSONPath(r.IDPath)):
			return "", false, nil
		}
		return "", false, fmt.Errorf("the lookup's answer neither names an account nor shows an empty list: %w", err)
	}
	items, err := listAt(body, r.ItemsPath)
	if err != nil {
		return "", false, fmt.Errorf("the lookup's answer: %w", err)
	}
	items.ForEach(func(_, item gjson.Result) bool {
		for path, want := range r.Match {
			if !strings.EqualFold(item.Get(path).String(), want) {
				return true
			}
		}
		id, err = extractID([]byte(item.Raw), r.IDPath)
		if err != nil {
			err = fmt.Errorf("the lookup's answer lists the account without a usable id: %w", err)
			return false
		}
		found = true
		return false
	})
	if err != nil {
		return "", false, err
	}
	return id, found, nil
}

// provesAbsent reports whether a JSON answer without a value at the path comps proves
// that there is none: walking the path, it reaches a list that is there, with no item at
// the index the path names (or none that a #(...) query of the path selects). A path that
// breaks at an absent key, or at a component this walk does not follow (a wildcard, a
// modifier), proves nothing.
func provesAbsent(cur gjson.Result, comps []string) bool {
	for _, comp := range comps {
		switch {
		case cur.IsArray() && isIndex(comp):
			n, err := strconv.Atoi(comp)
			list := cur.Array()
			if err != nil || n >= len(list) {
				return err == nil
			}
			cur = list[n]
		case cur.IsArray() && strings.HasPrefix(comp, "#(") && strings.HasSuffix(comp, ")"):
			next := cur.Get(comp)
			if !next.Exists() {
				return true
			}
			cur = next
		case cur.IsObject() && !strings.ContainsAny(comp, "*?@#|"):
			cur = cur.Get(comp)
			if !cur.Exists() {
				return false
			}
		default:
			return false
		}
	}
	return false
}

// isIndex reports whether a path component is a list index.
func isIndex(comp string) bool {
	if comp == "" {
		return false
	}
	for _, c := range comp {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// splitGJSONPath splits a gjson path at its separating dots: not an escaped one (\.) nor
// one inside a #(...) query or a quoted string. Each component keeps its escapes, as
// gjson.Result.Get reads it.
func splitGJSONPath(p string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '.' && depth == 0:
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}

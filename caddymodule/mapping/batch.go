package mapping

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/legacy"
)

// Batch creates: a resource type's "create_batch" is an app's bulk import call, which
// creates several accounts (or teams) in one call. Queued delivery groups the ready
// creates of different resources into it; each item's body is what the resource type's
// create would send, and the answer gives each item's id (by position, or matched by a
// value the item sent) or its own error.

// batchCreateCall names a resource type's batch create call where calls are told apart by
// event.
const batchCreateCall change.Event = "create_batch"

// Bounds of create_batch.
const (
	// DefaultCreateBatchSize is how many creates one batch call carries unless the call
	// sets batch_size.
	DefaultCreateBatchSize = 100
	// MaxCreateBatchSize bounds a batch create's batch_size: every item is committed with
	// the others, intents before the call and outcomes after it.
	MaxCreateBatchSize = 1000
)

// fileBatch is a create_batch call as written.
type fileBatch struct {
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	Headers   map[string]string `json:"headers"`
	BatchSize int               `json:"batch_size"`
	BodyItems *string           `json:"body_items"`
	Items     *string           `json:"items"`
	ID        string            `json:"id"`
	Match     map[string]string `json:"match"`
	ItemError string            `json:"item_error"`
	Expect    *fileExpect       `json:"expect"`
}

// batchCall is a compiled create_batch.
type batchCall struct {
	rule      string
	method    string
	path      string // no placeholders: a batch is of no resource in particular
	header    http.Header
	size      int
	bodyItems string // the sjson path of the list in the request body; "": the body is the list
	items     string // the gjson path of the answer's list; "": the answer is the list
	idPath    string // the native id's path in an answer item
	match     []matchRule
	itemError string // a path in an answer item that holds the app's refusal of it
	expect    *legacy.Expect
}

func (c *compiler) compileBatch(rt, rule string, raw json.RawMessage, headers http.Header) (*batchCall, error) {
	var fb fileBatch
	if err := decodeStrict(raw, &fb); err != nil {
		return nil, c.wrap(rule, err)
	}
	b := &batchCall{rule: rule, method: strings.ToUpper(fb.Method), size: DefaultCreateBatchSize}
	switch b.method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	case "":
		return nil, c.errf(rule+".method", "missing: a batch create sends its items in the body: POST, PUT or PATCH")
	default:
		return nil, c.errf(rule+".method", "%q sends no body; a batch create sends its items with POST, PUT or PATCH", fb.Method)
	}
	if fb.Path == "" {
		return nil, c.errf(rule+".path", "missing: the URL path of the app's bulk create call")
	}
	tpl, err := compileTemplate(rt, fb.Path, true, c.tables)
	if err != nil {
		return nil, c.wrap(rule+".path", err)
	}
	if len(tpl.sources()) > 0 {
		return nil, c.errf(rule+".path", "a batch creates several resources, of none in particular: its path has no placeholders")
	}
	if b.path, err = tpl.renderURL(&evalCtx{in: &Input{ResourceType: rt, Event: batchCreateCall}}); err != nil {
		return nil, c.wrap(rule+".path", err)
	}
	if b.header, err = c.compileHeaders(rule+".headers", headers, fb.Headers); err != nil {
		return nil, err
	}
	if fb.BatchSize != 0 {
		if fb.BatchSize < 1 || fb.BatchSize > MaxCreateBatchSize {
			return nil, c.errf(rule+".batch_size", "must be between 1 and %d", MaxCreateBatchSize)
		}
		b.size = fb.BatchSize
	}
	if err := c.compileBatchPaths(b, &fb); err != nil {
		return nil, err
	}
	cl := &call{rule: rule, rt: rt}
	if err := c.compileMatch(cl, fb.Match); err != nil {
		return nil, err
	}
	b.match = cl.match
	if b.expect, err = c.compileExpect(rule+".expect", c.expect, fb.Expect, ""); err != nil {
		return nil, err
	}
	switch b.expect.Success.Body {
	case legacy.BodyAny, "":
		b.expect.Success.Body = legacy.BodyJSON // the ids are in a JSON answer
	case legacy.BodyJSON:
	default:
		return nil, c.errf(rule+".expect.body", "a batch's answer gives each item's id: it is \"json\", not %q", b.expect.Success.Body)
	}
	if b.items != "" {
		b.expect.Success.Has = append(b.expect.Success.Has[:len(b.expect.Success.Has):len(b.expect.Success.Has)], b.items)
	}
	return b, nil
}

// compileBatchPaths checks where the items go in the request and where their results are
// in the answer.
func (c *compiler) compileBatchPaths(b *batchCall, fb *fileBatch) error {
	rule := b.rule
	if fb.BodyItems == nil {
		return c.errf(rule+".body_items", "missing: the native path of the list of items in the request body (e.g. \"accounts\"), or \"\" to send the bare list")
	}
	if *fb.BodyItems != "" {
		p, _, err := compileNativePath(*fb.BodyItems)
		if err != nil {
			return c.wrap(rule+".body_items", err)
		}
		b.bodyItems = p
	}
	if fb.Items == nil {
		return c.errf(rule+".items", "missing: the gjson path of the answer's list of results, one per item (e.g. \"results\"), or \"\" when the answer is the bare list")
	}
	if *fb.Items != "" {
		if err := compileGJSONPath(*fb.Items); err != nil {
			return c.wrap(rule+".items", err)
		}
		b.items = *fb.Items
	}
	if fb.ID == "" {
		return c.errf(rule+".id", "missing: the gjson path of the native id in each result (e.g. \"id\")")
	}
	if err := compileGJSONPath(fb.ID); err != nil {
		return c.wrap(rule+".id", err)
	}
	b.idPath = fb.ID
	if fb.ItemError != "" {
		if err := compileGJSONPath(fb.ItemError); err != nil {
			return c.wrap(rule+".item_error", err)
		}
		b.itemError = fb.ItemError
	}
	return nil
}

// checkBatch checks what a batch create needs of the rest of the section: the create it
// sends the bodies of, as one JSON call that gives the id, and a lookup, which finds an
// item again when the answer is lost (the app may have created every item).
func (c *compiler) checkBatch(rm *resourceMapping, section string) error {
	b := rm.batch
	create := rm.calls[change.Create]
	switch {
	case len(create) == 0:
		return c.errf(b.rule, "sends the bodies of %s.events.create, which is not mapped", section)
	case !create[0].id.IsSet():
		return c.errf(b.rule, "takes the place of the call that creates the account, the first of %s.events.create, which gives no \"id\"", section)
	case create[0].when != nil:
		return c.errf(b.rule, "sends every item: the first call of %s.events.create cannot have a condition (\"when\")", section)
	case create[0].form != nil:
		return c.errf(b.rule, "sends a JSON list: %s.events.create must send JSON, not \"encoding\": \"form\"", section)
	case len(create[0].fields) == 0:
		return c.errf(b.rule, "sends the bodies of %s.events.create, which has no body", section)
	case rm.lookup == nil:
		return c.errf(b.rule, "needs %s.lookup: when a batch's answer is lost, each item is looked up before it is sent again (never created twice)", section)
	}
	return nil
}

// BatchSize is how many creates of the resource type one batch call carries: 0 when the
// mapping has no create_batch for it.
func (m *Mapping) BatchSize(resourceType string) int {
	rm := m.resource(resourceType)
	if rm == nil || rm.batch == nil {
		return 0
	}
	return rm.batch.size
}

// BatchItem is one create in a batch call: the body the resource type's create sends for
// it, and the values its result must hold when the batch matches results by value.
type BatchItem struct {
	Body  []byte
	Match map[string]string
}

// BatchItem builds the item of a batch create for in (a create): the body of the create's
// first call, as StepRequests builds it (errors are the same), and the values of "match".
func (m *Mapping) BatchItem(in Input) (BatchItem, error) {
	rm := m.resource(in.ResourceType)
	if rm == nil || rm.batch == nil {
		return BatchItem{}, fmt.Errorf("mapping %s: %s have no create_batch", m.name, in.ResourceType)
	}
	if in.Event != change.Create {
		return BatchItem{}, fmt.Errorf("mapping %s: a batch item is a create, not %s", m.name, in.Event)
	}
	reqs, err := m.StepRequests(in, 0)
	if err != nil {
		return BatchItem{}, err
	}
	if len(reqs) != 1 || len(reqs[0].Body) == 0 {
		return BatchItem{}, fmt.Errorf("mapping %s: the create of %s built no body for a batch", m.name, in.ResourceType)
	}
	it := BatchItem{Body: reqs[0].Body}
	ev := &evalCtx{in: &in, doc: in.Resource}
	for _, mr := range rm.batch.match {
		v, ok, err := mr.tpl.renderText(ev)
		if err != nil || !ok {
			return BatchItem{}, dataError("%s.match[%q]: the item cannot be matched to its result without a value", rm.batch.rule, mr.path)
		}
		if it.Match == nil {
			it.Match = map[string]string{}
		}
		it.Match[mr.path] = v
	}
	return it, nil
}

// BatchRequest builds the batch create of items (at most BatchSize of them).
func (m *Mapping) BatchRequest(resourceType string, items []BatchItem) (Request, error) {
	rm := m.resource(resourceType)
	if rm == nil || rm.batch == nil {
		return Request{}, fmt.Errorf("mapping %s: %s have no create_batch", m.name, resourceType)
	}
	b := rm.batch
	if len(items) == 0 || len(items) > b.size {
		return Request{}, fmt.Errorf("mapping %s: a batch of %d creates (batch_size %d)", m.name, len(items), b.size)
	}
	list := make([]byte, 0, 2+len(items)*(len(items[0].Body)+1))
	list = append(list, '[')
	for i, it := range items {
		if i > 0 {
			list = append(list, ',')
		}
		list = append(list, it.Body...)
	}
	list = append(list, ']')
	body := list
	if b.bodyItems != "" {
		var err error
		if body, err = sjson.SetRawBytes([]byte("{}"), b.bodyItems, list); err != nil {
			return Request{}, fmt.Errorf("%s.body_items: %w", b.rule, err)
		}
	}
	h := b.header.Clone()
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	return Request{Method: b.method, Path: b.path, Header: h, Body: body, Expect: b.expect, ItemsPath: b.items, IDPath: b.idPath}, nil
}

// BatchResult is what a batch's answer says of one item: exactly one of its fields is set.
type BatchResult struct {
	// ID: the app created the item; its native id.
	ID string
	// Refused: the app refused the item (its "item_error"); what it said, bounded.
	Refused string
	// Unproven: the answer proves neither (no result for the item, a result without a
	// usable id); why. The app may have created it.
	Unproven string
}

// BatchResults reads a batch create's answer (one that met the call's expectation) for
// the items sent, in their order. Results are paired with items by position, or, with
// "match", by the values each item sent; a list of another length than the items (by
// position) or a result that pairs with no item or several proves nothing for them.
func (m *Mapping) BatchResults(resourceType string, body []byte, items []BatchItem) []BatchResult {
	out := make([]BatchResult, len(items))
	unproven := func(why string) []BatchResult {
		for i := range out {
			out[i] = BatchResult{Unproven: why}
		}
		return out
	}
	rm := m.resource(resourceType)
	if rm == nil || rm.batch == nil {
		return unproven("no create_batch in the mapping")
	}
	b := rm.batch
	if !gjson.ValidBytes(body) {
		return unproven("the answer is not valid JSON")
	}
	list := gjson.ParseBytes(body)
	if b.items != "" {
		list = list.Get(b.items)
	}
	if !list.IsArray() {
		return unproven(fmt.Sprintf("the answer has no list of results at %q", b.items))
	}
	results := list.Array()
	if len(b.match) == 0 {
		if len(results) != len(items) {
			return unproven(fmt.Sprintf("the answer lists %d results for %d items: their positions prove nothing", len(results), len(items)))
		}
		for i, r := range results {
			out[i] = b.result(r)
		}
		return out
	}
	paired := make([]int, len(items)) // items: how many results match each
	pairOf := make([]int, len(items)) // items: the result that matches it
	for k, r := range results {
		hit := -1
		for i, it := range items {
			if b.matches(r, it) {
				if hit >= 0 {
					hit = -2 // matches several items: proves nothing
					break
				}
				hit = i
			}
		}
		if hit >= 0 {
			paired[hit]++
			pairOf[hit] = k
		}
	}
	for i := range items {
		switch paired[i] {
		case 0:
			out[i] = BatchResult{Unproven: "the answer has no result that matches the item"}
		case 1:
			out[i] = b.result(results[pairOf[i]])
		default:
			out[i] = BatchResult{Unproven: "the answer has several results that match the item"}
		}
	}
	return out
}

// matches reports whether result r holds every match value of item it.
func (b *batchCall) matches(r gjson.Result, it BatchItem) bool {
	for _, mr := range b.match {
		v := r.Get(mr.path)
		if !v.Exists() || !strings.EqualFold(v.String(), it.Match[mr.path]) {
			return false
		}
	}
	return true
}

// result reads one item's result: its refusal, or its id.
func (b *batchCall) result(r gjson.Result) BatchResult {
	if b.itemError != "" {
		if e := r.Get(b.itemError); e.Exists() && e.Type != gjson.Null && e.Type != gjson.False && e.Raw != `""` {
			raw := e.Raw
			if e.Type == gjson.String {
				raw = `{"message":` + raw + `}` // the text itself, bounded and cleaned like any message
			}
			return BatchResult{Refused: legacy.Message([]byte(raw))}
		}
	}
	id, err := ExtractID([]byte(r.Raw), b.idPath)
	if err != nil {
		return BatchResult{Unproven: "its result: " + err.Error()}
	}
	return BatchResult{ID: id}
}

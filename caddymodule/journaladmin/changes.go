package journaladmin

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
)

// The changes route: the watch page's table. A change with native calls is journaled
// twice, its intent (outcome pending) before the calls and its outcome after them; the
// route ties the two together (same request, resource type and SCIM id) and answers one
// row per change, in its current state, with both records. Filters apply on the server
// over the whole journal (up to MaxChangesScan records back), so that a filter finds
// records however far back they are, and count what matched.
//
// A queued change (outcome queued) stays open for the records of its delivery: the worker's
// intents and outcomes (action deliver, the same request, resource type and SCIM id) join
// its row, whose state follows them (pending while a delivery is under way, failed while it
// is retried, then delivered, or dead until an operator acts), so that a change is one row
// from Entra's request to the app. An operator's retry or drop of it joins it too; a drop
// ends it.

const (
	// DefaultChangesLimit and MaxChangesLimit bound a page of changes.
	DefaultChangesLimit = 50
	MaxChangesLimit     = 500

	// MaxChangesScan bounds the records one request reads, newest first: in a larger
	// journal, the answer says that it covers only the newest ones (narrow with from/to).
	MaxChangesScan = 200_000
)

// changesParams are the query parameters of the changes route.
var changesParams = []string{"from", "to", "outcome", "user_name", "scim_id", "resource_type", "event", "client", "before", "limit"}

// ChangeRow is one change: State is its newest record's outcome (pending until the
// outcome record commits), Seq that record's sequence number, Records its records in order.
type ChangeRow struct {
	Seq     uint64         `json:"seq"`
	State   change.Outcome `json:"state"`
	Records []Event        `json:"records"`
}

// ChangesPage is the changes route's answer.
type ChangesPage struct {
	// Changes are the matching changes whose newest record is before the page's cursor,
	// newest first.
	Changes []ChangeRow `json:"changes"`
	// Matched counts the matching changes among the records read; Older those of them
	// before the cursor (Changes is the newest Limit of them).
	Matched int `json:"matched"`
	Older   int `json:"older"`
	// NextBefore is the cursor of the next (older) page; 0 when there is none.
	NextBefore uint64 `json:"next_before"`
	// Head is the newest sequence number; Scanned how many records were read, from
	// FirstSeq; Partial is set when records before FirstSeq may exist and were not read
	// (see MaxChangesScan).
	Head     uint64 `json:"head"`
	FirstSeq uint64 `json:"first_seq"`
	Scanned  uint64 `json:"scanned"`
	Partial  bool   `json:"partial"`
}

// changesRequest is a parsed changes request.
type changesRequest struct {
	filter Filter // outcome, user_name, scim_id, resource_type and the time range
	event  change.Event
	client string
	before uint64 // only changes whose newest record is below it (0: no bound)
	limit  int
}

func parseChangesRequest(q url.Values) (changesRequest, error) {
	var cr changesRequest
	if err := CheckParams(q, changesParams...); err != nil {
		return cr, err
	}
	f, err := ParseFilter(q)
	if err != nil {
		return cr, err
	}
	cr.filter = f
	if v := q.Get("event"); v != "" {
		cr.event = change.Event(v)
		if !slices.Contains(change.Events[:], cr.event) {
			names := make([]string, len(change.Events))
			for i, e := range change.Events {
				names[i] = string(e)
			}
			return cr, &ParamError{"event", fmt.Errorf("unknown event %q; want one of %s", v, strings.Join(names, ", "))}
		}
	}
	cr.client = q.Get("client")
	if cr.before, err = parseSeq(q, "before"); err != nil {
		return cr, err
	}
	cr.limit = DefaultChangesLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxChangesLimit {
			return cr, &ParamError{"limit", fmt.Errorf("want a number of changes from 1 to %d, got %q", MaxChangesLimit, v)}
		}
		cr.limit = n
	}
	return cr, nil
}

// match reports whether a change, by its newest record, passes the request's filters.
func (cr *changesRequest) match(row *ChangeRow) bool {
	r := &row.Records[len(row.Records)-1].Record
	return cr.filter.Match(r) &&
		(cr.event == "" || change.Has(r.Events, cr.event)) &&
		(cr.client == "" || cr.client == r.Client)
}

func serveChanges(w http.ResponseWriter, r *http.Request, a openJournal) error {
	cr, err := parseChangesRequest(r.URL.Query())
	if err != nil {
		return badRequest(err)
	}
	page, err := readChanges(r.Context(), a.j, cr)
	if err != nil {
		return apiError(http.StatusInternalServerError, fmt.Errorf("reading journal %s: %w", a.j.Name(), err))
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	return writeJSON(w, http.StatusOK, page)
}

// changeKey ties a change's intent to its outcome: the request, the resource type and the
// SCIM id (one request changes several resources when it cascades). A record without a
// request id (a reconcile or prune record) is a change of its own.
func changeKey(r *journal.Record) string {
	if r.RequestID == "" {
		return "seq:" + strconv.FormatUint(r.Seq, 10)
	}
	return r.RequestID + "\x00" + r.ResourceType + "\x00" + r.SCIMID
}

// readChanges reads the newest MaxChangesScan records, groups them into changes and keeps
// the newest cr.limit matching ones before cr.before.
func readChanges(ctx context.Context, j *journal.Journal, cr changesRequest) (*ChangesPage, error) {
	head, err := headSeq(j)
	if err != nil {
		return nil, err
	}
	page := &ChangesPage{Changes: []ChangeRow{}, Head: head}
	if head == 0 {
		return page, nil
	}
	page.FirstSeq = liveFirst(head, MaxChangesScan)
	open := map[string]*ChangeRow{}   // intents whose outcome has not been read yet
	queued := map[string]*ChangeRow{} // queued changes whose delivery has not ended
	var kept []ChangeRow
	finish := func(row *ChangeRow) {
		last := row.Records[len(row.Records)-1].Record
		row.Seq, row.State = last.Seq, last.Outcome
		if !cr.match(row) {
			return
		}
		page.Matched++
		if cr.before != 0 && row.Seq >= cr.before {
			return
		}
		page.Older++
		kept = append(kept, *row)
		if len(kept) >= 2*cr.limit {
			kept = newestChanges(kept, cr.limit)
		}
	}
	err = ReadEntries(ctx, func(ctx context.Context, w io.Writer) error {
		_, err := j.Export(ctx, w, journal.Query{FromSeq: page.FirstSeq, ToSeq: head}, journal.FormatJSONL)
		return err
	}, func(e journal.Entry) error {
		page.Scanned++
		ev := Event{Record: e.Record, Hash: hex.EncodeToString(e.Hash[:])}
		key := changeKey(&e.Record)
		if row, ok := queued[key]; ok && joinsQueued(e.Record.Action) {
			row.Records = append(row.Records, ev)
			if e.Record.Action == change.ActionDrop || deliveryEnded(e.Record.Outcome) {
				delete(queued, key)
				finish(row)
			}
			return nil
		}
		// settle finishes a row, or keeps a queued one open for its delivery.
		settle := func(row *ChangeRow) {
			if row.Records[len(row.Records)-1].Record.Outcome == change.Queued {
				if prev, ok := queued[key]; ok { // a second queued record under the key: the first row ends
					finish(prev)
				}
				queued[key] = row
				return
			}
			finish(row)
		}
		if prev, ok := open[key]; ok {
			delete(open, key)
			if e.Record.Outcome == change.Pending { // a second intent: the first never ended
				finish(prev)
			} else {
				prev.Records = append(prev.Records, ev)
				settle(prev)
				return nil
			}
		}
		row := &ChangeRow{Records: []Event{ev}}
		if e.Record.Outcome == change.Pending {
			open[key] = row
			return nil
		}
		settle(row)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, row := range open { // intents still without an outcome: pending now
		finish(row)
	}
	for _, row := range queued { // queued changes not delivered yet: their latest state
		finish(row)
	}
	if kept != nil { // nil when nothing matched: Changes stays [], never null
		page.Changes = newestChanges(kept, cr.limit)
	}
	if page.Older > len(page.Changes) {
		page.NextBefore = page.Changes[len(page.Changes)-1].Seq
	}
	page.Partial = page.FirstSeq > 1
	return page, nil
}

// joinsQueued reports whether a record of action joins the row of the queued change with
// its key: its delivery's records, and an operator's retry or drop of it (a drop ends the
// change), as the live page joins every record of a shown change.
func joinsQueued(action change.Action) bool {
	return action == change.ActionDeliver || action == change.ActionRetry || action == change.ActionDrop
}

// deliveryEnded reports whether a delivery record ends its queued change: delivered (or a
// dry run, or skipped). A failed attempt is retried and a dead letter may be retried by an
// operator, so their change stays open for the records that follow.
func deliveryEnded(o change.Outcome) bool {
	return o == change.Delivered || o == change.DryRun || o == change.Skipped
}

// newestChanges sorts rows newest first and keeps n.
func newestChanges(rows []ChangeRow, n int) []ChangeRow {
	slices.SortFunc(rows, func(a, b ChangeRow) int {
		switch {
		case a.Seq > b.Seq:
			return -1
		case a.Seq < b.Seq:
			return 1
		}
		return 0
	})
	if len(rows) > n {
		rows = rows[:n]
	}
	return rows
}

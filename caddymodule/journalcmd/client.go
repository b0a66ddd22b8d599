package journalcmd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

// adminClient talks to a running instance's admin endpoint as Caddy's own commands do:
// over TCP or a unix socket, with the Origin header the endpoint expects.
type adminClient struct {
	addr   string
	origin string
	unix   bool // a unix socket: no Origin, as the endpoint does not check one there
	client *http.Client
}

func newAdminClient(addr string) (*adminClient, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return nil, fmt.Errorf("--admin: invalid admin address %q", addr)
	}
	a := &adminClient{addr: addr, origin: "http://" + na.JoinHostPort(0)}
	dialAddr := na.JoinHostPort(0)
	if na.IsUnixNetwork() {
		a.origin, a.unix = "http://127.0.0.1", true
		dialAddr = na.Host
	} else if na.IsFdNetwork() {
		return nil, fmt.Errorf("--admin: %s is a file descriptor address, which only the process itself can use", addr)
	}
	var d net.Dialer
	a.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, na.Network, dialAddr)
		},
		ResponseHeaderTimeout: 5 * time.Minute, // verify reads the whole journal first
	}}
	return a, nil
}

// do sends a request; a non-2xx answer is returned as an error carrying the endpoint's
// message.
func (a *adminClient) do(ctx context.Context, method, path string, q url.Values, okStatus ...int) (*http.Response, error) {
	return a.send(ctx, method, path, q, nil, okStatus...)
}

// send is do with a JSON request body (nil for none).
func (a *adminClient) send(ctx context.Context, method, path string, q url.Values, body []byte, okStatus ...int) (*http.Response, error) {
	u := a.origin + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if !a.unix {
		req.Header.Set("Origin", a.origin)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is scimgate running with its admin endpoint at %s? %w", a.addr, err)
	}
	if resp.StatusCode/100 == 2 || slices.Contains(okStatus, resp.StatusCode) {
		return resp, nil
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(answer, &e) == nil && e.Error != "" {
		return nil, fmt.Errorf("%s %s: %s", method, path, e.Error)
	}
	return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(answer))
}

// journalName returns name, or the only journal's name when name is empty.
func (a *adminClient) journalName(ctx context.Context, name string) (string, error) {
	if name != "" {
		return name, nil
	}
	item, err := a.journalItem(ctx, name)
	return item.Name, err
}

// journalItem returns journal name's entry in the instance's list (the only journal when
// name is empty), which names its store: a bbolt file, or etcd endpoints and prefix.
// A name the list does not hold is returned alone, for the journal's route to refuse.
func (a *adminClient) journalItem(ctx context.Context, name string) (journaladmin.ListItem, error) {
	resp, err := a.do(ctx, http.MethodGet, journaladmin.Prefix, nil)
	if err != nil {
		return journaladmin.ListItem{}, err
	}
	defer resp.Body.Close()
	var list []journaladmin.ListItem
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return journaladmin.ListItem{}, fmt.Errorf("reading the journal list: %w", err)
	}
	if name != "" {
		for _, j := range list {
			if j.Name == name {
				return j, nil
			}
		}
		return journaladmin.ListItem{Name: name}, nil
	}
	switch len(list) {
	case 0:
		return journaladmin.ListItem{}, fmt.Errorf("the instance at %s has no journal (is a scim_gateway configured?)", a.addr)
	case 1:
		return list[0], nil
	}
	names := make([]string, len(list))
	for i, j := range list {
		names[i] = j.Name
	}
	return journaladmin.ListItem{}, fmt.Errorf("the instance has several journals (%s): choose one with --journal", strings.Join(names, ", "))
}

// describe names a journal and its store for messages: "journal audit in <store>".
func describe(item journaladmin.ListItem) string {
	if item.Store == "" {
		return "journal " + item.Name
	}
	return "journal " + item.Name + " in " + item.Store
}

// verify asks the instance to verify with its configured key.
func (a *adminClient) verify(ctx context.Context, name string) (*journal.Report, error) {
	resp, err := a.do(ctx, http.MethodGet, journaladmin.JournalPath(name, "verify"), nil, http.StatusConflict)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rep journal.Report
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("reading the report: %w", err)
	}
	return &rep, nil
}

// verifyHere exports the whole journal as JSONL and verifies it in this process with keys,
// trusting nothing the instance says about itself.
func (a *adminClient) verifyHere(ctx context.Context, name string, keys []ed25519.PublicKey) (*journal.Report, error) {
	resp, err := a.do(ctx, http.MethodGet, journaladmin.JournalPath(name, "export"), url.Values{"format": {string(journal.FormatJSONL)}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return journal.VerifyJSONLWith(ctx, resp.Body, journal.JSONLOptions{Keys: keys, Journal: name})
}

// export streams an export into w and checks it arrived whole.
func (a *adminClient) export(ctx context.Context, name string, q url.Values, w io.Writer) (uint64, error) {
	resp, err := a.do(ctx, http.MethodGet, journaladmin.JournalPath(name, "export"), q)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return 0, fmt.Errorf("the export was cut short: %w", err)
	}
	n, err := strconv.ParseUint(resp.Trailer.Get(journaladmin.ExportTrailer), 10, 64)
	if err != nil {
		return 0, errors.New("the export was cut short (no record count at its end)")
	}
	return n, nil
}

// backup streams the store snapshot into w.
func (a *adminClient) backup(ctx context.Context, name string, w io.Writer) (int64, error) {
	resp, err := a.do(ctx, http.MethodGet, journaladmin.JournalPath(name, "backup"), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("the backup was cut short: %w", err)
	}
	return n, nil
}

// checkPage fetches the journal's page once, so a wrong --journal or an instance without
// the page fails now, with the endpoint's message, rather than in the browser.
func (a *adminClient) checkPage(ctx context.Context, name string) error {
	resp, err := a.do(ctx, http.MethodGet, journaladmin.JournalPath(name, watchPage), nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.Body.Close()
}

// follow prints the live stream until ctx ends, reconnecting after the last record seen
// when the stream drops (as EventSource does).
func (a *adminClient) follow(ctx context.Context, name string, backlog int, f journaladmin.Filter, emit func(journal.Entry) error, stderr io.Writer) error {
	var last uint64
	q := f.Values()
	for attempt := 0; ; attempt++ {
		if last > 0 {
			q.Del("backlog")
			q.Set("last_event_id", strconv.FormatUint(last, 10))
		} else {
			q.Set("backlog", strconv.Itoa(backlog))
		}
		got, err := a.stream(ctx, name, q, stderr, func(e journal.Entry) error {
			last = e.Record.Seq
			return emit(e)
		})
		if ctx.Err() != nil {
			return nil
		}
		if got {
			attempt = 0
		}
		if attempt >= 5 {
			return err
		}
		fmt.Fprintf(stderr, "stream ended (%v); reconnecting\n", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
}

// stream reads one SSE connection, handing record events to fn and saying on stderr which
// records a gap event leaves out. got reports whether the connection was established.
func (a *adminClient) stream(ctx context.Context, name string, q url.Values, stderr io.Writer, fn func(journal.Entry) error) (got bool, err error) {
	resp, err := a.do(ctx, http.MethodGet, journaladmin.JournalPath(name, "live"), q)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	err = journaladmin.ReadEvents(resp.Body, func(event string, data []byte) error {
		switch event {
		case "record":
			e, ok, err := parseEvent(data)
			if err != nil || !ok {
				return err
			}
			return fn(e)
		case "gap":
			var g struct {
				From uint64 `json:"from_seq"`
				To   uint64 `json:"to_seq"`
			}
			if err := json.Unmarshal(data, &g); err != nil {
				return fmt.Errorf("decoding a gap event: %w", err)
			}
			fmt.Fprintf(stderr, "records %d to %d were committed while the stream was away and are not shown: journal export --from-seq %d --to-seq %d has them\n", g.From, g.To, g.From, g.To)
		case "dropped":
			return errors.New("the instance dropped the stream")
		}
		return nil
	})
	if err == nil {
		err = io.EOF
	}
	return true, err
}

// parseEvent decodes a record event's data (a record with its hash).
func parseEvent(data []byte) (journal.Entry, bool, error) {
	var ev journaladmin.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return journal.Entry{}, false, fmt.Errorf("decoding a record event: %w", err)
	}
	e := journal.Entry{Record: ev.Record}
	if h, err := hex.DecodeString(ev.Hash); err == nil && len(h) == len(e.Hash) {
		copy(e.Hash[:], h)
	}
	return e, true, nil
}

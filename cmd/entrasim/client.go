package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Retry policy, like Entra on 429/503: at most maxTries attempts in all, each waiting for
// the server's Retry-After but never longer than maxRetryAfter.
const (
	maxTries         = 3
	maxRetryAfter    = 10 * time.Second
	defaultRetryWait = 500 * time.Millisecond
	maxResponseBytes = 8 << 20
	maxDetailLen     = 300
)

// client sends Entra's requests to one Tenant URL and records every attempt.
type client struct {
	base  string // the Tenant URL without a trailing slash
	token string
	hc    *http.Client
	rec   *recorder
}

func newClient(base, token string, insecure bool, rec *recorder) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the -insecure flag asks for it
	}
	return &client{
		base:  strings.TrimRight(base, "/"),
		token: token,
		rec:   rec,
		hc: &http.Client{
			Transport: tr,
			// Only the given URL is contacted: a redirect is an unexpected status, not a hop.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// response is a response read in full (up to maxResponseBytes).
type response struct {
	status int
	body   []byte
}

// call sends one logical request of a kind (retrying on 429/503) and reports whether the
// final status is one of want. An unexpected outcome is recorded with its SCIM detail.
func (c *client) call(ctx context.Context, kind, method, path string, body any, want ...int) (*response, bool) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			c.rec.unexpected(kind, method, path, 0, "encoding the body: "+err.Error())
			return nil, false
		}
	}
	for try := 1; ; try++ {
		resp, wait, err := c.attempt(ctx, kind, method, path, payload)
		if err != nil {
			c.rec.unexpected(kind, method, path, 0, err.Error())
			return nil, false
		}
		if (resp.status == http.StatusTooManyRequests || resp.status == http.StatusServiceUnavailable) && try < maxTries {
			c.rec.retry()
			if sleep(ctx, wait) != nil {
				c.rec.unexpected(kind, method, path, resp.status, "stopped while waiting to retry: "+ctx.Err().Error())
				return nil, false
			}
			continue
		}
		if !slices.Contains(want, resp.status) {
			c.rec.unexpected(kind, method, path, resp.status, errorDetail(resp.body))
			return resp, false
		}
		return resp, true
	}
}

// attempt sends one HTTP request and records its status and latency; wait is how long
// the server asked the client to wait before a retry.
func (c *client) attempt(ctx context.Context, kind, method, path string, payload []byte) (*response, time.Duration, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("User-Agent", "entrasim/1 (scimgate Entra provisioning simulator)")
	if payload != nil {
		req.Header.Set("Content-Type", scimContentType)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.rec.observe(kind, 0, time.Since(start))
		return nil, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	c.rec.observe(kind, resp.StatusCode, time.Since(start))
	if err != nil {
		return nil, 0, fmt.Errorf("reading the response: %w", err)
	}
	return &response{status: resp.StatusCode, body: data}, retryAfter(resp.Header.Get("Retry-After"), time.Now()), nil
}

// retryAfter parses Retry-After (seconds or an HTTP date), bounded by maxRetryAfter; a
// missing or unreadable header waits defaultRetryWait.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	var d time.Duration
	if secs, err := strconv.Atoi(h); err == nil {
		d = time.Duration(max(secs, 0)) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = max(t.Sub(now), 0)
	} else {
		return defaultRetryWait
	}
	return min(d, maxRetryAfter)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errorDetail extracts the detail (and scimType) of a SCIM error body, or the start of
// any other body, for a message a person can act on.
func errorDetail(body []byte) string {
	var e struct {
		Detail   string `json:"detail"`
		SCIMType string `json:"scimType"`
	}
	if json.Unmarshal(body, &e) == nil && e.Detail != "" {
		if e.SCIMType != "" {
			return truncate(e.SCIMType+": "+e.Detail, maxDetailLen)
		}
		return truncate(e.Detail, maxDetailLen)
	}
	return truncate(strings.TrimSpace(string(body)), maxDetailLen)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// listResponse is the part of a ListResponse a lookup needs.
type listResponse struct {
	TotalResults int              `json:"totalResults"`
	Resources    []map[string]any `json:"Resources"`
}

var errMultiple = errors.New("more than one resource matched (Entra logs MultipleEntriesInResponse)")

// lookup runs a filter query and returns the one match, or nil when there is none. ok is
// false when the request failed or the answer is not what Entra accepts.
func (c *client) lookup(ctx context.Context, kind, resource, query string) (map[string]any, bool) {
	path := "/" + resource + "?" + query
	resp, ok := c.call(ctx, kind, http.MethodGet, path, nil, http.StatusOK)
	if !ok {
		return nil, false
	}
	var lr listResponse
	if err := json.Unmarshal(resp.body, &lr); err != nil {
		c.rec.unexpected(kind, http.MethodGet, path, resp.status, "the body is not a ListResponse: "+err.Error())
		return nil, false
	}
	switch {
	case lr.TotalResults == 0 && len(lr.Resources) == 0:
		return nil, true
	case len(lr.Resources) == 1 && lr.TotalResults == 1:
		return lr.Resources[0], true
	case len(lr.Resources) > 1 || lr.TotalResults > 1:
		c.rec.unexpected(kind, http.MethodGet, path, resp.status, errMultiple.Error())
	default:
		c.rec.unexpected(kind, http.MethodGet, path, resp.status, fmt.Sprintf("totalResults %d with %d Resources", lr.TotalResults, len(lr.Resources)))
	}
	return nil, false
}

// created decodes a create response and returns the id the server assigned.
func (c *client) created(kind, path string, resp *response) (string, bool) {
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(resp.body, &r); err != nil || r.ID == "" {
		c.rec.unexpected(kind, http.MethodPost, path, resp.status, "the created resource has no id")
		return "", false
	}
	return r.ID, true
}

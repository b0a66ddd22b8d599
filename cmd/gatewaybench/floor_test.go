package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/scimgate/scimgate/caddymodule/store"
)

// newFloor provisions a floor on a fresh file.
func newFloor(t *testing.T) *floorHandler {
	t.Helper()
	h := &floorHandler{File: filepath.Join(t.TempDir(), "floor", "floor.db")}
	if err := h.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
}

// records lists the values the floor committed, in key order.
func (h *floorHandler) records(t *testing.T) []string {
	t.Helper()
	var out []string
	err := h.st.View(func(tx *store.Tx) error {
		return tx.KV().Bucket(floorBucket).ForEach(func(_, v []byte) error {
			out = append(out, string(v))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A write through the floor: its body is committed before the app is called (and reaches
// the app whole), the app's answer after the call and before the client gets any of it.
// A read commits nothing.
func TestFloorCommitsAroundAWrite(t *testing.T) {
	h := newFloor(t)
	w := httptest.NewRecorder()
	var atCall []string
	app := caddyhttp.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) error {
		atCall = h.records(t)
		body, _ := io.ReadAll(r.Body)
		if string(body) != `{"login":"a"}` {
			t.Errorf("the app got %q", body)
		}
		rw.WriteHeader(http.StatusCreated)
		_, _ = rw.Write([]byte(`{"id":7}`))
		if w.Body.Len() > 0 || w.Code != http.StatusOK || w.Flushed {
			t.Error("the client got the answer before the floor's second commit")
		}
		return nil
	})
	req := httptest.NewRequest(http.MethodPost, "/api/v1/accounts", strings.NewReader(`{"login":"a"}`))
	if err := h.ServeHTTP(w, req, app); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusCreated || w.Body.String() != `{"id":7}` {
		t.Errorf("the client got %d %q", w.Code, w.Body.String())
	}
	if got := strings.Join(atCall, "|"); got != `{"login":"a"}` {
		t.Errorf("committed before the call: %q", got)
	}
	if got := strings.Join(h.records(t), "|"); got != `{"login":"a"}|{"id":7}` {
		t.Errorf("committed: %q", got)
	}
	read := caddyhttp.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) error {
		_, err := rw.Write([]byte(`[]`))
		return err
	})
	w = httptest.NewRecorder()
	if err := h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/accounts", nil), read); err != nil || w.Body.String() != `[]` {
		t.Errorf("a read: %v, %q", err, w.Body.String())
	}
	if n := len(h.records(t)); n != 2 {
		t.Errorf("%d records after a read, want the write's 2", n)
	}
}

// What the floor cannot do is an error Caddy answers with, never a call to the app: a
// body over its bound (413), a store that cannot commit (503). An error of the app's
// handler is passed on.
func TestFloorErrors(t *testing.T) {
	h := newFloor(t)
	called := false
	app := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { called = true; return nil })
	big := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(make([]byte, maxFloorBody+1)))
	var he caddyhttp.HandlerError
	if err := h.ServeHTTP(httptest.NewRecorder(), big, app); !errors.As(err, &he) || he.StatusCode != http.StatusRequestEntityTooLarge || called {
		t.Errorf("an oversized body: %v (called %v)", err, called)
	}
	boom := errors.New("boom")
	failing := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return boom })
	if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPut, "/", strings.NewReader("{}")), failing); !errors.Is(err, boom) {
		t.Errorf("the app's error: %v", err)
	}
	if err := h.st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}")), app); !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || called {
		t.Errorf("a closed store: %v (called %v)", err, called)
	}
	h.st = nil
}

func TestFloorCaddyfile(t *testing.T) {
	for _, tc := range []struct{ src, file, err string }{
		{"gatewaybench_floor {\n file /tmp/f.db\n}", "/tmp/f.db", ""},
		{"gatewaybench_floor /tmp/f.db", "", "wrong argument count"},
		{"gatewaybench_floor {\n file\n}", "", "wrong argument count"},
		{"gatewaybench_floor {\n size 3\n}", "", `unknown option "size"`},
	} {
		var h floorHandler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.src))
		if tc.err == "" && (err != nil || h.File != tc.file) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: file %q, err %v; want %q, %q", tc.src, h.File, err, tc.file, tc.err)
		}
	}
	if err := new(floorHandler).Provision(caddy.Context{}); err == nil {
		t.Error("a floor without a file provisioned")
	}
}

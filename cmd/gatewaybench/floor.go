package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/scimgate/scimgate/caddymodule/store"
)

// The floor is the least any gateway that keeps DESIGN.md's rule "no backend side effect
// without a journal record before and after it" does for a write: a bare reverse_proxy
// whose writes (any method but GET and HEAD) are wrapped in two durable commits through the
// gateway's own store and group commit: the request body before the call, the app's answer
// after it, before the client gets it. It resolves nothing, decides nothing, indexes and
// renders nothing: a gateway write that costs no more than the floor's has nothing left
// to cut but the two fsyncs, which the rule forbids trading. gatewaybench measures it in
// the same run as the gateway and the bare proxy, so a target the floor itself misses is
// shown to be beyond what this machine's disk and cores allow.

func init() {
	caddy.RegisterModule(new(floorHandler))
	httpcaddyfile.RegisterHandlerDirective("gatewaybench_floor", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		f := new(floorHandler)
		return f, f.UnmarshalCaddyfile(h.Dispenser)
	})
}

// floorBucket holds the floor's records.
var floorBucket = []byte("floor")

// maxFloorBody bounds what the floor reads of a request body before its first commit.
const maxFloorBody = 1 << 20

// floorHandler is the Caddy middleware of the floor site (Caddyfile: gatewaybench_floor
// <file> inside a route, before reverse_proxy).
type floorHandler struct {
	// File is the bbolt file the floor commits to, made if missing.
	File string `json:"file"`

	st   *store.Store
	keys atomic.Uint64
}

func (*floorHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.gatewaybench_floor", New: func() caddy.Module { return new(floorHandler) }}
}

// UnmarshalCaddyfile reads `gatewaybench_floor { file <path> }` (a block: a first
// argument starting with "/" would be taken for a path matcher).
func (h *floorHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() != "file" {
			return d.Errf("unknown option %q", d.Val())
		}
		if !d.AllArgs(&h.File) {
			return d.ArgErr()
		}
	}
	return nil
}

func (h *floorHandler) Provision(caddy.Context) error {
	if h.File == "" {
		return errors.New("gatewaybench_floor: no file")
	}
	st, err := store.Open(h.File, store.Options{})
	if err != nil {
		return fmt.Errorf("gatewaybench_floor: %w", err)
	}
	if err := st.Update(func(tx *store.Tx) error {
		_, err := tx.KV().CreateBucketIfNotExists(floorBucket)
		return err
	}); err != nil {
		_ = st.Close()
		return fmt.Errorf("gatewaybench_floor: %w", err)
	}
	h.st = st
	return nil
}

func (h *floorHandler) Cleanup() error {
	if h.st == nil {
		return nil
	}
	return h.st.Close()
}

// commit puts value under a fresh key in one durable transaction of the store's group
// commit.
func (h *floorHandler) commit(value []byte) error {
	key := strconv.AppendUint(nil, h.keys.Add(1), 36)
	return h.st.Update(func(tx *store.Tx) error { return tx.KV().Bucket(floorBucket).Put(key, value) })
}

func (h *floorHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return next.ServeHTTP(w, r)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFloorBody))
	if err != nil {
		return caddyhttp.Error(http.StatusRequestEntityTooLarge, err)
	}
	if err := h.commit(body); err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	var buf bytes.Buffer
	rec := caddyhttp.NewResponseRecorder(w, &buf, func(int, http.Header) bool { return true })
	if err := next.ServeHTTP(rec, r); err != nil {
		return err
	}
	if err := h.commit(buf.Bytes()); err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	return rec.WriteResponse()
}

var (
	_ caddyhttp.MiddlewareHandler = (*floorHandler)(nil)
	_ caddyfile.Unmarshaler       = (*floorHandler)(nil)
	_ caddy.Provisioner           = (*floorHandler)(nil)
	_ caddy.CleanerUpper          = (*floorHandler)(nil)
)

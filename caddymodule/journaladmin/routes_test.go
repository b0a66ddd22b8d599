package journaladmin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestAdminFinishStream checks how a streamed response ends: an error before any output is
// a JSON error, after output an aborted connection, and a departed client neither.
func TestAdminFinishStream(t *testing.T) {
	boom := fmt.Errorf("disk on fire")
	newLW := func(started bool) (*httptest.ResponseRecorder, *lazyWriter) {
		rec := httptest.NewRecorder()
		lw := &lazyWriter{w: rec, header: func(h http.Header) { h.Set("Content-Type", "text/csv") }}
		if started {
			_, _ = lw.Write([]byte("a,b\n"))
		}
		return rec, lw
	}
	req := httptest.NewRequest(http.MethodGet, "/scimgate/journals/audit/export", nil)

	rec, lw := newLW(false)
	if err := finishStream(req, lw, nil, nil); err != nil || rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/csv" {
		t.Errorf("empty success: %v, %d %v", err, rec.Code, rec.Header())
	}

	_, lw = newLW(false)
	var apiErr caddy.APIError
	if err := finishStream(req, lw, boom, nil); !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusInternalServerError {
		t.Errorf("error before output = %v, want a 500 APIError", err)
	}

	_, lw = newLW(true)
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("error after output: recovered %v, want http.ErrAbortHandler", p)
			}
		}()
		_ = finishStream(req, lw, boom, nil)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, lw = newLW(true)
	if err := finishStream(req.WithContext(ctx), lw, context.Canceled, nil); err != nil {
		t.Errorf("client gone: %v", err)
	}
}

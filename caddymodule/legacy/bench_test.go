package legacy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
)

// BenchmarkDo measures the client's overhead (limits, breaker, bounded read, checks)
// against a bare http.Client doing the same exchange with the same transport settings, on
// the same local server in the same run. Compare the two sub-benchmarks' ns/op.
func BenchmarkDo(b *testing.B) {
	body := []byte(`{"userName":"ada","active":true}`)
	srv, _ := newServer(b, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":1234,"login":"ada","locked":false}`))
	})
	b.Run("legacy", func(b *testing.B) {
		c := newTestClient(b, srv.URL, Options{})
		req := Request{Method: http.MethodPost, Path: "/accounts", Body: body}
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Do(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("bare", func(b *testing.B) {
		tr := newTransport(Options{Timeout: DefaultTimeout, MaxConcurrent: DefaultMaxConcurrent})
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr}
		url := srv.URL + "/accounts"
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

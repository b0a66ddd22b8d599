package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime/trace"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/store"
)

// TestAnalyzeWaitsOfATracedServer traces a server on loopback whose handler does what a
// gateway's write does (a commit through the store's group commit, a call to an app that
// answers in 20 ms, another commit) in the gateway's request region and checks what the analysis makes of it: every
// request found, its time split without loss, the app's 20 ms as the app call's, the
// commits as the commit's.
func TestAnalyzeWaitsOfATracedServer(t *testing.T) {
	const appDelay = 20 * time.Millisecond
	st, err := store.Open(filepath.Join(t.TempDir(), "waits.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(appDelay)
		_, _ = io.WriteString(w, `{"id":1}`)
	}))
	defer app.Close()
	appClient := &http.Client{}
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer trace.StartRegion(r.Context(), requestRegion).End() // as the gateway does
		commit := func() error { return st.Update(func(*store.Tx) error { return nil }) }
		if err := commit(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		resp, err := appClient.Get(app.URL)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err := commit(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer gw.Close()
	client := &http.Client{}
	post := func() {
		resp, err := client.Post(gw.URL, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	post() // the connections exist before the trace starts

	const n = 20
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("cannot trace (is the test run with -trace?): %v", err)
	}
	for range n {
		post()
	}
	trace.Stop()

	rep, err := analyzeWaits(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if rep.requests != n {
		t.Fatalf("found %d requests that committed, want %d", rep.requests, n)
	}
	all := rep.bands[len(rep.bands)-1]
	if all.name != "all" || all.n != rep.requests {
		t.Fatalf("last band %q of %d requests, want all %d", all.name, all.n, rep.requests)
	}
	var sum time.Duration
	for _, d := range all.parts {
		sum += d
	}
	if diff := sum - all.total; diff < -time.Microsecond || diff > time.Microsecond {
		t.Errorf("the parts add up to %v, the requests took %v", sum, all.total)
	}
	if got := all.parts[partAppCall]; got < appDelay || got > all.total {
		t.Errorf("app call %v of %v per request, want at least the app's %v", got, all.total, appDelay)
	}
	if all.parts[partCommit] <= 0 {
		t.Errorf("no time waiting on the commits: %v", all.parts)
	}
	if rep.fdatasyncs < 2*n {
		t.Errorf("%d fdatasyncs for %d requests of two commits each", rep.fdatasyncs, n)
	}
	slowest := rep.bands[0]
	if slowest.name != "slowest 1%" || slowest.total < all.total {
		t.Errorf("first band %q takes %v, less than the mean %v", slowest.name, slowest.total, all.total)
	}
	var out bytes.Buffer
	rep.print(&out)
	for _, want := range []string{"requests that committed", "slowest 1%", "app-call", "group commit: busy"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, &out)
		}
	}
}

// TestWaitsOfWhatIsNotATrace: a file that is not an execution trace is an error, and
// -waits with it exits 1 saying so.
func TestWaitsOfWhatIsNotATrace(t *testing.T) {
	if _, err := analyzeWaits(strings.NewReader("<html>not a trace</html>")); err == nil {
		t.Error("analyzed an HTML page as a trace")
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"-waits", filepath.Join(t.TempDir(), "missing.out")}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "missing.out") {
		t.Errorf("-waits of a missing file: exit %d, stderr %q", code, &errOut)
	}
}

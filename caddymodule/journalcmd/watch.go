package journalcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

// Caddy's admin endpoint refuses every request that carries Sec-Fetch-Mode without an
// Origin or Referer it allows, and a URL typed into a browser's address bar carries
// neither. watch puts a small, read-only HTTP server on loopback in front of it that serves
// exactly the journal's page, its live stream and its table of changes, and forwards them
// with the admin endpoint's own origin, so every other admin route keeps the endpoint's
// protection. The
// page is reached at the same path as on the admin endpoint (/ redirects there), so its
// script finds its stream and journal name from its own URL, unchanged.

const (
	// watchDefaultListen is where watch serves unless told: loopback, a free port.
	watchDefaultListen = "127.0.0.1:0"

	// watchShutdownGrace bounds how long watch waits for responses when stopping; the
	// live streams end at once, since their requests share the command's context.
	watchShutdownGrace = 5 * time.Second
)

// The routes watch serves: the page, its stream and its table of changes, each with the
// query parameters the admin route accepts.
const (
	watchPage    = "watch"
	watchLive    = "live"
	watchChanges = "changes"
)

var watchParams = map[string][]string{
	watchPage:    journaladmin.Params(watchPage),
	watchLive:    journaladmin.Params(watchLive),
	watchChanges: journaladmin.Params(watchChanges),
}

func newWatchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch [--admin <host:port>] [--journal <name>] [--listen <host:port>] [--open]",
		Short: "Serves the journal's live web page on a loopback address for a browser",
		Args:  cobra.NoArgs,
		RunE:  runE(runWatch),
	}
	f := cmd.Flags()
	f.String("listen", watchDefaultListen, "Loopback address to serve the page on (port 0: any free port)")
	f.Bool("open", false, "Also open the page in the default browser")
	return cmd
}

func runWatch(ctx context.Context, c *env) (int, error) {
	if c.source() != "" {
		return fail("watch follows a running instance (--admin); to read a backup file use: journal tail --file")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, name, err := c.adminJournal(ctx)
	if err != nil {
		return fail("%v", err)
	}
	if err := a.checkPage(ctx, name); err != nil {
		return fail("%v", err)
	}
	ln, err := watchListen(c.flags.String("listen"))
	if err != nil {
		return fail("--listen: %v", err)
	}
	p, err := newWatchProxy(a, name, ln.Addr().(*net.TCPAddr), c.stderr)
	if err != nil {
		ln.Close()
		return fail("%v", err)
	}
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Requests share the command's context: stopping ends the live streams too, which
		// Shutdown alone would wait for forever.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    log.New(c.stderr, "journal watch: ", 0),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	pageURL := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(c.stdout, "Watching journal %s: open %s\n", name, pageURL)
	fmt.Fprintf(c.stderr, "Serving only the journal's page, its live stream and its table from the admin endpoint at %s; press Ctrl+C to stop.\n", a.addr)
	if c.flags.Bool("open") {
		if err := openBrowser(pageURL); err != nil {
			fmt.Fprintf(c.stderr, "could not start a browser (%v): open the URL yourself\n", err)
		}
	}

	select {
	case err := <-served:
		return fail("serving the page: %v", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), watchShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	return 0, nil
}

// watchListen listens on addr, which must be a loopback address: the page is served
// without authentication, to whoever can connect.
func watchListen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("want host:port such as %s, got %q", watchDefaultListen, addr)
	}
	if !isLoopbackHost(host) {
		return nil, fmt.Errorf("%q is not a loopback address: the page has no authentication of its own, so watch serves it on 127.0.0.1, ::1 or localhost only", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	// localhost is resolved by the system: check what was actually bound.
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("%q resolved to %s, which is not a loopback address", addr, ln.Addr())
	}
	return ln, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// watchProxy serves the journal's page, live stream and table from the admin endpoint.
type watchProxy struct {
	name     string
	hosts    []string            // Host headers that name this server (DNS-rebinding guard)
	upstream map[string]*url.URL // admin URL of each route, without query
	origin   string              // Origin sent to the admin endpoint; "" over a unix socket
	admin    string              // the admin address, for messages
	log      io.Writer
	rp       *httputil.ReverseProxy
}

func newWatchProxy(a *adminClient, name string, bound *net.TCPAddr, logw io.Writer) (*watchProxy, error) {
	p := &watchProxy{
		name:     name,
		hosts:    watchHosts(bound),
		upstream: map[string]*url.URL{},
		admin:    a.addr,
		log:      logw,
	}
	if !a.unix {
		p.origin = a.origin
	}
	for route := range watchParams {
		u, err := url.Parse(a.origin + journaladmin.JournalPath(name, route))
		if err != nil {
			return nil, fmt.Errorf("the journal's %s URL: %w", route, err)
		}
		p.upstream[route] = u
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    a.client.Transport,
		ErrorHandler: p.proxyError,
		// Mid-stream copy errors are the browser leaving or watch stopping; the page
		// reconnects by itself, so they are not worth a line each.
		ErrorLog: log.New(io.Discard, "", 0),
		// Every write is flushed: the stream's events must reach the page as they commit
		// (ReverseProxy does so for text/event-stream anyway; this does not depend on it).
		FlushInterval: -1,
	}
	return p, nil
}

// watchHosts lists the Host headers a browser sends for the bound address: the address
// as printed, and localhost with the same port.
func watchHosts(bound *net.TCPAddr) []string {
	port := strconv.Itoa(bound.Port)
	hosts := []string{net.JoinHostPort(bound.IP.String(), port), net.JoinHostPort("localhost", port)}
	if bound.Port == 80 { // browsers leave the default port out of Host
		ip := bound.IP.String()
		if bound.IP.To4() == nil {
			ip = "[" + ip + "]"
		}
		hosts = append(hosts, ip, "localhost")
	}
	return hosts
}

// ServeHTTP checks, in order: the Host (403), the method (405), what a web page on another
// site could make a browser send (403), and the path and parameters (404, 400); then it
// redirects / to the page or forwards the page or stream to the admin endpoint.
func (p *watchProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.ContainsFunc(p.hosts, func(h string) bool { return strings.EqualFold(h, r.Host) }) {
		watchError(w, http.StatusForbidden, fmt.Sprintf("host not allowed: %q (open http://%s/)", r.Host, p.hosts[0]))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		watchError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: this server only shows the journal", r.Method))
		return
	}
	if err := p.checkFetchContext(r); err != nil {
		watchError(w, http.StatusForbidden, err.Error())
		return
	}
	if r.URL.EscapedPath() == "/" {
		target := p.upstream[watchPage].Path
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	route, ok := p.route(r.URL)
	if !ok {
		watchError(w, http.StatusNotFound, fmt.Sprintf("not found: this server only shows journal %s at %s", p.name, p.upstream[watchPage].Path))
		return
	}
	if route == watchLive && r.Method == http.MethodHead {
		// A stream has no end to send headers for; HEAD would hold a connection open.
		w.Header().Set("Allow", "GET")
		watchError(w, http.StatusMethodNotAllowed, "method HEAD not allowed on the live stream; use GET")
		return
	}
	if err := journaladmin.CheckParams(r.URL.Query(), watchParams[route]...); err != nil {
		watchError(w, http.StatusBadRequest, err.Error())
		return
	}
	p.rp.ServeHTTP(w, r)
}

// checkFetchContext refuses what another site's page could make a browser send: an Origin
// other than this server's, a no-cors request (the admin endpoint refuses those too), and
// any request from another site but a top-level navigation, which cannot read the answer.
func (p *watchProxy) checkFetchContext(r *http.Request) error {
	if origins, ok := r.Header["Origin"]; ok {
		if len(origins) != 1 || !slices.ContainsFunc(p.hosts, func(h string) bool { return strings.EqualFold("http://"+h, origins[0]) }) {
			return fmt.Errorf("origin not allowed: %q", strings.Join(origins, ", "))
		}
	}
	mode := r.Header.Get("Sec-Fetch-Mode")
	if strings.Contains(mode, "no-cors") {
		return errors.New("no-cors requests are not allowed")
	}
	if site := r.Header.Get("Sec-Fetch-Site"); (site == "cross-site" || site == "same-site") && mode != "navigate" {
		return fmt.Errorf("%s requests are not allowed", site)
	}
	return nil
}

// route returns which of the journal's routes u names: only this journal's page and live
// stream, at exactly their paths.
func (p *watchProxy) route(u *url.URL) (string, bool) {
	if !strings.HasPrefix(u.EscapedPath(), journaladmin.Prefix+"/") {
		return "", false
	}
	name, action, err := journaladmin.SplitPath(u)
	if err != nil || name != p.name {
		return "", false
	}
	_, ok := watchParams[action]
	return action, ok
}

// rewrite makes the admin request: the route's admin URL with the checked parameters, GET
// (the server answers HEAD by dropping the body), and only the headers the page's requests
// need, with the admin endpoint's own Origin in place of whatever the browser sent.
func (p *watchProxy) rewrite(pr *httputil.ProxyRequest) {
	route, _ := p.route(pr.In.URL)
	u := *p.upstream[route]
	u.RawQuery = pr.In.URL.Query().Encode()
	out := pr.Out
	out.URL = &u
	out.Host = ""
	out.Method = http.MethodGet
	out.Body, out.ContentLength, out.TransferEncoding = nil, 0, nil
	h := http.Header{}
	for _, k := range []string{"Accept", "Last-Event-ID"} {
		if v := pr.In.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	if p.origin != "" {
		h.Set("Origin", p.origin)
	}
	out.Header = h
}

// proxyError answers when the admin endpoint could not be reached.
func (p *watchProxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the browser left, or watch is stopping
	}
	fmt.Fprintf(p.log, "journal watch: %s %s: %v\n", r.Method, r.URL.Path, err)
	watchError(w, http.StatusBadGateway, fmt.Sprintf("the admin endpoint at %s did not answer; is scimgate still running?", p.admin))
}

func watchError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, status)
}

// openBrowser starts the system's default browser on u, without waiting for it.
func openBrowser(u string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		cmd = exec.Command("xdg-open", u)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

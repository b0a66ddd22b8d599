package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// accountsPath is the demo app's collection of accounts, where the mapping's creates and
// lookups go.
const accountsPath = "/api/v1/accounts"

// maxAppBody bounds the request body the limited app reads to find a create's login.
const maxAppBody = 1 << 20

// limitedApp is the legacy app of the drain benchmark: the demo app (reached through a
// reverse proxy on loopback) behind a rate limit of its own, as a rate-limited legacy app
// enforces it: a token bucket of rate calls per second holding at most burst tokens; a call
// that finds no token is refused with 429 and a Retry-After (whole seconds, until the next
// token), and does not reach the demo app. It counts what it lets through, per second,
// and what it refuses, and checks that a refused create is not tried again (created or
// looked up by its login) before the Retry-After it was given.
type limitedApp struct {
	next  http.Handler
	rate  float64
	burst float64

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	first      time.Time // the first call let through (zero: none yet)
	lastPass   time.Time
	passed     int // calls the demo app answered
	refused    int // calls answered 429
	byMethod   map[string]int
	perSecond  []int          // calls let through, by whole seconds since first
	created    map[string]int // login -> creates the demo app answered 201
	failed     int            // calls let through that the demo app did not answer 2xx
	retryAfter map[string]time.Time
	early      int // calls for a refused create's login before its Retry-After was over
}

// newLimitedApp puts the limit in front of the demo app at appURL.
func newLimitedApp(appURL string, rate float64, burst int) (*limitedApp, error) {
	u, err := url.Parse(appURL)
	if err != nil {
		return nil, err
	}
	return &limitedApp{next: httputil.NewSingleHostReverseProxy(u), rate: rate, burst: float64(burst), tokens: float64(burst),
		byMethod: map[string]int{}, created: map[string]int{}, retryAfter: map[string]time.Time{}}, nil
}

// serve answers on l until it is closed, and returns the server to close.
func (a *limitedApp) serve(l net.Listener) *http.Server {
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return srv
}

func (a *limitedApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	login, err := a.loginOf(r)
	if err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	now := time.Now()
	a.mu.Lock()
	if login != "" {
		if until, ok := a.retryAfter[login]; ok && now.Before(until) {
			a.early++
		}
	}
	if a.last.IsZero() || now.After(a.last) {
		if !a.last.IsZero() {
			a.tokens = min(a.burst, a.tokens+now.Sub(a.last).Seconds()*a.rate)
		}
		a.last = now
	}
	if a.tokens < 1 {
		wait := time.Duration(math.Ceil((1-a.tokens)/a.rate)) * time.Second
		wait = max(wait, time.Second)
		a.refused++
		if login != "" && r.Method == http.MethodPost {
			a.retryAfter[login] = now.Add(wait)
		}
		a.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"code":"RATE_LIMITED","message":"too many calls"}}`)
		return
	}
	a.tokens--
	if a.first.IsZero() {
		a.first = now
	}
	a.lastPass = now
	a.passed++
	a.byMethod[r.Method]++
	sec := int(now.Sub(a.first) / time.Second)
	for len(a.perSecond) <= sec {
		a.perSecond = append(a.perSecond, 0)
	}
	a.perSecond[sec]++
	a.mu.Unlock()
	rec := &statusRecorder{ResponseWriter: w}
	bulk := r.Method == http.MethodPost && r.URL.Path == accountsPath+":batch"
	if bulk {
		rec.body = &bytes.Buffer{}
	}
	a.next.ServeHTTP(rec, r)
	a.mu.Lock()
	switch {
	case rec.status/100 != 2:
		a.failed++
	case bulk:
		// The demo app's bulk create answers each item: {"id", "login"} when created.
		var answer struct {
			Results []struct {
				ID    json.RawMessage `json:"id"`
				Login string          `json:"login"`
			} `json:"results"`
		}
		if json.Unmarshal(rec.body.Bytes(), &answer) == nil {
			for _, it := range answer.Results {
				if len(it.ID) > 0 && it.Login != "" {
					a.created[it.Login]++
				}
			}
		}
	case r.Method == http.MethodPost && rec.status == http.StatusCreated && login != "":
		a.created[login]++
	}
	a.mu.Unlock()
}

// loginOf is the login a create (its body) or a lookup (its query) is about, "" for other
// calls. The body is put back for the demo app.
func (a *limitedApp) loginOf(r *http.Request) (string, error) {
	if r.URL.Path != accountsPath {
		return "", nil
	}
	if r.Method == http.MethodGet {
		return r.URL.Query().Get("login"), nil
	}
	if r.Method != http.MethodPost || r.Body == nil {
		return "", nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAppBody))
	if err != nil {
		return "", err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var acc struct {
		Login string `json:"login"`
	}
	if json.Unmarshal(body, &acc) != nil {
		return "", nil // the demo app answers what is wrong with it
	}
	return acc.Login, nil
}

// statusRecorder remembers the status the demo app answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
	body   *bytes.Buffer // when not nil, a copy of the answer (bounded by maxAppBody)
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.body != nil && s.body.Len()+len(b) <= maxAppBody {
		s.body.Write(b)
	}
	return s.ResponseWriter.Write(b)
}

// appCounts is what the limited app saw, read once.
type appCounts struct {
	Passed, Refused, Failed, Early int
	ByMethod                       map[string]int
	First, Last                    time.Time
	PerSecond                      []int
	Accounts                       int // logins created
	CreatedTwice                   int // logins created more than once
}

func (a *limitedApp) counts() appCounts {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := appCounts{Passed: a.passed, Refused: a.refused, Failed: a.failed, Early: a.early, First: a.first, Last: a.lastPass,
		ByMethod: map[string]int{}, PerSecond: append([]int(nil), a.perSecond...), Accounts: len(a.created)}
	for m, n := range a.byMethod {
		c.ByMethod[m] = n
	}
	for _, n := range a.created {
		if n > 1 {
			c.CreatedTwice++
		}
	}
	return c
}

package etcdtest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of one address (an etcd member's client URL),
// for tests of a slow or stuck etcd: it delays every byte it forwards by a latency, and it
// can stall, holding every connection open while forwarding nothing, as a member behind a
// black-holing network does. It is closed when the test ends.
type Proxy struct {
	l      net.Listener
	target string

	mu      sync.Mutex
	latency time.Duration
	stalled bool
	healed  chan struct{} // closed when a stall ends
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// NewProxy starts a proxy to target (host:port, or an http:// URL).
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	if len(target) > 7 && target[:7] == "http://" {
		target = target[7:]
	}
	p := &Proxy{l: l, target: target, conns: map[net.Conn]struct{}{}, healed: make(chan struct{})}
	close(p.healed)
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// URL is the proxy's client URL, to use in place of the member's.
func (p *Proxy) URL() string { return "http://" + p.l.Addr().String() }

// SetLatency delays every chunk forwarded, either way, by d from when the proxy read it.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Stall stops forwarding (connections stay open, new ones are accepted and connected but
// carry nothing) until Heal.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.healed = make(chan struct{})
	}
}

// Heal ends a stall: what was held is forwarded, and everything after it.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.healed)
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	_ = p.l.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	if p.stalled {
		p.stalled = false
		close(p.healed)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// gate returns when forwarding may go on, and the latency then.
func (p *Proxy) gate() (time.Duration, bool) {
	for {
		p.mu.Lock()
		healed, stalled, closed, lat := p.healed, p.stalled, p.closed, p.latency
		p.mu.Unlock()
		if closed {
			return 0, false
		}
		if !stalled {
			return lat, true
		}
		<-healed
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) accept() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			return
		}
		p.wg.Go(func() {
			out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil || !p.track(out) {
				_ = in.Close()
				return
			}
			var wg sync.WaitGroup
			wg.Go(func() { p.pipe(out, in) })
			wg.Go(func() { p.pipe(in, out) })
			wg.Wait()
		})
	}
}

// chunk is bytes read at a time.
type chunk struct {
	data []byte
	at   time.Time
}

// pipe copies src to dst, each chunk no sooner than the latency after it was read and not
// while stalled; when either side ends, both connections close.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		lat, ok := p.gate()
		if !ok {
			break
		}
		if d := time.Until(c.at.Add(lat)); d > 0 {
			time.Sleep(d)
		}
		if _, ok := p.gate(); !ok {
			break
		}
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	_ = src.Close()
	for range ch { // let the reader end
	}
}

package forward

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"arca/sandbox-image/proxy/internal/endpoint"
)

// Options configures a Forwarder. Nil log functions discard.
type Options struct {
	Listen endpoint.ListenOptions
	// DialTimeout bounds each outgoing connection attempt (default 10 s).
	DialTimeout time.Duration
	// Infof gets listener problems and failed dials; Debugf one line per
	// connection open and close.
	Infof  func(format string, args ...any)
	Debugf func(format string, args ...any)
}

// Forwarder owns one listener per rule and every connection it forwards.
type Forwarder struct {
	rules     []endpoint.Rule
	listeners []net.Listener
	opts      Options
	ctx       context.Context // canceled by Close: aborts pending dials
	cancel    context.CancelFunc
	nextID    atomic.Uint64
	wg        sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// Listen opens every rule's listener (all or none) without accepting yet.
func Listen(rules []endpoint.Rule, opts Options) (*Forwarder, error) {
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.Infof == nil {
		opts.Infof = func(string, ...any) {}
	}
	if opts.Debugf == nil {
		opts.Debugf = func(string, ...any) {}
	}
	f := &Forwarder{rules: rules, opts: opts, conns: map[net.Conn]struct{}{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	for _, r := range rules {
		l, err := endpoint.Listen(r.Listen, opts.Listen)
		if err != nil {
			for _, l := range f.listeners {
				l.Close()
			}
			f.cancel()
			return nil, err
		}
		f.listeners = append(f.listeners, l)
	}
	return f, nil
}

// Addrs returns the listeners' addresses, in rule order.
func (f *Forwarder) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(f.listeners))
	for i, l := range f.listeners {
		addrs[i] = l.Addr()
	}
	return addrs
}

// Start accepts on every listener in the background.
func (f *Forwarder) Start() {
	for i, l := range f.listeners {
		f.wg.Add(1)
		go f.acceptLoop(l, f.rules[i])
	}
}

// Close stops listening (removing unix socket files), closes every forwarded
// connection and waits until all goroutines are gone.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	conns := make([]net.Conn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	f.cancel()
	for _, l := range f.listeners {
		l.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	f.wg.Wait()
	return nil
}

func (f *Forwarder) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (f *Forwarder) acceptLoop(l net.Listener, r endpoint.Rule) {
	defer f.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if f.isClosed() {
				return
			}
			// Out of fds and similar: back off instead of spinning (as net/http does).
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			f.opts.Infof("accept on %s: %v (retrying in %s)", r.Listen, err, backoff)
			select {
			case <-time.After(backoff):
			case <-f.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go f.handle(c, r)
	}
}

func (f *Forwarder) handle(c net.Conn, r endpoint.Rule) {
	defer f.wg.Done()
	defer f.untrack(c)
	id := f.nextID.Add(1)
	start := time.Now()
	ctx, cancel := context.WithTimeout(f.ctx, f.opts.DialTimeout)
	d, err := endpoint.Dial(ctx, r.Dial)
	cancel()
	if err != nil {
		c.Close()
		f.opts.Infof("conn %d on %s: dial %s: %v", id, r.Listen, r.Dial, err)
		return
	}
	if !f.track(d) {
		c.Close()
		d.Close()
		return
	}
	defer f.untrack(d)
	f.opts.Debugf("conn %d open: %s (from %s) -> %s", id, r.Listen, c.RemoteAddr(), r.Dial)
	in, out, err := Pipe(c, d)
	status := "ok"
	if err != nil {
		status = err.Error()
	}
	f.opts.Debugf("conn %d closed: %d bytes in, %d bytes out, %s, %s",
		id, in, out, time.Since(start).Round(time.Millisecond), status)
}

// track registers c for Close; false once the forwarder is closing.
func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

package forward

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"arca/sandbox-image/proxy/internal/endpoint"
)

// backend accepts on l and runs serve for each connection until the test ends.
func backend(t *testing.T, l net.Listener, serve func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
}

// echo copies everything back, then half-closes. (A plain buffer copy: io.Copy
// would splice through pooled pipes that muddle the fd count.)
func echo(c net.Conn) {
	io.CopyBuffer(writerOnly{c}, readerOnly{c}, make([]byte, 32<<10))
	c.(interface{ CloseWrite() error }).CloseWrite()
}

func startForwarder(t *testing.T, rule string) *Forwarder {
	t.Helper()
	r, err := endpoint.ParseRule(rule)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Listen([]endpoint.Rule{r}, Options{Debugf: t.Logf, Infof: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	f.Start()
	t.Cleanup(func() { f.Close() })
	return f
}

// roundTrip sends payload, half-closes, and returns everything read back.
func roundTrip(network, addr string, payload []byte) ([]byte, error) {
	c, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	return got, <-werr
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestForwardUnixToTCP(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend(t, tl, echo)
	sock := filepath.Join(t.TempDir(), "in.sock")
	startForwarder(t, fmt.Sprintf("unix:%s=tcp:%s", sock, tl.Addr()))
	payload := randomBytes(t, 8<<20)
	got, err := roundTrip("unix", sock, payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d bytes, differing from the %d sent", len(got), len(payload))
	}
}

func TestForwardTCPToUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "backend.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	backend(t, ul, echo)
	f := startForwarder(t, "tcp:127.0.0.1:0=unix:"+sock)
	payload := randomBytes(t, 3<<20+17)
	got, err := roundTrip("tcp", f.Addrs()[0].String(), payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d bytes, differing from the %d sent", len(got), len(payload))
	}
}

func TestHalfClose(t *testing.T) {
	// The backend reads until EOF (only possible if the proxy propagated the
	// client's CloseWrite) and only then replies on the still-open direction.
	sock := filepath.Join(t.TempDir(), "backend.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	backend(t, ul, func(c net.Conn) {
		req, err := io.ReadAll(c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "got %d bytes: %s", len(req), req)
	})
	f := startForwarder(t, "tcp:127.0.0.1:0=unix:"+sock)
	c, err := net.Dial("tcp", f.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply after CloseWrite: %v", err)
	}
	if string(reply) != "got 5 bytes: hello" {
		t.Fatalf("reply = %q", reply)
	}
}

// openSockets counts this process's socket fds (client, proxy and backend ends).
func openSockets(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// settle waits until count() is back to at most want (goroutines and fds are
// released asynchronously right after the last byte).
func settle(count func() int, want int) int {
	deadline := time.Now().Add(5 * time.Second)
	n := count()
	for n > want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		n = count()
	}
	return n
}

func TestConcurrentConnectionsDoNotLeak(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend(t, tl, echo)
	sock := filepath.Join(t.TempDir(), "in.sock")
	startForwarder(t, fmt.Sprintf("unix:%s=tcp:%s", sock, tl.Addr()))
	// Warm up once so lazily started runtime goroutines are in the baseline.
	if _, err := roundTrip("unix", sock, []byte("warm")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	baseGoroutines := runtime.NumGoroutine()
	baseSockets := openSockets(t)

	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			payload := randomBytes(t, 64<<10+i)
			got, err := roundTrip("unix", sock, payload)
			if err == nil && !bytes.Equal(got, payload) {
				err = fmt.Errorf("conn %d: echoed %d bytes, want %d identical", i, len(got), len(payload))
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if g := settle(runtime.NumGoroutine, baseGoroutines); g > baseGoroutines {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d after, %d before\n%s", g, baseGoroutines, buf[:runtime.Stack(buf, true)])
	}
	if s := settle(func() int { return openSockets(t) }, baseSockets); s > baseSockets {
		t.Fatalf("open sockets: %d after, %d before", s, baseSockets)
	}
}

func TestFailedDialClosesClient(t *testing.T) {
	dead := filepath.Join(t.TempDir(), "nobody-listens.sock")
	f := startForwarder(t, "tcp:127.0.0.1:0=unix:"+dead)
	c, err := net.Dial("tcp", f.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a connection whose dial failed", n)
	} else if os.IsTimeout(err) {
		t.Fatal("client connection left open after the dial failed")
	}
}

func TestCloseStopsListeningAndEndsConnections(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend(t, tl, echo)
	sock := filepath.Join(t.TempDir(), "in.sock")
	r, _ := endpoint.ParseRule(fmt.Sprintf("unix:%s=tcp:%s", sock, tl.Addr()))
	f, err := Listen([]endpoint.Rule{r}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.Start()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An established, idle connection through the proxy.
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { f.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a connection was open")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket file still present after Close: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Fatalf("open connection not ended by Close: %v", err)
	}
}

func TestListenIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	good, _ := endpoint.ParseRule("unix:" + filepath.Join(dir, "a.sock") + "=tcp:127.0.0.1:1")
	bad, _ := endpoint.ParseRule("unix:" + filepath.Join(dir, "missing-dir", "b.sock") + "=tcp:127.0.0.1:1")
	if _, err := Listen([]endpoint.Rule{good, bad}, Options{}); err == nil {
		t.Fatal("Listen succeeded with an unusable rule")
	}
	if _, err := os.Stat(filepath.Join(dir, "a.sock")); !os.IsNotExist(err) {
		t.Fatalf("first listener's socket left behind: %v", err)
	}
}

func TestPipeCountsBytes(t *testing.T) {
	a1, a2 := net.Pipe()
	b1, b2 := net.Pipe()
	type res struct {
		ab, ba int64
		err    error
	}
	out := make(chan res, 1)
	go func() { ab, ba, err := Pipe(a2, b1); out <- res{ab, ba, err} }()
	go func() { io.Copy(io.Discard, b2) }()
	a1.Write([]byte(strings.Repeat("x", 1000)))
	// net.Pipe has no CloseWrite: Pipe falls back to Close, ending both sides.
	a1.Close()
	r := <-out
	if r.ab != 1000 {
		t.Fatalf("a->b = %d, want 1000", r.ab)
	}
}

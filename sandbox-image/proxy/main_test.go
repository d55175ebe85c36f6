package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as arca-proxy so the signal handling and exit code
// are exercised in a real process without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("ARCA_PROXY_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProxy(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "ARCA_PROXY_TEST_MAIN=1")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, stderr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestProxyProcessLifecycle(t *testing.T) {
	dir := t.TempDir()
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				fmt.Fprintf(c, "echo:%s", b)
			}()
		}
	}()
	sock := filepath.Join(dir, "buildkitd.sock")
	sock2 := filepath.Join(dir, "second.sock")
	ready := filepath.Join(dir, "ready")
	if err := os.WriteFile(ready, nil, 0o644); err != nil { // stale, from an earlier run
		t.Fatal(err)
	}
	cmd, stderr := startProxy(t,
		"--forward", "unix:"+sock+"=tcp:"+backend.Addr().String(),
		"--forward", "unix:"+sock2+"=tcp:"+backend.Addr().String(),
		"--unix-mode", "0600", "--log-level", "debug", "--ready-file", ready)
	waitFor(t, "ready file", func() bool { return exists(ready) && strings.Count(stderr.String(), "listening on") == 2 })
	for _, s := range []string{sock, sock2} {
		fi, err := os.Stat(s)
		if err != nil {
			t.Fatalf("socket missing once ready: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", s, fi.Mode().Perm())
		}
	}
	if want := "arca-proxy: listening on unix:" + sock + ", forwarding to tcp:" + backend.Addr().String(); !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}

	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hi"))
	c.(*net.UnixConn).CloseWrite()
	reply, _ := io.ReadAll(c)
	c.Close()
	if string(reply) != "echo:hi" {
		t.Fatalf("reply = %q", reply)
	}
	waitFor(t, "debug close line", func() bool {
		return strings.Contains(stderr.String(), "conn 1 closed: 2 bytes in, 7 bytes out")
	})
	if !strings.Contains(stderr.String(), "conn 1 open: unix:"+sock) {
		t.Errorf("no debug open line:\n%s", stderr)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not exit after SIGTERM")
	}
	for _, p := range []string{sock, sock2, ready} {
		if exists(p) {
			t.Errorf("%s left behind after SIGTERM", p)
		}
	}
}

func TestProxyInfoLevelIsQuietPerConnection(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "x.sock")
	ready := filepath.Join(t.TempDir(), "ready")
	cmd, stderr := startProxy(t, "--forward", "unix:"+sock+"=tcp:127.0.0.1:1", "--ready-file", ready)
	waitFor(t, "ready file", func() bool { return exists(ready) })
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(c) // the dial to port 1 fails, so the proxy hangs up
	c.Close()
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
	out := stderr.String()
	if strings.Contains(out, " open: ") || !strings.Contains(out, "dial tcp:127.0.0.1:1") {
		t.Errorf("info-level output unexpected:\n%s", out)
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--forward", "unix:/tmp/x=nonsense"},
		{"--forward", "unix:/tmp/x=tcp:127.0.0.1:1", "--unix-mode", "999"},
		{"--forward", "unix:/tmp/x=tcp:127.0.0.1:1", "--log-level", "trace"},
		{"--forward", "unix:/tmp/x=tcp:127.0.0.1:1", "extra"},
	} {
		var stderr bytes.Buffer
		if code := run(args, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2 (stderr: %s)", args, code, stderr.String())
		}
	}
}

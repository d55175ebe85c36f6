package endpoint

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// staleSocket leaves a socket file behind the way a SIGKILLed process does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
}

func TestListenUnixRemovesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sock")
	staleSocket(t, path)
	if _, err := net.Dial("unix", path); err == nil {
		t.Fatal("stale socket unexpectedly accepts connections")
	}
	l, err := Listen(Endpoint{Kind: Unix, Addr: path}, ListenOptions{})
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new listener: %v", err)
	}
	c.Close()
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file still there after Close: %v", err)
	}
}

func TestListenUnixRefusesToReplaceRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-a-socket")
	if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(Endpoint{Kind: Unix, Addr: path}, ListenOptions{})
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen = %v, want a not-a-socket error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Fatal("regular file was modified")
	}
}

func TestListenUnixMode(t *testing.T) {
	for _, mode := range []fs.FileMode{0o660, 0o600, 0o666} {
		path := filepath.Join(t.TempDir(), "x.sock")
		l, err := Listen(Endpoint{Kind: Unix, Addr: path}, ListenOptions{UnixMode: mode})
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != mode {
			t.Errorf("socket mode = %v, want socket with %v", fi.Mode(), mode)
		}
	}
}

func TestListenAndDialTCP(t *testing.T) {
	l, err := Listen(Endpoint{Kind: TCP, Addr: "127.0.0.1:0"}, ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Endpoint{Kind: TCP, Addr: l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

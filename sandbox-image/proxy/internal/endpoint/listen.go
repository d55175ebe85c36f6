package endpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/mdlayher/vsock"
)

// ListenOptions tunes listeners.
type ListenOptions struct {
	// UnixMode is applied to a created unix socket file (before any client can
	// be told it is ready). Zero leaves the umask-derived mode.
	UnixMode fs.FileMode
}

// Listen opens a listener for e. For a unix socket a stale socket file left by
// a previous run (e.g. after SIGKILL) is removed first; a non-socket file at
// the path is an error rather than something to delete. Closing the returned
// listener removes the socket file.
func Listen(e Endpoint, opts ListenOptions) (net.Listener, error) {
	switch e.Kind {
	case Unix:
		return listenUnix(e.Addr, opts.UnixMode)
	case TCP:
		return net.Listen("tcp", e.Addr)
	case Vsock:
		return vsock.ListenContextID(e.CID, e.Port, nil)
	default:
		return nil, fmt.Errorf("listen %s: unknown kind", e)
	}
}

func listenUnix(path string, mode fs.FileMode) (net.Listener, error) {
	abstract := strings.HasPrefix(path, "@")
	if !abstract {
		if err := removeStaleSocket(path); err != nil {
			return nil, err
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if !abstract && mode != 0 {
		if err := os.Chmod(path, mode); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen unix:%s: path exists and is not a socket", path)
	}
	return os.Remove(path)
}

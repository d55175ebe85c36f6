// Command arca-vm-exec runs in the VM sandbox's guest and serves `docker exec
// arca-buildkit` on a vsock port: the host's only way to run a command in
// the guest. RUN steps cannot reach it (their seccomp profile refuses
// AF_VSOCK); the host reaches it only through the channel directory.
//
// One connection runs one process. The host sends one JSON line (the
// request), then frames; the guest answers with frames. A frame is
// [kind u8][length u32 big-endian][payload]. Neither side half-closes (the
// hybrid-vsock muxer on the host takes a FIN for a full close), so the end
// of stdin is a frame too.
//
//	host → guest: 0 stdin bytes, 1 stdin closed, 2 resize (rows u16, cols u16), 3 signal (u8)
//	guest → host: 1 stdout bytes, 2 stderr bytes, 3 exit (code i32), 4 failed to start (message)
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/creack/pty"
	"github.com/mdlayher/vsock"
)

const (
	inStdin  = 0
	inClose  = 1
	inResize = 2
	inSignal = 3

	outStdout = 1
	outStderr = 2
	outExit   = 3
	outFailed = 4

	// maxFrame bounds what one frame may make this program allocate.
	maxFrame = 1 << 20
)

type request struct {
	Cmd     []string `json:"cmd"`
	Env     []string `json:"env"`
	WorkDir string   `json:"workdir"`
	Tty     bool     `json:"tty"`
	Rows    uint16   `json:"rows"`
	Cols    uint16   `json:"cols"`
}

func main() {
	port := flag.Uint("port", 8090, "vsock port to listen on (any CID)")
	noSocketcall := flag.Bool("no-socketcall", false, "instead of serving: refuse i386 socketcall(2) to ARGS and all they start, and exec ARGS")
	flag.Parse()
	if *noSocketcall {
		err := execWithoutSocketcall(flag.Args())
		fmt.Fprintln(os.Stderr, "arca-vm-exec:", err)
		os.Exit(1)
	}
	// VMADDR_CID_ANY: whatever context ID the guest was given.
	l, err := vsock.ListenContextID(0xFFFFFFFF, uint32(*port), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "arca-vm-exec:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "arca-vm-exec: listening on vsock port %d\n", *port)
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "arca-vm-exec: accept:", err)
			continue
		}
		go serve(c)
	}
}

// frameWriter serializes frames from the output goroutines.
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (f *frameWriter) frame(kind byte, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := f.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := f.w.Write(payload)
	return err
}

// streamTo copies r into frames of one kind until EOF.
func (f *frameWriter) streamTo(kind byte, r io.Reader) {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 && f.frame(kind, buf[:n]) != nil {
			return
		}
		if err != nil {
			return
		}
	}
}

func serve(c net.Conn) {
	defer c.Close()
	in := bufio.NewReader(c)
	out := &frameWriter{w: c}
	line, err := in.ReadBytes('\n')
	if err != nil {
		return
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil || len(req.Cmd) == 0 {
		out.frame(outFailed, []byte("bad exec request"))
		return
	}
	cmd := exec.Command(req.Cmd[0], req.Cmd[1:]...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root"}, req.Env...)
	cmd.Dir = req.WorkDir
	var stdin io.WriteCloser
	var outputs sync.WaitGroup
	var tty *os.File
	if req.Tty {
		size := &pty.Winsize{Rows: req.Rows, Cols: req.Cols}
		if size.Rows == 0 || size.Cols == 0 {
			size = nil
		}
		tty, err = pty.StartWithSize(cmd, size)
		if err == nil {
			stdin = tty
			outputs.Add(1)
			go func() { defer outputs.Done(); out.streamTo(outStdout, tty) }()
		}
	} else {
		var so, se io.ReadCloser
		if stdin, err = cmd.StdinPipe(); err == nil {
			if so, err = cmd.StdoutPipe(); err == nil {
				if se, err = cmd.StderrPipe(); err == nil {
					err = cmd.Start()
				}
			}
		}
		if err == nil {
			outputs.Add(2)
			go func() { defer outputs.Done(); out.streamTo(outStdout, so) }()
			go func() { defer outputs.Done(); out.streamTo(outStderr, se) }()
		}
	}
	if err != nil {
		out.frame(outFailed, []byte(err.Error()))
		return
	}
	go readInput(in, cmd, stdin, tty)
	outputs.Wait()
	code := 0
	if err := cmd.Wait(); err != nil {
		code = exitCode(err)
	}
	if tty != nil {
		tty.Close()
	}
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(int32(code)))
	out.frame(outExit, p[:])
}

// readInput applies the host's frames: stdin, its end, resizes and signals.
func readInput(in *bufio.Reader, cmd *exec.Cmd, stdin io.WriteCloser, tty *os.File) {
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			// The host went away: the process goes too.
			if cmd.Process != nil {
				cmd.Process.Kill()
			}
			return
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > maxFrame {
			if cmd.Process != nil {
				cmd.Process.Kill()
			}
			return
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(in, payload); err != nil {
			return
		}
		switch hdr[0] {
		case inStdin:
			stdin.Write(payload)
		case inClose:
			if tty == nil {
				stdin.Close()
			} else {
				stdin.Write([]byte{4}) // ^D: a terminal has no EOF of its own
			}
		case inResize:
			if tty != nil && len(payload) == 4 {
				pty.Setsize(tty, &pty.Winsize{Rows: binary.BigEndian.Uint16(payload), Cols: binary.BigEndian.Uint16(payload[2:])})
			}
		case inSignal:
			if len(payload) == 1 && cmd.Process != nil {
				cmd.Process.Signal(syscall.Signal(payload[0]))
			}
		}
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 126
}

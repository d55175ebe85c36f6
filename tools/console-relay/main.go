// arca-console-relay runs `runc exec --tty` for a caller that has no
// terminal (the Arca daemon, Node.js, which can neither create a pty nor
// receive file descriptors over a Unix socket).
//
//	arca-console-relay SOCKET PIDFILE -- runc [global flags] exec --detach --tty \
//	    --console-socket SOCKET --pid-file PIDFILE ... ID CMD...
//
// runc hands a TTY process's pty master to a console socket only when it
// detaches, so the relay makes itself a child subreaper (the detached
// process is reparented to it), listens on SOCKET, starts runc, receives
// the pty master, copies stdin to the terminal and the terminal to stdout,
// and exits with the process's exit status once its output is drained.
// Lines "ROWS COLS" on fd 3 (when it is a pipe or socket) resize the
// terminal; each is acknowledged with a newline on fd 4 once applied.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	// Checked before this process opens anything that could take fd 3.
	resize, acks := pipeAt(3, "resize"), pipeAt(4, "resize-acks")
	if len(os.Args) < 5 || os.Args[3] != "--" {
		fmt.Fprintln(os.Stderr, "usage: arca-console-relay SOCKET PIDFILE -- COMMAND [ARG...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[2], os.Args[4:], resize, acks))
}

// pipeAt returns fd as a file if the caller passed a pipe (or a socket, as Node does) there.
func pipeAt(fd int, name string) *os.File {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFIFO && t != unix.S_IFSOCK {
		return nil
	}
	return os.NewFile(uintptr(fd), name)
}

func run(socketPath, pidFile string, argv []string, resize, acks *os.File) int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "console relay: %v\n", err)
		return 125
	}
	_ = os.Remove(socketPath)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketPath, Net: "unix"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "console relay: %v\n", err)
		return 125
	}
	defer os.Remove(socketPath)

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "console relay: %v\n", err)
		return 125
	}
	exited := make(chan int, 1)
	go func() { exited <- exitCode(cmd.Wait()) }()

	accepted := make(chan *os.File, 1)
	go func() {
		master, err := receiveConsole(ln)
		if err != nil {
			fmt.Fprintf(os.Stderr, "console relay: %v\n", err)
		}
		accepted <- master
	}()

	var master *os.File
	select {
	case master = <-accepted:
	case code := <-exited:
		// runc failed before handing over a terminal.
		_ = ln.Close()
		return code
	}
	_ = ln.Close()
	if master == nil {
		_ = cmd.Process.Kill()
		return 125
	}
	defer master.Close()
	if code := <-exited; code != 0 {
		return code
	}
	defer os.Remove(pidFile)
	raw, err := os.ReadFile(pidFile)
	pid, err2 := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || err2 != nil {
		fmt.Fprintf(os.Stderr, "console relay: no pid from runc: %v %v\n", err, err2)
		return 125
	}
	processExited := make(chan int, 1)
	go func() { processExited <- reap(pid) }()
	// The process is no child of runc any more: pass on what would have reached it through runc.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	go func() {
		for s := range signals {
			_ = unix.Kill(pid, s.(syscall.Signal))
		}
	}()

	go resizeFrom(resize, acks, master)
	go func() { _, _ = io.Copy(master, os.Stdin) }()
	drained := make(chan struct{})
	go func() {
		// Ends with EIO once every holder of the terminal's other side is gone.
		_, _ = io.Copy(os.Stdout, master)
		close(drained)
	}()
	code := <-processExited
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		// A background process inherited the terminal; do not wait for it.
	}
	return code
}

// receiveConsole accepts runc's connection and reads the pty master it sends (SCM_RIGHTS).
func receiveConsole(ln *net.UnixListener) (*os.File, error) {
	conn, err := ln.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err == nil && len(fds) > 0 {
			return os.NewFile(uintptr(fds[0]), "pty-master"), nil
		}
	}
	return nil, errors.New("runc sent no terminal")
}

// resizeFrom applies "ROWS COLS" lines to the terminal until the stream ends, acknowledging each.
func resizeFrom(r, acks, master *os.File) {
	if r == nil {
		return
	}
	defer r.Close()
	ack := func() {
		if acks != nil {
			_, _ = acks.Write([]byte("\n"))
		}
	}
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 2 {
			rows, err1 := strconv.ParseUint(f[0], 10, 16)
			cols, err2 := strconv.ParseUint(f[1], 10, 16)
			if err1 == nil && err2 == nil {
				_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
			}
		}
		ack()
	}
}

// reap waits for the reparented process (reaping any other orphan on the way) and returns its status.
func reap(pid int) int {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 125
		}
		if got != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal())
		}
		return ee.ExitCode()
	}
	return 125
}

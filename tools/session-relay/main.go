// Command arca-session-relay carries one client session to BuildKit, so the
// daemon is not in its data path. A session (POST /session, hijacked by the
// daemon) is HTTP/2 spoken by buildkitd to the client, tunnelled through a
// Control.Session gRPC call whose messages (BytesMessage) carry its bytes.
// Relayed through Node, a cached 20,000-file build cost the daemon ~200 ms of
// CPU in ~2,000 small reads and writes; here it costs a goroutine pair.
//
//	arca-session-relay unix:///path/to/buildkitd.sock
//
// fd 3 is the client's connection. stdin holds one JSON line,
// {"metadata": {"x-docker-expose-session-uuid": ["…"], …}, "preamble": "HTTP/1.1 101 …"},
// then the bytes the client already sent, then EOF. The relay writes the
// preamble (the upgrade's answer) to the client first, so nothing can come before it. Half-closes travel across: the client ending
// its side ends the call; buildkitd ending the call ends the client's side,
// and the client then gets closeGrace to finish. Exit status 0 when the call
// ended cleanly, 1 with a message on stderr otherwise.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http2"
)

const (
	sessionPath = "/moby.buildkit.v1.Control/Session"
	closeGrace  = 5 * time.Second
	readSize    = 1 << 16
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "arca-session-relay: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 1 || !strings.HasPrefix(args[0], "unix://") {
		return errors.New("usage: arca-session-relay unix:///path/to/buildkitd.sock (client on fd 3, metadata and early bytes on stdin)")
	}
	socketPath := strings.TrimPrefix(args[0], "unix://")
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the metadata line: %w", err)
	}
	var hdr struct {
		Metadata map[string][]string `json:"metadata"`
		Preamble string              `json:"preamble"`
	}
	if err := json.Unmarshal(line, &hdr); err != nil {
		return fmt.Errorf("header line: %w", err)
	}
	early, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading early bytes: %w", err)
	}
	f := os.NewFile(3, "client")
	client, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("fd 3: %w", err)
	}
	defer client.Close()
	if _, err := io.WriteString(client, hdr.Preamble); err != nil {
		return nil // the client left before its answer
	}
	return relay(client, early, hdr.Metadata, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	})
}

// relay runs one Control.Session call over a fresh HTTP/2 connection from dial
// and carries bytes between it and client until both directions are done.
func relay(client net.Conn, early []byte, metadata map[string][]string, dial func(context.Context) (net.Conn, error)) error {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return dial(ctx)
		},
	}
	defer tr.CloseIdleConnections()
	body, up := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "http://buildkitd"+sessionPath, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	for k, vs := range metadata {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	uplinkDone := make(chan error, 1)
	go func() { uplinkDone <- uplink(client, early, up) }()
	res, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("Control.Session: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("Control.Session: HTTP %d", res.StatusCode)
	}
	if err := downlink(res.Body, client); err != nil {
		// The client going away (Ctrl-C) resets the call: that is an end, not a failure.
		select {
		case upErr := <-uplinkDone:
			if upErr != nil {
				return nil
			}
		case <-time.After(100 * time.Millisecond):
		}
		return err
	}
	if s := res.Trailer.Get("Grpc-Status"); s != "" && s != "0" {
		return fmt.Errorf("Control.Session ended with grpc-status %s: %s", s, res.Trailer.Get("Grpc-Message"))
	}
	// buildkitd ended the call: the client sees EOF and gets a moment to close its side.
	if cw, ok := client.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	select {
	case <-uplinkDone:
	case <-time.After(closeGrace):
	}
	return nil
}

// uplink frames what the client sends into the call; the client's EOF ends the call's request side.
func uplink(client net.Conn, early []byte, up *io.PipeWriter) error {
	out := make([]byte, 0, readSize+16)
	if len(early) > 0 {
		if _, err := up.Write(appendBytesMessage(out[:0], early)); err != nil {
			return err
		}
	}
	buf := make([]byte, readSize)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if _, werr := up.Write(appendBytesMessage(out[:0], buf[:n])); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return up.Close()
		}
		if err != nil {
			up.CloseWithError(err)
			return err
		}
	}
}

// downlink writes every message of the call's response to the client until the call ends.
func downlink(res io.Reader, client net.Conn) error {
	r := bufio.NewReaderSize(res, readSize)
	var buf []byte
	for {
		data, grown, err := readBytesMessage(r, buf)
		buf = grown
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("Control.Session response: %w", err)
		}
		if _, err := client.Write(data); err != nil {
			return fmt.Errorf("writing to the client: %w", err)
		}
	}
}

// Command arca-proxy forwards connections between unix sockets, TCP and vsock.
// It runs inside the BuildKit sandbox (channel unix socket <-> buildkitd's
// loopback TCP, and the reverse registry channel) and on the host as the bridge
// from a unix socket to AF_VSOCK, which Node cannot open.
//
//	arca-proxy --forward unix:/run/arca/buildkitd.sock=tcp:127.0.0.1:8088 \
//	           --forward tcp:127.0.0.1:5000=unix:/run/arca/registry.sock \
//	           --unix-mode 0660 --ready-file /run/proxy.ready
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"arca/sandbox-image/proxy/internal/endpoint"
	"arca/sandbox-image/proxy/internal/forward"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

type ruleFlag []endpoint.Rule

func (r *ruleFlag) String() string {
	s := make([]string, len(*r))
	for i, rule := range *r {
		s[i] = rule.String()
	}
	return strings.Join(s, ",")
}

func (r *ruleFlag) Set(v string) error {
	rule, err := endpoint.ParseRule(v)
	if err != nil {
		return err
	}
	*r = append(*r, rule)
	return nil
}

func run(args []string, stderr io.Writer) int {
	flags := flag.NewFlagSet("arca-proxy", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var rules ruleFlag
	flags.Var(&rules, "forward", "`LISTEN=DIAL` rule, repeatable; each side is unix:PATH, tcp:HOST:PORT or vsock:CID:PORT (listen: vsock:PORT = any CID)")
	unixMode := flags.String("unix-mode", "0660", "octal file mode of created unix sockets")
	level := flags.String("log-level", "info", "info, or debug for one line per connection open/close")
	readyFile := flags.String("ready-file", "", "file created once every listener is listening, removed on exit")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	logger := log.New(stderr, "arca-proxy: ", 0)
	fail := func(format string, a ...any) int {
		logger.Printf(format, a...)
		return 2
	}
	if flags.NArg() > 0 {
		return fail("unexpected argument %q", flags.Arg(0))
	}
	if len(rules) == 0 {
		return fail("at least one --forward LISTEN=DIAL rule is required")
	}
	mode, err := strconv.ParseUint(*unixMode, 8, 32)
	if err != nil || mode > 0o777 {
		return fail("--unix-mode %q: want an octal mode such as 0660", *unixMode)
	}
	if *level != "info" && *level != "debug" {
		return fail("--log-level %q: want info or debug", *level)
	}
	opts := forward.Options{
		Listen: endpoint.ListenOptions{UnixMode: fs.FileMode(mode)},
		Infof:  logger.Printf,
	}
	if *level == "debug" {
		opts.Debugf = logger.Printf
	}

	// A ready file left by a previous run must not announce this one early.
	if *readyFile != "" {
		if err := os.Remove(*readyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail("ready file: %v", err)
		}
	}
	// Subscribe before listening so a signal arriving during start-up still
	// shuts down cleanly (removing socket files).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	f, err := forward.Listen(rules, opts)
	if err != nil {
		logger.Printf("%v", err)
		return 1
	}
	for i, addr := range f.Addrs() {
		logger.Printf("listening on %s, forwarding to %s", listenName(rules[i].Listen, addr.String()), rules[i].Dial)
	}
	f.Start()
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
			f.Close()
			logger.Printf("ready file: %v", err)
			return 1
		}
		defer os.Remove(*readyFile)
	}
	<-ctx.Done()
	logger.Printf("shutting down")
	f.Close()
	return 0
}

// listenName shows the bound address, so a tcp port 0 prints the real port.
func listenName(e endpoint.Endpoint, bound string) string {
	if e.Kind == endpoint.TCP {
		return "tcp:" + bound
	}
	return e.String()
}

// Command arca-net-probe is a static network probe for tests that run inside
// RUN steps (busybox's static wget segfaults on these machines). It honours
// HTTP_PROXY/HTTPS_PROXY/NO_PROXY as curl and apt do.
//
//	arca-net-probe get URL          download through the proxy, print "size=N sha256=HEX"
//	                                 (PROBE_INSECURE=1: skip TLS verification; PROBE_PROXY_ALL=1: proxy loopback too)
//	arca-net-probe connect HOST:PORT  TCP connect, print "open" or exit 1 with the error
//	arca-net-probe serve PORT SECONDS  accept TCP connections on PORT for SECONDS
//	arca-net-probe vsock CID PORT      AF_VSOCK connect, print "open" or exit 1 with the error
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: arca-net-probe get URL | connect HOST:PORT | serve PORT SECONDS")
	}
	switch os.Args[1] {
	case "get":
		get(os.Args[2])
	case "connect":
		conn, err := net.DialTimeout("tcp", os.Args[2], 3*time.Second)
		if err != nil {
			fail(err.Error())
		}
		conn.Close()
		fmt.Println("open")
	case "serve":
		if len(os.Args) < 4 {
			fail("serve PORT SECONDS")
		}
		secs, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fail(err.Error())
		}
		serve(os.Args[2], time.Duration(secs)*time.Second)
	case "vsock":
		if len(os.Args) < 4 {
			fail("vsock CID PORT")
		}
		vsockConnect(os.Args[2], os.Args[3])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func get(url string) {
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment}
	// PROBE_PROXY_ALL=1: use HTTP_PROXY even for loopback targets (Go's default never proxies those).
	if os.Getenv("PROBE_PROXY_ALL") == "1" {
		u, err := neturl.Parse(os.Getenv("HTTP_PROXY"))
		if err != nil {
			fail(err.Error())
		}
		tr.Proxy = http.ProxyURL(u)
	}
	// PROBE_INSECURE=1: a test server with a throwaway certificate (the proxy never terminates TLS).
	if os.Getenv("PROBE_INSECURE") == "1" {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	client := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	start := time.Now()
	res, err := client.Get(url)
	if err != nil {
		fail(err.Error())
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		fail(fmt.Sprintf("%s: %s", res.Status, body))
	}
	// PROBE_DISCARD=1: count the bytes only (benchmarks compare transfer, not hashing).
	h := sha256.New()
	var sink io.Writer = h
	if os.Getenv("PROBE_DISCARD") == "1" {
		// Hides io.Discard's ReadFrom, which would read in 8 KiB pieces and ignore the buffer below.
		sink = struct{ io.Writer }{io.Discard}
	}
	n, err := io.CopyBuffer(sink, res.Body, make([]byte, 1<<20))
	if err != nil {
		fail(err.Error())
	}
	fmt.Printf("size=%d sha256=%s seconds=%.3f\n", n, hex.EncodeToString(h.Sum(nil)), time.Since(start).Seconds())
}

func serve(port string, d time.Duration) {
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fail(err.Error())
	}
	time.AfterFunc(d, func() { l.Close() })
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		fmt.Println("accepted", c.RemoteAddr())
		c.Close()
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "arca-net-probe:", msg)
	os.Exit(1)
}

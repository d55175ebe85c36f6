package endpoint

import (
	"strings"
	"testing"
)

func TestParseRuleGood(t *testing.T) {
	cases := []struct {
		in           string
		listen, dial Endpoint
	}{
		{"unix:/run/arca/buildkitd.sock=tcp:127.0.0.1:8088",
			Endpoint{Kind: Unix, Addr: "/run/arca/buildkitd.sock"}, Endpoint{Kind: TCP, Addr: "127.0.0.1:8088"}},
		{"vsock:8088=tcp:127.0.0.1:8088",
			Endpoint{Kind: Vsock, CID: AnyCID, Port: 8088}, Endpoint{Kind: TCP, Addr: "127.0.0.1:8088"}},
		{"vsock:ANY:8088=tcp:127.0.0.1:8088",
			Endpoint{Kind: Vsock, CID: AnyCID, Port: 8088}, Endpoint{Kind: TCP, Addr: "127.0.0.1:8088"}},
		{"vsock:3:8088=tcp:localhost:8088",
			Endpoint{Kind: Vsock, CID: 3, Port: 8088}, Endpoint{Kind: TCP, Addr: "localhost:8088"}},
		{"tcp:127.0.0.1:5000=unix:/run/arca/registry.sock",
			Endpoint{Kind: TCP, Addr: "127.0.0.1:5000"}, Endpoint{Kind: Unix, Addr: "/run/arca/registry.sock"}},
		{"tcp:127.0.0.1:5000=vsock:2:5000",
			Endpoint{Kind: TCP, Addr: "127.0.0.1:5000"}, Endpoint{Kind: Vsock, CID: 2, Port: 5000}},
		{"unix:/tmp/x.sock=vsock:3:8088",
			Endpoint{Kind: Unix, Addr: "/tmp/x.sock"}, Endpoint{Kind: Vsock, CID: 3, Port: 8088}},
		{"tcp:[::1]:0=tcp:[::1]:80",
			Endpoint{Kind: TCP, Addr: "[::1]:0"}, Endpoint{Kind: TCP, Addr: "[::1]:80"}},
		{"tcp::9000=unix:@abstract",
			Endpoint{Kind: TCP, Addr: ":9000"}, Endpoint{Kind: Unix, Addr: "@abstract"}},
		// "=" inside a path: split at the "=" that starts an address.
		{"unix:/tmp/a=b.sock=unix:/tmp/c=d.sock",
			Endpoint{Kind: Unix, Addr: "/tmp/a=b.sock"}, Endpoint{Kind: Unix, Addr: "/tmp/c=d.sock"}},
	}
	for _, c := range cases {
		r, err := ParseRule(c.in)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", c.in, err)
			continue
		}
		if r.Listen != c.listen || r.Dial != c.dial {
			t.Errorf("ParseRule(%q) = %+v, want listen %+v dial %+v", c.in, r, c.listen, c.dial)
		}
	}
}

func TestParseRuleBad(t *testing.T) {
	cases := map[string]string{
		"":                                "want LISTEN=DIAL",
		"unix:/a.sock":                    "want LISTEN=DIAL",
		"unix:/a.sock=":                   "want LISTEN=DIAL",
		"unix:/a.sock=http://x":           "want LISTEN=DIAL",
		"=tcp:127.0.0.1:1":                "listen side",
		"unix:=tcp:127.0.0.1:1":           "empty unix socket path",
		"udp:1.2.3.4:5=tcp:127.0.0.1:1":   "unknown kind",
		"tcp:127.0.0.1=unix:/a":           "missing port",
		"tcp:127.0.0.1:99999=unix:/a":     "bad port",
		"tcp:127.0.0.1:http=unix:/a":      "bad port",
		"unix:/a=tcp:127.0.0.1:0":         "bad port",
		"unix:/a=tcp::80":                 "needs a host",
		"unix:/a=vsock:8088":              "needs CID:PORT",
		"unix:/a=vsock:ANY:8088":          "cannot dial vsock CID ANY",
		"unix:/a=vsock:3:0":               "bad vsock port",
		"unix:/a=vsock:-1:80":             "bad vsock CID",
		"unix:/a=vsock:4294967296:80":     "bad vsock CID",
		"vsock:x=tcp:127.0.0.1:1":         "bad vsock port",
		"vsock:1:2:3=tcp:127.0.0.1:1":     "bad vsock port",
		"vsock:8088=tcp:127.0.0.1:8088:9": "too many colons",
	}
	for in, want := range cases {
		_, err := ParseRule(in)
		if err == nil {
			t.Errorf("ParseRule(%q): no error, want %q", in, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRule(%q) = %v, want it to mention %q", in, err, want)
		}
	}
}

func TestEndpointString(t *testing.T) {
	for in, want := range map[string]string{
		"vsock:8088":       "vsock:ANY:8088",
		"vsock:3:8088":     "vsock:3:8088",
		"unix:/tmp/x.sock": "unix:/tmp/x.sock",
		"tcp:127.0.0.1:80": "tcp:127.0.0.1:80",
	} {
		e, err := ParseListen(in)
		if err != nil {
			t.Fatalf("ParseListen(%q): %v", in, err)
		}
		if e.String() != want {
			t.Errorf("ParseListen(%q).String() = %q, want %q", in, e.String(), want)
		}
	}
}

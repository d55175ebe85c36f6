// Package endpoint parses, listens on and dials the three address kinds the
// proxy forwards between: unix:/path, tcp:HOST:PORT and vsock:CID:PORT.
package endpoint

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Kind is the transport of an Endpoint.
type Kind string

const (
	Unix  Kind = "unix"
	TCP   Kind = "tcp"
	Vsock Kind = "vsock"
)

// AnyCID is VMADDR_CID_ANY: a vsock listener bound to it accepts connections
// addressed to any of this machine's context IDs.
const AnyCID uint32 = 0xFFFFFFFF

// Endpoint is one side of a forwarding rule.
type Endpoint struct {
	Kind Kind
	// Addr is the unix socket path or the tcp HOST:PORT.
	Addr string
	// CID and Port are set for vsock.
	CID  uint32
	Port uint32
}

func (e Endpoint) String() string {
	if e.Kind == Vsock {
		if e.CID == AnyCID {
			return fmt.Sprintf("vsock:ANY:%d", e.Port)
		}
		return fmt.Sprintf("vsock:%d:%d", e.CID, e.Port)
	}
	return string(e.Kind) + ":" + e.Addr
}

// ParseListen parses the listening side of a rule. A vsock listener may omit
// the CID (`vsock:PORT`), meaning any CID.
func ParseListen(s string) (Endpoint, error) { return parse(s, true) }

// ParseDial parses the dialing side of a rule; vsock needs an explicit CID.
func ParseDial(s string) (Endpoint, error) { return parse(s, false) }

func parse(s string, listen bool) (Endpoint, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Endpoint{}, fmt.Errorf("address %q: want unix:PATH, tcp:HOST:PORT or vsock:CID:PORT", s)
	}
	switch Kind(kind) {
	case Unix:
		if rest == "" {
			return Endpoint{}, fmt.Errorf("address %q: empty unix socket path", s)
		}
		return Endpoint{Kind: Unix, Addr: rest}, nil
	case TCP:
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return Endpoint{}, fmt.Errorf("address %q: %v", s, err)
		}
		if host == "" && !listen {
			return Endpoint{}, fmt.Errorf("address %q: tcp dial address needs a host", s)
		}
		p, err := parsePort(port, listen)
		if err != nil {
			return Endpoint{}, fmt.Errorf("address %q: %v", s, err)
		}
		return Endpoint{Kind: TCP, Addr: net.JoinHostPort(host, strconv.Itoa(int(p)))}, nil
	case Vsock:
		return parseVsock(s, rest, listen)
	default:
		return Endpoint{}, fmt.Errorf("address %q: unknown kind %q (want unix, tcp or vsock)", s, kind)
	}
}

func parseVsock(s, rest string, listen bool) (Endpoint, error) {
	cidStr, portStr, hasCID := strings.Cut(rest, ":")
	if !hasCID {
		if !listen {
			return Endpoint{}, fmt.Errorf("address %q: vsock dial address needs CID:PORT", s)
		}
		cidStr, portStr = "ANY", rest
	}
	var cid uint32
	if strings.EqualFold(cidStr, "ANY") {
		if !listen {
			return Endpoint{}, fmt.Errorf("address %q: cannot dial vsock CID ANY", s)
		}
		cid = AnyCID
	} else {
		c, err := strconv.ParseUint(cidStr, 10, 32)
		if err != nil {
			return Endpoint{}, fmt.Errorf("address %q: bad vsock CID %q", s, cidStr)
		}
		cid = uint32(c)
	}
	p, err := strconv.ParseUint(portStr, 10, 32)
	if err != nil || (p == 0 && !listen) {
		return Endpoint{}, fmt.Errorf("address %q: bad vsock port %q", s, portStr)
	}
	return Endpoint{Kind: Vsock, CID: cid, Port: uint32(p)}, nil
}

// parsePort accepts 1-65535, and 0 (kernel-chosen) only for listeners.
func parsePort(s string, listen bool) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || (p == 0 && !listen) {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(p), nil
}

package endpoint

import (
	"fmt"
	"strings"
)

// Rule forwards every connection accepted on Listen to a new connection to Dial.
type Rule struct {
	Listen Endpoint
	Dial   Endpoint
}

func (r Rule) String() string { return r.Listen.String() + "=" + r.Dial.String() }

// ParseRule parses LISTEN=DIAL. A unix path may itself contain "=", so the
// split is at the first "=" that is followed by a known address kind.
func ParseRule(s string) (Rule, error) {
	for i := 0; i < len(s); i++ {
		if s[i] != '=' || !startsWithKind(s[i+1:]) {
			continue
		}
		l, err := ParseListen(s[:i])
		if err != nil {
			return Rule{}, fmt.Errorf("rule %q: listen side: %w", s, err)
		}
		d, err := ParseDial(s[i+1:])
		if err != nil {
			return Rule{}, fmt.Errorf("rule %q: dial side: %w", s, err)
		}
		return Rule{Listen: l, Dial: d}, nil
	}
	return Rule{}, fmt.Errorf("rule %q: want LISTEN=DIAL, e.g. unix:/run/x.sock=tcp:127.0.0.1:8088", s)
}

func startsWithKind(s string) bool {
	for _, k := range []Kind{Unix, TCP, Vsock} {
		if strings.HasPrefix(s, string(k)+":") {
			return true
		}
	}
	return false
}

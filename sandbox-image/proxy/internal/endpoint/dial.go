package endpoint

import (
	"context"
	"fmt"
	"net"

	"github.com/mdlayher/vsock"
)

// Dial connects to e; ctx bounds the connection attempt only.
func Dial(ctx context.Context, e Endpoint) (net.Conn, error) {
	switch e.Kind {
	case Unix, TCP:
		var d net.Dialer
		return d.DialContext(ctx, string(e.Kind), e.Addr)
	case Vsock:
		return vsock.DialContext(ctx, e.CID, e.Port, nil)
	default:
		return nil, fmt.Errorf("dial %s: unknown kind", e)
	}
}

// Package forward accepts connections on a rule's listener and pipes each one
// to a fresh connection to the rule's dial address.
package forward

import (
	"io"
	"net"
	"sync"
)

// BufferSize is the copy buffer per direction. Large buffers matter here:
// 8 KiB buffers measured 120-400 MB/s on this kind of path, 1 MiB 0.9-1.7 GB/s.
const BufferSize = 1 << 20

// Buffers are pooled so idle connections between bursts and connection churn
// do not keep allocating 2 MiB each.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, BufferSize)
	return &b
}}

type closeWriter interface{ CloseWrite() error }

// Pipe copies a->b and b->a concurrently. When one direction reaches EOF it
// half-closes the destination (CloseWrite) so the far peer sees EOF and can
// still reply. Both connections are closed once both directions finished or
// as soon as either direction fails. It returns the bytes copied each way and
// the first error (nil when both directions ended with EOF).
func Pipe(a, b net.Conn) (aToB, bToA int64, err error) {
	type result struct {
		n       int64
		err     error
		forward bool
	}
	done := make(chan result, 2)
	go func() { n, err := copyHalf(b, a); done <- result{n, err, true} }()
	go func() { n, err := copyHalf(a, b); done <- result{n, err, false} }()
	for range 2 {
		r := <-done
		if r.forward {
			aToB = r.n
		} else {
			bToA = r.n
		}
		if r.err != nil && err == nil {
			err = r.err
			// Unblocks the other direction's Read/Write.
			a.Close()
			b.Close()
		}
	}
	a.Close()
	b.Close()
	return aToB, bToA, err
}

func copyHalf(dst, src net.Conn) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	// The wrappers hide ReadFrom/WriteTo so io.CopyBuffer really uses the
	// 1 MiB buffer for every transport pair (vsock has no splice path).
	n, err := io.CopyBuffer(writerOnly{dst}, readerOnly{src}, *bp)
	if err != nil {
		return n, err
	}
	if cw, ok := dst.(closeWriter); ok {
		return n, cw.CloseWrite()
	}
	return n, dst.Close()
}

type readerOnly struct{ io.Reader }

type writerOnly struct{ io.Writer }

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// maxMessage bounds one gRPC message from buildkitd (gRPC's default receive limit).
const maxMessage = 16 << 20

// appendBytesMessage appends one gRPC length-prefixed message holding
// moby.buildkit.v1.BytesMessage{data: p} (field 1, bytes) to dst.
func appendBytesMessage(dst, p []byte) []byte {
	size := 1 + uvarintLen(uint64(len(p))) + len(p)
	dst = append(dst, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(size))
	dst = append(dst, 0x0a)
	dst = binary.AppendUvarint(dst, uint64(len(p)))
	return append(dst, p...)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// readBytesMessage reads one gRPC message from r into buf (grown as needed) and
// returns BytesMessage.data, a slice of buf. Unknown fields are skipped.
func readBytesMessage(r io.Reader, buf []byte) (data, grown []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, buf, err
	}
	if hdr[0] != 0 {
		return nil, buf, errors.New("compressed gRPC message from buildkitd")
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if size > maxMessage {
		return nil, buf, fmt.Errorf("gRPC message of %d bytes from buildkitd", size)
	}
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	msg := buf[:size]
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, buf, io.ErrUnexpectedEOF
	}
	data, err = bytesField(msg)
	return data, buf, err
}

// bytesField returns field 1 (bytes) of a protobuf message; other fields are skipped.
func bytesField(msg []byte) ([]byte, error) {
	var data []byte
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return nil, errors.New("malformed BytesMessage")
		}
		msg = msg[n:]
		switch key & 7 {
		case 0: // varint
			_, n = binary.Uvarint(msg)
			if n <= 0 {
				return nil, errors.New("malformed BytesMessage")
			}
			msg = msg[n:]
		case 1: // 64-bit
			if len(msg) < 8 {
				return nil, errors.New("malformed BytesMessage")
			}
			msg = msg[8:]
		case 5: // 32-bit
			if len(msg) < 4 {
				return nil, errors.New("malformed BytesMessage")
			}
			msg = msg[4:]
		case 2: // length-delimited
			l, n := binary.Uvarint(msg)
			if n <= 0 || uint64(len(msg)-n) < l {
				return nil, errors.New("malformed BytesMessage")
			}
			if key>>3 == 1 {
				data = msg[n : n+int(l)]
			}
			msg = msg[n+int(l):]
		default:
			return nil, fmt.Errorf("BytesMessage: wire type %d", key&7)
		}
	}
	return data, nil
}

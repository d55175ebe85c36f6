package main

import (
	"bytes"
	"io"
	"testing"
)

func TestBytesMessageRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 127, 128, 300, 1 << 16, 1<<20 + 3} {
		p := bytes.Repeat([]byte{0xab}, size)
		framed := appendBytesMessage(nil, p)
		data, _, err := readBytesMessage(bytes.NewReader(framed), nil)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(data, p) {
			t.Fatalf("size %d: got %d bytes back", size, len(data))
		}
	}
}

func TestReadBytesMessageSkipsUnknownFields(t *testing.T) {
	// field 2 varint 150, field 1 bytes "hi", field 3 fixed32
	msg := []byte{0x10, 0x96, 0x01, 0x0a, 0x02, 'h', 'i', 0x1d, 1, 2, 3, 4}
	framed := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
	data, _, err := readBytesMessage(bytes.NewReader(framed), nil)
	if err != nil || string(data) != "hi" {
		t.Fatalf("got %q, %v", data, err)
	}
}

func TestReadBytesMessageRefusesBadInput(t *testing.T) {
	cases := map[string][]byte{
		"compressed":  {1, 0, 0, 0, 0},
		"too large":   {0, 0xff, 0xff, 0xff, 0xff},
		"short body":  {0, 0, 0, 0, 5, 0x0a},
		"bad length":  {0, 0, 0, 0, 2, 0x0a, 0x05},
		"wire type 3": {0, 0, 0, 0, 1, 0x0b},
	}
	for name, in := range cases {
		if _, _, err := readBytesMessage(bytes.NewReader(in), nil); err == nil || err == io.EOF {
			t.Errorf("%s: want an error, got %v", name, err)
		}
	}
}

package main

import (
	"fmt"
	"strconv"
	"syscall"
	"unsafe"
)

// afVsock is AF_VSOCK (the syscall package has no constant or sockaddr for it).
const afVsock = 40

// sockaddrVM is struct sockaddr_vm: family, reserved, port, cid, zero padding.
type sockaddrVM struct {
	family   uint16
	reserved uint16
	port     uint32
	cid      uint32
	zero     [4]byte
}

// vsockConnect connects to CID:PORT over AF_VSOCK: "open", or exit 1 with the
// error (a seccomp profile that forbids AF_VSOCK answers "operation not permitted").
func vsockConnect(cidArg, portArg string) {
	cid, err := strconv.ParseUint(cidArg, 10, 32)
	if err != nil {
		fail(err.Error())
	}
	port, err := strconv.ParseUint(portArg, 10, 32)
	if err != nil {
		fail(err.Error())
	}
	fd, err := syscall.Socket(afVsock, syscall.SOCK_STREAM, 0)
	if err != nil {
		fail("socket(AF_VSOCK): " + err.Error())
	}
	defer syscall.Close(fd)
	sa := sockaddrVM{family: afVsock, port: uint32(port), cid: uint32(cid)}
	if errno := connectRaw(fd, unsafe.Pointer(&sa), unsafe.Sizeof(sa)); errno != 0 {
		fail(fmt.Sprintf("connect(vsock %d:%d): %s", cid, port, errno.Error()))
	}
	fmt.Println("open")
}

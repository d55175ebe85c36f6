//go:build !386

package main

import (
	"syscall"
	"unsafe"
)

// connectRaw is connect(2) on a raw socket (the syscall package has no vsock sockaddr).
func connectRaw(fd int, sa unsafe.Pointer, n uintptr) syscall.Errno {
	_, _, errno := syscall.Syscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(sa), n)
	return errno
}

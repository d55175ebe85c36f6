//go:build 386

package main

import (
	"syscall"
	"unsafe"
)

// connectRaw is connect(2) the i386 way, through socketcall(2) (call 3).
func connectRaw(fd int, sa unsafe.Pointer, n uintptr) syscall.Errno {
	args := [3]uintptr{uintptr(fd), uintptr(sa), n}
	_, _, errno := syscall.Syscall(syscall.SYS_SOCKETCALL, 3, uintptr(unsafe.Pointer(&args)), 0)
	return errno
}

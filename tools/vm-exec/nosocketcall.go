package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// execWithoutSocketcall installs a seccomp filter that refuses the i386
// socketcall(2) syscall, then execs argv. Every process of the guest inherits
// it, RUN steps included: their own profile refuses socket(AF_VSOCK), but a
// 32-bit program creates sockets through socketcall, whose address family no
// filter can read, and vsock has no network namespace to fence it. With
// socketcall gone, a step's only sockets are the ones its profile checks.
// (32-bit glibc programs use the direct socket syscalls on any kernel since
// 4.3; Go's 386 port is the notable user of socketcall.)
func execWithoutSocketcall(argv []string) error {
	// A seccomp filter belongs to the thread that installs it, and execve keeps the calling
	// thread's: both must run on one OS thread, or a goroutine moved in between execs the
	// guest's init without the filter (seen once in CI: a 32-bit step reached vsock).
	runtime.LockOSThread()
	const (
		auditArchI386 = 0x40000003
		nrSocketcall  = 102 // on i386
		offNr         = 0   // struct seccomp_data: nr, arch, ...
		offArch       = 4
		retAllow      = 0x7fff0000
		retErrno      = 0x00050000
	)
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offArch},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: auditArchI386},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offNr},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: nrSocketcall},
		{Code: unix.BPF_RET | unix.BPF_K, K: retErrno | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return syscall.Exec(argv[0], argv, os.Environ())
}

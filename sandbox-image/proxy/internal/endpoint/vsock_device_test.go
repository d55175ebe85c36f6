package endpoint

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestVsockDevice listens and dials over a real virtio-vsock device, with the
// host at the other end. It runs inside the VM sandbox's guest:
// test/sandbox-vm.test.ts builds this package's test binary, copies it in
// with docker exec and runs it with ARCA_VSOCK_LISTEN_PORT (where the host
// connects, sends a line and expects "guest:" and the line back) and
// ARCA_VSOCK_DIAL_PORT (a host port, CID 2, where the host answers "host:"
// and the line). On the host, where CID 2 is the hypervisor, it is not run.
func TestVsockDevice(t *testing.T) {
	listenPort, dialPort := os.Getenv("ARCA_VSOCK_LISTEN_PORT"), os.Getenv("ARCA_VSOCK_DIAL_PORT")
	if listenPort == "" || dialPort == "" {
		t.Skip("runs inside the VM sandbox (test/sandbox-vm.test.ts)")
	}
	port := func(s string) uint32 {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(n)
	}
	l, err := Listen(Endpoint{Kind: Vsock, CID: AnyCID, Port: port(listenPort)}, ListenOptions{})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	fmt.Println("ARCA-VSOCK-LISTENING")
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			_, err = c.Write([]byte("guest:" + line))
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("accept/echo: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the host did not connect within 60 s")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, Endpoint{Kind: Vsock, CID: 2, Port: port(dialPort)})
	if err != nil {
		t.Fatalf("dial host: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello host\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if reply != "host:hello host\n" {
		t.Fatalf("reply %q", reply)
	}
}

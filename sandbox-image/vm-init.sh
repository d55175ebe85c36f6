#!/bin/sh
# /sbin/arca-vm-init: what the VM sandbox runs after switch_root, before the
# same entrypoint as the runc sandbox. The guest has no network interface but
# lo; the channel is vsock: the daemon reaches buildkitd on a vsock port, and
# the registry endpoint and the egress proxy are host ports (CID 2) that the
# proxy's reverse rules dial.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/arca /dev/pts /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
modprobe vmw_vsock_virtio_transport || echo "arca-vm: cannot load the vsock transport" >&2
# Kernel modules load on demand (bridge, veth, nf_tables for the step network).
echo /sbin/modprobe >/proc/sys/kernel/modprobe
cp -a /etc/arca/channel/. /run/arca/ 2>/dev/null
echo "arca-vm: network interfaces: $(ls /sys/class/net | tr '\n' ' ')"
# docker exec arca-buildkit: the host's only way to run a command here (vsock; steps cannot open AF_VSOCK).
/usr/local/bin/arca-vm-exec --port "$(cat /run/arca/exec-port)" &
# The proxy's rules come with the daemon's configuration (one place knows the ports).
ARCA_PROXY_FORWARDS="$(cat /run/arca/proxy-forwards)"
export ARCA_PROXY_FORWARDS
# Everything from here on (buildkitd, runc, RUN steps) runs without i386 socketcall(2): see
# tools/vm-exec/nosocketcall.go (a 32-bit step could otherwise open AF_VSOCK past its seccomp profile).
exec /usr/local/bin/arca-vm-exec --no-socketcall /entrypoint.sh

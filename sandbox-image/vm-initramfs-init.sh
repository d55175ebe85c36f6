#!/bin/busybox sh
# /init of the VM sandbox's initramfs (busybox, the virtio modules, this file,
# and the daemon's per-start configuration under /config).
#
# Loads the drivers of the two disks, erofs and overlayfs, mounts the read-only root image (vda)
# under a tmpfs overlay (a VM restart starts from the same root), the
# BuildKit cache disk (vdb) at /var/lib/buildkit, hands the configuration to
# the root and switches to /sbin/arca-vm-init. Any failure powers the VM off:
# QEMU exits and the daemon reports it with this console's last lines.
/bin/busybox --install -s /bin
export PATH=/bin
die() {
  echo "arca-vm: $*" >&2
  poweroff -f
}
mkdir -p /proc /sys /dev /lower /upper /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod "/modules/$m" || die "cannot load $m"; done
i=0
until [ -b /dev/vda ] && [ -b /dev/vdb ]; do
  i=$((i + 1))
  [ "$i" -gt 500 ] && die "no disks after 5 s"
  usleep 10000
done
mount -t erofs -o ro /dev/vda /lower || die "cannot mount the root image"
mount -t tmpfs -o mode=0755 tmpfs /upper
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot ||
  die "cannot mount the root overlay"
mount -t ext4 /dev/vdb /newroot/var/lib/buildkit || die "cannot mount the cache disk"
mkdir -p /newroot/etc/arca/channel
[ -d /config ] && cp -a /config/. /newroot/etc/arca/channel/
for fs in dev sys proc; do mount --move "/$fs" "/newroot/$fs"; done
exec switch_root /newroot /sbin/arca-vm-init

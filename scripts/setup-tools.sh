#!/usr/bin/env bash
# Idempotent, cached tool provisioning: buildkitd + buildctl (built from the
# github.com/moby/buildkit Go module), the docker-buildx CLI plugin (built
# from github.com/docker/buildx), the CNI loopback plugin, Arca's own Go tools
# (arca-proxy, arca-console-relay), runc and busybox-static from Debian.
# Tools land in ${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools}/bin; docker-buildx
# is also linked as ~/.docker/cli-plugins/docker-buildx.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"
TOOLS_DIR="${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools}"
BIN="$TOOLS_DIR/bin"
mkdir -p "$BIN"
step() { printf '[arca setup] %s\n' "$*" >&2; }
# Another apt run (an unattended upgrade, a second set-up) holds the locks for a while: wait for it.
apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }
t0=$(date +%s)

need_apt=()
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need_apt+=(busybox-static)
command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)
command -v bzip2 >/dev/null 2>&1 || need_apt+=(bzip2)
# The Python docker SDK (Debian's python3-docker), one of the clients the tests drive.
[ -d /usr/lib/python3/dist-packages/docker ] || need_apt+=(python3-docker)
# The stock dockerd 20.10 is the reference in conformance, tests and benches
# (never Arca's engine); nft programs the sandbox's step-network firewall.
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
# htpasswd (bcrypt) for the test registry's basic auth.
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
command -v patch >/dev/null 2>&1 || need_apt+=(patch)
# curl and openssl: the egress tests' clients and their origins' self-signed certificates, the
# backend pool test's mutual-TLS CA.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The sandbox's trust roots for upstream registries and ADD https://.
[ -f /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_get update -qq >/dev/null
  apt_get install -y -qq "${need_apt[@]}" >/dev/null
else
  step "runc, busybox-static, docker.io, nftables: present"
fi
ln -sf "$(command -v runc)" "$BIN/runc"
ln -sf "$(command -v nft)" "$BIN/nft"
bb="$(command -v busybox || echo /bin/busybox)"
ln -sf "$bb" "$BIN/busybox"

# build_module LABEL MODULE VERSION LDFLAGS "SRC=DST ..." PACKAGE...: a static
# build of packages of a Go module fetched through the Go module proxy; the
# binaries SRC are installed as DST in $BIN. Cached by a version stamp.
# BUILD_MODFILE (an alternate go.mod, go build -modfile) and STAMP_SUFFIX (part
# of the cache stamp) apply to one call when set.
build_module() {
  local label="$1" module="$2" version="$3" ldflags="$4" outputs="$5" o dir tmp ok=1
  shift 5
  local stamp="$BIN/.$label-$version${STAMP_SUFFIX:-}"
  for o in $outputs; do [ -x "$BIN/${o#*=}" ] || ok=0; done
  if [ -f "$stamp" ] && [ $ok = 1 ]; then
    step "$label $version: cached"
    return
  fi
  step "$label $version: downloading module through the Go module proxy"
  dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { echo "go mod download of $module failed" >&2; exit 1; }
  step "$label $version: compiling (static; minutes on 2 cores)"
  tmp="$BIN/.build-$label-$$"
  mkdir -p "$tmp"
  ( cd "$dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      ${BUILD_MODFILE:+-modfile "$BUILD_MODFILE"} \
      -tags "osusergo netgo static_build" -ldflags "-s -w $ldflags" -o "$tmp/" "$@" )
  for o in $outputs; do mv -f "$tmp/${o%%=*}" "$BIN/${o#*=}"; done
  rmdir "$tmp"
  rm -f "$BIN/.$label-"v*
  touch "$stamp"
}
# BuildKit carries one fix to its fsutil dependency (scripts/patches/; a
# patched copy of fsutil replaces it through an alternate go.mod, the module
# cache is not changed): the build context's receiver writes a file's data
# after setting its mode, and inside the sandbox's user namespace that write
# clears setuid/setgid (only CAP_FSETID in the host's user namespace keeps
# them), so COPY lost the bits.
patched_modfile() { # prints the alternate go.mod for the pinned BuildKit
  local bkdir fsver fsdir out
  bkdir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/moby/buildkit@$BUILDKIT_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  fsver=$(awk '$1 == "github.com/tonistiigi/fsutil" { print $2; exit }' "$bkdir/go.mod")
  fsdir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/tonistiigi/fsutil@$fsver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$fsdir" ] || { echo "go mod download of fsutil $fsver failed" >&2; exit 1; }
  out="$BIN/.buildkit-patched"
  rm -rf "$out" && mkdir -p "$out"
  cp -r "$fsdir" "$out/fsutil" && chmod -R u+w "$out/fsutil"
  patch -s -p1 -d "$out/fsutil" <"$here/patches/fsutil-keep-setid-after-async-write.patch" >&2
  cp "$bkdir/go.mod" "$out/go.mod" && cp "$bkdir/go.sum" "$out/go.sum" && chmod u+w "$out/go.mod" "$out/go.sum"
  go mod edit -modfile="$out/go.mod" -replace "github.com/tonistiigi/fsutil=$out/fsutil" "$out/go.mod" >&2 ||
    (cd "$bkdir" && go mod edit -modfile="$out/go.mod" -replace "github.com/tonistiigi/fsutil=$out/fsutil") >&2
  echo "$out/go.mod"
}
patch_sum=$(sha256sum "$here/patches/fsutil-keep-setid-after-async-write.patch" | cut -c1-8)
# The patched copy is made only when BuildKit is (re)built, not on every run.
bk_modfile=""
if [ ! -f "$BIN/.buildkit-$BUILDKIT_VERSION-fsutil-$patch_sum" ] || [ ! -x "$BIN/buildkitd" ] || [ ! -x "$BIN/buildctl" ]; then
  bk_modfile="$(patched_modfile)"
fi
STAMP_SUFFIX="-fsutil-$patch_sum" BUILD_MODFILE="$bk_modfile" \
build_module buildkit github.com/moby/buildkit "$BUILDKIT_VERSION" \
  "-X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION -X github.com/moby/buildkit/version.Package=github.com/moby/buildkit" \
  "buildkitd=buildkitd buildctl=buildctl" ./cmd/buildkitd ./cmd/buildctl
# The Dockerfile frontend image Arca serves for `# syntax=docker/dockerfile:1`:
# the same module's frontend, stamped as upstream's release stamps it, with the
# version the built-in frontend reports (frontend/dockerfile/version: 1.26 -> 1.26.0).
bk_dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/moby/buildkit@$BUILDKIT_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
df_version=$(sed -n 's/^const version = "\([0-9.]*\)"$/\1/p' "$bk_dir/frontend/dockerfile/version/version.go")
case "$df_version" in *.*.*) ;; *.*) df_version="$df_version.0" ;; *) echo "no Dockerfile frontend version in $bk_dir" >&2; exit 1 ;; esac
build_module dockerfile-frontend github.com/moby/buildkit "$BUILDKIT_VERSION" \
  "-X main.Version=dockerfile/$df_version -X main.Revision=$BUILDKIT_VERSION -X main.Package=github.com/moby/buildkit/frontend/dockerfile/cmd/dockerfile-frontend -X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" \
  "dockerfile-frontend=dockerfile-frontend" ./frontend/dockerfile/cmd/dockerfile-frontend
build_module buildx github.com/docker/buildx "$BUILDX_VERSION" \
  "-X github.com/docker/buildx/version.Version=$BUILDX_VERSION -X github.com/docker/buildx/version.Package=github.com/docker/buildx" \
  "buildx=docker-buildx" ./cmd/buildx
# docker compose v2 (the Go CLI plugin; Debian's docker-compose is v1, in Python).
build_module compose github.com/docker/compose/v5 "$COMPOSE_VERSION" \
  "-X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
  "cmd=docker-compose" ./cmd
# The CNI plugins: RUN steps get a network namespace of their own (buildkitd's
# CNI network mode), never the sandbox's loopback where the channel ports
# listen: loopback alone for --network none, a bridge whose gateway carries
# only the egress listener otherwise.
build_module cni-plugins github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION" "" \
  "loopback=cni-loopback bridge=cni-bridge host-local=cni-host-local" \
  ./plugins/main/loopback ./plugins/main/bridge ./plugins/ipam/host-local
# distribution's registry: the real upstream registry in the egress and push tests.
build_module registry github.com/distribution/distribution/v3 "$DISTRIBUTION_VERSION" \
  "-X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION" \
  "registry=registry" ./cmd/registry
# The docker CLI finds plugins in ~/.docker/cli-plugins (or $DOCKER_CONFIG/cli-plugins).
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugins"
ln -sfn "$BIN/docker-buildx" "$plugins/docker-buildx"
ln -sfn "$BIN/docker-compose" "$plugins/docker-compose"
# Arca's own Go tools: rebuilt only when their non-test sources, go.mod/go.sum
# or the Go toolchain change (hash kept in a stamp file).
build_own_go_tool() { # name source-dir
  local name="$1" src="$2" sum stamp
  sum=$( { go version; cd "$src" && find . -type f \( \( -name '*.go' ! -name '*_test.go' \) -o -name go.mod -o -name go.sum \) -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
  stamp="$BIN/.$name.sha256"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
    step "$name: cached"
    return
  fi
  step "$name: building"
  ( cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$BIN/.$name.$$" . )
  mv -f "$BIN/.$name.$$" "$BIN/$name"
  printf '%s\n' "$sum" >"$stamp"
}
build_own_go_tool arca-proxy "$here/../sandbox-image/proxy"
build_own_go_tool arca-console-relay "$here/../tools/console-relay"
# A static network probe the tests copy into RUN steps.
build_own_go_tool arca-net-probe "$here/../tools/net-probe"
# Its 32-bit build: Go's 386 port makes sockets through socketcall(2) (the VM sandbox's tests).
GOARCH=386 build_own_go_tool arca-net-probe-386 "$here/../tools/net-probe"
# The VM sandbox's exec service (in the guest's root only).
build_own_go_tool arca-vm-exec "$here/../tools/vm-exec"

# The VM sandbox: QEMU and kmod's depmod from Debian (no recommends: no GUI, no
# network boot ROMs), vhost-device-vsock from crates.io, the guest kernel.
need_vm=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_vm+=(qemu-system-x86)
command -v depmod >/dev/null 2>&1 || need_vm+=(kmod)
command -v mke2fs >/dev/null 2>&1 || need_vm+=(e2fsprogs)
command -v mkfs.erofs >/dev/null 2>&1 || need_vm+=(erofs-utils)
command -v cpio >/dev/null 2>&1 || need_vm+=(cpio)
if [ ${#need_vm[@]} -gt 0 ]; then
  step "apt-get install ${need_vm[*]} (VM sandbox)"
  export DEBIAN_FRONTEND=noninteractive
  apt_get install -y -qq --no-install-recommends "${need_vm[@]}" >/dev/null 2>&1 ||
    { apt_get update -qq >/dev/null && apt_get install -y -qq --no-install-recommends "${need_vm[@]}" >/dev/null; }
fi
vstamp="$BIN/.vhost-device-vsock-$VHOST_DEVICE_VSOCK_VERSION"
if [ -x "$BIN/vhost-device-vsock" ] && [ -f "$vstamp" ]; then
  step "vhost-device-vsock $VHOST_DEVICE_VSOCK_VERSION: cached"
else
  command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) to build vhost-device-vsock" >&2; exit 1; }
  step "vhost-device-vsock $VHOST_DEVICE_VSOCK_VERSION: building with cargo (about a minute)"
  vtmp="$(mktemp -d)"
  cargo install -q vhost-device-vsock --version "$VHOST_DEVICE_VSOCK_VERSION" --locked --root "$vtmp" --target-dir "$TOOLS_DIR/cargo-target"
  mv -f "$vtmp/bin/vhost-device-vsock" "$BIN/vhost-device-vsock"
  rm -rf "$vtmp"
  touch "$vstamp"
fi
kdir="$TOOLS_DIR/vm-kernel/${VM_KERNEL_PACKAGE}_${VM_KERNEL_VERSION}-1"
if [ -f "$kdir/.complete" ]; then
  step "guest kernel $VM_KERNEL_PACKAGE $VM_KERNEL_VERSION: cached"
else
  step "guest kernel $VM_KERNEL_PACKAGE $VM_KERNEL_VERSION: downloading"
  ktmp="$(mktemp -d)"
  chmod 0777 "$ktmp" # apt-get download drops to _apt
  ( cd "$ktmp" && { apt_get download -qq "$VM_KERNEL_PACKAGE=$VM_KERNEL_VERSION" 2>/dev/null ||
      { apt_get update -qq >/dev/null && apt_get download -qq "$VM_KERNEL_PACKAGE=$VM_KERNEL_VERSION"; }; } )
  dpkg-deb -x "$ktmp"/*.deb "$ktmp/root"
  krel="$(ls "$ktmp/root/lib/modules")"
  depmod -b "$ktmp/root" "$krel"
  rm -rf "$kdir" && mkdir -p "$kdir"
  mv "$ktmp/root/boot/vmlinuz-$krel" "$kdir/vmlinuz"
  mkdir -p "$kdir/lib" && mv "$ktmp/root/lib/modules" "$kdir/lib/modules"
  rm -rf "$ktmp"
  touch "$kdir/.complete"
fi
ln -sfn "$kdir" "$BIN/vm-kernel"
step "tools ready in $BIN ($(( $(date +%s) - t0 )) s)"

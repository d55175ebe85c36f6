#!/usr/bin/env bash
# Idempotent, cached tool provisioning: buildkitd + buildctl (built from the
# github.com/moby/buildkit Go module), runc and busybox-static from Debian.
# Tools land in ${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools}/bin.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"
TOOLS_DIR="${ARCA_TOOLS_DIR:-$HOME/.cache/arca/tools}"
BIN="$TOOLS_DIR/bin"
mkdir -p "$BIN"
step() { printf '[arca setup] %s\n' "$*" >&2; }
t0=$(date +%s)

need_apt=()
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need_apt+=(busybox-static)
command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)
command -v bzip2 >/dev/null 2>&1 || need_apt+=(bzip2)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
else
  step "runc, busybox-static: present"
fi
ln -sf "$(command -v runc)" "$BIN/runc"
bb="$(command -v busybox || echo /bin/busybox)"
ln -sf "$bb" "$BIN/busybox"

stamp="$BIN/.buildkit-$BUILDKIT_VERSION"
if [ -f "$stamp" ] && [ -x "$BIN/buildkitd" ] && [ -x "$BIN/buildctl" ]; then
  step "buildkit $BUILDKIT_VERSION: cached"
else
  step "buildkit $BUILDKIT_VERSION: downloading module through the Go module proxy"
  dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/moby/buildkit@$BUILDKIT_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { echo "go mod download of buildkit failed" >&2; exit 1; }
  step "buildkit $BUILDKIT_VERSION: compiling buildkitd and buildctl (static, several minutes on 2 cores)"
  tmp="$BIN/.build-$$"
  mkdir -p "$tmp"
  ( cd "$dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -tags "osusergo netgo static_build" \
      -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION -X github.com/moby/buildkit/version.Package=github.com/moby/buildkit" \
      -o "$tmp/" ./cmd/buildkitd ./cmd/buildctl )
  mv -f "$tmp/buildkitd" "$tmp/buildctl" "$BIN/"
  rmdir "$tmp"
  rm -f "$BIN"/.buildkit-v*
  touch "$stamp"
fi
# arca-proxy (sandbox-image/proxy): rebuilt only when its non-test sources,
# go.mod/go.sum or the Go toolchain change (hash kept in a stamp file).
proxy_src="$here/../sandbox-image/proxy"
proxy_sum=$( { go version; cd "$proxy_src" && find . -type f \( \( -name '*.go' ! -name '*_test.go' \) -o -name go.mod -o -name go.sum \) -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
proxy_stamp="$BIN/.arca-proxy.sha256"
if [ -x "$BIN/arca-proxy" ] && [ "$(cat "$proxy_stamp" 2>/dev/null)" = "$proxy_sum" ]; then
  step "arca-proxy: cached"
else
  step "arca-proxy: building"
  ( cd "$proxy_src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$BIN/.arca-proxy.$$" . )
  mv -f "$BIN/.arca-proxy.$$" "$BIN/arca-proxy"
  printf '%s\n' "$proxy_sum" >"$proxy_stamp"
fi
step "tools ready in $BIN ($(( $(date +%s) - t0 )) s)"

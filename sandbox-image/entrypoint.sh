#!/bin/sh
# PID 1 of the arca-buildkit sandbox (busybox sh).
#
# Starts arca-proxy (the only way in or out: buildkitd's API on the channel
# socket, the reverse path to Arca's registry, and the egress listener that
# carries buildkitd's and RUN steps' traffic to the daemon's egress proxy),
# waits until it is ready, loads the step firewall, then runs buildkitd on
# loopback TCP with its network mode from buildkitd.toml (CNI: every RUN
# step gets its own namespace on the step bridge, never the sandbox's).
#
# Why this shell stays PID 1 instead of `exec buildkitd`: after an exec
# nothing would be left to stop the proxy when buildkitd exits, and a proxy
# without buildkitd would keep the channel socket looking alive. So buildkitd
# runs as a child: TERM/INT are forwarded to it, and when it exits the proxy
# is stopped and the container exits with buildkitd's status. The reverse also
# holds: if the proxy dies, buildkitd is stopped and the container exits 1, so
# the restart policy brings back a working pair.

set -u

READY=/run/arca-proxy.ready
READY_TIMEOUT_TICKS=500 # x 20 ms = 10 s

bk=""           # buildkitd's pid once started
proxy_lost=0    # set when the proxy exits on its own
stopping=""     # signal received before buildkitd started

# The container restarts on the same rootfs: a ready file left by the last run
# must not count.
rm -f "$READY"

# The proxy runs under a small watcher subshell so the main shell hears (USR1)
# when it exits; $$ in a subshell is still this shell's pid.
# Background jobs of a non-interactive shell ignore INT, so the watcher is
# stopped with TERM (buildkitd, a Go program, re-enables INT itself).
(
  p=""
  trap '[ -n "$p" ] && kill -TERM "$p" 2>/dev/null' TERM
  # The channel: unix sockets in /run/arca (runc sandbox), or vsock rules
  # given by the VM's init (ARCA_PROXY_FORWARDS, space-separated).
  set -- --forward unix:/run/arca/buildkitd.sock=tcp:127.0.0.1:8088 \
    --forward tcp:127.0.0.1:5991=unix:/run/arca/registry.sock \
    --forward tcp:0.0.0.0:3128=unix:/run/arca/egress.sock
  if [ -n "${ARCA_PROXY_FORWARDS:-}" ]; then
    set --
    for rule in $ARCA_PROXY_FORWARDS; do set -- "$@" --forward "$rule"; done
  fi
  /usr/local/bin/arca-proxy "$@" --unix-mode 0660 --ready-file "$READY" &
  p=$!
  # wait returns early when a trapped signal arrives; wait again for the exit.
  while :; do
    wait "$p"
    kill -0 "$p" 2>/dev/null || break
  done
  kill -USR1 $$ 2>/dev/null
) &
watcher=$!

on_signal() {
  if [ -n "$bk" ]; then
    kill -"$1" "$bk" 2>/dev/null
  else
    stopping=$1
  fi
}
on_proxy_exit() {
  proxy_lost=1
  if [ -n "$bk" ] && kill -0 "$bk" 2>/dev/null; then
    echo "arca-entrypoint: arca-proxy exited; stopping buildkitd" >&2
    kill -TERM "$bk" 2>/dev/null
  fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
trap 'on_proxy_exit' USR1

stop_proxy() {
  kill -TERM "$watcher" 2>/dev/null
  wait "$watcher" 2>/dev/null
}

# Poll for the ready file (written once the proxy listens): bounded, no fixed sleep.
ticks=0
while [ ! -e "$READY" ]; do
  if [ "$proxy_lost" = 1 ]; then
    echo "arca-entrypoint: arca-proxy exited before it was ready" >&2
    exit 1
  fi
  if [ -n "$stopping" ]; then
    stop_proxy
    exit 143
  fi
  ticks=$((ticks + 1))
  if [ "$ticks" -gt "$READY_TIMEOUT_TICKS" ]; then
    echo "arca-entrypoint: arca-proxy not ready after 10 s" >&2
    stop_proxy
    exit 1
  fi
  usleep 20000
done

if [ -n "$stopping" ]; then
  stop_proxy
  exit 143
fi

# Steps on the bridge reach the egress listener and nothing else. Fail
# closed: without the firewall, buildkitd does not start.
if ! /usr/sbin/nft -f /etc/arca/step-firewall.nft; then
  echo "arca-entrypoint: cannot load the step firewall" >&2
  stop_proxy
  exit 1
fi

# The daemon writes the per-daemon configuration into the channel: registry
# settings (buildkitd.toml) and buildkitd's egress proxy (buildkitd.env:
# HTTP(S)_PROXY with buildkitd's own credential). Never --oci-worker-net=host:
# that flag would override the CNI network mode of the toml.
config=/etc/buildkit/buildkitd.toml
[ -f /run/arca/buildkitd.toml ] && config=/run/arca/buildkitd.toml
if [ -f /run/arca/buildkitd.env ]; then
  set -a
  . /run/arca/buildkitd.env
  set +a
fi
buildkitd \
  --addr tcp://127.0.0.1:8088 \
  --config "$config" \
  --root /var/lib/buildkit &
bk=$!

# wait returns early (status > 128) whenever a trapped signal arrives; only a
# reaped buildkitd ends the loop.
while :; do
  wait "$bk"
  rc=$?
  kill -0 "$bk" 2>/dev/null || break
done
bk=""

# Decide the status before stopping the proxy: its exit raises USR1 too.
if [ "$proxy_lost" = 1 ] && [ "$rc" = 0 ]; then
  rc=1
fi
stop_proxy
exit "$rc"

/**
 * A RUN step that fails unless it is network-isolated from the sandbox:
 * it proves nc works on the step's own loopback (busybox's static wget
 * segfaults, so a failing wget proves nothing), then tries the sandbox's
 * channel ports (Arca's registry endpoint 5991, buildkitd 8088, the egress listener 3128; 5000 where the endpoint used to be). Prints
 * "isolated" on success.
 */
export const NETWORK_PROBE_RUN = [
  "RUN (nc -l -p 7777 > /tmp/got &); sleep 0.3; echo ping | nc -w 2 127.0.0.1 7777; sleep 0.2;",
  'grep -q ping /tmp/got || { echo "nc does not work here"; exit 2; };',
  'for p in 5000 5991 8088 3128; do if nc -w 2 127.0.0.1 $p </dev/null; then echo "reached $p"; exit 1; fi; done;',
  "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; echo isolated",
].join(" ");

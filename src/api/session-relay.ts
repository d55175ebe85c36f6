import { spawn } from "node:child_process";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";

/**
 * Hands a hijacked /session connection to `arca-session-relay` (tools/session-relay), which
 * speaks Control.Session to buildkitd itself: the connection's file descriptor goes to the
 * child, so no session byte passes through the daemon. Relayed in Node, a cached
 * 20,000-file build cost the daemon ~200 ms of CPU in ~2,000 small reads and writes (and
 * that on 2 CPUs shared with buildx and buildkitd); the relay costs ~70 ms in all.
 * Resolves when the relay exits; `stop()` of the returned handle ends it early.
 */
export function relaySession(opts: {
  relay: string;
  /** `unix://…`: buildkitd's channel socket. */
  buildkitAddr: string;
  socket: Duplex;
  /** What the client sent after its request, already read by the daemon. */
  early: Buffer;
  metadata: Record<string, string[]>;
  /** Written to the client by the relay before anything else (the 101 response). */
  preamble: string;
  log: (line: string) => void;
}): { done: Promise<void>; stop(): void } | undefined {
  const socket = opts.socket as Socket;
  // Bytes Node already holds would never reach the relay: the daemon bridges such a session itself.
  if (socket.readableLength > 0 || !(socket as { _handle?: unknown })._handle) return undefined;
  // The socket stays paused (skipUpgradeBody left it so, and the client sends nothing before
  // the 101): from now on its bytes are the relay's.
  socket.pause();
  const child = spawn(opts.relay, [opts.buildkitAddr], { stdio: ["pipe", "ignore", "pipe", socket] });
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  child.stdin?.on("error", () => {});
  // The relay writes the 101 itself: nothing of buildkitd's can then reach the client before it.
  const header = JSON.stringify({ metadata: opts.metadata, preamble: opts.preamble });
  child.stdin?.end(Buffer.concat([Buffer.from(`${header}\n`), opts.early]));
  const done = new Promise<void>((resolve) => {
    child.once("error", (err) => {
      opts.log(`session relay: ${err.message}`);
      resolve();
    });
    child.once("exit", (code, signal) => {
      if (code !== 0 && signal !== "SIGTERM")
        opts.log(`session relay exited (${signal ?? code}): ${stderr.trim()}`);
      resolve();
    });
  }).finally(() => socket.destroy());
  return { done, stop: () => child.kill("SIGTERM") };
}

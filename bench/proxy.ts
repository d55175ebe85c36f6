/**
 * Proxy throughput: 1 GiB from a host client through a host unix socket ->
 * arca-proxy (inside a fresh network namespace with only `lo`, like the
 * sandbox) -> TCP 127.0.0.1 -> a sink in that namespace, against 1 GiB
 * straight through a host unix socket to the same kind of sink, in the same
 * run. Prints MB/s of each and the ratio (target >= 0.5).
 *
 *   node --import tsx bench/proxy.ts            (needs root: unshare/nsenter)
 *
 * The sink is this file run with `--sink ADDR`, so both paths end in an
 * identical separate process and only the path in between differs.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { tool } from "../test/support/tools.js";
import { median } from "./workloads.js";

const TOTAL = 1 << 30;
const CHUNK = 1 << 20;
const RUNS = Number(process.env.BENCH_PROXY_RUNS ?? 5);
const SINK_PORT = 8088;

/** `--sink unix:/path` or `--sink tcp:PORT`: count bytes until EOF, reply with the count. */
async function sink(addr: string): Promise<void> {
  const server = net.createServer((sock) => {
    let n = 0;
    sock.on("data", (chunk: Buffer) => {
      n += chunk.length;
    });
    sock.on("end", () => sock.end(String(n)));
    sock.on("error", () => sock.destroy());
  });
  const [kind, rest] = [addr.slice(0, addr.indexOf(":")), addr.slice(addr.indexOf(":") + 1)];
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    if (kind === "unix") server.listen(rest, resolve);
    else server.listen(Number(rest), "127.0.0.1", resolve);
  });
  process.stdout.write("ready\n");
  process.on("SIGTERM", () => {
    server.close();
    process.exit(0);
  });
}

/** Sends TOTAL bytes to the unix socket, half-closes, waits for the sink's count; returns MB/s. */
async function transfer(socketPath: string): Promise<number> {
  const buf = Buffer.alloc(CHUNK, 0x61);
  const start = process.hrtime.bigint();
  const reply = await new Promise<string>((resolve, reject) => {
    const sock = net.connect(socketPath);
    let answer = "";
    sock.setEncoding("utf8");
    sock.on("data", (s: string) => {
      answer += s;
    });
    sock.on("end", () => resolve(answer));
    sock.on("error", reject);
    sock.on("connect", () => {
      let sent = 0;
      const pump = () => {
        while (sent < TOTAL) {
          sent += CHUNK;
          if (!sock.write(buf)) return void sock.once("drain", pump);
        }
        sock.end();
      };
      pump();
    });
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (Number(reply) !== TOTAL) throw new Error(`sink received ${reply || "nothing"} bytes, want ${TOTAL}`);
  return TOTAL / 1e6 / seconds;
}

/** Spawns a child and resolves once `ready()` holds, failing early if it exits. */
async function startChild(
  cmd: string,
  args: string[],
  ready: (stdout: string) => boolean,
  children: ChildProcess[],
): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const deadline = Date.now() + 15_000;
  while (!ready(out)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${cmd} ${args.join(" ")} exited early (${child.exitCode ?? child.signalCode})`);
    }
    if (Date.now() > deadline) throw new Error(`${cmd} ${args.join(" ")} not ready after 15 s`);
    await sleep(10);
  }
  return child;
}

async function stopChildren(children: ChildProcess[]): Promise<void> {
  for (const c of children.reverse()) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((resolve) => c.once("exit", resolve));
    c.kill("SIGTERM");
    const timer = setTimeout(() => c.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
  }
}

async function main(): Promise<void> {
  const proxyBin = tool("arca-proxy");
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-bench-proxy-"));
  const children: ChildProcess[] = [];
  const self = [...process.execArgv, import.meta.filename];
  const onSignal = () => void stopChildren(children).finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const direct = path.join(tmp, "direct.sock");
    await startChild(
      process.execPath,
      [...self, "--sink", `unix:${direct}`],
      (o) => o.includes("ready"),
      children,
    );

    // unshare (no --fork) and sh both exec, so the spawned pid is the proxy's and
    // /proc/PID/ns/net is the fresh namespace the sink joins with nsenter.
    const channel = path.join(tmp, "channel.sock");
    const readyFile = path.join(tmp, "proxy.ready");
    const proxy = await startChild(
      "unshare",
      [
        "--net",
        "sh",
        "-c",
        'ip link set lo up && exec "$@"',
        "sh",
        proxyBin,
        "--forward",
        `unix:${channel}=tcp:127.0.0.1:${SINK_PORT}`,
        "--ready-file",
        readyFile,
      ],
      () => existsSync(readyFile),
      children,
    );
    const links = execFileSync("nsenter", [`--net=/proc/${proxy.pid}/ns/net`, "ip", "-o", "link"], {
      encoding: "utf8",
    });
    const ifaces = links
      .trim()
      .split("\n")
      .map((l) => l.split(":")[1]?.trim());
    if (ifaces.join(",") !== "lo") throw new Error(`proxy namespace has interfaces ${ifaces.join(",")}`);
    await startChild(
      "nsenter",
      [`--net=/proc/${proxy.pid}/ns/net`, process.execPath, ...self, "--sink", `tcp:${SINK_PORT}`],
      (o) => o.includes("ready"),
      children,
    );

    const viaProxy: number[] = [];
    const viaUnix: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      // Alternate the order so warm-up and page-cache effects do not favour one path.
      if (i % 2 === 0) {
        viaProxy.push(await transfer(channel));
        viaUnix.push(await transfer(direct));
      } else {
        viaUnix.push(await transfer(direct));
        viaProxy.push(await transfer(channel));
      }
    }
    const p = median(viaProxy);
    const u = median(viaUnix);
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(", ");
    console.log(`runs (MB/s): proxy [${fmt(viaProxy)}] | unix socket [${fmt(viaUnix)}]`);
    console.log(
      `proxy 1 GiB: ${p.toFixed(0)} MB/s | unix socket: ${u.toFixed(0)} MB/s | ratio ${(p / u).toFixed(2)} (target >= 0.5, median of ${RUNS})`,
    );
  } finally {
    await stopChildren(children);
    await rm(tmp, { recursive: true, force: true });
  }
}

const sinkAt = process.argv.indexOf("--sink");
if (sinkAt >= 0) {
  await sink(process.argv[sinkAt + 1] ?? "");
} else {
  await main();
}

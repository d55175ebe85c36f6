/**
 * The egress proxy alone, against the direct path in the same run:
 *  - connection setup: CONNECT to a local TLS server through the proxy until
 *    the tunnel is up (p50, target ≤ 5 ms) and until TLS is established,
 *    vs TLS established directly;
 *  - throughput: curl downloading 512 MiB (plain HTTP and HTTPS) through the
 *    proxy vs straight from the same server (medians of 5).
 *
 *   node --import tsx bench/egress-proxy.ts      (part of npm run bench:egress)
 *
 * The proxy runs in its own process (this file with `--serve`), as in the
 * daemon, so it does not share an event loop with the origin or the client.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import type net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { EgressPolicy, EgressProxy } from "../src/egress/index.js";
import { basicAuth, connectVia, curl } from "../test/support/egress-client.js";
import { startOrigin } from "../test/support/egress-origin.js";
import { median } from "./workloads.js";

const NAME = "files.arca.test";
const RUNS = Number(process.env.BENCH_EGRESS_RUNS ?? 5);
const SETUPS = Number(process.env.BENCH_EGRESS_SETUPS ?? 500);
const SIZE = 512 << 20;

async function serve(dir: string): Promise<void> {
  const proxy = new EgressProxy({
    policy: EgressPolicy.parse({ mode: "audit", hosts: { [NAME]: "127.0.0.1" } }, "(bench)"),
    auditLogPath: path.join(dir, "egress.log"),
  });
  const { port } = await proxy.listenTcp("127.0.0.1", 0);
  const cred = proxy.register({ id: "bench", kind: "build", tags: [] });
  process.stdout.write(`${JSON.stringify({ port, username: cred.username, password: cred.password })}\n`);
  process.on("SIGTERM", () => void proxy.close().then(() => process.exit(0)));
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))] as number;
}

function tlsOver(socket: net.Socket | undefined, port: number, ca: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const opts = { servername: NAME, ca, ...(socket ? { socket } : { host: "127.0.0.1", port }) };
    const s = tls.connect(opts, () => {
      s.destroy();
      resolve();
    });
    s.once("error", reject);
  });
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-bench-egress-proxy-"));
  const origin = await startOrigin(tmp, [NAME]);
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", import.meta.filename, "--serve", tmp],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  try {
    const info = await new Promise<{ port: number; username: string; password: string }>((resolve) =>
      child.stdout?.once("data", (d) => resolve(JSON.parse(String(d)))),
    );
    const auth = basicAuth(info.username, info.password);
    const proxyUrl = `http://${info.username}:${info.password}@127.0.0.1:${info.port}`;

    // Connection setup; the first rounds warm both paths up.
    const tunnel: number[] = [];
    const viaTls: number[] = [];
    const directTls: number[] = [];
    for (let i = 0; i < SETUPS + 50; i++) {
      let t = performance.now();
      const c = await connectVia({ port: info.port }, `${NAME}:${origin.httpsPort}`, auth);
      if (c.status !== 200) throw new Error(`CONNECT through the proxy: ${c.status} ${c.statusMessage}`);
      const tTunnel = performance.now() - t;
      await tlsOver(c.socket, origin.httpsPort, origin.ca);
      const tVia = performance.now() - t;
      t = performance.now();
      await tlsOver(undefined, origin.httpsPort, origin.ca);
      const tDirect = performance.now() - t;
      if (i >= 50) {
        tunnel.push(tTunnel);
        viaTls.push(tVia);
        directTls.push(tDirect);
      }
    }
    const [pTunnel, pVia, pDirect] = [median(tunnel), median(viaTls), median(directTls)];
    console.log(
      `(c) CONNECT setup through the proxy: p50 ${pTunnel.toFixed(2)} ms, p99 ${percentile(tunnel, 99).toFixed(2)} ms (target p50 ≤ 5 ms); ` +
        `TLS ready through the proxy p50 ${pVia.toFixed(2)} ms vs direct ${pDirect.toFixed(2)} ms (+${(pVia - pDirect).toFixed(2)} ms, ${(pVia / pDirect).toFixed(2)}×)`,
    );

    // Throughput with curl, MB/s from curl's own measure.
    const speed = async (args: string[]): Promise<number> => {
      const r = await curl(["-sS", "--fail", "-o", "/dev/null", "-w", "%{speed_download}", ...args], true);
      if (r.code !== 0) throw new Error(`curl ${args.join(" ")}: ${r.stderr}`);
      return Number(r.stdout.toString()) / 1e6;
    };
    for (const scheme of ["http", "https"] as const) {
      const port = scheme === "http" ? origin.httpPort : origin.httpsPort;
      const url = `${scheme}://${NAME}:${port}/zeros/${SIZE}`;
      const common = ["--cacert", origin.caFile];
      const via: number[] = [];
      const direct: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        via.push(await speed([...common, "-x", proxyUrl, url]));
        direct.push(await speed([...common, "--resolve", `${NAME}:${port}:127.0.0.1`, url]));
      }
      const [v, d] = [median(via), median(direct)];
      console.log(
        `512 MiB over ${scheme} with curl: through the proxy ${v.toFixed(0)} MB/s, direct ${d.toFixed(0)} MB/s: ratio ${(v / d).toFixed(2)}`,
      );
    }
  } finally {
    child.kill("SIGTERM");
    await origin.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--serve") await serve(process.argv[3] as string);
else await main();

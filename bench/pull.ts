/**
 * `npm run bench:pull`: `docker pull` of a 4-layer ~300 MB image from a
 * local registry (distribution, plain HTTP on 127.0.0.1) into an empty store,
 * Arca vs a stock dockerd (Debian's docker.io, started here on its own
 * socket and roots), then `docker push` of the same image to an empty
 * registry (a fresh one per run). Both engines use the same reference
 * (`127.0.0.1:PORT/bench/big:1`, insecure by default for both; Arca's
 * egress policy allows 127.0.0.1 by name). Prints medians of BENCH_RUNS
 * (default 5) and the ratios arca/dockerd.
 * Targets: pull ≤ 0.8 of dockerd's wall time, push ≤ 1.0.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { createGzip } from "node:zlib";
import tar from "tar-stream";
import { startDaemon } from "../test/support/daemon.js";
import { findDockerd, startStockDockerd } from "../test/support/stock-dockerd.js";
import { startTestRegistry, type TestRegistry } from "../test/support/test-registry.js";
import { median, timed } from "./workloads.js";

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const LAYERS = 4;
const LAYER_BYTES = 75 * 1000 * 1000;

interface Engine {
  name: "dockerd" | "arca";
  env: NodeJS.ProcessEnv;
}

async function main(): Promise<void> {
  const dockerdBin = await findDockerd();
  if (!dockerdBin)
    throw new Error("dockerd not found: run `bash scripts/setup-tools.sh` (installs docker.io)");
  const tmp = await mkdtemp(path.join(os.tmpdir(), "arca-bench-pull-"));
  const arcaRoot = path.join(tmp, "arca");
  await mkdir(arcaRoot, { recursive: true });
  await writeFile(
    path.join(arcaRoot, "egress.json"),
    JSON.stringify({ mode: "audit", allow: ["127.0.0.1"] }),
  );
  const stock = startStockDockerd(dockerdBin, path.join(tmp, "dockerd"));
  const arca = startDaemon(arcaRoot, path.join(tmp, "arca.sock"));
  const registries: TestRegistry[] = [];
  const newRegistry = async () => {
    const r = await startTestRegistry(path.join(tmp, `registry-${registries.length}`), "bench.arca.test", {
      plain: true,
    });
    registries.push(r);
    return r;
  };
  try {
    const engines: Engine[] = [
      { name: "dockerd", env: clientEnv(tmp, stock.socket) },
      { name: "arca", env: clientEnv(tmp, path.join(tmp, "arca.sock")) },
    ];
    await Promise.all([stock.ready, arca.waitFor(/ready in/)]);
    process.stdout.write(`making a ${LAYERS}-layer image of ${(LAYERS * LAYER_BYTES) / 1e6} MB...\n`);
    const archive = await makeImageArchive(path.join(tmp, "image"), "bench/big:1");
    for (const e of engines) await docker(e, ["load", "-i", archive]);
    const version = (
      await docker(engines[0] as Engine, ["version", "--format", "{{.Server.Version}}"])
    ).trim();
    process.stdout.write(
      `docker push / docker pull, dockerd ${version} vs arca, median of ${RUNS}; targets: pull ≤ 0.8, push ≤ 1.0\n`,
    );

    const push: Record<string, number[]> = { dockerd: [], arca: [] };
    for (let i = 0; i < RUNS; i++) {
      for (const e of engines) {
        const reg = await newRegistry();
        const name = `127.0.0.1:${reg.port}/bench/big:1`;
        await docker(e, ["tag", "bench/big:1", name]);
        push[e.name]?.push(await timed(() => docker(e, ["push", name])));
        await docker(e, ["rmi", name]);
        await reg.stop();
      }
    }
    const source = await newRegistry();
    const name = `127.0.0.1:${source.port}/bench/big:1`;
    await docker(engines[1] as Engine, ["tag", "bench/big:1", name]);
    await docker(engines[1] as Engine, ["push", name]);
    await docker(engines[1] as Engine, ["rmi", name]);
    const pull: Record<string, number[]> = { dockerd: [], arca: [] };
    for (const e of engines) await docker(e, ["rmi", "bench/big:1"]);
    for (let i = 0; i < RUNS; i++) {
      for (const e of engines) {
        pull[e.name]?.push(await timed(() => docker(e, ["pull", name])));
        await docker(e, ["rmi", name]);
      }
    }
    const line = (what: string, t: Record<string, number[]>) => {
      const [x, y] = [median(t.dockerd ?? []), median(t.arca ?? [])];
      process.stdout.write(
        `${what.padEnd(40)} | dockerd ${x.toFixed(3)}s | arca ${y.toFixed(3)}s | ratio ${(y / x).toFixed(2)}\n`,
      );
    };
    line(`pull ${(LAYERS * LAYER_BYTES) / 1e6} MB, 4 layers, empty store`, pull);
    line(`push ${(LAYERS * LAYER_BYTES) / 1e6} MB, 4 layers, empty registry`, push);
  } finally {
    await arca.stop();
    await stock.stop();
    for (const r of registries) await r.stop().catch(() => {});
    await rm(tmp, { recursive: true, force: true });
  }
}

/** A `docker save`-style archive (manifest.json + blobs) with LAYERS gzip layers of random bytes. */
async function makeImageArchive(dir: string, tag: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const layers: { file: string; digest: string; diffId: string; size: number }[] = [];
  for (let i = 0; i < LAYERS; i++) {
    const file = path.join(dir, `layer${i}.tar.gz`);
    const diff = createHash("sha256");
    const comp = createHash("sha256");
    const pack = tar.pack();
    const entry = pack.entry({ name: `data${i}.bin`, size: LAYER_BYTES, mode: 0o644, mtime: new Date(0) });
    const feed = (async () => {
      for (let left = LAYER_BYTES; left > 0; left -= 1 << 20) {
        if (!entry.write(randomBytes(Math.min(left, 1 << 20))))
          await new Promise<void>((r) => entry.once("drain", () => r()));
      }
      entry.end(() => {});
      pack.finalize();
    })();
    await Promise.all([
      feed,
      pipeline(pack, tap(diff), createGzip({ level: 1 }), tap(comp), createWriteStream(file)),
    ]);
    layers.push({
      file,
      digest: comp.digest("hex"),
      diffId: diff.digest("hex"),
      size: (await stat(file)).size,
    });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/bin/sh"] },
      rootfs: { type: "layers", diff_ids: layers.map((l) => `sha256:${l.diffId}`) },
      history: layers.map((_, i) => ({ created_by: `layer ${i}` })),
    }),
  );
  const configHex = createHash("sha256").update(config).digest("hex");
  const out = path.join(dir, "image.tar");
  const pack = tar.pack();
  const writing = pipeline(pack, createWriteStream(out));
  const add = (name: string, body: Buffer) =>
    new Promise<void>((res, rej) => pack.entry({ name, mode: 0o644 }, body, (e) => (e ? rej(e) : res())));
  await add(`blobs/sha256/${configHex}`, config);
  for (const l of layers) {
    const entry = pack.entry({ name: `blobs/sha256/${l.digest}`, size: l.size, mode: 0o644 });
    await pipeline(createReadStream(l.file), entry);
  }
  await add(
    "manifest.json",
    Buffer.from(
      JSON.stringify([
        {
          Config: `blobs/sha256/${configHex}`,
          RepoTags: [tag],
          Layers: layers.map((l) => `blobs/sha256/${l.digest}`),
        },
      ]),
    ),
  );
  pack.finalize();
  await writing;
  return out;
}

function tap(hash: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
}

function clientEnv(tmp: string, socket: string): NodeJS.ProcessEnv {
  return { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(tmp, "docker-config") };
}

async function docker(e: Engine, args: string[]): Promise<string> {
  try {
    return (await run("docker", args, { env: e.env, maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    const x = err as { stderr?: string; stdout?: string };
    throw new Error(`${e.name}: docker ${args.join(" ")} failed:\n${x.stdout ?? ""}${x.stderr ?? ""}`);
  }
}

await main();

/** The build contexts and timing helpers the benchmarks share, so every bench measures the same work. */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

/** `FROM busybox:local` plus one RUN. */
export async function trivialContext(dir: string, run = "echo hi > /x"): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "Dockerfile"), `FROM busybox:local\nRUN ${run}\n`);
  return dir;
}

/** Three stages with RUN and COPY --from between them. */
export async function multiStageContext(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "a.txt"), "alpha\n");
  await writeFile(
    path.join(dir, "Dockerfile"),
    [
      "FROM busybox:local AS one",
      "COPY a.txt /src/a.txt",
      "RUN mkdir -p /out && cp /src/a.txt /out/a && echo one > /out/one",
      "RUN seq 1 2000 > /out/seq",
      "FROM busybox:local AS two",
      "RUN mkdir -p /out && echo two > /out/two",
      "RUN wc -l /etc/passwd > /out/passwd-lines",
      "FROM busybox:local",
      "COPY --from=one /out /one",
      "COPY --from=two /out /two",
      "RUN cat /one/a /one/one /two/two > /all",
      "",
    ].join("\n"),
  );
  return dir;
}

/** 20,000 small files in 100 directories, copied whole (`COPY . /ctx`). */
export async function manyFilesContext(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "Dockerfile"), "FROM busybox:local\nCOPY . /ctx\n");
  for (let d = 0; d < 100; d++) {
    const sub = path.join(dir, `d${d}`);
    await mkdir(sub);
    await Promise.all(
      Array.from({ length: 200 }, (_, f) => writeFile(path.join(sub, `f${f}.txt`), `${d}/${f}\n`)),
    );
  }
  return dir;
}

/**
 * One 512 MiB file (`COPY big.bin /big.bin`) that compresses like a binary
 * does not: 1 MiB of random bytes repeated (a repeat lies beyond gzip's
 * 32 KiB window, so gzip pays full price), each copy numbered.
 */
export async function bigFileContext(dir: string, version = 0): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "Dockerfile"), "FROM busybox:local\nCOPY big.bin /big.bin\n");
  const fh = await open(path.join(dir, "big.bin"), "w");
  const chunk = randomBytes(1 << 20);
  // Every MiB differs, and every version differs in every MiB (a new layer, nothing to reuse).
  chunk.writeUInt32BE(version, 4);
  for (let i = 0; i < 512; i++) {
    chunk.writeUInt32BE(i, 0);
    await fh.write(chunk);
  }
  await fh.close();
  return dir;
}

/**
 * Peak resident memory of a process while fn runs, in bytes: the kernel's
 * high-water mark (VmHWM) is reset first (clear_refs "5", Linux ≥ 4.0).
 */
export async function peakRss(pid: number, fn: () => Promise<unknown>): Promise<number> {
  await writeFile(`/proc/${pid}/clear_refs`, "5");
  await fn();
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
  if (!kb) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

/** Wall time of fn in seconds. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

/** USER_HZ, the unit of /proc/stat: 100 on every Linux architecture the project runs on. */
const USER_HZ = 100;

/** CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq: every CPU, every process). */
async function machineBusySeconds(): Promise<number> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n", 1)[0] ?? "";
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return (user + nice + system + irq + softirq) / USER_HZ;
}

/**
 * Wall time of fn and the CPU time the whole machine spent meanwhile, in
 * seconds. On a machine with few CPUs, where client, daemon, proxy and
 * buildkitd all compete, wall time follows the sum of everyone's CPU; this
 * says which side of the sum a difference is on.
 */
export async function timedWithMachineCpu(
  fn: () => Promise<unknown>,
): Promise<{ wall: number; cpu: number }> {
  const cpu0 = await machineBusySeconds();
  const wall = await timed(fn);
  return { wall, cpu: (await machineBusySeconds()) - cpu0 };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

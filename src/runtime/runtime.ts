import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmod,
  chown,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rm,
  rmdir,
  stat,
  unlink,
  writeFile,
} from "node:fs/promises";
import { constants } from "node:os";
import { dirname, join } from "node:path";
import type { ImageStore } from "../images/index.js";
import { abortReason, errorMessage, findArcaError, sleep, throwIfAborted } from "../util/index.js";
import { ContainerDb, type StoredContainer } from "./container-db.js";
import { resolveProcess, validateSpec } from "./container-spec.js";
import { RuntimeError } from "./errors.js";
import { type ContainerInspect, toInspect } from "./inspect.js";
import { ensureLayer } from "./layer-unpack.js";
import { LogPump } from "./log-pump.js";
import { type LogFollow, readJsonLog } from "./log-reader.js";
import { type OciMount, ociSpec } from "./oci-spec.js";
import { isMounted, listMounts, mountOverlay, unmount } from "./overlay.js";
import { RuntimePaths, USERNS_ROOTFS_BASE } from "./paths.js";
import { isAlive, processStartTime } from "./proc.js";
import { nextBackoff, shouldRestart } from "./restart-policy.js";
import { Runc } from "./runc.js";
import type {
  CloseOptions,
  ContainerRecord,
  ContainerSpec,
  ExecOptions,
  ExecProcess,
  ListOptions,
  LogEntry,
  LogsOptions,
  RemoveOptions,
  RuntimeEvent,
  RuntimeEventType,
  StopOptions,
  UsernsMapping,
} from "./types.js";
import { resolveUser } from "./user.js";
import { shiftOwnership } from "./volume-owner.js";

export interface RuntimeOptions {
  /** Everything lives under here: containers/, layers/, volumes/. */
  dataRoot: string;
  images: ImageStore;
  /** Default `runc` from PATH. */
  runcPath?: string;
  /** arca-console-relay, for exec with a TTY. */
  consoleRelayPath?: string;
  log?: (message: string) => void;
}

export interface Runtime {
  create(spec: ContainerSpec, opts?: { signal?: AbortSignal }): Promise<ContainerRecord>;
  /** No-op when already running. Clears the user-stopped mark and the restart count. */
  start(idOrName: string, opts?: { signal?: AbortSignal }): Promise<void>;
  /** SIGTERM, then SIGKILL after timeoutSec; restart policies leave it stopped until started again. */
  stop(idOrName: string, opts?: StopOptions): Promise<void>;
  /** Sends a signal (default SIGKILL); not a user stop, so the restart policy still applies. */
  kill(idOrName: string, signal?: string): Promise<void>;
  remove(idOrName: string, opts?: RemoveOptions): Promise<void>;
  /** Deletes a named volume and its data; refused while a container uses it. No-op when absent. */
  removeVolume(name: string): Promise<void>;
  get(idOrName: string): ContainerRecord;
  inspect(idOrName: string): ContainerInspect;
  list(opts?: ListOptions): ContainerRecord[];
  /** Throws not_found right away; the iterable streams the json-file log. */
  logs(idOrName: string, opts?: LogsOptions): AsyncIterable<LogEntry>;
  exec(idOrName: string, opts: ExecOptions): Promise<ExecProcess>;
  /** Resolves with the exit code once the container is next not running (now, if it is not). */
  wait(idOrName: string, signal?: AbortSignal): Promise<number>;
  /** Returns an unsubscribe function. */
  onEvent(cb: (e: RuntimeEvent) => void): () => void;
  /** Stops supervising; containers meant to outlive the daemon keep running (see CloseOptions). */
  close(opts?: CloseOptions): Promise<void>;
}

/** Per-container supervision state that only lives in this process. */
interface Live {
  /** Identifies the current run; exit notices from an older run are ignored. */
  token?: symbol;
  child?: ChildProcess;
  poll?: NodeJS.Timeout;
  pump?: LogPump;
  restartTimer?: NodeJS.Timeout;
  backoffMs: number;
  exitWaiters: ((code: number) => void)[];
  logVersion: number;
  logWaiters: Set<() => void>;
  lock: Promise<unknown>;
}

const POLL_MS = 100;
const VOLUME_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const START_TIMEOUT_MS = 60_000;
const UNKNOWN_EXIT = 255;

export async function createRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const paths = new RuntimePaths(opts.dataRoot);
  for (const d of [paths.containers, paths.runcRoot, paths.layers, paths.volumes])
    await mkdir(d, { recursive: true });
  const rt = new RuncRuntime(
    paths,
    opts,
    new ContainerDb(paths.db),
    new Runc(opts.runcPath ?? "runc", paths.runcRoot),
  );
  await rt.recover();
  return rt;
}

class RuncRuntime implements Runtime {
  private readonly live = new Map<string, Live>();
  private readonly listeners = new Set<(e: RuntimeEvent) => void>();
  private closing = false;
  private closed = false;

  constructor(
    private readonly paths: RuntimePaths,
    private readonly opts: RuntimeOptions,
    private readonly db: ContainerDb,
    private readonly runc: Runc,
  ) {}

  // ---- public API ----

  async create(input: ContainerSpec, o: { signal?: AbortSignal } = {}): Promise<ContainerRecord> {
    this.assertOpen();
    const spec = validateSpec(input);
    const image = await this.opts.images.inspect(spec.image).catch((err: unknown) => {
      const kind = findArcaError(err)?.kind;
      if (kind === "not_found")
        throw new RuntimeError("image_not_found", `No such image: ${spec.image}`, { cause: err });
      if (kind === "invalid_argument")
        throw new RuntimeError("invalid_spec", `invalid image reference ${JSON.stringify(spec.image)}`, {
          cause: err,
        });
      throw err;
    });
    const process = resolveProcess(spec, image.Config);
    const id = randomBytes(32).toString("hex");
    this.db.insert({
      id,
      name: spec.name,
      imageId: image.Id,
      created: new Date().toISOString(),
      spec,
      process,
    });
    try {
      await mkdir(this.paths.dir(id), { recursive: true, mode: 0o700 });
      // Unpack now so start is fast and a bad image fails here, not at start.
      await this.layerDirs(image.Id, o.signal, spec.userns);
    } catch (err) {
      this.db.delete(id);
      await rm(this.paths.dir(id), { recursive: true, force: true });
      throw err;
    }
    this.emit("create", id, spec.name);
    return this.record(id);
  }

  async start(idOrName: string, o: { signal?: AbortSignal } = {}): Promise<void> {
    this.assertOpen();
    const id = this.resolve(idOrName).id;
    await this.withLock(id, async () => {
      const c = this.mustGet(id);
      if (c.status === "running") return;
      const live = this.liveOf(id);
      if (live.restartTimer) clearTimeout(live.restartTimer);
      live.restartTimer = undefined;
      live.backoffMs = 0;
      this.db.update(id, { userStopped: false, restartCount: 0 });
      await this.doStart(id, o.signal);
    });
  }

  async stop(idOrName: string, o: StopOptions = {}): Promise<void> {
    this.assertOpen();
    const id = this.resolve(idOrName).id;
    await this.withLock(id, () => this.stopLocked(id, o.timeoutSec ?? 10, true, o.signal));
  }

  async kill(idOrName: string, signal = "SIGKILL"): Promise<void> {
    this.assertOpen();
    const c = this.resolve(idOrName);
    if (c.status !== "running") throw new RuntimeError("not_running", `container ${c.name} is not running`);
    await this.runc.kill(c.id, signal);
  }

  async remove(idOrName: string, o: RemoveOptions = {}): Promise<void> {
    this.assertOpen();
    const id = this.resolve(idOrName).id;
    await this.withLock(id, async () => {
      const c = this.mustGet(id);
      if (c.status === "running" || c.status === "restarting") {
        if (!o.force)
          throw new RuntimeError(
            "conflict",
            `You cannot remove a ${c.status} container ${id}. Stop the container before attempting removal or force remove`,
          );
        await this.stopLocked(id, 0, true, o.signal);
      }
      const live = this.live.get(id);
      live?.pump?.unwatch();
      await this.runc.delete(id);
      await this.releaseRootfs(c);
      await rm(this.paths.dir(id), { recursive: true, force: true });
      this.db.delete(id);
      this.live.delete(id);
      this.emit("destroy", id, c.name);
    });
  }

  async removeVolume(name: string): Promise<void> {
    this.assertOpen();
    if (!VOLUME_NAME_RE.test(name))
      throw new RuntimeError("invalid_spec", `invalid volume name ${JSON.stringify(name)}`);
    const user = this.db
      .list()
      .find((c) => c.spec.mounts?.some((m) => m.type === "volume" && m.source === name));
    if (user)
      throw new RuntimeError(
        "conflict",
        `remove ${name}: volume is in use by container ${user.name} (${user.id})`,
      );
    await rm(join(this.paths.volumes, name), { recursive: true, force: true });
  }

  get(idOrName: string): ContainerRecord {
    return strip(this.resolve(idOrName));
  }

  inspect(idOrName: string): ContainerInspect {
    return toInspect(this.get(idOrName), this.paths);
  }

  list(o: ListOptions = {}): ContainerRecord[] {
    return this.db
      .list()
      .filter((c) => o.all || c.status === "running" || c.status === "restarting")
      .map(strip);
  }

  logs(idOrName: string, o: LogsOptions = {}): AsyncIterable<LogEntry> {
    const id = this.resolve(idOrName).id;
    const live = this.liveOf(id);
    const follow: LogFollow = {
      version: () => live.logVersion,
      isRunning: () => !this.closed && this.db.get(id)?.status === "running",
      waitChange: (v, signal) =>
        new Promise<void>((resolve) => {
          if (live.logVersion !== v || signal?.aborted) return resolve();
          const done = () => {
            clearTimeout(t);
            live.logWaiters.delete(done);
            signal?.removeEventListener("abort", done);
            resolve();
          };
          // The timeout only bounds a missed wake-up (e.g. the container was removed meanwhile).
          const t = setTimeout(done, 1000);
          live.logWaiters.add(done);
          signal?.addEventListener("abort", done, { once: true });
        }),
    };
    return this.freshLog(live, readJsonLog(this.paths.file(id, "json-log"), o, follow));
  }

  /**
   * Reads only after the pump converted what the container wrote so far: output from the last
   * moments (or from while no daemon ran, for an adopted container) is there, and an uncommitted
   * tail has been cut before anyone reads past it.
   */
  private async *freshLog(live: Live, entries: AsyncIterable<LogEntry>): AsyncIterable<LogEntry> {
    await live.pump?.drain(false).catch(() => {});
    yield* entries;
  }

  async exec(idOrName: string, o: ExecOptions): Promise<ExecProcess> {
    this.assertOpen();
    const c = this.resolve(idOrName);
    if (c.status !== "running") throw new RuntimeError("not_running", `container ${c.name} is not running`);
    if (!o.cmd.length) throw new RuntimeError("invalid_spec", "exec needs a command");
    const u = await resolveUser(this.rootfsOf(c), o.user ?? c.process.user);
    const child = this.runc.spawnExec(c.id, {
      args: o.cmd,
      env: o.env ?? [],
      user: [u.uid, u.gid].join(":"),
      cwd: o.workingDir,
      tty: o.tty ?? false,
      consoleRelay: this.opts.consoleRelayPath,
      bundle: this.paths.dir(c.id),
      consoleSize: o.consoleSize,
    });
    const exitCode = new Promise<number>((resolve, reject) => {
      child.once("error", (err) =>
        reject(new RuntimeError("runc_failed", `runc exec: ${err.message}`, { cause: err })),
      );
      child.once("close", (code, sig) => resolve(code ?? 128 + (sig ? (constants.signals[sig] ?? 0) : 0)));
    });
    if (o.signal) {
      const signal = o.signal;
      const onAbort = () => {
        // runc exec forwards SIGTERM to the process; SIGKILL would only kill runc itself.
        child.kill("SIGTERM");
        setTimeout(() => child.kill("SIGKILL"), 2000).unref();
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
      void exitCode.finally(() => signal.removeEventListener("abort", onAbort)).catch(() => {});
    }
    return { stdout: child.stdout, stderr: child.stderr, stdin: child.stdin, exitCode, resize: child.resize };
  }

  async wait(idOrName: string, signal?: AbortSignal): Promise<number> {
    const c = this.resolve(idOrName);
    if (c.status !== "running") return c.exitCode;
    const live = this.liveOf(c.id);
    return new Promise<number>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      const onAbort = () => {
        live.exitWaiters = live.exitWaiters.filter((w) => w !== waiter);
        reject(abortReason(signal as AbortSignal));
      };
      const waiter = (code: number) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(code);
      };
      live.exitWaiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  onEvent(cb: (e: RuntimeEvent) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  async close(o: CloseOptions = {}): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await Promise.all(
      this.db.list().map((c) =>
        this.withLock(c.id, async () => {
          const live = this.live.get(c.id);
          if (live?.restartTimer) clearTimeout(live.restartTimer);
          const cur = this.db.get(c.id);
          const outlives =
            c.spec.restartPolicy.name === "always" || c.spec.restartPolicy.name === "unless-stopped";
          if (cur?.status === "running" && !outlives) {
            await this.stopLocked(c.id, o.stopTimeoutSec ?? 10, false).catch((err: unknown) =>
              this.log(`stopping ${c.name} on close: ${errorMessage(err)}`),
            );
          }
        }),
      ),
    );
    for (const live of this.live.values()) {
      live.token = undefined;
      live.child?.removeAllListeners("exit");
      if (live.poll) clearInterval(live.poll);
      live.pump?.unwatch();
      await live.pump?.drain(false).catch(() => {});
      for (const w of live.logWaiters) w();
    }
    this.closed = true;
    this.db.close();
  }

  // ---- start-up recovery ----

  /**
   * Reconciles the DB with runc after a daemon (re)start: adopts containers that are still running,
   * records exits that happened while no daemon watched (and applies restart policies), and removes
   * runc state and overlay mounts nobody owns.
   */
  async recover(): Promise<void> {
    const states = new Map((await this.runc.list()).map((s) => [s.id, s]));
    const known = new Set(this.db.list().map((c) => c.id));
    for (const s of states.values()) {
      if (known.has(s.id)) continue;
      this.log(`deleting stale runc container ${s.id}`);
      await this.runc.delete(s.id).catch((err: unknown) => this.log(errorMessage(err)));
    }
    // Swept before any container starts, so a restart scheduled below never has its fresh mount or its
    // layer unpack removed under it. Half-unpacked layers from a crashed unpack first (ensureLayer
    // renames only complete ones into place), then rootfs mounts of containers not running.
    await rm(join(this.paths.layers, "tmp"), { recursive: true, force: true });
    for (const dir of await readdir(this.paths.layers).catch(() => [] as string[]))
      if (dir.startsWith("userns-"))
        await rm(join(this.paths.layers, dir, "tmp"), { recursive: true, force: true });
    for (const m of await listMounts()) {
      const base = [this.paths.containers, this.paths.usernsRootfs].find((b) =>
        m.mountPoint.startsWith(`${b}/`),
      );
      if (!base || !m.mountPoint.endsWith("/rootfs")) continue;
      const id = m.mountPoint.slice(base.length + 1, -"/rootfs".length);
      if (this.db.get(id)?.status === "running") continue;
      this.log(`unmounting stale rootfs ${m.mountPoint}`);
      await unmount(m.mountPoint).catch((err: unknown) => this.log(errorMessage(err)));
      if (base === this.paths.usernsRootfs)
        for (const d of [m.mountPoint, dirname(m.mountPoint)]) await rmdir(d).catch(() => {});
    }
    for (const c of this.db.list()) {
      if (c.status === "running") {
        const st = states.get(c.id);
        if (st && st.status !== "stopped" && (await isAlive(c.pid, c.pidStart))) {
          this.adopt(c);
          continue;
        }
        // It exited while no daemon was watching: record that and let the restart policy decide.
        const live = this.liveOf(c.id);
        const token = Symbol("run");
        live.token = token;
        live.pump = this.pumpFor(c);
        await this.handleExit(c.id, token, undefined);
      } else if (c.status === "restarting") {
        this.scheduleRestart(c.id, 0);
      }
    }
  }

  private adopt(c: StoredContainer): void {
    const live = this.liveOf(c.id);
    const token = Symbol("run");
    live.token = token;
    live.pump = this.pumpFor(c);
    live.pump.watch();
    this.pollExit(c.id, token);
    this.log(`adopted running container ${c.name} (pid ${c.pid})`);
  }

  // ---- lifecycle internals ----

  /** Caller holds the container's lock. */
  private async doStart(id: string, signal?: AbortSignal): Promise<void> {
    const c = this.mustGet(id);
    const live = this.liveOf(id);
    const f = (n: Parameters<RuntimePaths["file"]>[1]) => this.paths.file(id, n);
    try {
      throwIfAborted(signal);
      if (await this.runc.state(id)) await this.runc.delete(id);
      const rootfs = this.rootfsOf(c);
      if (!(await isMounted(rootfs))) {
        const lowers = await this.layerDirs(c.imageId, signal, c.spec.userns);
        if (c.spec.userns) await this.prepareUsernsRootfs(id, c.spec.userns);
        for (const d of [f("upper"), f("work"), rootfs]) await mkdir(d, { recursive: true, mode: 0o755 });
        // The merged root takes the upper dir's owner: the namespace's root must own it.
        if (c.spec.userns) await chown(f("upper"), c.spec.userns.hostId, c.spec.userns.hostId);
        await mountOverlay([...lowers].reverse(), f("upper"), f("work"), rootfs);
      }
      const user = await resolveUser(rootfs, c.process.user);
      const hostname = id.slice(0, 12);
      await this.writeEtcFiles(id, hostname, c.spec.networkMode);
      const config = ociSpec({
        hostname,
        args: [c.process.path, ...c.process.args],
        env: [...c.process.env, `HOSTNAME=${hostname}`],
        cwd: c.process.workingDir,
        uid: user.uid,
        gid: user.gid,
        additionalGids: user.additionalGids,
        networkMode: c.spec.networkMode,
        privileged: c.spec.privileged ?? false,
        capAdd: c.spec.capAdd,
        rootPath: c.spec.userns ? rootfs : "rootfs",
        userns: c.spec.userns,
        seccomp: c.spec.seccomp,
        sysctls: c.spec.sysctls,
        pidsLimit: c.spec.pidsLimit,
        memory: c.spec.memory,
        extraMounts: [...(await this.userMounts(c)), ...this.etcMounts(id)],
        cgroupsPath: `/arca/${id}`,
      });
      await writeFile(f("config.json"), JSON.stringify(config, null, 2));
      live.pump?.unwatch();
      live.pump = this.pumpFor(c);
      await live.pump.reset();
      for (const n of ["pid", "exit-code", "runc.log"] as const) await unlink(f(n)).catch(() => {});
    } catch (err) {
      await this.failStart(id, err);
      throw err;
    }

    const out = await open(f("stdout.raw"), "a");
    const errf = await open(f("stderr.raw"), "a");
    let child: ChildProcess;
    try {
      child = this.runc.spawnRun(id, {
        bundle: this.paths.dir(id),
        pidFile: f("pid"),
        logFile: f("runc.log"),
        exitFile: f("exit-code"),
        stdoutFd: out.fd,
        stderrFd: errf.fd,
      });
    } finally {
      await out.close();
      await errf.close();
    }
    let exited: number | undefined;
    const exitedP = new Promise<void>((resolve) => {
      child.once("exit", (code, sig) => {
        exited = code ?? 128 + (sig ? (constants.signals[sig] ?? 0) : 0);
        resolve();
      });
      child.once("error", () => {
        exited ??= 127;
        resolve();
      });
    });
    child.unref();

    const pid = await this.waitForPid(f("pid"), () => exited !== undefined, signal).catch(
      async (err: unknown) => {
        child.kill("SIGKILL");
        await this.runc.delete(id).catch(() => {});
        await this.failStart(id, err);
        throw err;
      },
    );
    if (pid === undefined) {
      const why = await runcError(f("runc.log"));
      const err = new RuntimeError(
        "runc_failed",
        `starting container ${c.name}: ${why || `runc exited with ${exited}`}`,
      );
      await this.failStart(id, err);
      throw err;
    }
    const token = Symbol("run");
    live.token = token;
    live.child = child;
    this.db.update(id, {
      status: "running",
      pid,
      pidStart: (await processStartTime(pid)) ?? "",
      monitorPid: child.pid ?? 0,
      monitorStart: (child.pid && (await processStartTime(child.pid))) || "",
      exitCode: 0,
      error: "",
      startedAt: new Date().toISOString(),
    });
    live.pump.watch();
    this.emit("start", id, c.name);
    void exitedP.then(async () => {
      if (live.token !== token) return;
      // The wrapper died but the container lives on (someone killed the sh or runc): watch the pid.
      const cur = this.db.get(id);
      if (cur && !(await fileExists(f("exit-code"))) && (await isAlive(cur.pid, cur.pidStart))) {
        this.db.update(id, { monitorPid: 0, monitorStart: "" });
        this.pollExit(id, token);
        return;
      }
      await this.handleExit(id, token, exited);
    });
  }

  private async failStart(id: string, err: unknown): Promise<void> {
    const c = this.db.get(id);
    if (c) await this.releaseRootfs(c).catch(() => {});
    this.db.update(id, {
      status: "exited",
      pid: 0,
      exitCode: 128,
      error: errorMessage(err),
      finishedAt: new Date().toISOString(),
    });
  }

  private async waitForPid(
    pidFile: string,
    exited: () => boolean,
    signal: AbortSignal | undefined,
  ): Promise<number | undefined> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const gone = exited();
      const text = await readFile(pidFile, "utf8").catch(() => "");
      const pid = Number.parseInt(text, 10);
      if (pid > 0) return pid;
      if (gone) return undefined;
      if (Date.now() > deadline)
        throw new RuntimeError("runc_failed", "timed out waiting for runc to start the container");
      await sleep(5, signal);
    }
  }

  /** Watches a container this process is not the parent of (adopted, or its wrapper died). */
  private pollExit(id: string, token: symbol): void {
    const live = this.liveOf(id);
    if (live.poll) clearInterval(live.poll);
    let busy = false;
    live.poll = setInterval(async () => {
      if (busy) return;
      busy = true;
      try {
        const c = this.db.get(id);
        if (live.token !== token || !c) {
          clearInterval(live.poll);
          return;
        }
        if ((await isAlive(c.monitorPid, c.monitorStart)) || (await isAlive(c.pid, c.pidStart))) return;
        clearInterval(live.poll);
        live.poll = undefined;
        await this.handleExit(id, token, undefined);
      } finally {
        busy = false;
      }
    }, POLL_MS);
    live.poll.unref();
  }

  /** Records an exit, releases the rootfs and applies the restart policy. Runs without the lock. */
  private async handleExit(id: string, token: symbol, hint: number | undefined): Promise<void> {
    const live = this.liveOf(id);
    if (live.token !== token) return;
    live.token = undefined;
    live.child = undefined;
    const c = this.db.get(id);
    if (!c) return;
    const fromFile = Number.parseInt(
      await readFile(this.paths.file(id, "exit-code"), "utf8").catch(() => ""),
      10,
    );
    const exitCode = Number.isFinite(fromFile) ? fromFile : (hint ?? UNKNOWN_EXIT);
    live.pump?.unwatch();
    await live.pump?.drain(true).catch((err: unknown) => this.log(`logs of ${c.name}: ${errorMessage(err)}`));
    await this.runc.delete(id).catch(() => {});
    await this.releaseRootfs(c).catch((err: unknown) => this.log(errorMessage(err)));
    const finishedAt = new Date();
    const uptime = c.startedAt ? finishedAt.getTime() - Date.parse(c.startedAt) : 0;
    const restart =
      !this.closing &&
      shouldRestart(c.spec.restartPolicy, {
        exitCode,
        userStopped: this.db.get(id)?.userStopped ?? true,
        restartCount: c.restartCount,
      });
    this.db.update(id, {
      status: restart ? "restarting" : "exited",
      pid: 0,
      pidStart: "",
      monitorPid: 0,
      monitorStart: "",
      exitCode,
      finishedAt: finishedAt.toISOString(),
    });
    this.emit("die", id, c.name, exitCode);
    const waiters = live.exitWaiters;
    live.exitWaiters = [];
    for (const w of waiters) w(exitCode);
    this.bumpLogs(live);
    if (restart) {
      live.backoffMs = nextBackoff(live.backoffMs, uptime);
      this.scheduleRestart(id, live.backoffMs);
    }
  }

  private scheduleRestart(id: string, delayMs: number): void {
    const live = this.liveOf(id);
    if (live.restartTimer) clearTimeout(live.restartTimer);
    live.restartTimer = setTimeout(() => {
      live.restartTimer = undefined;
      void this.withLock(id, async () => {
        const c = this.db.get(id);
        if (this.closing || !c || c.status !== "restarting" || c.userStopped) return;
        this.db.update(id, { restartCount: c.restartCount + 1 });
        this.emit("restart", id, c.name);
        try {
          await this.doStart(id);
        } catch (err) {
          this.log(`restarting ${c.name}: ${errorMessage(err)}`);
          const cur = this.db.get(id);
          if (cur && shouldRestart(cur.spec.restartPolicy, { ...cur, exitCode: 128 })) {
            this.db.update(id, { status: "restarting" });
            live.backoffMs = nextBackoff(live.backoffMs, 0);
            this.scheduleRestart(id, live.backoffMs);
          }
        }
      }).catch(() => {});
    }, delayMs);
  }

  /** Caller holds the lock. userStop marks it so restart policies leave it alone. */
  private async stopLocked(
    id: string,
    timeoutSec: number,
    userStop: boolean,
    signal?: AbortSignal,
  ): Promise<void> {
    const live = this.liveOf(id);
    const c = this.mustGet(id);
    if (userStop) this.db.update(id, { userStopped: true });
    if (c.status === "restarting" || c.status === "created") {
      if (live.restartTimer) clearTimeout(live.restartTimer);
      live.restartTimer = undefined;
      if (c.status === "restarting") this.db.update(id, { status: "exited" });
      return;
    }
    if (c.status !== "running") return;
    const exited = new Promise<void>((resolve) => live.exitWaiters.push(() => resolve()));
    await this.runc.kill(id, "SIGTERM").catch(() => {});
    // The grace timer is cancelled once the container is gone: left pending, it kept a daemon that
    // had finished shutting down alive for the rest of the timeout.
    const done = new AbortController();
    const grace = signal ? AbortSignal.any([signal, done.signal]) : done.signal;
    const t = sleep(timeoutSec * 1000, grace).then(
      () => false,
      () => false,
    );
    const stopped = await Promise.race([exited.then(() => true), t]);
    done.abort();
    if (!stopped) {
      await this.runc.kill(id, "SIGKILL", true).catch(() => {});
      await exited;
    }
  }

  // ---- helpers ----

  private rootfsOf(c: StoredContainer): string {
    return this.paths.rootfs(c.id, c.spec.userns !== undefined);
  }

  /** Unmounts the rootfs; a user-namespaced one's directories outside the data root go too (if empty). */
  private async releaseRootfs(c: StoredContainer): Promise<void> {
    const rootfs = this.rootfsOf(c);
    await unmount(rootfs);
    if (!c.spec.userns) return;
    const own = join(this.paths.usernsRootfs, c.id);
    for (const d of [rootfs, own, this.paths.usernsRootfs]) await rmdir(d).catch(() => {});
  }

  /**
   * The directories above a user-namespaced container's rootfs: searchable by its root (see
   * USERNS_ROOTFS_BASE), the container's own one only by its root's group (mode 0710).
   */
  private async prepareUsernsRootfs(id: string, ids: UsernsMapping): Promise<void> {
    for (const d of [USERNS_ROOTFS_BASE, this.paths.usernsRootfs]) {
      await mkdir(d, { recursive: true, mode: 0o711 });
      await chmod(d, 0o711);
    }
    const own = join(this.paths.usernsRootfs, id);
    await mkdir(own, { recursive: true, mode: 0o710 });
    await chown(own, 0, ids.hostId);
    await chmod(own, 0o710);
  }

  private async layerDirs(imageId: string, signal?: AbortSignal, ids?: UsernsMapping): Promise<string[]> {
    const image = await this.opts.images.inspect(imageId).catch((err: unknown) => {
      throw new RuntimeError("image_not_found", `No such image: ${imageId}`, { cause: err });
    });
    const diffIds = image.ImageConfig.rootfs?.diff_ids ?? [];
    if (diffIds.length !== image.Layers.length || diffIds.length === 0)
      throw new RuntimeError(
        "rootfs_failed",
        `image ${imageId} has ${image.Layers.length} layers but ${diffIds.length} diff IDs`,
      );
    const dirs: string[] = [];
    for (const [i, layer] of image.Layers.entries()) {
      dirs.push(
        await ensureLayer(
          ids ? this.paths.shiftedLayers(ids.hostId, ids.size) : this.paths.layers,
          {
            digest: layer.digest,
            mediaType: layer.mediaType,
            diffId: diffIds[i] as string,
            open: () => this.opts.images.content.createReadStream(layer.digest),
          },
          signal,
          ids,
        ),
      );
    }
    return dirs;
  }

  private async userMounts(c: StoredContainer): Promise<OciMount[]> {
    const out: OciMount[] = [];
    for (const m of c.spec.mounts ?? []) {
      let source = m.source;
      if (m.type === "volume") {
        source = this.paths.volumeData(m.source);
        await mkdir(source, { recursive: true });
        // A volume belongs to the root of the container using it (written under another mapping, it
        // is shifted over once); bind mounts are the caller's to arrange.
        if (c.spec.userns)
          await shiftOwnership(source, c.spec.userns, (l) => this.log(`volume ${m.source}: ${l}`));
      } else {
        const st = await stat(source).catch(() => undefined);
        if (!st) throw new RuntimeError("invalid_spec", `bind source path does not exist: ${source}`);
      }
      out.push({
        destination: m.target,
        type: "bind",
        source,
        options: ["rbind", "rprivate", ...(m.readonly ? ["ro"] : [])],
      });
    }
    return out;
  }

  private etcMounts(id: string): OciMount[] {
    return (["hostname", "hosts", "resolv.conf"] as const).map((n) => ({
      destination: `/etc/${n}`,
      type: "bind",
      source: this.paths.file(id, n),
      options: ["rbind", "rprivate"],
    }));
  }

  private async writeEtcFiles(id: string, hostname: string, network: "none" | "host"): Promise<void> {
    const host = (p: string) => readFile(p, "utf8").catch(() => "");
    const hosts =
      network === "host"
        ? await host("/etc/hosts")
        : `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t${hostname}\n`;
    await writeFile(this.paths.file(id, "hostname"), `${hostname}\n`);
    await writeFile(this.paths.file(id, "hosts"), hosts);
    await writeFile(
      this.paths.file(id, "resolv.conf"),
      network === "host" ? await host("/etc/resolv.conf") : "",
    );
  }

  private pumpFor(c: StoredContainer): LogPump {
    const live = this.liveOf(c.id);
    return new LogPump(
      { stdout: this.paths.file(c.id, "stdout.raw"), stderr: this.paths.file(c.id, "stderr.raw") },
      this.paths.file(c.id, "json-log"),
      { stdout: c.stdoutOffset, stderr: c.stderrOffset, logSize: c.logSize },
      (o) => {
        if (!this.closed && this.db.get(c.id)) this.db.saveLogOffsets(c.id, o);
      },
      () => this.bumpLogs(live),
    );
  }

  private bumpLogs(live: Live): void {
    live.logVersion++;
    for (const w of [...live.logWaiters]) w();
  }

  private liveOf(id: string): Live {
    let l = this.live.get(id);
    if (!l) {
      l = { backoffMs: 0, exitWaiters: [], logVersion: 0, logWaiters: new Set(), lock: Promise.resolve() };
      this.live.set(id, l);
    }
    return l;
  }

  private withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const live = this.liveOf(id);
    const p = live.lock.then(fn, fn);
    live.lock = p.catch(() => {});
    return p;
  }

  private resolve(idOrName: string): StoredContainer {
    this.assertOpen();
    const c = this.db.resolve(idOrName);
    if (!c) throw new RuntimeError("not_found", `No such container: ${idOrName}`);
    return c;
  }

  private mustGet(id: string): StoredContainer {
    const c = this.db.get(id);
    if (!c) throw new RuntimeError("not_found", `No such container: ${id}`);
    return c;
  }

  private record(id: string): ContainerRecord {
    return strip(this.mustGet(id));
  }

  private emit(type: RuntimeEventType, id: string, name: string, exitCode?: number): void {
    const e: RuntimeEvent = {
      type,
      id,
      name,
      time: new Date().toISOString(),
      ...(exitCode === undefined ? {} : { exitCode }),
    };
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // A listener's failure must not break supervision.
      }
    }
  }

  private log(msg: string): void {
    this.opts.log?.(msg);
  }

  private assertOpen(): void {
    if (this.closed) throw new RuntimeError("closed", "runtime is closed");
  }
}

function strip(c: StoredContainer): ContainerRecord {
  const {
    monitorPid: _m,
    monitorStart: _s,
    pidStart: _p,
    stdoutOffset: _o,
    stderrOffset: _e,
    logSize: _l,
    ...rest
  } = c;
  return rest;
}

/** The last error runc logged (its --log is JSON lines). */
async function runcError(file: string): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  let msg = "";
  for (const line of text.split("\n")) {
    try {
      const e = JSON.parse(line) as { level?: string; msg?: string };
      if (e.level === "error" || e.level === "fatal") msg = e.msg ?? msg;
    } catch {
      // Not JSON: ignore.
    }
  }
  return msg;
}

async function fileExists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}

import { createHash } from "node:crypto";
import type { ControlClient, ListWorkersResponse } from "../buildkit/index.js";
import { abortReason, errorMessage, sleep } from "../util/index.js";
import type { BackendTarget } from "./backend-target.js";
import { BackendError } from "./errors.js";
import { PlacementBook } from "./placement-book.js";
import { rendezvousOrder } from "./rendezvous.js";

export type BackendHealth = "starting" | "up" | "down";

/** What `arca backend ls` and `docker info` show of one backend. */
export interface BackendView {
  name: string;
  address: string;
  kind: "sandbox" | "remote";
  state: BackendHealth | "draining";
  running: number;
  done: number;
  maxBuilds: number;
  weight: number;
  lacks: readonly string[];
  /** BuildKit's cache on the backend (bytes), as of its last health check that measured it. */
  cacheBytes?: number;
  lastError?: string;
}

/** A place on one backend, held for a build's (or a buildx session's) duration. */
export interface Lease {
  readonly backend: string;
  readonly client: ControlClient;
  readonly registryHost: string;
  readonly stepEgress: boolean;
  readonly pushScope: string;
  /** Ends the build's place (idempotent); `failed` with a lost connection checks the backend at once. */
  release(opts?: { error?: unknown }): void;
}

/** Where a call that belongs to no build goes, and where a session's or solve's calls go. */
export interface Placement {
  readonly backend: string;
  readonly client: ControlClient;
  readonly registryHost: string;
  readonly stepEgress: boolean;
  readonly pushScope: string;
}

export type PoolEvent = "backend-up" | "backend-down" | "backend-drain" | "backend-remove" | "build";

export interface PoolOptions {
  log?: (line: string) => void;
  onEvent?: (action: PoolEvent, backend: string, attrs: Record<string, string>) => void;
  /** Between health checks of a healthy backend; default 2 s. */
  healthIntervalMs?: number;
  /** Bound on one health check; default 5 s. */
  healthTimeoutMs?: number;
  /**
   * `key` (default): rendezvous order per build key, so a project's cache stays warm.
   * `round-robin`: each build starts at the next backend, whatever its key (for comparison).
   */
  routing?: "key" | "round-robin";
  /** How long a build waits while no backend is up (or starting) before it fails; default 120 s. */
  noBackendWaitMs?: number;
}

/** How long a solve's ref stays known after its Solve call ended (late Status calls). */
const REF_LINGER_MS = 60_000;
/** How long a call naming a session or solve waits for it to be placed (they race on separate connections). */
const PLACEMENT_WAIT_MS = 15_000;
const MAX_DOWN_BACKOFF_MS = 15_000;
/** Down this long, a backend's open connections are given up (see onGone). */
const GONE_AFTER_MS = 30_000;
/** How long a build waits while no backend at all is up before it fails. */
const NO_BACKEND_WAIT_MS = 120_000;
/** How often a healthy backend's cache size is measured. */
const CACHE_SIZE_EVERY_MS = 30_000;

interface Member {
  target: BackendTarget;
  health: BackendHealth;
  draining: boolean;
  removed: boolean;
  running: number;
  done: number;
  lastError?: string;
  cacheBytes?: number;
  /** When cacheBytes was measured (every 30 s: DiskUsage walks the cache, builds need the CPU). */
  cacheAt: number;
  /** Its workers as its last health check read them. */
  workers?: ListWorkersResponse;
  /** A cache measurement is under way. */
  measuring?: boolean;
  /** Since when the backend has been down, and whether onGone listeners heard of it. */
  downSince?: number | undefined;
  gone?: boolean;
  /** Wakes the health loop early (a build lost its connection). */
  poke?: () => void;
}

/**
 * The backends builds run on: rendezvous order per build key over the
 * healthy, undrained ones; a backend at its limit spills to the next in the
 * key's order; when all are full, builds wait for a place. Health is a
 * ListWorkers per backend (every 2 s while up, backing off while down); a
 * backend leaves the ring when a check fails and rejoins when one passes.
 */
export class BackendPool {
  readonly #members: Member[];
  readonly #waiters = new Set<() => void>();
  readonly #sessions = new PlacementBook<Member>();
  readonly #refs = new PlacementBook<Member>();
  readonly #stop = new AbortController();
  readonly #goneListeners = new Set<(backend: string) => void>();
  readonly #opts: PoolOptions;
  #turn = 0;

  constructor(targets: BackendTarget[], opts: PoolOptions = {}) {
    if (targets.length === 0) throw new BackendError("invalid_config", "the pool needs at least one backend");
    this.#members = targets.map((target) => ({
      target,
      health: "starting",
      draining: false,
      removed: false,
      running: 0,
      done: 0,
      cacheAt: 0,
    }));
    this.#opts = opts;
  }

  get targets(): BackendTarget[] {
    return this.#members.filter((m) => !m.removed).map((m) => m.target);
  }

  /**
   * Starts every backend and its health loop; resolves once the first one (the built-in sandbox)
   * is up. The others come up in the background and join the ring when healthy.
   */
  async start(signal: AbortSignal): Promise<void> {
    const stop = AbortSignal.any([signal, this.#stop.signal]);
    const [first, ...rest] = this.#members as [Member, ...Member[]];
    await first.target.start(stop);
    void this.#health(first, stop);
    // After the first: local sandboxes share the sandbox image it assembled and loaded.
    for (const m of rest) void this.#run(m, stop);
  }

  /** Starts a backend, retrying with backoff until it starts (or is removed), then watches it. */
  async #run(m: Member, signal: AbortSignal): Promise<void> {
    let backoff = 1000;
    for (;;) {
      if (m.removed || signal.aborted) return;
      try {
        await m.target.start(signal);
        // Removed while it started: remove() stopped nothing yet running, so stop it here.
        if (m.removed) {
          await m.target.stop().catch(() => {});
          return;
        }
        break;
      } catch (err) {
        if (signal.aborted || m.removed) return;
        this.#setHealth(m, "down", err);
        await sleep(backoff, signal).catch(() => {});
        backoff = Math.min(backoff * 2, MAX_DOWN_BACKOFF_MS);
      }
    }
    await this.#health(m, signal);
  }

  async #health(m: Member, signal: AbortSignal): Promise<void> {
    const every = this.#opts.healthIntervalMs ?? 2000;
    let backoff = 500;
    while (!signal.aborted && !m.removed) {
      const ok = await this.#check(m, signal);
      if (signal.aborted || m.removed) return;
      const wait = ok ? every : backoff;
      backoff = ok ? 500 : Math.min(backoff * 2, MAX_DOWN_BACKOFF_MS);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, wait);
        function done() {
          clearTimeout(t);
          signal.removeEventListener("abort", done);
          m.poke = undefined;
          resolve();
        }
        m.poke = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }

  async #check(m: Member, signal: AbortSignal): Promise<boolean> {
    const bound = AbortSignal.any([signal, AbortSignal.timeout(this.#opts.healthTimeoutMs ?? 5000)]);
    try {
      const client = await m.target.client(bound);
      const w = await client.control.listWorkers({}, { signal: bound });
      if (w.record.length === 0) throw new Error("BuildKit has no worker");
      m.workers = w;
      this.#setHealth(m, "up");
    } catch (err) {
      if (signal.aborted) return false;
      this.#setHealth(m, "down", err);
      // Down this long: its open calls will not come back (a host gone without closing them).
      if (!m.gone && m.downSince !== undefined && Date.now() - m.downSince >= GONE_AFTER_MS) {
        m.gone = true;
        for (const l of [...this.#goneListeners]) l(m.target.spec.name);
      }
      return false;
    }
    // Cache size is news, not health: measured beside the checks (one at a time, every 30 s
    // whether it answered or not), so a slow answer on a big cache never holds them up.
    if (Date.now() - m.cacheAt > CACHE_SIZE_EVERY_MS) {
      m.cacheAt = Date.now();
      if (!m.measuring) void this.#measureCache(m, signal);
    }
    return true;
  }

  async #measureCache(m: Member, signal: AbortSignal): Promise<void> {
    const bound = AbortSignal.any([signal, AbortSignal.timeout(60_000)]);
    m.measuring = true;
    try {
      const client = await m.target.client(bound);
      const du = await client.control.diskUsage({}, { signal: bound });
      m.cacheBytes = du.record.reduce((n, r) => n + Number(r.Size), 0);
    } catch {
      // Measured again in 30 s.
    } finally {
      m.measuring = false;
    }
  }

  /**
   * `fn(name)` when a backend has been down for 30 s: connections to it that are still open
   * (a host that vanished without closing them) will not answer again, and are dropped.
   */
  onGone(fn: (backend: string) => void): () => void {
    this.#goneListeners.add(fn);
    return () => this.#goneListeners.delete(fn);
  }

  #setHealth(m: Member, health: BackendHealth, err?: unknown): void {
    if (err !== undefined) m.lastError = errorMessage(err);
    if (m.health === health) return;
    const was = m.health;
    m.health = health;
    m.downSince = health === "down" ? Date.now() : undefined;
    if (health === "up") {
      m.gone = false;
      m.lastError = undefined;
      this.#opts.log?.(`backend ${m.target.spec.name} (${m.target.spec.address}) is up`);
      this.#opts.onEvent?.("backend-up", m.target.spec.name, { address: m.target.spec.address });
    } else if (health === "down" && was !== "starting") {
      this.#opts.log?.(`backend ${m.target.spec.name} (${m.target.spec.address}) is down: ${m.lastError}`);
      this.#opts.onEvent?.("backend-down", m.target.spec.name, {
        address: m.target.spec.address,
        error: m.lastError ?? "",
      });
    } else if (health === "down") {
      this.#opts.log?.(
        `backend ${m.target.spec.name} (${m.target.spec.address}) did not come up: ${m.lastError}`,
      );
    }
    this.#wake();
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves at the next change of health, drain or load (or rejects when the signal aborts). */
  #changed(signal: AbortSignal, timeoutMs?: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const t = timeoutMs === undefined ? undefined : setTimeout(() => done(), timeoutMs);
      const done = () => {
        clearTimeout(t);
        this.#waiters.delete(done);
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        clearTimeout(t);
        this.#waiters.delete(done);
        reject(abortReason(signal));
      };
      if (signal.aborted) return onAbort();
      this.#waiters.add(done);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** The healthy backends taking builds, in the order a build of `key` tries them. */
  #ranked(key: string, turn: number): { name: string; m: Member }[] {
    const nodes = this.#eligible().map((m) => ({
      name: m.target.spec.name,
      weight: m.target.spec.weight,
      m,
    }));
    if (this.#opts.routing !== "round-robin" || nodes.length === 0) return rendezvousOrder(key, nodes);
    const at = turn % nodes.length;
    return [...nodes.slice(at), ...nodes.slice(0, at)];
  }

  #eligible(): Member[] {
    return this.#members.filter((m) => !m.removed && !m.draining && m.health === "up");
  }

  /**
   * A place for a build of `key`: the first backend in the key's order with room; waits
   * (bounded by the signal) while every backend is full or none is up yet.
   */
  async acquire(key: string, signal: AbortSignal, attrs: Record<string, string> = {}): Promise<Lease> {
    const turn = this.#turn++;
    let noneUpSince: number | undefined;
    for (;;) {
      // A caller gone while it waited (woken in the same turn as its abort) takes no place.
      signal.throwIfAborted();
      const ranked = this.#ranked(key, turn);
      const free = ranked.find((r) => r.m.running < r.m.target.spec.maxBuilds);
      if (free) {
        const m = free.m;
        // Taken before the await below so concurrent acquires see it.
        m.running++;
        let client: ControlClient;
        try {
          client = await m.target.client(signal);
          signal.throwIfAborted();
        } catch (err) {
          m.running--;
          this.#wake();
          throw err;
        }
        const spilled = ranked[0] && ranked[0].m !== m ? ranked[0].name : undefined;
        this.#opts.onEvent?.("build", m.target.spec.name, {
          // A digest of the key: a session's id must not reach other clients through events.
          key: shortDigest(key),
          ...(spilled ? { spilledFrom: spilled } : {}),
          ...attrs,
        });
        return this.#lease(m, client);
      }
      const live = this.#members.filter((m) => !m.removed);
      if (live.every((m) => m.draining))
        throw new BackendError("no_backend", "no BuildKit backend takes builds (all drained or removed)");
      // A backend still starting (the first start assembles the sandbox image) is worth waiting for.
      if (live.some((m) => !m.draining && m.health !== "down")) noneUpSince = undefined;
      else {
        noneUpSince ??= Date.now();
        if (Date.now() - noneUpSince >= (this.#opts.noBackendWaitMs ?? NO_BACKEND_WAIT_MS))
          throw new BackendError(
            "no_backend",
            `no BuildKit backend is up: ${live.map((m) => `${m.target.spec.name}: ${m.lastError ?? m.health}`).join("; ")}`,
          );
      }
      await this.#changed(
        signal,
        noneUpSince === undefined ? undefined : Math.min(5000, this.#opts.noBackendWaitMs ?? 5000),
      );
    }
  }

  #lease(m: Member, client: ControlClient): Lease {
    let released = false;
    return {
      ...this.#placement(m, client),
      release: (opts = {}) => {
        if (released) return;
        released = true;
        m.running--;
        m.done++;
        // A build that failed may have lost its backend: check now, not at the next tick.
        if (opts.error !== undefined) m.poke?.();
        this.#wake();
      },
    };
  }

  /**
   * ListWorkers for the pool without a round trip: what the last health check (at most 2 s ago)
   * read from the backend `any()` answers for; undefined while none is up.
   */
  workers(): ListWorkersResponse | undefined {
    return this.#members.find((x) => !x.removed && x.health === "up")?.workers;
  }

  /** Where calls that belong to no build go (ListWorkers, Info, history): the first healthy backend. */
  async any(signal: AbortSignal): Promise<Placement> {
    for (;;) {
      const m =
        this.#members.find((x) => !x.removed && x.health === "up") ??
        this.#members.find((x) => !x.removed && x.health === "starting");
      if (m) return this.#placement(m, await m.target.client(signal));
      if (this.#members.every((x) => x.removed)) throw new BackendError("no_backend", "no BuildKit backend");
      await this.#changed(signal);
    }
  }

  #placement(m: Member, client: ControlClient): Placement {
    return {
      backend: m.target.spec.name,
      client,
      registryHost: m.target.registryHost,
      stepEgress: m.target.stepEgress,
      pushScope: m.target.pushScope,
    };
  }

  /** Every backend that is up, with its client (fan-out calls: disk usage, prune). */
  async everyUp(signal: AbortSignal): Promise<Placement[]> {
    const up = this.#members.filter((m) => !m.removed && m.health === "up");
    const list = up.length ? up : [this.#members.find((m) => !m.removed) as Member];
    return Promise.all(list.map(async (m) => this.#placement(m, await m.target.client(signal))));
  }

  /**
   * A client session (POST /session) arrived and is waiting for its place: solves naming it
   * wait for it rather than go elsewhere. Returns forget(), for a session that never got placed.
   */
  expectSession(id: string): () => void {
    return this.#sessions.expect(id);
  }

  /** Session `id` lives on `lease`'s backend until the returned function runs. */
  bindSession(id: string, lease: Lease): () => void {
    return this.#sessions.place(id, this.#member(lease.backend));
  }

  /**
   * The backend of session `id`: waits while the session waits for a place, or a while for an
   * unknown id (buildx opens the session and starts the solve on separate connections);
   * undefined if no session of that id shows up.
   */
  sessionPlacement(id: string, signal: AbortSignal): Promise<Placement | undefined> {
    return this.#placedIn(this.#sessions, id, signal, PLACEMENT_WAIT_MS);
  }

  /**
   * A Solve of `ref` arrived and waits for its place (its session's, or a free one): Status and
   * gateway calls of that ref wait for it instead of going elsewhere. Returns forget().
   */
  expectRef(ref: string): () => void {
    return this.#refs.expect(ref);
  }

  /** Notes that solve `ref` runs on `backend` (its Status and gateway calls follow it, also a while after). */
  bindRef(ref: string, backend: string): () => void {
    return this.#refs.place(ref, this.#member(backend), REF_LINGER_MS);
  }

  /**
   * The backend solve `ref` runs on: waits while its Solve waits for a place, or a while for a
   * ref not seen yet; undefined if it never shows.
   */
  refPlacement(ref: string, signal: AbortSignal, waitMs = PLACEMENT_WAIT_MS): Promise<Placement | undefined> {
    return this.#placedIn(this.#refs, ref, signal, waitMs);
  }

  async #placedIn(
    book: PlacementBook<Member>,
    id: string,
    signal: AbortSignal,
    waitMs: number,
  ): Promise<Placement | undefined> {
    // A pool of one places everything there: nothing waits.
    const m = this.#only() ?? (await book.placed(id, signal, waitMs));
    return m && this.#placement(m, await m.target.client(signal));
  }

  /** The one backend of a pool of one: everything goes there, nothing waits to be placed. */
  #only(): Member | undefined {
    const live = this.#members.filter((m) => !m.removed);
    return live.length === 1 ? live[0] : undefined;
  }

  #member(name: string): Member {
    const m = this.#members.find((x) => x.target.spec.name === name && !x.removed);
    if (!m) throw new BackendError("unknown_backend", `no backend named "${name}"`);
    return m;
  }

  list(): BackendView[] {
    return this.#members
      .filter((m) => !m.removed)
      .map((m) => ({
        name: m.target.spec.name,
        address: m.target.spec.address,
        kind: m.target.kind,
        state: m.draining ? "draining" : m.health,
        running: m.running,
        done: m.done,
        maxBuilds: m.target.spec.maxBuilds,
        weight: m.target.spec.weight,
        lacks: m.target.lacks,
        ...(m.cacheBytes === undefined ? {} : { cacheBytes: m.cacheBytes }),
        ...(m.lastError && m.health !== "up" ? { lastError: m.lastError } : {}),
      }));
  }

  /**
   * Stops new builds on `name` and resolves once its running builds (and buildx sessions) ended;
   * `onWait` hears how many are left while waiting.
   */
  async drain(name: string, signal: AbortSignal, onWait?: (running: number) => void): Promise<void> {
    const m = this.#member(name);
    if (!m.draining) {
      m.draining = true;
      this.#opts.log?.(`backend ${name}: draining (${m.running} running)`);
      this.#opts.onEvent?.("backend-drain", name, { running: String(m.running) });
      this.#wake();
    }
    let last = -1;
    while (m.running > 0) {
      if (m.running !== last) onWait?.(m.running);
      last = m.running;
      await this.#changed(signal);
    }
  }

  /** Takes new builds on `name` again. */
  undrain(name: string): void {
    const m = this.#member(name);
    if (!m.draining) return;
    m.draining = false;
    this.#opts.log?.(`backend ${name}: taking builds again`);
    this.#wake();
  }

  /** Takes a drained (or idle) backend out of the pool and stops it; never the last one. */
  async remove(name: string): Promise<void> {
    const m = this.#member(name);
    if (m === this.#members[0])
      throw new BackendError(
        "conflict",
        `"${name}" is the built-in sandbox (arca build, docker exec arca-buildkit use it): drain it instead`,
      );
    if (m.running > 0)
      throw new BackendError(
        "conflict",
        `backend "${name}" has ${m.running} running builds: drain it first (arca backend drain ${name})`,
      );
    if (this.#members.filter((x) => !x.removed).length === 1)
      throw new BackendError("conflict", `backend "${name}" is the last one`);
    m.removed = true;
    m.poke?.();
    this.#opts.log?.(`backend ${name}: removed from the pool`);
    this.#opts.onEvent?.("backend-remove", name, { address: m.target.spec.address });
    this.#wake();
    await m.target.stop().catch(() => {});
  }

  /** Ends health checks and stops every backend. */
  async close(): Promise<void> {
    this.#stop.abort();
    for (const m of this.#members) if (!m.removed) await m.target.stop().catch(() => {});
  }
}

function shortDigest(key: string): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 16);
}

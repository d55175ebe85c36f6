import type { ControlClient } from "../buildkit/index.js";
import { abortReason, errorMessage } from "../util/index.js";
import type { BackendTarget } from "./backend-target.js";
import { BackendError } from "./errors.js";
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
  /** Ends the build's place (idempotent); `failed` with a lost connection checks the backend at once. */
  release(opts?: { error?: unknown }): void;
}

/** Where a call that belongs to no build goes, and where a session's or solve's calls go. */
export interface Placement {
  readonly backend: string;
  readonly client: ControlClient;
  readonly registryHost: string;
  readonly stepEgress: boolean;
}

export type PoolEvent = "backend-up" | "backend-down" | "backend-drain" | "backend-remove" | "build";

export interface PoolOptions {
  log?: (line: string) => void;
  onEvent?: (action: PoolEvent, backend: string, attrs: Record<string, string>) => void;
  /** Between health checks of a healthy backend; default 2 s. */
  healthIntervalMs?: number;
  /** Bound on one health check; default 5 s. */
  healthTimeoutMs?: number;
}

/** How long a solve's ref stays known after its Solve call ended (late Status calls). */
const REF_LINGER_MS = 60_000;
/** How long a call naming a session or solve waits for it to be placed (they race on separate connections). */
const PLACEMENT_WAIT_MS = 15_000;
const MAX_DOWN_BACKOFF_MS = 15_000;
/** How often a healthy backend's cache size is measured (and after every build). */
const CACHE_SIZE_EVERY_MS = 30_000;

interface SessionEntry {
  member?: Member;
  /** Arrived, waiting for a place. */
  pending: boolean;
  waiters: Set<() => void>;
}

interface Member {
  target: BackendTarget;
  health: BackendHealth;
  draining: boolean;
  removed: boolean;
  running: number;
  done: number;
  lastError?: string;
  cacheBytes?: number;
  /** When cacheBytes was measured (0: stale, a build ended since). */
  cacheAt: number;
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
  readonly #sessions = new Map<string, SessionEntry>();
  readonly #refs = new Map<string, string>();
  readonly #refWaiters = new Map<string, Set<() => void>>();
  readonly #stop = new AbortController();
  readonly #opts: PoolOptions;

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

  /** The built-in sandbox's target (the first configured). */
  get primary(): BackendTarget {
    return (this.#members[0] as Member).target;
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

  async #run(m: Member, signal: AbortSignal): Promise<void> {
    try {
      await m.target.start(signal);
    } catch (err) {
      if (signal.aborted) return;
      this.#setHealth(m, "down", err);
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
      this.#setHealth(m, "up");
      if (Date.now() - m.cacheAt > CACHE_SIZE_EVERY_MS) {
        const du = await client.control.diskUsage({}, { signal: bound });
        m.cacheBytes = du.record.reduce((n, r) => n + Number(r.Size), 0);
        m.cacheAt = Date.now();
      }
      return true;
    } catch (err) {
      if (!signal.aborted) this.#setHealth(m, "down", err);
      return false;
    }
  }

  #setHealth(m: Member, health: BackendHealth, err?: unknown): void {
    if (err !== undefined) m.lastError = errorMessage(err);
    if (m.health === health) return;
    const was = m.health;
    m.health = health;
    if (health === "up") {
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
  #changed(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        this.#waiters.delete(done);
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        this.#waiters.delete(done);
        reject(abortReason(signal));
      };
      if (signal.aborted) return onAbort();
      this.#waiters.add(done);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** The key's backends in rendezvous order, healthy and taking builds. */
  order(key: string): string[] {
    return rendezvousOrder(
      key,
      this.#eligible().map((m) => ({ name: m.target.spec.name, weight: m.target.spec.weight, m })),
    ).map((n) => n.name);
  }

  #eligible(): Member[] {
    return this.#members.filter((m) => !m.removed && !m.draining && m.health === "up");
  }

  /**
   * A place for a build of `key`: the first backend in the key's order with room; waits
   * (bounded by the signal) while every backend is full or none is up yet.
   */
  async acquire(key: string, signal: AbortSignal, attrs: Record<string, string> = {}): Promise<Lease> {
    for (;;) {
      const ranked = rendezvousOrder(
        key,
        this.#eligible().map((m) => ({ name: m.target.spec.name, weight: m.target.spec.weight, m })),
      );
      const free = ranked.find((r) => r.m.running < r.m.target.spec.maxBuilds);
      if (free) {
        const m = free.m;
        // Taken before the await below so concurrent acquires see it.
        m.running++;
        let client: ControlClient;
        try {
          client = await m.target.client(signal);
        } catch (err) {
          m.running--;
          this.#wake();
          throw err;
        }
        const spilled = ranked[0] && ranked[0].m !== m ? ranked[0].name : undefined;
        this.#opts.onEvent?.("build", m.target.spec.name, {
          key: key.slice(0, 64),
          ...(spilled ? { spilledFrom: spilled } : {}),
          ...attrs,
        });
        return this.#lease(m, client);
      }
      if (this.#members.every((m) => m.removed || m.draining))
        throw new BackendError("no_backend", "no BuildKit backend takes builds (all drained or removed)");
      await this.#changed(signal);
    }
  }

  #lease(m: Member, client: ControlClient): Lease {
    let released = false;
    return {
      backend: m.target.spec.name,
      client,
      registryHost: m.target.registryHost,
      stepEgress: m.target.stepEgress,
      release: (opts = {}) => {
        if (released) return;
        released = true;
        m.running--;
        m.done++;
        m.cacheAt = 0;
        // A build that failed may have lost its backend: check now, not at the next tick.
        if (opts.error !== undefined) m.poke?.();
        this.#wake();
      },
    };
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
    const e = this.#session(id);
    e.pending = true;
    return () => {
      if (this.#sessions.get(id) === e && !e.member) {
        this.#sessions.delete(id);
        this.#wakeAll(e.waiters);
      }
    };
  }

  /** Session `id` lives on `lease`'s backend until the returned function runs. */
  bindSession(id: string, lease: Lease): () => void {
    const e = this.#session(id);
    e.member = this.#member(lease.backend);
    this.#wakeAll(e.waiters);
    return () => {
      if (this.#sessions.get(id) === e) this.#sessions.delete(id);
    };
  }

  #session(id: string): SessionEntry {
    const found = this.#sessions.get(id);
    if (found) return found;
    const e: SessionEntry = { pending: false, waiters: new Set() };
    this.#sessions.set(id, e);
    return e;
  }

  #wakeAll(set: Set<() => void>): void {
    for (const w of [...set]) w();
  }

  /**
   * The backend of session `id`: waits while the session waits for a place, or a while for an
   * unknown id (buildx opens the session and starts the solve on separate connections);
   * undefined if no session of that id shows up.
   */
  async sessionPlacement(id: string, signal: AbortSignal): Promise<Placement | undefined> {
    const deadline = Date.now() + PLACEMENT_WAIT_MS;
    for (;;) {
      const e = this.#session(id);
      if (e.member) return this.#placement(e.member, await e.member.target.client(signal));
      const left = e.pending ? 60_000 : deadline - Date.now();
      if (left <= 0) {
        if (e.waiters.size === 0 && !e.pending) this.#sessions.delete(id);
        return undefined;
      }
      await this.#waitIn(e.waiters, left, signal);
    }
  }

  /** Notes that solve `ref` runs on `backend` (its Status and gateway calls follow it). */
  bindRef(ref: string, backend: string): () => void {
    this.#refs.set(ref, backend);
    for (const w of this.#refWaiters.get(ref) ?? []) w();
    this.#refWaiters.delete(ref);
    return () => {
      const t = setTimeout(() => {
        if (this.#refs.get(ref) === backend) this.#refs.delete(ref);
      }, REF_LINGER_MS);
      t.unref();
    };
  }

  /** The backend solve `ref` runs on, waiting a while for its Solve call; undefined if it never shows. */
  async refPlacement(
    ref: string,
    signal: AbortSignal,
    waitMs = PLACEMENT_WAIT_MS,
  ): Promise<Placement | undefined> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const name = this.#refs.get(ref);
      if (name !== undefined) {
        const m = this.#member(name);
        return this.#placement(m, await m.target.client(signal));
      }
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      const set = this.#refWaiters.get(ref) ?? new Set<() => void>();
      this.#refWaiters.set(ref, set);
      await this.#waitIn(set, left, signal);
    }
  }

  #waitIn(set: Set<() => void>, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(t);
        set.delete(done);
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        done();
        reject(abortReason(signal));
      };
      const t = setTimeout(done, ms);
      if (signal.aborted) return onAbort();
      set.add(done);
      signal.addEventListener("abort", onAbort, { once: true });
    });
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

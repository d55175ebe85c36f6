import assert from "node:assert/strict";
import os from "node:os";
import { test } from "node:test";
import type { ControlClient } from "../buildkit/index.js";
import type { BackendSpec } from "./backend-config.js";
import { BackendPool, type PoolEvent } from "./backend-pool.js";
import type { BackendTarget } from "./backend-target.js";
import { rendezvousOrder } from "./rendezvous.js";

/** A backend whose health the test controls (pure pool logic: no BuildKit behind it). */
function fakeTarget(name: string, maxBuilds = 1): BackendTarget & { healthy: boolean } {
  const t = {
    healthy: true,
    spec: { name, address: "sandbox", weight: 1, maxBuilds } satisfies BackendSpec,
    kind: "sandbox" as const,
    registryHost: `${name}:5000`,
    pushScope: name,
    stepEgress: true,
    lacks: [],
    start: async () => {},
    stop: async () => {},
    client: async () =>
      ({
        address: name,
        control: {
          listWorkers: async () => {
            if (!t.healthy) throw new Error(`${name} is gone`);
            return { record: [{}] };
          },
          diskUsage: async () => ({ record: [] }),
        },
        connectHttp2: () => {
          throw new Error("unused");
        },
        close: () => {},
      }) as unknown as ControlClient,
  };
  return t;
}

async function pool(names: string[], max = 1) {
  const targets = names.map((n) => fakeTarget(n, max));
  const events: [PoolEvent, string][] = [];
  const p = new BackendPool(targets, {
    healthIntervalMs: 20,
    noBackendWaitMs: 150,
    onEvent: (a, n) => events.push([a, n]),
  });
  await p.start(new AbortController().signal);
  await until(() => p.list().every((b) => b.state === "up"));
  return { p, targets, events };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), "condition never held");
}

const signal = () => AbortSignal.timeout(5000);

test("a key stays on its first backend; a full backend spills to the next in the key's order", async () => {
  const { p, events } = await pool(["a", "b", "c"]);
  try {
    const order = rendezvousOrder(
      "proj",
      ["a", "b", "c"].map((name) => ({ name, weight: 1 })),
    ).map((n) => n.name);
    const first = await p.acquire("proj", signal());
    assert.equal(first.backend, order[0]);
    const second = await p.acquire("proj", signal());
    assert.equal(second.backend, order[1], "spilled to the next in the key's order");
    assert.deepEqual(
      events.filter(([a]) => a === "build").map(([, n]) => n),
      [order[0], order[1]],
    );
    first.release();
    const third = await p.acquire("proj", signal());
    assert.equal(third.backend, order[0], "back on its own backend once it has room");
    second.release();
    third.release();
    third.release(); // idempotent
    assert.ok(p.list().every((b) => b.running === 0));
  } finally {
    await p.close();
  }
});

test("when every backend is full a build waits for a place; the signal bounds the wait", async () => {
  const { p } = await pool(["a"]);
  try {
    const held = await p.acquire("x", signal());
    const waiting = p.acquire("y", signal());
    let got = false;
    void waiting.then(() => {
      got = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got, false);
    held.release();
    (await waiting).release();
    const h2 = await p.acquire("x", signal());
    await assert.rejects(p.acquire("z", AbortSignal.timeout(50)));
    h2.release();
  } finally {
    await p.close();
  }
});

test("a backend that stops answering leaves the ring and rejoins when it answers again", async () => {
  const { p, targets, events } = await pool(["a", "b"], 4);
  try {
    const key = ["k1", "k2", "k3", "k4", "k5"].find(
      (k) =>
        rendezvousOrder(k, [
          { name: "a", weight: 1 },
          { name: "b", weight: 1 },
        ])[0]?.name === "a",
    ) as string;
    (targets[0] as { healthy: boolean }).healthy = false;
    await until(() => p.list()[0]?.state === "down");
    assert.match(p.list()[0]?.lastError ?? "", /a is gone/);
    const l = await p.acquire(key, signal());
    assert.equal(l.backend, "b", "the key's next backend while its own is down");
    l.release();
    (targets[0] as { healthy: boolean }).healthy = true;
    await until(() => p.list()[0]?.state === "up");
    const back = await p.acquire(key, signal());
    assert.equal(back.backend, "a");
    back.release();
    const health = events.filter(([a, n]) => a !== "build" && n === "a").map(([a]) => a);
    assert.deepEqual(health, ["backend-up", "backend-down", "backend-up"]);
  } finally {
    await p.close();
  }
});

test("drain waits for running builds and takes no new ones; rm refuses running builds and the built-in sandbox", async () => {
  const { p } = await pool(["a", "b"], os.availableParallelism());
  try {
    const onA = await p.acquire(
      ["k1", "k2", "k3", "k4", "k5"].find(
        (k) =>
          rendezvousOrder(k, [
            { name: "b", weight: 1 },
            { name: "a", weight: 1 },
          ])[0]?.name === "b",
      ) as string,
      signal(),
    );
    assert.equal(onA.backend, "b");
    const seen: number[] = [];
    let drained = false;
    const drain = p
      .drain("b", signal(), (n) => seen.push(n))
      .then(() => {
        drained = true;
      });
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(drained, false);
    assert.equal(p.list()[1]?.state, "draining");
    for (const k of ["k1", "k2", "k3", "k4", "k5"]) {
      const l = await p.acquire(k, signal());
      assert.equal(l.backend, "a");
      l.release();
    }
    await assert.rejects(p.remove("b"), /running builds: drain it first/);
    onA.release();
    await drain;
    assert.deepEqual(seen, [1]);
    await p.remove("b");
    assert.deepEqual(
      p.list().map((b) => b.name),
      ["a"],
    );
    await assert.rejects(p.remove("a"), /built-in sandbox/);
    await assert.rejects(p.drain("nope", signal()), /no backend named "nope"/);
  } finally {
    await p.close();
  }
});

test("a solve naming a session waits for the session's place; unknown sessions give up", async () => {
  const { p } = await pool(["a", "b"]);
  try {
    const forget = p.expectSession("s1");
    const placed = p.sessionPlacement("s1", signal());
    const lease = await p.acquire("ctx", signal());
    p.bindSession("s1", lease);
    forget();
    assert.equal((await placed)?.backend, lease.backend);
    lease.release();
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("gone")), 30);
    await assert.rejects(p.sessionPlacement("unknown", ac.signal), /gone/);
  } finally {
    await p.close();
  }
});

test("a caller that goes away in the same turn as its wake-up takes no place", async () => {
  const { p } = await pool(["a"]);
  try {
    const held = await p.acquire("x", signal());
    const ac = new AbortController();
    const waiting = p.acquire("y", ac.signal);
    held.release();
    ac.abort(new Error("client gone"));
    await assert.rejects(waiting, /client gone/);
    assert.equal(p.list()[0]?.running, 0);
  } finally {
    await p.close();
  }
});

test("calls of a solve still waiting for its place wait for it, past the wait for unknown refs", async () => {
  const { p } = await pool(["a", "b"]);
  try {
    const forget = p.expectRef("r1");
    const status = p.refPlacement("r1", signal(), 20);
    await new Promise((r) => setTimeout(r, 60));
    const lease = await p.acquire("k", signal());
    p.bindRef("r1", lease.backend);
    forget();
    assert.equal((await status)?.backend, lease.backend);
    lease.release();
    assert.equal(await p.refPlacement("never", signal(), 20), undefined);
  } finally {
    await p.close();
  }
});

test("with no backend up for a while a build fails naming each backend's error; a draining one does not count", async () => {
  const { p, targets } = await pool(["a", "b"], 4);
  try {
    (targets[1] as { healthy: boolean }).healthy = false;
    await until(() => p.list()[1]?.state === "down");
    // a is up but draining: no place anywhere, and nothing up that takes builds.
    const drained = p.drain("a", signal());
    await drained;
    await assert.rejects(p.acquire("k", signal()), /no BuildKit backend is up: .*b: b is gone/);
    p.undrain("a");
    const l = await p.acquire("k", signal());
    assert.equal(l.backend, "a");
    l.release();
  } finally {
    await p.close();
  }
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { rendezvousOrder } from "./rendezvous.js";

const nodes = (names: string[], weight = 1) => names.map((name) => ({ name, weight }));
const keys = Array.from({ length: 3000 }, (_, i) => `project-${i}`);

test("the order is stable and covers every node once", () => {
  const pool = nodes(["a", "b", "c"]);
  for (const k of keys.slice(0, 50)) {
    const first = rendezvousOrder(k, pool).map((n) => n.name);
    assert.deepEqual(
      rendezvousOrder(k, [...pool].reverse()).map((n) => n.name),
      first,
    );
    assert.deepEqual([...first].sort(), ["a", "b", "c"]);
  }
});

test("keys spread evenly over equal weights", () => {
  const pool = nodes(["a", "b", "c"]);
  const counts = new Map<string, number>();
  for (const k of keys) {
    const top = rendezvousOrder(k, pool)[0]?.name as string;
    counts.set(top, (counts.get(top) ?? 0) + 1);
  }
  for (const n of ["a", "b", "c"]) {
    const share = (counts.get(n) ?? 0) / keys.length;
    assert.ok(share > 0.28 && share < 0.39, `${n} got ${share}`);
  }
});

test("removing a node moves only the keys it had", () => {
  const full = nodes(["a", "b", "c", "d"]);
  const without = full.filter((n) => n.name !== "c");
  let moved = 0;
  for (const k of keys) {
    const before = rendezvousOrder(k, full)[0]?.name;
    const after = rendezvousOrder(k, without)[0]?.name;
    if (before !== "c") assert.equal(after, before, k);
    else moved++;
    // The next in the key's order takes over: the spill/failover target is the same node.
    if (before === "c") assert.equal(after, rendezvousOrder(k, full)[1]?.name);
  }
  assert.ok(moved > 0);
});

test("weights scale the share", () => {
  const pool = [
    { name: "big", weight: 3 },
    { name: "small", weight: 1 },
  ];
  let big = 0;
  for (const k of keys) if (rendezvousOrder(k, pool)[0]?.name === "big") big++;
  const share = big / keys.length;
  assert.ok(share > 0.7 && share < 0.8, `big got ${share}`);
});

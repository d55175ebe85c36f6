import assert from "node:assert/strict";
import { test } from "node:test";
import { PlacementBook } from "./placement-book.js";

const signal = () => AbortSignal.timeout(5000);

test("an id never seen gives up after the wait, and leaves no entry behind", async () => {
  const book = new PlacementBook<string>();
  const t0 = Date.now();
  assert.equal(await book.placed("nope", signal(), 40), undefined);
  assert.ok(Date.now() - t0 >= 35);
  // Placed later: found at once (a fresh entry, not a stale one).
  book.place("nope", "b");
  assert.equal(await book.placed("nope", signal(), 40), "b");
});

test("a waiter for an id that turns pending keeps waiting past its deadline, until placed", async () => {
  const book = new PlacementBook<string>();
  const waiting = book.placed("s", signal(), 30);
  const forget = book.expect("s");
  await new Promise((r) => setTimeout(r, 80));
  book.place("s", "a");
  forget();
  assert.equal(await waiting, "a");
});

test("forget() without a place wakes the waiters, who then give up", async () => {
  const book = new PlacementBook<string>();
  const forget = book.expect("s");
  const waiting = book.placed("s", signal(), 30);
  forget();
  assert.equal(await waiting, undefined);
});

test("the unbind of a place drops it (at once, or after its linger)", async () => {
  const book = new PlacementBook<string>();
  book.place("a", "x")();
  assert.equal(await book.placed("a", signal(), 10), undefined);
  const unbind = book.place("r", "y", 40);
  unbind();
  assert.equal(await book.placed("r", signal(), 10), "y", "still known while it lingers");
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(await book.placed("r", signal(), 10), undefined);
});

test("an abort ends the wait with the signal's reason", async () => {
  const book = new PlacementBook<string>();
  book.expect("s");
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error("client gone")), 20);
  await assert.rejects(book.placed("s", ac.signal, 10), /client gone/);
});

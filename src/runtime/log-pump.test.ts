import assert from "node:assert/strict";
import { appendFile, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { LogPump, type Offsets } from "./log-pump.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function fixture() {
  const dir = await mkdtemp(join(tmpdir(), "arca-logpump-"));
  dirs.push(dir);
  const raw = { stdout: join(dir, "stdout.raw"), stderr: join(dir, "stderr.raw") };
  await writeFile(raw.stdout, "");
  await writeFile(raw.stderr, "");
  const json = join(dir, "log.json");
  const saved: Offsets[] = [];
  const pump = (from: Offsets) =>
    new LogPump(
      raw,
      json,
      { ...from },
      (o) => saved.push(o),
      () => {},
    );
  const lines = async () =>
    (await readFile(json, "utf8").catch(() => ""))
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        const e = JSON.parse(l) as { log: string; stream: string };
        return `${e.stream}:${e.log.trimEnd()}`;
      });
  return { raw, json, saved, pump, lines };
}

const START: Offsets = { stdout: 0, stderr: 0, logSize: 0 };

test("a pump that resumes from offsets whose append was never committed neither repeats nor loses lines", async () => {
  const f = await fixture();
  await appendFile(f.raw.stdout, "line 1\nline 2\n");
  await appendFile(f.raw.stderr, "err 1\n");
  const first = f.pump(START);
  await first.drain(false);
  const committed = f.saved.at(-1);
  assert.ok(committed);
  assert.deepEqual({ stdout: committed.stdout, stderr: committed.stderr }, { stdout: 14, stderr: 6 });

  // The next append reaches the log, then the daemon dies before its offsets are saved.
  await appendFile(f.raw.stdout, "line 3\n");
  await first.drain(false);
  const lost = f.saved.pop();
  assert.equal(lost?.stdout, 21, "the probe: this drain did append and commit line 3");
  assert.deepEqual(await f.lines(), ["stdout:line 1", "stdout:line 2", "stderr:err 1", "stdout:line 3"]);

  // More output while no daemon ran; the next daemon starts from the last committed offsets.
  await appendFile(f.raw.stdout, "line 4\n");
  const second = f.pump(committed);
  await second.drain(false);
  assert.deepEqual(await f.lines(), [
    "stdout:line 1",
    "stdout:line 2",
    "stderr:err 1",
    "stdout:line 3",
    "stdout:line 4",
  ]);
  assert.equal(
    f.saved.at(-1)?.logSize,
    (await readFile(f.json)).length,
    "the committed size is the log's size",
  );
});

test("offsets saved before the log size was kept (-1) resume from the log as it is", async () => {
  const f = await fixture();
  await appendFile(f.raw.stdout, "a\n");
  await f.pump(START).drain(false);
  await appendFile(f.raw.stdout, "b\n");
  await f.pump({ stdout: 2, stderr: 0, logSize: -1 }).drain(false);
  assert.deepEqual(await f.lines(), ["stdout:a", "stdout:b"]);
  assert.equal(f.saved.at(-1)?.logSize, (await readFile(f.json)).length);
});

test("reset keeps the log's size, so a pump after it cuts nothing already committed", async () => {
  const f = await fixture();
  await appendFile(f.raw.stdout, "run 1\n");
  const p = f.pump(START);
  await p.reset();
  const afterReset = f.saved.at(-1);
  assert.ok(afterReset);
  assert.deepEqual(afterReset, { stdout: 0, stderr: 0, logSize: (await readFile(f.json)).length });
  await appendFile(f.raw.stdout, "run 2\n");
  await f.pump(afterReset).drain(true);
  assert.deepEqual(await f.lines(), ["stdout:run 1", "stdout:run 2"]);
});

test("a log emptied by hand: the committed size is the file's, so a later cut or failed append never pads it", async () => {
  const f = await fixture();
  await appendFile(f.raw.stdout, "before\n");
  const p = f.pump(START);
  await p.drain(false);
  await truncate(f.json, 0);
  await appendFile(f.raw.stdout, "after\n");
  await p.drain(false);
  const size = (await readFile(f.json)).length;
  assert.equal(f.saved.at(-1)?.logSize, size);
  assert.deepEqual(await f.lines(), ["stdout:after"]);
  // The next daemon finds the log as committed: nothing to cut, nothing to pad.
  await f.pump(f.saved.at(-1) as Offsets).drain(false);
  assert.equal((await readFile(f.json)).length, size);
});

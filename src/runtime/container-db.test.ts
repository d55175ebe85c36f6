import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import Database from "better-sqlite3";
import { ContainerDb } from "./container-db.js";

test("a database from before the log size was kept opens, keeps its rows, and reads it as unknown (-1)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "arca-containerdb-"));
  try {
    const file = join(dir, "containers.db");
    const old = new Database(file);
    old.exec(`CREATE TABLE containers (
      id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, image_id TEXT NOT NULL, created TEXT NOT NULL,
      spec TEXT NOT NULL, process TEXT NOT NULL, status TEXT NOT NULL,
      pid INTEGER NOT NULL DEFAULT 0, pid_start TEXT NOT NULL DEFAULT '',
      monitor_pid INTEGER NOT NULL DEFAULT 0, monitor_start TEXT NOT NULL DEFAULT '',
      exit_code INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',
      started_at TEXT, finished_at TEXT, restart_count INTEGER NOT NULL DEFAULT 0,
      user_stopped INTEGER NOT NULL DEFAULT 0,
      stdout_offset INTEGER NOT NULL DEFAULT 0, stderr_offset INTEGER NOT NULL DEFAULT 0)`);
    old
      .prepare(
        "INSERT INTO containers (id, name, image_id, created, spec, process, status, stdout_offset) VALUES ('c1', 'web', 'sha256:x', 'now', '{}', '{}', 'running', 42)",
      )
      .run();
    old.close();

    const db = new ContainerDb(file);
    const c = db.get("c1");
    assert.equal(c?.name, "web");
    assert.equal(c?.stdoutOffset, 42);
    assert.equal(c?.logSize, -1);
    db.saveLogOffsets("c1", { stdout: 50, stderr: 7, logSize: 1234 });
    assert.deepEqual(
      [db.get("c1")?.stdoutOffset, db.get("c1")?.stderrOffset, db.get("c1")?.logSize],
      [50, 7, 1234],
    );
    db.close();
    // Opening again does not try to add the column twice.
    const again = new ContainerDb(file);
    assert.equal(again.get("c1")?.logSize, 1234);
    // A daemon that does not keep the size (a downgrade) moves the offsets alone: the size no longer counts.
    again.close();
    const older = new Database(file);
    older.prepare("UPDATE containers SET stdout_offset = 90 WHERE id = 'c1'").run();
    older.close();
    const upgraded = new ContainerDb(file);
    assert.equal(upgraded.get("c1")?.logSize, -1);
    upgraded.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

import Database from "better-sqlite3";
import { RuntimeError } from "./errors.js";
import type { ContainerRecord, ContainerSpec, ContainerStatus, ResolvedProcess } from "./types.js";

/** Where the supervising processes are, so a restarted daemon can find and watch them again. */
export interface MonitorInfo {
  /** The `sh` wrapper around the foreground `runc run` (0 when none). */
  monitorPid: number;
  /** Its /proc starttime, to tell it apart from a recycled pid. */
  monitorStart: string;
  pidStart: string;
}

export interface StoredContainer extends ContainerRecord, MonitorInfo {
  stdoutOffset: number;
  stderrOffset: number;
  /**
   * Size of the json log when those offsets were saved; -1 when unknown: a row from before it was
   * kept, or offsets saved since by a daemon that did not keep it (a downgrade).
   */
  logSize: number;
}

interface Row {
  id: string;
  name: string;
  image_id: string;
  created: string;
  spec: string;
  process: string;
  status: ContainerStatus;
  pid: number;
  pid_start: string;
  monitor_pid: number;
  monitor_start: string;
  exit_code: number;
  error: string;
  started_at: string | null;
  finished_at: string | null;
  restart_count: number;
  user_stopped: number;
  stdout_offset: number;
  stderr_offset: number;
  log_commit: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS containers (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  image_id TEXT NOT NULL,
  created TEXT NOT NULL,
  spec TEXT NOT NULL,
  process TEXT NOT NULL,
  status TEXT NOT NULL,
  pid INTEGER NOT NULL DEFAULT 0,
  pid_start TEXT NOT NULL DEFAULT '',
  monitor_pid INTEGER NOT NULL DEFAULT 0,
  monitor_start TEXT NOT NULL DEFAULT '',
  exit_code INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  started_at TEXT,
  finished_at TEXT,
  restart_count INTEGER NOT NULL DEFAULT 0,
  user_stopped INTEGER NOT NULL DEFAULT 0,
  stdout_offset INTEGER NOT NULL DEFAULT 0,
  stderr_offset INTEGER NOT NULL DEFAULT 0,
  log_commit TEXT NOT NULL DEFAULT ''
);`;

/** Columns added after the first release: [name, definition], added to older databases on open. */
const ADDED_COLUMNS: [string, string][] = [["log_commit", "TEXT NOT NULL DEFAULT ''"]];

export type ContainerPatch = Partial<
  Pick<
    StoredContainer,
    | "status"
    | "pid"
    | "pidStart"
    | "monitorPid"
    | "monitorStart"
    | "exitCode"
    | "error"
    | "startedAt"
    | "finishedAt"
    | "restartCount"
    | "userStopped"
  >
>;

const COLUMN: Record<keyof ContainerPatch, string> = {
  status: "status",
  pid: "pid",
  pidStart: "pid_start",
  monitorPid: "monitor_pid",
  monitorStart: "monitor_start",
  exitCode: "exit_code",
  error: "error",
  startedAt: "started_at",
  finishedAt: "finished_at",
  restartCount: "restart_count",
  userStopped: "user_stopped",
};

/** Container metadata in SQLite (WAL): one row per container, updated on every state change. */
export class ContainerDb {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.db.exec(SCHEMA);
    const have = new Set((this.db.pragma("table_info(containers)") as { name: string }[]).map((c) => c.name));
    for (const [name, definition] of ADDED_COLUMNS)
      if (!have.has(name)) this.db.exec(`ALTER TABLE containers ADD COLUMN ${name} ${definition}`);
  }

  close(): void {
    this.db.close();
  }

  insert(c: {
    id: string;
    name: string;
    imageId: string;
    created: string;
    spec: ContainerSpec;
    process: ResolvedProcess;
  }): void {
    try {
      this.db
        .prepare(
          "INSERT INTO containers (id, name, image_id, created, spec, process, status) VALUES (?, ?, ?, ?, ?, ?, 'created')",
        )
        .run(c.id, c.name, c.imageId, c.created, JSON.stringify(c.spec), JSON.stringify(c.process));
    } catch (err) {
      if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE")
        throw new RuntimeError("conflict", `container name "/${c.name}" is already in use`, { cause: err });
      throw err;
    }
  }

  get(id: string): StoredContainer | undefined {
    const row = this.db.prepare("SELECT * FROM containers WHERE id = ?").get(id) as Row | undefined;
    return row && fromRow(row);
  }

  /** Exact ID, exact name (with or without the leading "/"), or unique ID prefix, as Docker resolves. */
  resolve(idOrName: string): StoredContainer | undefined {
    const name = idOrName.startsWith("/") ? idOrName.slice(1) : idOrName;
    const byIdOrName = this.db
      .prepare("SELECT * FROM containers WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1")
      .get(idOrName, name, idOrName) as Row | undefined;
    if (byIdOrName) return fromRow(byIdOrName);
    if (!/^[a-f0-9]{1,64}$/.test(idOrName)) return undefined;
    const rows = this.db
      .prepare("SELECT * FROM containers WHERE substr(id, 1, ?) = ? LIMIT 2")
      .all(idOrName.length, idOrName) as Row[];
    if (rows.length > 1)
      throw new RuntimeError(
        "invalid_spec",
        `multiple containers match ID prefix ${JSON.stringify(idOrName)}`,
      );
    return rows[0] && fromRow(rows[0]);
  }

  list(): StoredContainer[] {
    return (this.db.prepare("SELECT * FROM containers ORDER BY created DESC").all() as Row[]).map(fromRow);
  }

  update(id: string, patch: ContainerPatch): void {
    const keys = Object.keys(patch) as (keyof ContainerPatch)[];
    if (keys.length === 0) return;
    const sets = keys.map((k) => `${COLUMN[k]} = ?`).join(", ");
    const values = keys.map((k) => {
      const v = patch[k];
      return typeof v === "boolean" ? Number(v) : v;
    });
    this.db.prepare(`UPDATE containers SET ${sets} WHERE id = ?`).run(...values, id);
  }

  /**
   * The log pump's progress in one statement. The size is stored as "<stdout> <stderr> <size>" so it
   * counts only beside the offsets it came with (a daemon that does not keep it may save offsets since).
   */
  saveLogOffsets(id: string, o: { stdout: number; stderr: number; logSize: number }): void {
    this.db
      .prepare("UPDATE containers SET stdout_offset = ?, stderr_offset = ?, log_commit = ? WHERE id = ?")
      .run(o.stdout, o.stderr, `${o.stdout} ${o.stderr} ${o.logSize}`, id);
  }

  delete(id: string): void {
    this.db.prepare("DELETE FROM containers WHERE id = ?").run(id);
  }
}

function fromRow(r: Row): StoredContainer {
  return {
    id: r.id,
    name: r.name,
    imageId: r.image_id,
    created: r.created,
    spec: JSON.parse(r.spec) as ContainerSpec,
    process: JSON.parse(r.process) as ResolvedProcess,
    status: r.status,
    pid: r.pid,
    pidStart: r.pid_start,
    monitorPid: r.monitor_pid,
    monitorStart: r.monitor_start,
    exitCode: r.exit_code,
    error: r.error,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    restartCount: r.restart_count,
    userStopped: r.user_stopped !== 0,
    stdoutOffset: r.stdout_offset,
    stderrOffset: r.stderr_offset,
    logSize: committedLogSize(r),
  };
}

/** The saved log size, if the offsets beside it are still the ones it was saved with. */
function committedLogSize(r: Row): number {
  const [stdout, stderr, size] = r.log_commit.split(" ").map(Number);
  return stdout === r.stdout_offset && stderr === r.stderr_offset && Number.isSafeInteger(size)
    ? (size as number)
    : -1;
}

import http from "node:http";
import type { Readable, Writable } from "node:stream";
import type { ExecOptions, ExecProcess } from "../runtime/index.js";
import { errorMessage } from "../util/index.js";
import { type ExecConfig, type ExecRecord, type ExecStore, execInspect } from "./container-exec-store.js";
import { readJsonBody, readUpgradeBody } from "./container-json-body.js";
import { copyFramed, frame, STDERR, STDOUT, streamContentType } from "./container-stream.js";
import type { ApiDeps } from "./deps.js";
import { ApiError, CLIENT_DISCONNECTED, httpStatusFor } from "./errors.js";
import { sendJSON } from "./respond.js";
import type { Router } from "./router.js";
import { sandboxContainer } from "./sandbox-container.js";

/** What dockerd reports for an exec whose process could not be started. */
const EXEC_START_FAILED = 126;

/** POST /containers/{id}/exec, POST /exec/{id}/start (hijacked or plain), GET /exec/{id}/json, POST /exec/{id}/resize. */
export function registerExecRoutes(router: Router, deps: ApiDeps, execs: ExecStore): void {
  router.add("POST", "/containers/{name}/exec", async ({ req, res, params }) => {
    const body = await readJsonBody(req);
    const vm = sandboxContainer(deps, params.name as string)?.inspect();
    const c = vm
      ? { id: vm.Id, name: vm.Name.slice(1), status: vm.State.Running ? "running" : "restarting" }
      : deps.runtime.get(params.name as string);
    if (c.status === "restarting")
      throw new ApiError("conflict", `Container ${c.id} is restarting, wait until the container is running`);
    if (c.status !== "running") throw new ApiError("conflict", `Container ${c.id} is not running`);
    const config = execConfig(body);
    const rec = execs.create(c.id, config);
    deps.events.emit("container", `exec_create: ${config.cmd.join(" ")}`, c.id, {
      execID: rec.id,
      name: c.name,
    });
    sendJSON(res, 201, { Id: rec.id });
  });

  router.add("GET", "/exec/{id}/json", ({ res, params }) => {
    sendJSON(res, 200, execInspect(execs.get(params.id as string)));
  });

  router.add("POST", "/exec/{id}/resize", async ({ res, params, query }) => {
    for (const k of ["h", "w"]) {
      const v = query.get(k) ?? "";
      if (!/^\d+$/.test(v))
        throw new ApiError("invalid_parameter", `strconv.Atoi: parsing ${JSON.stringify(v)}: invalid syntax`);
    }
    // Without a TTY there is nothing to resize; dockerd accepts that too. Answered once applied.
    await execs.get(params.id as string).resize?.(Number(query.get("h")), Number(query.get("w")));
    res.writeHead(200, { "Content-Length": 0 });
    res.end();
  });

  // The plain POST: streams the output as the response body, or starts the process detached.
  router.add("POST", "/exec/{id}/start", async ({ req, res, params, apiVersion, signal }) => {
    const body = await readJsonBody(req);
    const rec = execs.claim(params.id as string);
    if (body.Detach === true) {
      const proc = await startProcess(deps, execs, rec);
      proc.stdin.end();
      void pump(deps, execs, rec, proc, null, null);
      res.writeHead(200, { "Content-Length": 0 });
      res.end();
      return;
    }
    const tty = typeof body.Tty === "boolean" ? body.Tty : rec.config.tty;
    const proc = await startProcess(deps, execs, rec, signal);
    proc.stdin.end();
    res.writeHead(200, { "Content-Type": streamContentType(tty, apiVersion) });
    res.flushHeaders();
    await pump(deps, execs, rec, proc, res, tty);
    res.end();
  });

  // The docker CLI's way (`Connection: Upgrade`, `Upgrade: tcp`): the socket carries stdin and output.
  router.upgrade("POST", "/exec/{id}/start", async ({ req, socket, head, params, apiVersion }) => {
    socket.on("error", () => {});
    let upgraded = false;
    try {
      const body = await readUpgradeBody(req, socket, head);
      const rec = execs.claim(params.id as string);
      const tty = typeof body.Tty === "boolean" ? body.Tty : rec.config.tty;
      if (body.Detach === true) {
        const proc = await startProcess(deps, execs, rec);
        proc.stdin.end();
        void pump(deps, execs, rec, proc, null, null);
        socket.end("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
      }
      // Client gone (the socket fully closed) → the exec'd process is stopped by the runtime.
      const gone = new AbortController();
      socket.once("close", () => gone.abort(CLIENT_DISCONNECTED));
      socket.write(
        `HTTP/1.1 101 UPGRADED\r\nContent-Type: ${streamContentType(tty, apiVersion)}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`,
      );
      upgraded = true;
      let proc: ExecProcess;
      try {
        proc = await startProcess(deps, execs, rec, gone.signal);
      } catch (err) {
        // As dockerd: once upgraded, the CLI only shows what comes through the stream (and exits 126).
        const msg = Buffer.from(`${errorMessage(err)}\r\n`);
        socket.end(tty ? msg : frame(STDOUT, msg));
        return;
      }
      proc.stdin.on("error", () => {});
      if (rec.config.attachStdin) {
        // The client half-closes its side when its stdin ends: that is the process's EOF.
        socket.pipe(proc.stdin);
      } else {
        proc.stdin.end();
        socket.resume();
      }
      await pump(deps, execs, rec, proc, socket, tty);
      socket.unpipe(proc.stdin);
      socket.end();
    } catch (err) {
      if (upgraded) socket.destroy();
      else writeHttpError(socket, err);
    }
  });
}

function execConfig(body: Record<string, unknown>): ExecConfig {
  const cmd = strings(body.Cmd, "Cmd");
  if (!cmd.length) throw new ApiError("invalid_parameter", "No exec command specified");
  // Containers here (the BuildKit sandbox) are deliberately not privileged: no process in them gets more.
  if (body.Privileged === true)
    throw new ApiError(
      "invalid_parameter",
      "privileged exec is not supported by Arca: its containers run with least privilege",
    );
  const str = (k: string) => {
    const v = body[k];
    if (v === undefined || v === null) return "";
    if (typeof v !== "string") throw new ApiError("invalid_parameter", `${k} must be a string`);
    return v;
  };
  return {
    cmd,
    env: strings(body.Env, "Env"),
    user: str("User"),
    workingDir: str("WorkingDir"),
    tty: body.Tty === true,
    attachStdin: body.AttachStdin === true,
    attachStdout: body.AttachStdout === true,
    attachStderr: body.AttachStderr === true,
    privileged: body.Privileged === true,
    detachKeys: str("DetachKeys"),
    consoleSize: consoleSize(body.ConsoleSize),
  };
}

function consoleSize(v: unknown): [number, number] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length !== 2 || v.some((n) => !Number.isInteger(n) || n < 0 || n > 0xffff))
    throw new ApiError("invalid_parameter", "ConsoleSize must be [height, width]");
  return [v[0] as number, v[1] as number];
}

function strings(v: unknown, name: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string"))
    throw new ApiError("invalid_parameter", `${name} must be an array of strings`);
  return v as string[];
}

async function startProcess(
  deps: ApiDeps,
  execs: ExecStore,
  rec: ExecRecord,
  signal?: AbortSignal,
): Promise<ExecProcess> {
  try {
    const vm = deps.buildkit.container;
    const exec =
      vm && vm.inspect().Id === rec.containerId
        ? vm.exec
        : (o: ExecOptions) => deps.runtime.exec(rec.containerId, o);
    const proc = await exec({
      cmd: rec.config.cmd,
      env: rec.config.env,
      user: rec.config.user || undefined,
      workingDir: rec.config.workingDir || undefined,
      tty: rec.config.tty,
      consoleSize: rec.config.consoleSize?.every((n) => n > 0) ? rec.config.consoleSize : undefined,
      signal,
    });
    if (proc.resize) {
      rec.resize = proc.resize;
      void proc.exitCode
        .finally(() => {
          rec.resize = undefined;
        })
        .catch(() => {});
    }
    deps.events.emit("container", `exec_start: ${rec.config.cmd.join(" ")}`, rec.containerId, {
      execID: rec.id,
    });
    return proc;
  } catch (err) {
    execs.finish(rec, EXEC_START_FAILED);
    throw err;
  }
}

/**
 * Copies the process's output to `out` (framed unless tty; discarded when not attached or out is
 * null), then records the exit code: the docker CLI reads it (GET /exec/{id}/json) as soon as the
 * stream ends, so it is recorded before the caller closes the stream.
 */
async function pump(
  deps: ApiDeps,
  execs: ExecStore,
  rec: ExecRecord,
  proc: ExecProcess,
  out: Writable | null,
  tty: boolean | null,
): Promise<void> {
  const copy = (src: Readable, attached: boolean, stream: typeof STDOUT) => {
    if (!out || !attached) {
      src.resume();
      return new Promise<void>((resolve) => src.once("close", resolve));
    }
    return copyFramed(src, out, tty ? null : stream);
  };
  let code: number;
  try {
    [code] = await Promise.all([
      proc.exitCode,
      copy(proc.stdout, rec.config.attachStdout, STDOUT),
      copy(proc.stderr, rec.config.attachStderr, STDERR),
    ]);
  } catch (err) {
    // As dockerd: the failure goes to the client's stdout.
    const msg = Buffer.from(`${errorMessage(err)}\r\n`);
    if (out && !out.destroyed) out.write(tty ? msg : frame(STDOUT, msg));
    code = EXEC_START_FAILED;
  }
  execs.finish(rec, code);
  deps.events.emit("container", "exec_die", rec.containerId, { execID: rec.id, exitCode: String(code) });
}

/** An error before the upgrade: a plain HTTP response with dockerd's `{"message"}` body. */
function writeHttpError(socket: import("node:stream").Duplex, err: unknown): void {
  if (socket.destroyed) return;
  const status = httpStatusFor(err);
  const body = JSON.stringify({ message: errorMessage(err) });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Error"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

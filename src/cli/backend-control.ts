import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import { BackendError, type BackendPool, type BackendView } from "../backends/index.js";
import { closeHttpServer, listen } from "../transport/index.js";
import { errorMessage } from "../util/index.js";

/**
 * `arca backend ls|drain|undrain|rm` talk to the daemon here: a unix socket in its private run dir
 * (mode 0600, root's), not the Docker API, which other users of the API socket reach.
 *   GET /backends                      → [BackendView]
 *   POST /backends/NAME/drain          → JSON lines {"running": n}… then {"drained": true}
 *   POST /backends/NAME/undrain        → {}
 *   DELETE /backends/NAME              → {}
 */
export async function serveBackendControl(
  pool: BackendPool,
  socketPath: string,
): Promise<{ close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    handle(pool, req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.end(`${JSON.stringify({ message: errorMessage(err) })}\n`);
        return;
      }
      const status = !(err instanceof BackendError) ? 500 : err.code === "unknown_backend" ? 404 : 409;
      res
        .writeHead(status, { "Content-Type": "application/json" })
        .end(JSON.stringify({ message: errorMessage(err) }));
    });
  });
  await listen(`unix://${socketPath}`, server, { socketMode: 0o600 });
  return {
    close: () => closeHttpServer(server),
  };
}

async function handle(pool: BackendPool, req: IncomingMessage, res: ServerResponse): Promise<void> {
  req.resume();
  const url = new URL(req.url ?? "/", "http://arca");
  const [, root, name, verb] = url.pathname.split("/").map(decodeURIComponent);
  if (root !== "backends") return void res.writeHead(404).end();
  if (req.method === "GET" && name === undefined) {
    res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(pool.list()));
    return;
  }
  if (req.method === "POST" && name && verb === "drain") {
    const gone = new AbortController();
    res.once("close", () => gone.abort(new Error("client gone")));
    if (!pool.list().some((b) => b.name === name))
      throw new BackendError("unknown_backend", `no backend named "${name}"`);
    res.writeHead(200, { "Content-Type": "application/x-ndjson" });
    await pool.drain(name, gone.signal, (running) => res.write(`${JSON.stringify({ running })}\n`));
    res.end(`${JSON.stringify({ drained: true })}\n`);
    return;
  }
  if (req.method === "POST" && name && verb === "undrain") {
    pool.undrain(name);
    res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
    return;
  }
  if (req.method === "DELETE" && name && verb === undefined) {
    await pool.remove(name);
    res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
    return;
  }
  res.writeHead(404).end();
}

/** One call to the daemon's control socket; `onLine` hears each JSON line of a streamed answer. */
export function callBackendControl(
  socketPath: string,
  method: string,
  urlPath: string,
  onLine?: (value: unknown) => void,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path: urlPath }, (res) => {
      let buf = "";
      let last: unknown;
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        buf += c;
        if (!onLine) return;
        let i = buf.indexOf("\n");
        while (i >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line) {
            last = JSON.parse(line);
            onLine(last);
          }
          i = buf.indexOf("\n");
        }
      });
      res.on("end", () => {
        const body = buf ? (JSON.parse(buf) as unknown) : last;
        if ((res.statusCode ?? 500) >= 400)
          reject(new Error((body as { message?: string })?.message ?? `HTTP ${res.statusCode}`));
        else if (body && typeof body === "object" && "message" in body)
          reject(new Error(String((body as { message: unknown }).message)));
        else resolve(body);
      });
    });
    req.on("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "ENOENT" || err.code === "ECONNREFUSED"
          ? new Error(`no Arca daemon answers on ${socketPath} (is it running with this --data-root?)`)
          : err,
      ),
    );
    req.end();
  });
}

/** `arca backend ls` lines. */
export function formatBackendList(list: BackendView[]): string {
  const rows = [["NAME", "ADDRESS", "STATE", "RUNNING", "DONE", "MAX", "WEIGHT"]];
  for (const b of list)
    rows.push([
      b.name,
      b.address,
      b.state,
      String(b.running),
      String(b.done),
      String(b.maxBuilds),
      String(b.weight),
    ]);
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  const lines = rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("   ")
      .trimEnd(),
  );
  for (const b of list) {
    if (b.lastError) lines.push(`${b.name}: ${b.lastError}`);
    for (const l of b.lacks) lines.push(`${b.name}: ${l}`);
  }
  return `${lines.join("\n")}\n`;
}

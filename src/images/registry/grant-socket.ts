import { createServer, request, type Server } from "node:http";
import { closeHttpServer, listen } from "../../transport/index.js";
import { ImageError } from "../errors.js";
import type { PushGrant } from "./push-grants.js";
import type { RegistryServer } from "./server.js";

/** Grant requests are a few names. */
const BODY_LIMIT = 64 << 10;

/**
 * The daemon's registry endpoint refuses pushes no build registered. `arca build` drives BuildKit itself,
 * so it asks for its grant here: a unix socket in the daemon's private run dir (never the sandbox's
 * channel). `POST /grants {"names": [...]}` answers `{"danglingPath"}` and keeps the response open; the
 * grant lasts until that connection closes.
 */
export async function serveGrantSocket(
  registry: Pick<RegistryServer, "allowPush">,
  socketPath: string,
  /** The listener `arca build`'s BuildKit pushes through (its grants are good only there). */
  scope?: string,
): Promise<{ close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/grants") {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) req.destroy();
      else chunks.push(c);
    });
    req.on("end", () => {
      let names: unknown;
      try {
        names = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { names?: unknown }).names;
        if (!Array.isArray(names) || !names.every((n) => typeof n === "string")) throw new Error("names");
      } catch {
        res.writeHead(400, { "Content-Type": "application/json" }).end('{"message":"bad grant request"}');
        return;
      }
      const ended = new AbortController();
      res.once("close", () => ended.abort());
      let grant: PushGrant;
      try {
        grant = registry.allowPush(names as string[], ended.signal, scope);
      } catch (err) {
        res.writeHead(400, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ message: (err as Error).message }));
        return;
      }
      res.writeHead(200, { "Content-Type": "application/json" });
      res.write(`${JSON.stringify({ danglingPath: grant.danglingPath })}\n`);
    });
  });
  await listen(`unix://${socketPath}`, server, { socketMode: 0o600 });
  return {
    close: () => closeHttpServer(server),
  };
}

/** Asks a daemon's grant socket for a push grant; it holds until release() (or the signal aborts). */
export function requestPushGrant(
  socketPath: string,
  names: string[],
  signal?: AbortSignal,
): Promise<PushGrant> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: "POST", path: "/grants", signal }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      const onData = (d: string) => {
        text += d;
        const nl = text.indexOf("\n");
        if (res.statusCode === 200 && nl >= 0) {
          res.off("data", onData);
          const { danglingPath } = JSON.parse(text.slice(0, nl)) as { danglingPath: string };
          resolve({ danglingPath, release: () => req.destroy() });
        }
      };
      res.on("data", onData);
      res.on("end", () =>
        reject(new ImageError("invalid_reference", `push grant refused: ${text.trim() || res.statusCode}`)),
      );
    });
    req.on("error", (err) =>
      reject(new ImageError("store_failed", `daemon's push grant socket: ${err.message}`, { cause: err })),
    );
    req.end(JSON.stringify({ names }));
  });
}

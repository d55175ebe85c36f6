import type { ServerResponse } from "node:http";
import {
  familiarString,
  formatReference,
  type Platform,
  parseReference,
  type Reference,
} from "../images/index.js";
import {
  credentialsFrom,
  decodeRegistryAuth,
  type ProgressMessage,
  RegistryError,
} from "../registry/index.js";
import { errorMessage, findArcaError } from "../util/index.js";
import { readJsonBody } from "./container-json-body.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { sendError, sendJSON } from "./respond.js";
import type { RequestContext, Router } from "./router.js";

/**
 * A JSON-lines progress stream whose head goes out with the first message,
 * as dockerd's: a failure before anything was sent is an HTTP error status
 * with {"message"}; after, it is the stream's last line (errorDetail).
 */
function lazyStream(res: ServerResponse) {
  let started = false;
  return {
    send(msg: ProgressMessage) {
      if (!started) {
        res.writeHead(200, { "Content-Type": "application/json" });
        started = true;
      }
      if (!res.writableEnded && !res.destroyed) res.write(`${JSON.stringify(msg)}\r\n`);
    },
    fail(err: unknown) {
      if (!started) return sendError(res, err);
      const message = errorMessage(err);
      this.send({ errorDetail: { message }, error: message });
      res.end();
    },
    end() {
      if (!started) res.writeHead(200, { "Content-Type": "application/json" });
      res.end();
    },
  };
}

function registry(deps: ApiDeps) {
  if (!deps.registry) throw new ApiError("unavailable", "this daemon has no registry client");
  return deps.registry;
}

function parsePlatform(value: string | null): Platform | undefined {
  if (!value) return undefined;
  const [os, architecture, variant] = value.split("/");
  if (!os || !architecture || value.split("/").length > 3) {
    throw new ApiError(
      "invalid_parameter",
      `invalid platform ${JSON.stringify(value)}: expected os/arch[/variant]`,
    );
  }
  return { os, architecture, ...(variant ? { variant } : {}) };
}

/** POST /images/create?fromImage=…&tag=…&platform=… (docker pull). */
export async function pullImage(deps: ApiDeps, { req, res, query, signal }: RequestContext): Promise<void> {
  const from = query.get("fromImage") ?? "";
  const tag = query.get("tag") ?? "";
  let base: Reference;
  try {
    base = parseReference(from.replace(/:$/, ""));
  } catch (err) {
    throw new ApiError("invalid_parameter", errorMessage(err), { cause: err });
  }
  if (!tag && !base.tag && !base.digest) {
    throw new RegistryError(
      "unsupported",
      `pulling every tag of ${familiarString(base)} (docker pull --all-tags) is not supported by Arca: name a tag or digest`,
    );
  }
  const isDigest = tag.includes(":");
  const ref: Reference = {
    domain: base.domain,
    path: base.path,
    ...(isDigest
      ? { digest: tag }
      : tag
        ? { tag }
        : base.digest
          ? { digest: base.digest }
          : { tag: base.tag as string }),
  };
  try {
    parseReference(formatReference(ref));
  } catch (err) {
    throw new ApiError("invalid_parameter", errorMessage(err), { cause: err });
  }
  const platform = parsePlatform(query.get("platform"));
  const creds = decodeRegistryAuth(req.headers["x-registry-auth"] as string | undefined);
  const out = lazyStream(res);
  try {
    await registry(deps).pull({
      ref,
      creds,
      progress: (m) => out.send(m),
      signal,
      ...(platform ? { platform } : {}),
    });
    out.end();
  } catch (err) {
    out.fail(err);
  }
}

/** POST /images/{name}/push?tag=… (docker push; no tag: every tag of the repository, as dockerd). */
export async function pushImage(
  deps: ApiDeps,
  { req, res, params, query, signal }: RequestContext,
): Promise<void> {
  const name = params.name as string;
  const tag = query.get("tag") ?? "";
  let base: Reference;
  try {
    base = parseReference(name);
  } catch (err) {
    throw new ApiError("invalid_parameter", errorMessage(err), { cause: err });
  }
  const repo = formatReference({ domain: base.domain, path: base.path });
  const tags = tag ? [tag] : base.tag ? [base.tag] : deps.store.tagsOf(repo);
  for (const t of tags) {
    try {
      deps.store.resolve(`${repo}:${t}`);
    } catch (err) {
      if (findArcaError(err)?.kind === "not_found")
        throw new ApiError(
          "not_found",
          `An image does not exist locally with the tag: ${familiarString({ ...base, tag: t })}`,
        );
      throw err;
    }
  }
  if (tags.length === 0)
    throw new ApiError("not_found", `An image does not exist locally with the tag: ${familiarString(base)}`);
  const creds = decodeRegistryAuth(req.headers["x-registry-auth"] as string | undefined);
  const out = lazyStream(res);
  try {
    for (const t of tags) {
      await registry(deps).push({
        ref: { domain: base.domain, path: base.path, tag: t },
        creds,
        progress: (m) => out.send(m),
        signal,
      });
    }
    out.end();
  } catch (err) {
    out.fail(err);
  }
}

/** POST /auth (docker login): the credentials are checked against the registry. */
export function registerAuthRoute(router: Router, deps: ApiDeps): void {
  router.add("POST", "/auth", async ({ req, res, signal }) => {
    const creds = credentialsFrom(await readJsonBody(req));
    const { identityToken } = await registry(deps).login(creds, signal);
    sendJSON(res, 200, {
      Status: "Login Succeeded",
      ...(identityToken ? { IdentityToken: identityToken } : {}),
    });
  });
}

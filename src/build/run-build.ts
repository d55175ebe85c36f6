import { createHash } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import {
  type BuildSource,
  build,
  type ControlClient,
  mapStatusText,
  type SourceFS,
} from "../buildkit/index.js";
import type { EgressProxy } from "../egress/index.js";
import { familiarName, type PushGrant, storeExportText } from "../images/index.js";
import { noSpaceMessage, ownedTempName } from "../util/index.js";
import { type BuildEgressGrant, openBuildEgress } from "./build-egress.js";
import type { BuildJobs } from "./build-jobs.js";
import { BuildMemo, type MemoImages, type MemoizedBuild, ProgressRecorder } from "./build-memo.js";
import type { BuildParams } from "./build-params.js";
import { buildTempDir } from "./build-temps.js";
import { ClassicOutput } from "./classic-output.js";
import { type ContextArchive, contextRelativePath, spoolContext } from "./context-archive.js";
import { BuildError } from "./errors.js";
import { buildFailure } from "./failure-message.js";
import { type EmitMessage, errorMessageLine, type JsonMessage } from "./json-message.js";
import { imageIdMessage, traceMessage } from "./trace-output.js";

export interface ImageBuildDeps {
  dataRoot: string;
  /**
   * A place on a BuildKit backend for the build (waits while backends start or are full): by the
   * build's key, or on the backend of the client session it reads its context from.
   */
  lease: (route: BuildRoute, signal: AbortSignal) => Promise<BuildLease>;
  /** Lets the registry endpoint (the listener of `scope`) accept this build's pushes (its tags) until released. */
  allowPush: (names: string[], signal: AbortSignal, scope?: string) => PushGrant;
  jobs: BuildJobs;
  /** Most bytes a context archive may take once decompressed (--max-context-size); default no cap. */
  maxContextSize?: number;
  /** The daemon's egress proxy: RUN steps on the step network reach it with a credential of their build. */
  egress?: EgressProxy;
  /** Image ID for a reference, when the store has it (printed after FROM in classic output). */
  imageIdFor?: (ref: string) => string | undefined;
  /** Repeats of unchanged builds answered from memory (see BuildMemo), with the store they are checked against. */
  memo?: { builds: BuildMemo; images: MemoImages & { tag(name: string, manifestDigest: string): void } };
}

/** Where a build goes: by its key (context, target, platform), or where its client session is. */
export type BuildRoute = { key: string; tags: string[] } | { session: string; tags: string[] };

/** A build's BuildKit, held until release(). */
export interface BuildLease {
  client: ControlClient;
  /** Registry endpoint as this buildkitd reaches it (for the image exporter's push into the store). */
  registryHost: string;
  /** RUN steps reach the daemon's egress proxy (a local sandbox); else they use the backend's network. */
  stepEgress: boolean;
  /** Named in a failed build's error when there is more than one backend. */
  backend?: string;
  /** The registry listener the backend pushes through (its push grant is good only there). */
  pushScope?: string;
  release(opts?: { error?: unknown }): void;
}

export interface ImageBuildRequest {
  params: BuildParams;
  /** The request body: the context archive. */
  body: Readable;
  apiVersion: string;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  /** Starts the 200 JSON stream (called once the context is in place); returns its line writer. */
  startOutput: () => EmitMessage;
}

export interface ImageBuildOutcome {
  imageId?: string;
  /** Set when the build failed after the stream started (the error is in the stream). */
  error?: string;
}

/** With q=1, dockerd buffers everything and prints it only on failure; keep the tail, not all of it. */
const QUIET_BUFFER_LIMIT = 4 << 20;

function atLeast(v: string, min: string): boolean {
  const [a1 = 0, a2 = 0] = v.split(".").map(Number);
  const [b1 = 0, b2 = 0] = min.split(".").map(Number);
  return a1 - b1 > 0 || (a1 === b1 && a2 >= b2);
}

function checkRemote(remote: string): void {
  // client-session: the context comes from the client's own session (parseBuildParams allows it with version=2 only).
  if (remote === "" || remote === "client-session") return;
  if (remote === "upload-request") {
    throw new BuildError(
      "unsupported",
      `remote ${JSON.stringify(remote)} is not supported by POST /build here: send the context as the request body (or use buildx, which talks to /grpc)`,
    );
  }
  throw new BuildError(
    "unsupported",
    `remote build contexts are not supported (${remote}): the build sandbox has no network; fetch the context on the client and send it as the request body`,
  );
}

/**
 * POST /build: indexes the context archive (its bytes spooled to one temp file), runs the Dockerfile
 * build on BuildKit into the image store and streams classic (v1) or BuildKit
 * trace (v2) output. Errors before the stream starts are thrown (the caller
 * answers with a status); later ones go into the stream.
 */
export async function runImageBuild(
  deps: ImageBuildDeps,
  req: ImageBuildRequest,
): Promise<ImageBuildOutcome> {
  const { params } = req;
  checkRemote(params.remote);
  if (params.remote === "client-session") return await runSessionBuild(deps, req);
  const dockerfileRel = contextRelativePath(params.dockerfile, "dockerfile");
  if (dockerfileRel === "")
    throw new BuildError("invalid_parameter", "the dockerfile parameter names no file");
  const tmpRoot = buildTempDir(deps.dataRoot);
  await mkdir(tmpRoot, { recursive: true, mode: 0o700 });
  const spool = path.join(tmpRoot, ownedTempName("build-", ".spool"));
  const cancel = new AbortController();
  const signal = AbortSignal.any([req.signal, cancel.signal]);
  const unregister = params.buildId ? deps.jobs.register(params.buildId, cancel) : () => {};
  let archive: Awaited<ReturnType<typeof spoolContext>> | undefined;
  const sharedKey = classicSharedKey(params);
  const kept = deps.memo?.builds.contexts;
  try {
    const base = kept?.take(sharedKey);
    try {
      archive = await spoolContext(req.body, spool, signal, { maxBytes: deps.maxContextSize, base });
    } catch (err) {
      if (isDiskFull(err)) {
        // The disk may be full of kept uploads: the next try gets their room.
        kept?.clear();
        void base?.close().catch(() => {});
      } else if (base && kept) {
        // A failed upload leaves the project's last one what it was.
        void kept.keep(sharedKey, base, keptLabel(params)).catch(() => {});
      }
      throw err;
    }
    // What the new upload reused from it, it holds itself.
    void base?.close().catch(() => {});
    if (params.version === "1" && !archive.has(dockerfileRel)) {
      throw new BuildError("rejected", `Cannot locate specified Dockerfile: ${params.dockerfile}`);
    }
    const memoKey = deps.memo && BuildMemo.keyFor(params, archive.digest);
    const hit = memoKey ? deps.memo?.builds.get(memoKey, deps.memo.images) : undefined;
    if (archive.skippedDevices.length && !params.quiet) req = withNotice(req, skippedDevicesNotice(archive));
    // Classic output numbers and prints the Dockerfile's instructions, as dockerd does.
    const dockerfileText = params.version === "1" ? readSmallFile(archive.fs, dockerfileRel) : undefined;
    if (hit) return replayBuild(deps, req, hit, dockerfileText);
    return await streamBuild(
      deps,
      req,
      { contextFS: archive.fs, dockerfile: dockerfileRel, sharedKey },
      { key: routeKey(sharedKey, params), tags: params.tags },
      signal,
      memoKey,
      dockerfileText,
    );
  } finally {
    unregister();
    // Kept for the project's next upload, or deleted after the client has its answer (~0.13 s for
    // 512 MiB here); a spool that cannot be deleted is swept at the next daemon start (it carries this pid).
    if (archive && kept) void kept.keep(sharedKey, archive, keptLabel(params)).catch(() => {});
    else void archive?.close().catch(() => {});
  }
}

function isDiskFull(err: unknown): boolean {
  return (err instanceof BuildError && err.code === "spool_failed") || noSpaceMessage(err) !== undefined;
}

/** The build's output starts with this line (a warning the client should see). */
function withNotice(req: ImageBuildRequest, line: string): ImageBuildRequest {
  return {
    ...req,
    startOutput: () => {
      const emit = req.startOutput();
      emit({ stream: `${line}\n` });
      return emit;
    },
  };
}

function skippedDevicesNotice(archive: ContextArchive): string {
  const names = archive.skippedDevices;
  const shown = names.slice(0, 5).join(", ") + (names.length > 5 ? `, and ${names.length - 5} more` : "");
  return `[WARNING]: device nodes in the build context were left out (no device can be created in the build sandbox's user namespace): ${shown}`;
}

/**
 * remote=client-session: BuildKit reads the "context" and "dockerfile" local
 * dirs from the session the client opened with POST /session; any request
 * body is ignored (as dockerd does).
 */
async function runSessionBuild(deps: ImageBuildDeps, req: ImageBuildRequest): Promise<ImageBuildOutcome> {
  const { params } = req;
  if (!params.session) {
    throw new BuildError("invalid_parameter", 'remote "client-session" needs the session parameter');
  }
  req.body.resume();
  const cancel = new AbortController();
  const signal = AbortSignal.any([req.signal, cancel.signal]);
  const unregister = params.buildId ? deps.jobs.register(params.buildId, cancel) : () => {};
  try {
    return await streamBuild(
      deps,
      req,
      { session: params.session, dockerfile: params.dockerfile },
      { session: params.session, tags: params.tags },
      signal,
    );
  } finally {
    unregister();
  }
}

async function streamBuild(
  deps: ImageBuildDeps,
  req: ImageBuildRequest,
  source: BuildSource & { sharedKey?: string },
  route: BuildRoute,
  signal: AbortSignal,
  memoKey?: string,
  dockerfileText?: string,
): Promise<ImageBuildOutcome> {
  const { params } = req;
  const out = outputWriter(req.startOutput(), params.quiet);
  const classicMode = params.version === "1";
  const classic = classicMode
    ? new ClassicOutput(out.emit, {
        imageIdFor: deps.imageIdFor,
        dockerfile: dockerfileText,
        target: params.target,
        labels: params.labels,
      })
    : undefined;
  const recorder = memoKey ? new ProgressRecorder() : undefined;
  let grant: PushGrant | undefined;
  let egress: BuildEgressGrant | undefined;
  let lease: BuildLease | undefined;
  let failure: unknown;
  const say = (line: string) => out.emit({ stream: `${line}\n` });
  // The summary goes before the closing lines: clients stop reading at an error.
  const closeEgress = (print: boolean, failed = false) => {
    const summary = egress?.finish({ failed });
    egress = undefined;
    if (summary && print) say(summary);
  };
  try {
    lease = await deps.lease(route, signal);
    const { client, registryHost } = lease;
    grant = deps.allowPush(params.tags, signal, lease.pushScope);
    // A remote backend's steps have its own network: no credential for a proxy they cannot reach.
    if (deps.egress && params.network === "sandbox" && lease.stepEgress)
      egress = openBuildEgress(deps.egress, params.tags, say);
    const result = await build({
      client,
      ...source,
      target: params.target,
      buildArgs: params.buildArgs,
      labels: params.labels,
      noCache: params.noCache,
      platform: params.platform,
      pull: params.pull,
      network: params.network,
      stepProxy: egress?.stepProxy,
      addHosts: params.extraHosts,
      shmSize: params.shmSize,
      ulimits: params.ulimits,
      tags: params.tags,
      outputs: [{ type: "image", attrs: params.exporterAttrs }],
      imageStore: { registryHost, danglingPath: grant.danglingPath },
      credentials: params.credentials,
      signal,
      onProgress: (raw) => {
        // The image exporter's push lines name the image, not the registry endpoint it goes through.
        const s = mapStatusText(raw, (t) => storeExportText(registryHost, t, true));
        recorder?.add(s);
        if (classic) classic.update(s);
        else out.emit(traceMessage(s));
      },
    });
    classic?.finish({ imageId: result.imageId });
    const imageId = result.imageId;
    if (!imageId) throw new BuildError("rejected", "missing image id");
    if (memoKey && recorder && result.imageDigest && deps.memo) {
      remember(deps.memo, memoKey, recorder, imageId, result.imageDigest);
    }
    closeEgress(true);
    succeed(out, classic, req, imageId);
    return { imageId };
  } catch (err) {
    failure = err;
    classic?.finish({ failed: true });
    closeEgress(true, true);
    const f = buildFailure(err, classicMode);
    const message =
      lease?.backend && f.code === undefined
        ? `${f.message} (BuildKit backend "${lease.backend}")`
        : f.message;
    out.failed(errorMessageLine(message, f.code));
    return { error: message };
  } finally {
    lease?.release(failure === undefined ? {} : { error: failure });
    grant?.release();
    closeEgress(false);
  }
}

function remember(
  memo: NonNullable<ImageBuildDeps["memo"]>,
  key: string,
  recorder: ProgressRecorder,
  imageId: string,
  manifestDigest: string,
): void {
  const bases: MemoizedBuild["bases"] = [];
  for (const ref of recorder.baseRefs()) {
    const digest = memo.images.resolve(ref);
    // A base the store cannot vouch for: never answer this build from memory.
    if (!digest) return;
    bases.push({ ref, digest });
  }
  memo.builds.set(key, { imageId, manifestDigest, bases, progress: recorder.cachedRun() });
}

/** An unchanged repeat: the remembered steps as cached, the tags pointed at the remembered image. */
function replayBuild(
  deps: ImageBuildDeps,
  req: ImageBuildRequest,
  hit: MemoizedBuild,
  dockerfileText?: string,
): ImageBuildOutcome {
  const { params } = req;
  for (const t of params.tags) deps.memo?.images.tag(t, hit.manifestDigest);
  const out = outputWriter(req.startOutput(), params.quiet);
  if (params.version === "1") {
    const classic = new ClassicOutput(out.emit, {
      imageIdFor: deps.imageIdFor,
      dockerfile: dockerfileText,
      target: params.target,
      labels: params.labels,
    });
    classic.update(hit.progress);
    classic.finish({ imageId: hit.imageId });
    succeed(out, classic, req, hit.imageId);
  } else {
    out.emit(traceMessage(hit.progress));
    succeed(out, undefined, req, hit.imageId);
  }
  return { imageId: hit.imageId };
}

/** The closing lines of a successful build, classic or BuildKit style. */
function succeed(
  out: ReturnType<typeof outputWriter>,
  classic: ClassicOutput | undefined,
  req: ImageBuildRequest,
  imageId: string,
): void {
  if (classic) {
    if (atLeast(req.apiVersion, "1.30")) out.emit({ aux: { ID: imageId } });
    out.emit({ stream: `Successfully built ${imageId.replace(/^sha256:/, "").slice(0, 12)}\n` });
    for (const t of req.params.tags) out.emit({ stream: `Successfully tagged ${familiarName(t)}\n` });
  } else {
    out.emit(imageIdMessage(imageId));
  }
  out.succeeded(imageId);
}

function outputWriter(
  emit: EmitMessage,
  quiet: boolean,
): { emit: EmitMessage; succeeded: (id: string) => void; failed: (m: JsonMessage) => void } {
  if (!quiet) return { emit, succeeded: () => {}, failed: emit };
  const held: { msg: JsonMessage; size: number }[] = [];
  let size = 0;
  return {
    emit(msg) {
      const n = JSON.stringify(msg).length;
      held.push({ msg, size: n });
      size += n;
      while (size > QUIET_BUFFER_LIMIT && held.length > 1) size -= (held.shift() as { size: number }).size;
    },
    succeeded: (id) => emit({ stream: `${id}\n` }),
    failed(m) {
      for (const h of held) emit(h.msg);
      emit(m);
    },
  };
}

/** The pool's routing key of a build: its context's key plus the target and platform it builds. */
function routeKey(sharedKey: string, params: { target?: string; platform?: string }): string {
  return JSON.stringify([sharedKey, params.target ?? "", params.platform ?? ""]);
}

/**
 * Each POST /build unpacks into a fresh temp dir, so a path-based key would make every build send the
 * whole context again. Keyed by what identifies the project instead (tags, Dockerfile, target), a rebuild
 * sends only what changed: the archive's mtimes are kept when unpacking.
 */
function classicSharedKey(params: { tags: string[]; dockerfile: string; target?: string }): string {
  const id = JSON.stringify(["classic", [...params.tags].sort(), params.dockerfile, params.target ?? ""]);
  return createHash("sha256").update(id).digest("hex").slice(0, 32);
}

/** The project a kept upload belongs to, as build cache usage names it. */
function keptLabel(params: { tags: string[]; dockerfile: string; target?: string }): string {
  const what = params.tags.length ? params.tags.map(familiarName).join(", ") : "untagged build";
  return `${what} (${params.dockerfile}${params.target ? `, target ${params.target}` : ""})`;
}

/** A context file's text when it is a small regular file (the Dockerfile), else undefined. */
function readSmallFile(fs: SourceFS, rel: string): string | undefined {
  try {
    if (fs.lstat(rel).size > 1 << 20) return undefined;
    return fs.readFile(rel).toString("utf8");
  } catch {
    return undefined;
  }
}

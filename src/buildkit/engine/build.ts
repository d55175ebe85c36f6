import path from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { DANGLING_PATH, pushNameFor } from "../../images/index.js";
import { connectWithBackoff, parseDialAddress } from "../../transport/index.js";
import { abortReason } from "../../util/index.js";
import { type ControlClient, createControlClient } from "../client/control-client.js";
import { BuildKitError, LOST_BUILDKIT } from "../errors.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { Secrets } from "../gen/moby/buildkit/secrets/v1/secrets_pb.js";
import {
  type ExporterSchema,
  SolveRequestSchema,
  type StatusResponse,
} from "../gen/moby/buildkit/v1/control_pb.js";
import { Auth } from "../gen/moby/filesync/v1/auth_pb.js";
import type { Attachable } from "../session/attachable.js";
import { attachable } from "../session/attachable.js";
import { createAuthService } from "../session/auth/index.js";
import { createFileSendService, type ExportTarget, FileSendRaw } from "../session/filesend/index.js";
import {
  createFileSyncService,
  createTransferStats,
  type LocalDir,
  type SourceFS,
  subSourceFS,
  type TransferStats,
} from "../session/filesync/index.js";
import { createHealthService } from "../session/health.js";
import { rawFileSyncAttachable } from "../session/raw-file-sync.js";
import { createSecretsService, type SecretSource } from "../session/secrets/index.js";
import { newId, type Session, sharedKeyFor, startSession } from "../session/session.js";
import { outputCompression, storeExportCompression } from "./export-compression.js";
import { dockerfileLocation, type FrontendInputs, frontendAttrs } from "./frontend-attrs.js";
import { isClientExporter, type OutputSpec, parseOutputSpec } from "./outputs.js";
import { describeSolveError } from "./solve-error.js";

/**
 * Where the context comes from: give exactly one of `context` (a local
 * directory Arca's own session serves), `contextFS` (any tree Arca's own
 * session serves, e.g. an uploaded archive's index) or `session` (a session
 * the API client opened itself via POST /session, whose FileSync serves the
 * "context" and "dockerfile" local dirs). A plain interface rather than a
 * union so callers can spread partial options; build() checks at run time.
 */
export interface BuildSource {
  /** Build context directory. */
  context?: string;
  /** Build context tree; `dockerfile` is then a path inside it (default `Dockerfile`) and `sharedKey` is required. */
  contextFS?: SourceFS;
  /** An external session id: no session of ours, no local dirs, no client-side outputs from us. */
  session?: string;
  /**
   * With `context`: Dockerfile path (default `<context>/Dockerfile`), may lie outside the context.
   * With `session`: the file name inside the session's "dockerfile" dir (default `Dockerfile`).
   */
  dockerfile?: string;
}

export type BuildOptions = BuildSource & BuildSettings;

export interface BuildSettings extends Omit<FrontendInputs, "dockerfileName"> {
  /**
   * BuildKit's cache key for our local dirs (default: a hash of the context path). Builds that share it
   * re-sync incrementally: only files whose metadata changed are sent again.
   */
  sharedKey?: string;
  /** BuildKit address (`unix://`, `tcp://`, `vsock-uds://`…); or pass `client`. */
  addr?: string;
  client?: ControlClient;
  tags?: string[];
  /** `--output` specs; without any, the image goes to the image store (needs `imageStore`). */
  outputs?: (OutputSpec | string)[];
  /** The registry endpoint serving Arca's image store, as buildkitd reaches it (`127.0.0.1:5000`). */
  imageStore?: {
    registryHost: string;
    /** Where an untagged build pushes by digest: the path its push grant names (default `arca/dangling`). */
    danglingPath?: string;
  };
  secrets?: Record<string, SecretSource>;
  credentials?: Record<string, { username: string; secret: string }>;
  dockerConfigPath?: string;
  signal?: AbortSignal;
  onProgress?: (status: StatusResponse) => void;
  /** Connection attempts to buildkitd (exponential backoff); default 10. */
  connectAttempts?: number;
  onConnectAttempt?: (info: { attempt: number; attempts: number; delayMs: number; error?: Error }) => void;
}

export interface BuildResult {
  ref: string;
  exporterResponse: Record<string, string>;
  /** Image ID (config digest), when an image was exported. */
  imageId?: string;
  /** Manifest digest, when an image was exported. */
  imageDigest?: string;
  /** What FileSync served during this build. */
  transfer: TransferStats;
}

type ExporterInit = MessageInitShape<typeof ExporterSchema>;

/**
 * Builds a Dockerfile with BuildKit's dockerfile.v0 frontend; context and
 * outputs go through Arca's session, or through the caller's own session
 * when `session` is given.
 */
export async function build(opts: BuildOptions): Promise<BuildResult> {
  const signal = opts.signal;
  if (signal?.aborted) throw new BuildKitError("canceled", "build canceled", { cause: abortReason(signal) });
  if (opts.session === "") throw new BuildKitError("invalid_option", "empty session id");
  const sources = [opts.session, opts.context, opts.contextFS].filter((s) => s !== undefined);
  if (sources.length !== 1) {
    throw new BuildKitError(
      "invalid_option",
      "a build needs exactly one of a context directory, a context tree or a session",
    );
  }
  if (opts.contextFS && !opts.sharedKey) {
    throw new BuildKitError("invalid_option", "a build from a context tree needs a sharedKey");
  }
  const owned = opts.client ? undefined : createControlClient(parseDialAddress(requireAddr(opts)));
  const client = opts.client ?? (owned as ControlClient);
  try {
    await waitReady(client, opts);
    return await solve(client, opts);
  } finally {
    owned?.close();
  }
}

function requireAddr(opts: BuildOptions): string {
  if (!opts.addr) throw new BuildKitError("invalid_option", "no BuildKit address given");
  return opts.addr;
}

/** Waits until buildkitd answers Info, retrying with exponential backoff. */
export async function waitReady(
  client: ControlClient,
  opts: Pick<BuildOptions, "signal" | "connectAttempts" | "onConnectAttempt">,
): Promise<void> {
  try {
    await connectWithBackoff((signal) => client.control.info({}, { signal, timeoutMs: 5000 }), {
      attempts: opts.connectAttempts ?? 10,
      signal: opts.signal,
      onAttempt: opts.onConnectAttempt,
    });
  } catch (err) {
    if (opts.signal?.aborted) throw new BuildKitError("canceled", "build canceled", { cause: err });
    throw new BuildKitError("unavailable", `BuildKit at ${client.address} is not reachable: ${msg(err)}`, {
      cause: err,
    });
  }
}

function planExports(opts: BuildOptions): {
  exporters: ExporterInit[];
  targets: (ExportTarget | undefined)[];
} {
  const outputs = (opts.outputs ?? []).map((o) => (typeof o === "string" ? parseOutputSpec(o) : o));
  const tags = opts.tags ?? [];
  const exporters: ExporterInit[] = [];
  const targets: (ExportTarget | undefined)[] = [];
  if (outputs.length === 0) {
    if (!opts.imageStore) {
      throw new BuildKitError("invalid_option", "no output given and no image store to build into");
    }
    outputs.push({ type: "image", attrs: {} });
  }
  for (const o of outputs) {
    const attrs = { ...o.attrs };
    const dest = attrs.dest;
    delete attrs.dest;
    if ((o.type === "image" || o.type === "moby") && opts.imageStore) {
      const { registryHost, danglingPath } = opts.imageStore;
      const store = storeExportCompression(attrs);
      exporters.push({ Type: "image", Attrs: imageExportAttrs(registryHost, tags, store, danglingPath) });
      targets.push(undefined);
      continue;
    }
    if (isClientExporter(o) && opts.session !== undefined) {
      // FileSend belongs to the client's session: it picks the destination.
      exporters.push({ Type: o.type, Attrs: outputCompression(o.type, attrs) });
      targets.push(undefined);
      continue;
    }
    if (isClientExporter(o)) {
      if (!dest) throw new BuildKitError("invalid_option", `output type=${o.type} needs dest=`);
      if ((o.type === "oci" || o.type === "docker") && tags.length && !attrs.name)
        attrs.name = tags.join(",");
      exporters.push({ Type: o.type, Attrs: outputCompression(o.type, attrs) });
      targets.push(o.type === "local" ? { kind: "local", dest } : { kind: "tar", dest });
      continue;
    }
    // image/registry to a registry of the caller's: it leaves Arca.
    exporters.push({ Type: o.type, Attrs: outputCompression(o.type, attrs) });
    targets.push(undefined);
  }
  return { exporters, targets };
}

/** The image exporter pushing into Arca's store; untagged builds are pushed by digest (dangling image). */
export function imageExportAttrs(
  registryHost: string,
  tags: string[],
  extra: Record<string, string>,
  danglingPath = DANGLING_PATH,
): Record<string, string> {
  const names = tags.map((t) => pushNameFor(registryHost, t));
  // The endpoint is plain HTTP on loopback (BuildKit's default there, and buildkitd.toml says so):
  // no registry.insecure, which would also turn off TLS checks for the other names of a push.
  const attrs: Record<string, string> = { push: "true", ...extra };
  if (names.length) attrs.name = names.join(",");
  else {
    attrs.name = `${registryHost}/${danglingPath}`;
    attrs["push-by-digest"] = "true";
  }
  return attrs;
}

async function solve(client: ControlClient, opts: BuildOptions): Promise<BuildResult> {
  const { exporters, targets } = planExports(opts);
  const transfer = createTransferStats();
  const ac = new AbortController();
  const onAbort = () => ac.abort(abortReason(opts.signal as AbortSignal));
  opts.signal?.addEventListener("abort", onAbort, { once: true });

  let session: Session | undefined;
  let sessionId: string;
  let dockerfileName: string;
  if (opts.session !== undefined) {
    sessionId = opts.session;
    dockerfileName = opts.dockerfile || "Dockerfile";
  } else if (opts.contextFS) {
    const rel = path.posix.normalize(opts.dockerfile || "Dockerfile");
    const dir = path.posix.dirname(rel);
    dockerfileName = path.posix.basename(rel);
    const dirs = {
      context: { fs: opts.contextFS },
      dockerfile: { fs: subSourceFS(opts.contextFS, dir === "." ? "" : dir) },
    };
    session = startOwnSession(
      client,
      dirs,
      { ...opts, sharedKey: opts.sharedKey as string },
      targets,
      transfer,
      ac.signal,
    );
    sessionId = session.id;
  } else {
    const context = opts.context as string;
    const loc = dockerfileLocation(context, opts.dockerfile);
    dockerfileName = loc.name;
    const dirs = { context: { path: context }, dockerfile: { path: loc.dir } };
    const sharedKey = opts.sharedKey ?? sharedKeyFor(context);
    session = startOwnSession(client, dirs, { ...opts, sharedKey }, targets, transfer, ac.signal);
    sessionId = session.id;
  }

  const ref = newId();
  const first = exporters[0];
  const req = create(SolveRequestSchema, {
    Ref: ref,
    Session: sessionId,
    Frontend: "dockerfile.v0",
    FrontendAttrs: frontendAttrs({ ...opts, dockerfileName }),
    Exporters: exporters,
    // Daemons before v0.13 read only the deprecated single-exporter fields.
    ExporterDeprecated: first?.Type ?? "",
    ExporterAttrsDeprecated: first?.Attrs ?? {},
    Entitlements: opts.network === "host" ? ["network.host"] : [],
  });

  const statusAc = new AbortController();
  const status = drainStatus(client, ref, statusAc.signal, opts.onProgress);
  try {
    const res = await client.control.solve(req, { signal: ac.signal });
    const exporterResponse = { ...res.ExporterResponse };
    return {
      ref,
      exporterResponse,
      imageId: exporterResponse["containerimage.config.digest"],
      imageDigest: exporterResponse["containerimage.digest"],
      transfer,
    };
  } catch (err) {
    throw toBuildError(err, opts.signal);
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    await session?.close();
    // Progress keeps draining after Solve returns (final DONE lines), but not forever.
    const t = setTimeout(() => statusAc.abort(), 2000);
    await status;
    clearTimeout(t);
  }
}

/** Arca's own session: serves the local dirs, credentials, secrets and client-side outputs. */
function startOwnSession(
  client: ControlClient,
  dirs: { context: LocalDir; dockerfile: LocalDir },
  opts: BuildSettings & { sharedKey: string },
  targets: (ExportTarget | undefined)[],
  transfer: TransferStats,
  signal: AbortSignal,
): Session {
  const attachables: Attachable[] = [
    attachable(Health, createHealthService()),
    rawFileSyncAttachable(
      createFileSyncService({
        dirs,
        stats: transfer,
        signal,
      }),
    ),
    attachable(Auth, createAuthService({ credentials: opts.credentials, configPath: opts.dockerConfigPath })),
    attachable(Secrets, createSecretsService({ secrets: opts.secrets ?? {} })),
  ];
  if (targets.some((t) => t)) attachables.push(attachable(FileSendRaw, createFileSendService({ targets })));
  return startSession(client, { sharedKey: opts.sharedKey, attachables, signal });
}

async function drainStatus(
  client: ControlClient,
  ref: string,
  signal: AbortSignal,
  onProgress: ((s: StatusResponse) => void) | undefined,
): Promise<void> {
  try {
    for await (const s of client.control.status({ Ref: ref }, { signal })) onProgress?.(s);
  } catch {
    // Status is best effort: the Solve result carries the verdict.
  }
}

function toBuildError(err: unknown, signal: AbortSignal | undefined): BuildKitError {
  if (err instanceof BuildKitError) return err;
  const ce = ConnectError.from(err);
  if (signal?.aborted) return new BuildKitError("canceled", "build canceled", { cause: err });
  // Canceled without our signal means the stream died under us: BuildKit went away.
  if (ce.code === Code.Canceled || ce.code === Code.Unavailable) {
    return new BuildKitError("unavailable", `${LOST_BUILDKIT}: ${ce.rawMessage}`, { cause: err });
  }
  return new BuildKitError("build_failed", describeSolveError(ce), { cause: err });
}

function msg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

import { isDeepStrictEqual } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  distributedExportCompression,
  ExporterSchema,
  imageExportAttrs,
  outputCompression,
  SolveRequestSchema,
  SolveResponseSchema,
  stepProxyAttrs,
  storeExportCompression,
} from "../buildkit/index.js";
import {
  formatReference,
  type ImageStore,
  parseNormalizedTagged,
  type RegistryServer,
} from "../images/index.js";
import { ApiError } from "./errors.js";
import type { UnaryRewrite } from "./grpc-proxy.js";
import type { StoreOnlyRefs } from "./grpc-store-refs.js";
import {
  type HostLoopbackDeps,
  mapCacheImportsAttr,
  mapCacheRef,
  upstreamName,
} from "./host-loopback-ref.js";

export const SOLVE_PATH = "/moby.buildkit.v1.Control/Solve";

/** Entitlements the daemon policy grants a build: none of the insecure ones (no --allow-insecure-entitlement). */
const DENIED_ENTITLEMENTS = new Set(["network.host", "security.insecure"]);

/** Attrs only dockerd's moby exporter understands; a stock image exporter would keep them as metadata. */
const MOBY_ONLY_ATTRS = ["prefer-image-digest", "unpack", "store"];

/**
 * RUN steps get the step network ("sandbox": their own namespace on the step
 * bridge, where only the egress proxy answers) unless they ask for none. The
 * host's network needs the network.host entitlement, which the policy never
 * grants, so "host" stays as asked and BuildKit refuses it.
 */
export function policyNetworkMode(requested: string | undefined): "none" | "host" | "sandbox" {
  if (requested === "none" || requested === "host") return requested;
  return "sandbox";
}

export interface SolveRewriteDeps extends HostLoopbackDeps {
  store: ImageStore;
  /** Registry endpoint as buildkitd reaches it. */
  registryHost: string;
  /** Opens the registry endpoint to the exporter's names (see RegistryServer.allowPush). */
  allowPush: RegistryServer["allowPush"];
  /** The registry listener of the backend the solve runs on (its grant is good only there). */
  pushScope?: string;
  /**
   * The egress proxy URL for RUN steps on the step network (this client's credential), if egress
   * is on; given the solve's ref, whose progress then ends with its egress report.
   */
  stepProxy?: (ref: string) => string | undefined;
  /** Where solves that only land images in the store are noted, for their progress (StatusRewrite). */
  storeOnlyRefs?: StoreOnlyRefs;
}

/**
 * Control.Solve from a client that takes Arca for dockerd (buildx's docker
 * driver). dockerd's embedded BuildKit has the `moby` exporter, writing into
 * its image store; a stock buildkitd has none, so `moby` (and `image`
 * without push) becomes an `image` push into Arca's store through the
 * registry endpoint, where the requested names become tags. The response
 * then reads like dockerd's: `image.name` as requested, and
 * `containerimage.digest` the image ID (config digest), which is what
 * `--iidfile` shows even when buildx prefers the image digest.
 */
export class SolveRewrite implements UnaryRewrite {
  /** Full names (`docker.io/library/app:1`) the store should have once the solve succeeds. */
  #names: string[] = [];
  #storeExport = false;
  /** An image exporter also pushes to a registry. */
  #pushes = false;

  constructor(private readonly deps: SolveRewriteDeps) {}

  request(msg: Uint8Array): Uint8Array {
    const req = fromBinary(SolveRequestSchema, msg);
    // Daemons since v0.13 read Exporters; the Go client fills the deprecated pair too, with a copy of
    // the first: that copy gets the first's rewrite rather than a second push grant.
    const first = req.Exporters[0];
    const legacyIsFirst =
      first !== undefined &&
      req.ExporterDeprecated === first.Type &&
      isDeepStrictEqual(req.ExporterAttrsDeprecated, first.Attrs);
    for (const e of req.Exporters) this.#names.push(...this.#rewriteExporter(e));
    if (legacyIsFirst) {
      req.ExporterDeprecated = first.Type;
      req.ExporterAttrsDeprecated = { ...first.Attrs };
    } else if (req.ExporterDeprecated) {
      const legacy = create(ExporterSchema, {
        Type: req.ExporterDeprecated,
        Attrs: req.ExporterAttrsDeprecated,
      });
      const names = this.#rewriteExporter(legacy);
      if (req.Exporters.length === 0) this.#names.push(...names);
      req.ExporterDeprecated = legacy.Type;
      req.ExporterAttrsDeprecated = legacy.Attrs;
    }
    if (req.Cache) {
      for (const c of [...req.Cache.Exports, ...req.Cache.Imports]) mapCacheRef(c, this.deps);
      // A remote cache leaves Arca: compressed, also the layers store builds left uncompressed.
      for (const c of req.Cache.Exports) {
        if (c.Type !== "inline") c.Attrs = distributedExportCompression(c.Attrs);
      }
    }
    const imports = mapCacheImportsAttr(req.FrontendAttrs["cache-imports"], this.deps);
    if (imports) req.FrontendAttrs["cache-imports"] = imports;
    if (this.#storeExport && !this.#pushes && req.Ref) this.deps.storeOnlyRefs?.add(req.Ref);
    req.Entitlements = req.Entitlements.filter((e) => !DENIED_ENTITLEMENTS.has(e));
    if (req.Frontend) {
      const mode = policyNetworkMode(req.FrontendAttrs["force-network-mode"]);
      req.FrontendAttrs["force-network-mode"] = mode;
      const proxy = mode === "sandbox" ? this.deps.stepProxy?.(req.Ref) : undefined;
      if (proxy) Object.assign(req.FrontendAttrs, stepProxyAttrs(proxy));
    }
    return toBinary(SolveRequestSchema, req);
  }

  response(msg: Uint8Array): Uint8Array {
    if (!this.#storeExport) return msg;
    const res = fromBinary(SolveResponseSchema, msg);
    const r = res.ExporterResponse;
    const pushed = r["containerimage.digest"] ?? "";
    const missing = this.#names.filter((n) => this.deps.store.lookupName(n) === undefined);
    if (missing.length) {
      throw new ApiError("unavailable", `build finished but the image store has no ${missing.join(", ")}`);
    }
    // Arca's image IDs are config digests (as dockerd's without the containerd store): what
    // `docker images` lists is what --iidfile gets, also for a pushed index (attestations).
    const id = this.deps.store.getManifest(pushed)?.imageId ?? r["containerimage.config.digest"];
    if (id) {
      r["containerimage.digest"] = id;
      r["containerimage.config.digest"] = id;
    }
    if (this.#names.length) r["image.name"] = this.#names.join(",");
    else delete r["image.name"];
    return toBinary(SolveResponseSchema, res);
  }

  /**
   * Turns an image exporter (`moby`, `image`) into the push into Arca's
   * store, as dockerd's docker driver lands every image build in its store;
   * with `push` it also pushes to the registries the names say (through the
   * egress proxy, with the client's credentials), from the same exporter.
   * Returns the names the store tags.
   */
  #rewriteExporter(e: { Type: string; Attrs: Record<string, string> }): string[] {
    if (e.Type !== "moby" && e.Type !== "image") {
      e.Attrs = outputCompression(e.Type, e.Attrs);
      return [];
    }
    const push = /^(1|t|true)$/i.test(e.Attrs.push ?? "");
    const names = (e.Attrs.name ?? "")
      .split(",")
      .map((n) => n.trim())
      .filter(Boolean)
      .map((n) => {
        try {
          return formatReference(parseNormalizedTagged(n));
        } catch (err) {
          throw new ApiError("invalid_parameter", `invalid image name ${JSON.stringify(n)}`, { cause: err });
        }
      });
    if (push && names.length === 0) {
      throw new ApiError("invalid_parameter", "a push needs an image name: tag the build (-t NAME)");
    }
    const extra = { ...e.Attrs };
    for (const k of [...MOBY_ONLY_ATTRS, "name", "push"]) delete extra[k];
    e.Type = "image";
    const grant = this.deps.allowPush(names, this.deps.signal, this.deps.pushScope);
    // One exporter writes the store and the registries: a push compresses as it asks (gzip by default).
    const compression = push ? distributedExportCompression(extra) : storeExportCompression(extra);
    e.Attrs = imageExportAttrs(this.deps.registryHost, names, compression, grant.danglingPath);
    if (push) {
      this.#pushes = true;
      const targets = names.map((n) => upstreamName(n, this.deps));
      const loopback = targets.filter((t) => t.loopback);
      if (loopback.length && loopback.length !== targets.length) {
        throw new ApiError(
          "invalid_parameter",
          "a push to a registry on this host's loopback cannot share a build with pushes elsewhere: push them in separate builds",
        );
      }
      // A registry on the host's loopback is plain HTTP as a rule (dockerd treats it as insecure too).
      if (loopback.length) e.Attrs["registry.insecure"] = "true";
      e.Attrs.name = [e.Attrs.name, ...targets.map((t) => t.name)].join(",");
    }
    this.#storeExport = true;
    return names;
  }
}

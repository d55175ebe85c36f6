import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { CacheOptionsEntrySchema, stepProxyAttrs } from "../buildkit/index.js";
import type { UnaryRewrite } from "./grpc-proxy.js";
import { policyNetworkMode } from "./grpc-solve.js";
import { type HostLoopbackDeps, mapCacheImportsAttr, mapCacheRef } from "./host-loopback-ref.js";

export const GATEWAY_SOLVE_PATH = "/moby.buildkit.v1.frontend.LLBBridge/Solve";

/** moby.buildkit.v1.frontend.SolveRequest (BK frontend/gateway/pb/gateway.proto): Frontend=2, FrontendOpt=3. */
const FRONTEND_FIELD = 2;
const FRONTEND_OPT_FIELD = 3;
/** CacheImports = 12: repeated moby.buildkit.v1.CacheOptionsEntry, the message Control.Solve uses too. */
const CACHE_IMPORTS_FIELD = 12;
const NETWORK_MODE = "force-network-mode";

/**
 * LLBBridge.Solve, through which buildx (it builds with a client-side
 * gateway) has the Dockerfile frontend run: the daemon's network policy
 * goes into its frontend options here, as it does into Control.Solve's
 * frontend attrs. The message is edited on the wire (gateway.proto is not
 * among Arca's generated schemas): one FrontendOpt map entry is appended,
 * which wins over an earlier one for the same key as protobuf maps do.
 */
export class GatewaySolveRewrite implements UnaryRewrite {
  /**
   * `stepProxy`: the egress proxy URL for RUN steps on the step network, if egress is on;
   * `loopback`: how registry caches on the user's host (localhost:PORT) are reached, as in Control.Solve.
   */
  constructor(
    private readonly stepProxy?: () => string | undefined,
    private readonly loopback?: HostLoopbackDeps,
  ) {}

  request(input: Uint8Array): Uint8Array {
    const msg = this.loopback ? mapCacheImports(input, this.loopback) : input;
    const { frontend, opts } = readFrontend(msg);
    if (!frontend) return msg;
    const mode = policyNetworkMode(opts.get(NETWORK_MODE));
    const set: Record<string, string> = {};
    const imports = this.loopback && mapCacheImportsAttr(opts.get("cache-imports"), this.loopback);
    if (imports) set["cache-imports"] = imports;
    if (opts.get(NETWORK_MODE) !== mode) set[NETWORK_MODE] = mode;
    const proxy = mode === "sandbox" ? this.stepProxy?.() : undefined;
    if (proxy) Object.assign(set, stepProxyAttrs(proxy));
    const entries = Object.entries(set);
    if (entries.length === 0) return msg;
    const extra = new BinaryWriter();
    for (const [k, v] of entries) {
      const entry = new BinaryWriter().tag(1, WireType.LengthDelimited).string(k);
      entry.tag(2, WireType.LengthDelimited).string(v);
      extra.tag(FRONTEND_OPT_FIELD, WireType.LengthDelimited).bytes(entry.finish());
    }
    const tail = extra.finish();
    const out = new Uint8Array(msg.length + tail.length);
    out.set(msg);
    out.set(tail, msg.length);
    return out;
  }
}

/**
 * The message with its CacheImports entries on the host's loopback mapped
 * (see mapCacheRef); the same bytes when none is. Mapped entries replace the
 * originals: a repeated field cannot be overridden by appending.
 */
function mapCacheImports(msg: Uint8Array, deps: HostLoopbackDeps): Uint8Array {
  const r = new BinaryReader(msg);
  const kept = new BinaryWriter();
  const entries = [];
  while (r.pos < r.len) {
    const start = r.pos;
    const [no, wt] = r.tag();
    if (no === CACHE_IMPORTS_FIELD && wt === WireType.LengthDelimited) {
      entries.push(fromBinary(CacheOptionsEntrySchema, r.bytes()));
      continue;
    }
    r.skip(wt, no);
    kept.raw(msg.subarray(start, r.pos));
  }
  let changed = false;
  for (const e of entries) if (mapCacheRef(e, deps)) changed = true;
  if (!changed) return msg;
  for (const e of entries) {
    kept.tag(CACHE_IMPORTS_FIELD, WireType.LengthDelimited).bytes(toBinary(CacheOptionsEntrySchema, e));
  }
  return kept.finish();
}

/** A map<string, string> entry: key = 1, value = 2. */
function readMapEntry(bytes: Uint8Array): [string, string] {
  const e = new BinaryReader(bytes);
  let key = "";
  let value = "";
  while (e.pos < e.len) {
    const [eno, ewt] = e.tag();
    if (eno === 1 && ewt === WireType.LengthDelimited) key = e.string();
    else if (eno === 2 && ewt === WireType.LengthDelimited) value = e.string();
    else e.skip(ewt, eno);
  }
  return [key, value];
}

/** The Frontend name and the FrontendOpt map (last entry per key wins). */
function readFrontend(msg: Uint8Array): { frontend: string; opts: Map<string, string> } {
  const r = new BinaryReader(msg);
  let frontend = "";
  const opts = new Map<string, string>();
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === FRONTEND_FIELD && wt === WireType.LengthDelimited) frontend = r.string();
    else if (no === FRONTEND_OPT_FIELD && wt === WireType.LengthDelimited) {
      const [key, value] = readMapEntry(r.bytes());
      opts.set(key, value);
    } else r.skip(wt, no);
  }
  return { frontend, opts };
}

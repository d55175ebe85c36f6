import assert from "node:assert/strict";
import { test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { SolveRequestSchema } from "../buildkit/index.js";
import type { ImageStore } from "../images/index.js";
import { GatewaySolveRewrite } from "./grpc-gateway-solve.js";
import { SolveRewrite } from "./grpc-solve.js";

// Request rewriting never touches the store; push grants are recorded.
const granted: string[][] = [];
const deps = {
  store: {} as ImageStore,
  registryHost: "127.0.0.1:5000",
  signal: new AbortController().signal,
  allowPush: (names: string[]) => {
    granted.push(names);
    return { danglingPath: `arca/dangling/g${granted.length}`, release() {} };
  },
};

test("Control.Solve: moby exporter becomes a push into the store; policy on entitlements and network", () => {
  const req = create(SolveRequestSchema, {
    Ref: "r1",
    Frontend: "dockerfile.v0",
    FrontendAttrs: { "force-network-mode": "sandbox", filename: "Dockerfile" },
    Entitlements: ["network.host", "security.insecure", "device"],
    Exporters: [
      { Type: "moby", Attrs: { name: "docker.io/library/app:1,ghcr.io/o/x", "prefer-image-digest": "true" } },
      { Type: "local", Attrs: {} },
    ],
    ExporterDeprecated: "moby",
    ExporterAttrsDeprecated: { name: "docker.io/library/app:1,ghcr.io/o/x" },
  });
  // A field Arca's schema leaves out (SourcePolicySession=15) must survive the round trip.
  const unknown = new BinaryWriter().tag(15, WireType.LengthDelimited).string("policy-session").finish();
  const bytes = new Uint8Array([...toBinary(SolveRequestSchema, req), ...unknown]);

  const out = fromBinary(SolveRequestSchema, new SolveRewrite(deps).request(bytes));
  const image = out.Exporters[0];
  assert.equal(image?.Type, "image");
  // Only the store reads these layers: not compressed (see storeExportCompression).
  assert.deepEqual(image?.Attrs, {
    name: "127.0.0.1:5000/library/app:1,127.0.0.1:5000/ghcr.io/o/x:latest",
    push: "true",
    compression: "uncompressed",
    "oci-mediatypes": "true",
  });
  assert.deepEqual(granted.at(-1), ["docker.io/library/app:1", "ghcr.io/o/x:latest"]);
  assert.equal(out.Exporters[1]?.Type, "local");
  assert.equal(out.ExporterDeprecated, "image");
  assert.equal(out.ExporterAttrsDeprecated.push, "true");
  assert.deepEqual(out.Entitlements, ["device"]);
  assert.equal(out.FrontendAttrs["force-network-mode"], "sandbox");
  assert.equal(out.FrontendAttrs.filename, "Dockerfile");
  assert.ok(Buffer.from(toBinary(SolveRequestSchema, out)).includes(Buffer.from("policy-session")));
});

test("Control.Solve: the deprecated exporter fields, a copy of the first exporter, get its rewrite and no second grant", () => {
  const attrs = { name: "docker.io/library/app:2" };
  const req = create(SolveRequestSchema, {
    Exporters: [{ Type: "moby", Attrs: attrs }],
    ExporterDeprecated: "moby",
    ExporterAttrsDeprecated: { ...attrs },
  });
  const before = granted.length;
  const out = fromBinary(
    SolveRequestSchema,
    new SolveRewrite(deps).request(toBinary(SolveRequestSchema, req)),
  );
  assert.equal(granted.length, before + 1, "one push grant for the one exporter");
  assert.equal(out.ExporterDeprecated, "image");
  assert.deepEqual(out.ExporterAttrsDeprecated, out.Exporters[0]?.Attrs);
});

test("Control.Solve: a push lands in the store and goes to its registry; untagged builds; loopback registries refused", () => {
  const push = create(SolveRequestSchema, {
    Exporters: [{ Type: "image", Attrs: { name: "reg.example/x:1", push: "true" } }],
  });
  const pushed = fromBinary(
    SolveRequestSchema,
    new SolveRewrite(deps).request(toBinary(SolveRequestSchema, push)),
  );
  // A push compresses every layer (gzip by default), also those a store build left uncompressed.
  assert.deepEqual(pushed.Exporters[0]?.Attrs, {
    name: "127.0.0.1:5000/reg.example/x:1,reg.example/x:1",
    push: "true",
    "force-compression": "true",
  });
  // localhost:PORT is the user's host: mapped to the name the egress proxy opens for this call only.
  const opened: number[] = [];
  const released: number[] = [];
  const ended = new AbortController();
  const withLoopback = {
    ...deps,
    signal: ended.signal,
    hostLoopback: (port: number) => {
      opened.push(port);
      return () => released.push(port);
    },
  };
  for (const name of ["localhost:5000/x:1", "127.0.0.1:5000/x:1"]) {
    const local = create(SolveRequestSchema, {
      Exporters: [{ Type: "moby", Attrs: { name, push: "true" } }],
      Cache: { Exports: [{ Type: "registry", Attrs: { ref: "localhost:5000/cache:1", mode: "max" } }] },
    });
    const bytes = toBinary(SolveRequestSchema, local);
    const out = fromBinary(SolveRequestSchema, new SolveRewrite(withLoopback).request(bytes));
    assert.equal(out.Exporters[0]?.Attrs.name?.split(",").at(-1), "host-loopback.arca.internal:5000/x:1");
    assert.equal(out.Exporters[0]?.Attrs["registry.insecure"], "true");
    assert.equal(out.Cache?.Exports[0]?.Attrs.ref, "host-loopback.arca.internal:5000/cache:1");
    assert.throws(() => new SolveRewrite(deps).request(bytes), /cannot reach .* from a build/);
  }
  assert.deepEqual(opened, [5000, 5000, 5000, 5000]);
  ended.abort();
  assert.deepEqual(released, [5000, 5000, 5000, 5000]);
  const mixed = create(SolveRequestSchema, {
    Exporters: [{ Type: "image", Attrs: { name: "localhost:5000/x:1,reg.example/x:1", push: "true" } }],
  });
  assert.throws(
    () => new SolveRewrite(withLoopback).request(toBinary(SolveRequestSchema, mixed)),
    /separate builds/,
  );
  const nameless = create(SolveRequestSchema, { Exporters: [{ Type: "image", Attrs: { push: "true" } }] });
  assert.throws(
    () => new SolveRewrite(deps).request(toBinary(SolveRequestSchema, nameless)),
    /needs an image name/,
  );

  const untagged = create(SolveRequestSchema, { Exporters: [{ Type: "moby", Attrs: {} }] });
  const out = fromBinary(
    SolveRequestSchema,
    new SolveRewrite(deps).request(toBinary(SolveRequestSchema, untagged)),
  );
  // The untagged build pushes by digest to the repository its own grant names.
  assert.deepEqual(granted.at(-1), []);
  assert.equal(out.Exporters[0]?.Attrs.name, `127.0.0.1:5000/arca/dangling/g${granted.length}`);
  assert.equal(out.Exporters[0]?.Attrs["push-by-digest"], "true");
  // Without a frontend (a client-side gateway build) there are no frontend attrs to set.
  assert.deepEqual(out.FrontendAttrs, {});
});

/** A gateway SolveRequest: Frontend=2, FrontendOpt=3 entries, Definition=1 as opaque bytes. */
function gatewayRequest(frontend: string, opts: [string, string][]): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).bytes(new Uint8Array([1, 2, 3]));
  if (frontend) w.tag(2, WireType.LengthDelimited).string(frontend);
  for (const [k, v] of opts) {
    const e = new BinaryWriter().tag(1, WireType.LengthDelimited).string(k);
    e.tag(2, WireType.LengthDelimited).string(v);
    w.tag(3, WireType.LengthDelimited).bytes(e.finish());
  }
  return w.finish();
}

/** FrontendOpt as Go's proto decoder sees it: the last entry for a key wins. */
function frontendOpt(msg: Uint8Array): Record<string, string> {
  const r = new BinaryReader(msg);
  const out: Record<string, string> = {};
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 3) {
      r.skip(wt, no);
      continue;
    }
    const e = new BinaryReader(r.bytes());
    e.tag();
    const k = e.string();
    e.tag();
    out[k] = e.string();
  }
  return out;
}

test("LLBBridge.Solve: frontend solves get the step network and its proxy unless they ask for none or host", () => {
  const proxy = "http://build-1:tok@10.89.0.1:3128";
  const rw = new GatewaySolveRewrite(() => proxy);
  const plain = gatewayRequest("dockerfile.v0", [["filename", "Dockerfile"]]);
  const opts = frontendOpt(rw.request(plain));
  assert.equal(opts.filename, "Dockerfile");
  assert.equal(opts["force-network-mode"], "sandbox");
  assert.equal(opts["build-arg:HTTPS_PROXY"], proxy);
  assert.equal(opts["build-arg:http_proxy"], proxy);
  assert.equal(opts["build-arg:NO_PROXY"], "localhost,127.0.0.1,::1");
  const none = gatewayRequest("dockerfile.v0", [["force-network-mode", "none"]]);
  assert.deepEqual(rw.request(none), none, "none stays, with no proxy");
  const host = gatewayRequest("dockerfile.v0", [["force-network-mode", "host"]]);
  assert.deepEqual(rw.request(host), host, "host stays (the entitlement check refuses it)");
  const llb = gatewayRequest("", []);
  assert.deepEqual(rw.request(llb), llb, "plain LLB solves have no frontend options");
  const noEgress = gatewayRequest("dockerfile.v0", [["force-network-mode", "sandbox"]]);
  assert.deepEqual(new GatewaySolveRewrite().request(noEgress), noEgress);
});

/** CacheImports (field 12) as [Type, Attrs] pairs. */
function cacheImports(msg: Uint8Array): [string, Record<string, string>][] {
  const out: [string, Record<string, string>][] = [];
  const r = new BinaryReader(msg);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 12) {
      r.skip(wt, no);
      continue;
    }
    const e = new BinaryReader(r.bytes());
    let type = "";
    const attrs: Record<string, string> = {};
    while (e.pos < e.len) {
      const [eno] = e.tag();
      if (eno === 1) type = e.string();
      else {
        const kv = new BinaryReader(e.bytes());
        kv.tag();
        const k = kv.string();
        kv.tag();
        attrs[k] = kv.string();
      }
    }
    out.push([type, attrs]);
  }
  return out;
}

test("LLBBridge.Solve: registry caches on the user's host (localhost:PORT) are imported through the egress path, for the call only", () => {
  const granted: number[] = [];
  const released: number[] = [];
  const ended = new AbortController();
  const domains = new Map<number, string>();
  const rw = new GatewaySolveRewrite(undefined, {
    signal: ended.signal,
    loopbackDomains: domains,
    hostLoopback: (port) => {
      granted.push(port);
      return () => released.push(port);
    },
  });
  const list = [{ Type: "registry", Attrs: { ref: "localhost:5999/cache:1" } }];
  const w = new BinaryWriter();
  w.raw(gatewayRequest("dockerfile.v0", [["cache-imports", JSON.stringify(list)]]));
  for (const [type, attrs] of [
    ["registry", { ref: "localhost:5999/cache:1" }],
    ["local", { src: "/cache" }],
  ] as const) {
    const e = new BinaryWriter().tag(1, WireType.LengthDelimited).string(type);
    for (const [k, v] of Object.entries(attrs)) {
      const kv = new BinaryWriter().tag(1, WireType.LengthDelimited).string(k);
      kv.tag(2, WireType.LengthDelimited).string(v);
      e.tag(2, WireType.LengthDelimited).bytes(kv.finish());
    }
    w.tag(12, WireType.LengthDelimited).bytes(e.finish());
  }
  const out = rw.request(w.finish());
  const mapped = { ref: "host-loopback.arca.internal:5999/cache:1", "registry.insecure": "true" };
  assert.deepEqual(cacheImports(out), [
    ["registry", mapped],
    ["local", { src: "/cache" }],
  ]);
  assert.deepEqual(JSON.parse(frontendOpt(out)["cache-imports"] ?? "[]"), [
    { Type: "registry", Attrs: mapped },
  ]);
  assert.equal(frontendOpt(out).filename, undefined);
  assert.equal(domains.get(5999), "localhost:5999");
  assert.ok(granted.length >= 1 && granted.every((p) => p === 5999));
  assert.deepEqual(released, []);
  ended.abort();
  assert.equal(released.length, granted.length, "every grant ends with the call");
  const before = granted.length;
  const remote = [{ Type: "registry", Attrs: { ref: "ghcr.io/me/cache:1" } }];
  const other = rw.request(gatewayRequest("dockerfile.v0", [["cache-imports", JSON.stringify(remote)]]));
  assert.equal(frontendOpt(other)["cache-imports"], JSON.stringify(remote), "a remote ref stays as it is");
  assert.equal(granted.length, before, "and opens nothing");
});

test("Control.Solve: compression the client asks for wins; outputs and remote caches that leave Arca are compressed", () => {
  const req = create(SolveRequestSchema, {
    Exporters: [
      { Type: "moby", Attrs: { name: "app:1", compression: "zstd" } },
      { Type: "image", Attrs: { name: "reg.example/x:1", push: "true", compression: "zstd" } },
      { Type: "image", Attrs: { name: "reg.example/y:1", push: "true", "force-compression": "false" } },
      { Type: "oci", Attrs: {} },
      { Type: "local", Attrs: {} },
    ],
    Cache: {
      Exports: [
        { Type: "registry", Attrs: { ref: "reg.example/cache", compression: "zstd" } },
        { Type: "inline", Attrs: {} },
      ],
    },
  });
  const out = fromBinary(
    SolveRequestSchema,
    new SolveRewrite(deps).request(toBinary(SolveRequestSchema, req)),
  );
  const attrs = out.Exporters.map((e) => e.Attrs);
  assert.equal(attrs[0]?.compression, "zstd");
  assert.equal(attrs[0]?.["oci-mediatypes"], undefined);
  assert.equal(attrs[1]?.compression, "zstd");
  assert.equal(attrs[1]?.["force-compression"], "true");
  assert.equal(attrs[2]?.["force-compression"], "false");
  assert.equal(attrs[2]?.compression, undefined);
  assert.deepEqual(attrs[3], { "force-compression": "true" });
  assert.deepEqual(attrs[4], {});
  assert.deepEqual(out.Cache?.Exports[0]?.Attrs, {
    ref: "reg.example/cache",
    compression: "zstd",
    "force-compression": "true",
  });
  assert.deepEqual(out.Cache?.Exports[1]?.Attrs, {});
});

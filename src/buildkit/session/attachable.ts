import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import type { RawRoute } from "./raw-file-sync.js";

/** A service the session offers to BuildKit (as BuildKit's session.Attachable). */
export interface Attachable {
  /** Full method paths advertised in x-docker-expose-session-grpc-method. */
  readonly methods: readonly string[];
  register(router: ConnectRouter): void;
  /** Methods served on the raw HTTP/2 stream instead of through connect (hot paths). */
  readonly rawRoutes?: ReadonlyMap<string, RawRoute>;
}

export function attachable<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): Attachable {
  const methods = service.methods
    .filter((m) => (impl as Record<string, unknown>)[m.localName] !== undefined)
    .map((m) => `/${service.typeName}/${m.name}`);
  return { methods, register: (router) => router.service(service, impl) };
}

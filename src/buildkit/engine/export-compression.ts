/**
 * Layer compression per destination. BuildKit compresses a layer when it
 * first makes its blob and, unless `force-compression` is set, every later
 * export reuses that blob whatever compression it asks for.
 */

/** BuildKit's compression attrs (util/compression ParseAttributes), for image exporters and cache exports. */
const COMPRESSION = "compression";
const FORCE = "force-compression";
const OCI_TYPES = "oci-mediatypes";

/**
 * Layers that only land in Arca's store are not compressed: nothing reads
 * them over a network, and gzip was most of a big build's time (dockerd's
 * store does not compress at build time either). Not forced, so layers
 * that already have a blob (base images, earlier builds) keep it and are
 * not converted. A compression the caller asked for wins.
 */
export function storeExportCompression(attrs: Record<string, string>): Record<string, string> {
  if (attrs[COMPRESSION] !== undefined) return attrs;
  return { ...attrs, [COMPRESSION]: "uncompressed", [OCI_TYPES]: attrs[OCI_TYPES] ?? "true" };
}

/**
 * What leaves Arca (a registry push, an OCI/docker tarball, a remote cache)
 * gets the compression it asks for (gzip by default) on every layer, also
 * on those a store build left uncompressed: `force-compression` unless the
 * caller set it. BuildKit keeps each compressed variant by the layer's
 * digest, so a layer is compressed once, not at every push.
 */
export function distributedExportCompression(attrs: Record<string, string>): Record<string, string> {
  if (attrs[FORCE] !== undefined) return attrs;
  return { ...attrs, [FORCE]: "true" };
}

/** An output of the caller's (not Arca's store): files (`local`, `tar`) have no layers to compress. */
export function outputCompression(type: string, attrs: Record<string, string>): Record<string, string> {
  return type === "local" || type === "tar" ? attrs : distributedExportCompression(attrs);
}

/** Manifest types asked for on pulls: Docker schema 2 and OCI, lists and single; schema 1 only to refuse it clearly. */
export const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
  "application/vnd.docker.distribution.manifest.v1+json",
].join(", ");

export const SCHEMA1_TYPES = new Set([
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
  "application/vnd.docker.distribution.manifest.v1+json",
]);

/** Layer types stored uncompressed (a local build's layers), compressed with gzip before a push. */
export const UNCOMPRESSED_LAYERS = new Set([
  "application/vnd.oci.image.layer.v1.tar",
  "application/vnd.docker.image.rootfs.diff.tar",
]);

/** The gzip layer type that goes with a manifest type. */
export function gzipLayerType(manifestMediaType: string): string {
  return manifestMediaType === "application/vnd.docker.distribution.manifest.v2+json"
    ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
    : "application/vnd.oci.image.layer.v1.tar+gzip";
}

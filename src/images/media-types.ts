export const MediaTypes = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar",
} as const;

/**
 * A layer stored as a plain tar (what builds put into the store): whatever
 * sends it out of Arca (a push) compresses it first. Non-distributable
 * variants count too.
 */
export function isUncompressedLayer(mediaType: string): boolean {
  return (
    mediaType === MediaTypes.ociLayer ||
    mediaType === MediaTypes.dockerLayer ||
    mediaType === "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
    mediaType === "application/vnd.docker.image.rootfs.foreign.diff.tar"
  );
}

export function isManifestMediaType(mt: string): boolean {
  return mt === MediaTypes.ociManifest || mt === MediaTypes.dockerManifest;
}

export function isIndexMediaType(mt: string): boolean {
  return mt === MediaTypes.ociIndex || mt === MediaTypes.dockerManifestList;
}

export {
  type BlobInfo,
  type BlobSource,
  type ByteRange,
  ContentStore,
  type IngestOptions,
  type IngestResult,
} from "./content-store.js";
export { type Digest, digestOf, isDigest, parseDigest } from "./digest.js";
export { ImageError, type ImageErrorCode } from "./errors.js";
export {
  type ImageConfig,
  type ImageEvent,
  type ImageEventType,
  type ImageInspect,
  ImageStore,
  type ImageStoreOptions,
  type ImageSummary,
  type PutManifestResult,
  type RemoveResult,
  type ResolvedImage,
} from "./image-store.js";
export { type ImportOptions, importRootfs } from "./import-rootfs.js";
export { type LoadedImage, loadImages } from "./load.js";
export {
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  MANIFEST_SIZE_LIMIT,
  type ParsedManifest,
  parseManifest,
  selectPlatformManifest,
} from "./manifest.js";
export { isUncompressedLayer, MediaTypes } from "./media-types.js";
export { formatPlatform, hostPlatform, type Platform } from "./platform.js";
export {
  familiarName,
  familiarString,
  formatReference,
  parseNormalizedTagged,
  parseReference,
  type Reference,
} from "./reference.js";
export { requestPushGrant, serveGrantSocket } from "./registry/grant-socket.js";
export {
  DANGLING_PATH,
  displayPushNames,
  pushNameFor,
  storeExportText,
  storeRepository,
} from "./registry/name-mapping.js";
export type { PushGrant } from "./registry/push-grants.js";
export {
  createRegistryServer,
  type RegistryServer,
  type RegistryServerOptions,
  type RegistryTls,
} from "./registry/server.js";
export { saveImages } from "./save.js";

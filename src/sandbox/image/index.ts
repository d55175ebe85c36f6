export { SandboxError, type SandboxErrorCode } from "../errors.js";
export {
  type AssembleSandboxImageOptions,
  assembleSandboxImage,
  SANDBOX_IMAGE_REPOSITORY,
  SANDBOX_REGISTRY_HOST,
  type SandboxImage,
} from "./assemble.js";
export {
  type AssembleFrontendImageOptions,
  assembleFrontendImage,
  type EnsureFrontendImageOptions,
  ensureFrontendImage,
  FRONTEND_LABELS,
  type FrontendImage,
  loadFrontendImage,
} from "./frontend-image.js";
export { DOCKERFILE_FRONTEND_REPOSITORY, frontendTags, parseFrontendVersion } from "./frontend-version.js";
export { type LoadSandboxImageOptions, type LoadSandboxImageResult, loadSandboxImage } from "./load.js";
export { readLayoutManifest } from "./oci-layout.js";
export { pinnedBuildkitVersion, repoRoot } from "./repo-files.js";

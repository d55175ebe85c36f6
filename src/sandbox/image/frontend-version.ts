import { SandboxError } from "../errors.js";

/** Repository BuildKit resolves `# syntax=docker/dockerfile:…` in (docker.io, mirrored to Arca's store). */
export const DOCKERFILE_FRONTEND_REPOSITORY = "docker/dockerfile";

/**
 * The Dockerfile version in `dockerfile-frontend -version` output
 * (`<argv0> <package> dockerfile/1.26.0 <revision>`); set-up stamps it from
 * the module's frontend/dockerfile/version, as upstream's release build
 * stamps `git describe` of its `dockerfile/*` tag.
 */
export function parseFrontendVersion(output: string): string {
  const m = /(?:^|\s)dockerfile\/(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?)(?:\s|$)/.exec(output);
  if (!m?.[1]) {
    throw new SandboxError(
      "tool_missing",
      `dockerfile-frontend reports no dockerfile/X.Y.Z version (${JSON.stringify(output.trim())}): run \`npm run setup\``,
    );
  }
  return m[1];
}

/**
 * The tags upstream's release gives a frontend version (hack/tags of
 * frontend/dockerfile/cmd/dockerfile-frontend): `1.26.0` also answers `1.26`
 * and `1` (a major of 0 gets no bare-major tag); a pre-release or dev build
 * gets only its exact tag, as upstream never points `1` at one.
 */
export function frontendTags(version: string): string[] {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  const exact = `${DOCKERFILE_FRONTEND_REPOSITORY}:${version}`;
  if (!m) return [exact];
  const [, major, minor] = m;
  const tags = [`${DOCKERFILE_FRONTEND_REPOSITORY}:${major}.${minor}`, exact];
  if (major !== "0") tags.unshift(`${DOCKERFILE_FRONTEND_REPOSITORY}:${major}`);
  return tags;
}

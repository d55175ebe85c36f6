import { ApiError } from "./errors.js";

export const API_VERSION = "1.51";
export const ARCA_VERSION = "0.1.0";
export const MIN_API_VERSION = "1.24";

function cmp(a: string, b: string): number {
  const [a1 = 0, a2 = 0] = a.split(".").map(Number);
  const [b1 = 0, b2 = 0] = b.split(".").map(Number);
  return a1 - b1 || a2 - b2;
}

/** Splits `/v1.45/images/json` into version and path; checks the range like dockerd's version middleware. */
export function splitVersion(pathname: string): { apiVersion: string; path: string } {
  const m = /^\/v([0-9]+(?:\.[0-9]+)?)(\/.*)$/.exec(pathname);
  if (!m) return { apiVersion: API_VERSION, path: pathname };
  const v = m[1] as string;
  if (cmp(v, MIN_API_VERSION) < 0) {
    throw new ApiError(
      "invalid_parameter",
      `client version ${v} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`,
    );
  }
  if (cmp(v, API_VERSION) > 0) {
    throw new ApiError(
      "invalid_parameter",
      `client version ${v} is too new. Maximum supported API version is ${API_VERSION}`,
    );
  }
  return { apiVersion: v, path: m[2] as string };
}

export function versionAtLeast(v: string, min: string): boolean {
  return cmp(v, min) >= 0;
}

import path from "node:path";

export interface FrontendInputs {
  dockerfileName: string;
  target?: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  noCache?: boolean | string[];
  platform?: string;
  pull?: boolean;
  network?: "none" | "host" | "sandbox";
  addHosts?: string[];
  shmSize?: number;
  ulimits?: string[];
}

/** Maps build options to dockerfile.v0 FrontendAttrs (keys per BuildKit's dockerui). */
export function frontendAttrs(o: FrontendInputs): Record<string, string> {
  const attrs: Record<string, string> = {
    filename: o.dockerfileName,
    // Docker defaults RUN steps to no network; the sandbox has none to give anyway.
    "force-network-mode": o.network ?? "none",
    "image-resolve-mode": o.pull ? "pull" : "default",
  };
  if (o.target) attrs.target = o.target;
  for (const [k, v] of Object.entries(o.buildArgs ?? {})) attrs[`build-arg:${k}`] = v;
  for (const [k, v] of Object.entries(o.labels ?? {})) attrs[`label:${k}`] = v;
  if (o.noCache === true) attrs["no-cache"] = "";
  else if (Array.isArray(o.noCache) && o.noCache.length) attrs["no-cache"] = o.noCache.join(",");
  if (o.platform) attrs.platform = o.platform.toLowerCase();
  if (o.addHosts?.length) attrs["add-hosts"] = o.addHosts.join(",");
  if (o.shmSize) attrs["shm-size"] = String(o.shmSize);
  if (o.ulimits?.length) attrs.ulimit = o.ulimits.join(",");
  return attrs;
}

/** Where the "dockerfile" local dir points and the name inside it. */
export function dockerfileLocation(context: string, dockerfile?: string): { dir: string; name: string } {
  const file = dockerfile ? path.resolve(dockerfile) : path.join(path.resolve(context), "Dockerfile");
  return { dir: path.dirname(file), name: path.basename(file) };
}

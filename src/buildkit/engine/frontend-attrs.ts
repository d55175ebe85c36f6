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
  /**
   * The egress proxy RUN steps use (`http://user:pass@host:port`), passed as
   * BuildKit's predefined proxy build args: the frontend gives them to RUN
   * steps but never writes them into the image config or history.
   */
  stepProxy?: string;
}

/** The proxy args BuildKit's Dockerfile frontend treats as predefined (both cases are set in steps). */
const PROXY_ARGS = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] as const;
const NO_PROXY = "localhost,127.0.0.1,::1";

/** Maps build options to dockerfile.v0 FrontendAttrs (keys per BuildKit's dockerui). */
export function frontendAttrs(o: FrontendInputs): Record<string, string> {
  const attrs: Record<string, string> = {
    filename: o.dockerfileName,
    // Without a network option RUN steps get none; "sandbox" is the step network (egress proxy only).
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
  if (o.stepProxy && o.network !== "none") Object.assign(attrs, stepProxyAttrs(o.stepProxy));
  return attrs;
}

/** FrontendAttrs that hand RUN steps the egress proxy (see FrontendInputs.stepProxy). */
export function stepProxyAttrs(url: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const k of PROXY_ARGS) attrs[`build-arg:${k}`] = url;
  attrs["build-arg:NO_PROXY"] = NO_PROXY;
  attrs["build-arg:no_proxy"] = NO_PROXY;
  return attrs;
}

/** Where the "dockerfile" local dir points and the name inside it. */
export function dockerfileLocation(context: string, dockerfile?: string): { dir: string; name: string } {
  const file = dockerfile ? path.resolve(dockerfile) : path.join(path.resolve(context), "Dockerfile");
  return { dir: path.dirname(file), name: path.basename(file) };
}

import { execFile } from "node:child_process";
import { lstat, readlink, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { CNI_CONFIG_PATH } from "../buildkitd-config.js";
import { SandboxError } from "../errors.js";
import { sharedLibraries } from "./shared-libraries.js";

const execFileAsync = promisify(execFile);

/** One rootfs entry; paths are relative to `/` (no leading slash). */
export type RootfsEntry =
  | { type: "directory"; path: string; mode: number }
  | { type: "file"; path: string; mode: number; source: string; size: number }
  | { type: "file"; path: string; mode: number; content: Buffer }
  | { type: "symlink"; path: string; target: string };

/** Host binaries that go into the image, already resolved to real files. */
export interface SandboxTools {
  buildkitd: string;
  buildctl: string;
  proxy: string;
  /** Debian's runc (the tools dir holds a symlink to /usr/sbin/runc). */
  runc: string;
  /** A static busybox. */
  busybox: string;
  /** The CNI plugins of the step network (buildkitd's per-step network namespaces). */
  cniLoopback: string;
  cniBridge: string;
  cniHostLocal: string;
  /** nft (Debian's nftables, with its libraries): the step firewall. */
  nft: string;
  /** Debian's CA bundle: buildkitd verifies upstream registries and ADD https:// with it. */
  caCertificates: string;
}

/** Generated files of the image. */
export interface SandboxTexts {
  entrypoint: string;
  buildkitdToml: string;
  cniConfig: string;
  stepFirewall: string;
}

export interface RootfsPlan {
  /** Sorted by path, parents before children. */
  entries: RootfsEntry[];
  /** Every host file whose bytes end up in the image (fingerprinted for the fast path). */
  hostFiles: string[];
}

const EMPTY_DIRS: [string, number][] = [
  ["dev", 0o755],
  ["proc", 0o555],
  ["sys", 0o555],
  ["root", 0o700],
  ["tmp", 0o1777],
  ["run", 0o755],
  ["run/arca", 0o755],
  ["var/lib/buildkit", 0o711],
];

const PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP = "root:x:0:\nnogroup:x:65534:\n";
const HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/** Collects the rootfs: tools, runc's libraries and loader as on the host, busybox applets, config files. */
export async function planRootfs(
  tools: SandboxTools,
  texts: SandboxTexts,
  signal?: AbortSignal,
): Promise<RootfsPlan> {
  const plan = new PlanBuilder();
  const bins: [string, string][] = [
    ["usr/local/bin/buildkitd", tools.buildkitd],
    ["usr/local/bin/buildctl", tools.buildctl],
    ["usr/local/bin/arca-proxy", tools.proxy],
    ["usr/bin/runc", tools.runc],
    ["bin/busybox", tools.busybox],
    ["opt/cni/bin/loopback", tools.cniLoopback],
    ["opt/cni/bin/bridge", tools.cniBridge],
    ["opt/cni/bin/host-local", tools.cniHostLocal],
    ["usr/sbin/nft", tools.nft],
  ];
  for (const [at, src] of bins) {
    await plan.hostFile(at, src, 0o755);
    // Every binary, not only runc: a dynamically linked build of any tool must still run in the image.
    for (const lib of await sharedLibraries(src, signal)) await plan.hostPath(lib);
  }
  for (const applet of await busyboxApplets(tools.busybox, signal)) {
    if (applet === "busybox" || applet.includes("/") || plan.has(`bin/${applet}`)) continue;
    plan.add({ type: "symlink", path: `bin/${applet}`, target: "busybox" });
  }
  await plan.hostFile("etc/ssl/certs/ca-certificates.crt", tools.caCertificates, 0o644);
  plan.text("entrypoint.sh", texts.entrypoint, 0o755);
  plan.text("etc/buildkit/buildkitd.toml", texts.buildkitdToml, 0o644);
  plan.text(CNI_CONFIG_PATH.slice(1), texts.cniConfig, 0o644);
  plan.text("etc/arca/step-firewall.nft", texts.stepFirewall, 0o644);
  plan.text("etc/passwd", PASSWD, 0o644);
  plan.text("etc/group", GROUP, 0o644);
  plan.text("etc/hosts", HOSTS, 0o644);
  for (const [dir, mode] of EMPTY_DIRS) plan.dir(dir, mode);
  return plan.finish();
}

/** Applet names of a busybox binary (`busybox --list`). */
export async function busyboxApplets(busybox: string, signal?: AbortSignal): Promise<string[]> {
  try {
    const { stdout } = await execFileAsync(busybox, ["--list"], { signal, encoding: "utf8" });
    return stdout.split("\n").filter((l) => l !== "");
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    throw new SandboxError("assembly_failed", `${busybox} --list failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

class PlanBuilder {
  private readonly entries = new Map<string, RootfsEntry>();
  private readonly hostFiles = new Set<string>();

  has(p: string): boolean {
    return this.entries.has(p);
  }

  add(entry: RootfsEntry): void {
    this.parents(entry.path);
    const prev = this.entries.get(entry.path);
    if (prev) {
      if (prev.type === "directory" && entry.type === "directory") return;
      throw new SandboxError("assembly_failed", `two rootfs entries for /${entry.path}`);
    }
    this.entries.set(entry.path, entry);
  }

  dir(p: string, mode: number): void {
    const prev = this.entries.get(p);
    // An explicit mode wins over the default of an implied parent.
    if (prev?.type === "directory") prev.mode = mode;
    else this.add({ type: "directory", path: p, mode });
  }

  text(p: string, text: string, mode: number): void {
    this.add({ type: "file", path: p, mode, content: Buffer.from(text, "utf8") });
  }

  async hostFile(at: string, src: string, mode: number): Promise<void> {
    const st = await stat(src);
    if (!st.isFile()) throw new SandboxError("assembly_failed", `${src} is not a regular file`);
    this.add({ type: "file", path: at, mode, source: src, size: st.size });
    this.hostFiles.add(src);
  }

  /**
   * Adds an absolute host path at the same place in the rootfs, recreating its symlink chain (e.g.
   * libseccomp.so.2 -> libseccomp.so.2.5.4, /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...).
   */
  async hostPath(abs: string, depth = 0): Promise<void> {
    const at = abs.replace(/^\/+/, "");
    if (this.entries.has(at)) return;
    if (depth > 8) throw new SandboxError("assembly_failed", `too many symlinks at ${abs}`);
    const st = await lstat(abs);
    if (st.isSymbolicLink()) {
      const target = await readlink(abs);
      this.add({ type: "symlink", path: at, target });
      await this.hostPath(path.resolve(path.dirname(abs), target), depth + 1);
    } else {
      // Shared objects get 0755 like the loader: the kernel maps the interpreter with exec permission.
      await this.hostFile(at, abs, 0o755);
    }
  }

  finish(): RootfsPlan {
    const entries = [...this.entries.values()].sort((a, b) => compareBytes(a.path, b.path));
    return { entries, hostFiles: [...this.hostFiles].sort(compareBytes) };
  }

  private parents(p: string): void {
    const parts = p.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      const prev = this.entries.get(dir);
      if (!prev) this.entries.set(dir, { type: "directory", path: dir, mode: 0o755 });
      else if (prev.type !== "directory") {
        throw new SandboxError("assembly_failed", `/${dir} is both a directory and a ${prev.type}`);
      }
    }
  }
}

/** Locale-independent order, so the same inputs give the same tar on every machine. */
function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

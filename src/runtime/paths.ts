import { createHash } from "node:crypto";
import { join } from "node:path";

/**
 * Where user-namespaced containers' rootfs are mounted. runc's init resolves the rootfs path as the
 * container's root (an unprivileged host uid), so every directory above it must be searchable by that
 * uid; the data root (e.g. /root/.arca, mode 0700) is not. Bind mount sources are opened by runc on
 * the host side, so only the rootfs moves.
 */
export const USERNS_ROOTFS_BASE = "/run/arca-rootfs";

/** Where the runtime keeps things under the data root (see DESIGN: containers/, layers/, volumes/). */
export class RuntimePaths {
  readonly containers: string;
  readonly runcRoot: string;
  readonly layers: string;
  readonly volumes: string;
  readonly db: string;
  /** This data root's share of USERNS_ROOTFS_BASE (mode 0711: searchable, not listable). */
  readonly usernsRootfs: string;

  constructor(readonly dataRoot: string) {
    this.containers = join(dataRoot, "containers");
    this.runcRoot = join(this.containers, "runc-state");
    this.layers = join(dataRoot, "layers");
    this.volumes = join(dataRoot, "volumes");
    this.db = join(this.containers, "containers.db");
    const tag = createHash("sha256").update(dataRoot).digest("hex").slice(0, 16);
    this.usernsRootfs = join(USERNS_ROOTFS_BASE, tag);
  }

  /**
   * The rootfs mount point: in the bundle, or for a user-namespaced container under usernsRootfs in a
   * directory of its own (mode 0710, group = the container's root gid: only it and host root enter).
   */
  rootfs(id: string, userns: boolean): string {
    return userns ? join(this.usernsRootfs, id, "rootfs") : this.file(id, "rootfs");
  }

  /** Unpacked layers with owners shifted for a user namespace mapping. */
  shiftedLayers(hostId: number, size: number): string {
    return join(this.layers, `userns-${hostId}-${size}`);
  }

  /** The container's bundle dir: config.json, rootfs (overlay mountpoint), upper, work, logs. */
  dir(id: string): string {
    return join(this.containers, id);
  }

  file(id: string, name: ContainerFile): string {
    return join(this.containers, id, name === "json-log" ? `${id}-json.log` : name);
  }

  volumeData(name: string): string {
    return join(this.volumes, name, "_data");
  }
}

export type ContainerFile =
  | "config.json"
  | "rootfs"
  | "upper"
  | "work"
  | "stdout.raw"
  | "stderr.raw"
  | "json-log"
  | "pid"
  | "exit-code"
  | "runc.log"
  | "hostname"
  | "hosts"
  | "resolv.conf";

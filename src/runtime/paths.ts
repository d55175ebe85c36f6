import { join } from "node:path";

/** Where the runtime keeps things under the data root (see DESIGN: containers/, layers/, volumes/). */
export class RuntimePaths {
  readonly containers: string;
  readonly runcRoot: string;
  readonly layers: string;
  readonly volumes: string;
  readonly db: string;

  constructor(readonly dataRoot: string) {
    this.containers = join(dataRoot, "containers");
    this.runcRoot = join(this.containers, "runc-state");
    this.layers = join(dataRoot, "layers");
    this.volumes = join(dataRoot, "volumes");
    this.db = join(this.containers, "containers.db");
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

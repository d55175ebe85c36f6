/**
 * The name under which buildkitd reaches a registry on the host's loopback
 * (`docker push localhost:5000/app` means the user's host, as with
 * dockerd, never the sandbox's own loopback). Loopback stays refused to
 * everyone else; the daemon grants buildkitd one port at a time, for as
 * long as a build that pushes or exports cache there runs.
 */
export const HOST_LOOPBACK_NAME = "host-loopback.arca.internal";

/** Refcounted grants of host loopback ports. */
export class HostLoopbackGrants {
  private readonly ports = new Map<number, number>();

  allow(port: number): () => void {
    this.ports.set(port, (this.ports.get(port) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.ports.get(port) ?? 1) - 1;
      if (n <= 0) this.ports.delete(port);
      else this.ports.set(port, n);
    };
  }

  has(port: number): boolean {
    return this.ports.has(port);
  }
}

import os from "node:os";

const TTL_MS = 5000;
let cached: { at: number; addresses: string[] } | undefined;

/**
 * This host's interface addresses, re-read at most every 5 s (interfaces come
 * and go: bridges, VPNs) so a decision costs no syscall on the hot path.
 */
export function hostAddresses(): string[] {
  const now = Date.now();
  if (!cached || now - cached.at > TTL_MS) {
    const addresses: string[] = [];
    for (const list of Object.values(os.networkInterfaces())) {
      for (const a of list ?? []) addresses.push(a.address);
    }
    cached = { at: now, addresses };
  }
  return cached.addresses;
}

import { statfs } from "node:fs/promises";

/** dockerd's cap on the reserved build cache (moby builder-next: diskSpaceReserveBytes, 10 GB). */
const RESERVE_CAP = 10 * 1e9;
/** dockerd's share of the disk kept for the build cache (diskSpaceReservePercentage). */
const RESERVE_PERCENT = 10;

/**
 * BuildKit's gckeepstorage sized as dockerd sizes its builder GC when none is configured (moby
 * builder-next/controller.go DetectDefaultGCCap): 10% of the filesystem holding the cache, at most
 * 10 GB. dockerd also starts GC when less than 20% is free or more than 75% is used; buildkitd.toml's
 * one knob here is the reserve, so a small disk no longer gets a fixed 10 GiB it cannot spare.
 */
export function gcKeepBytesForDisk(totalBytes: number): number {
  return Math.min(Math.floor((totalBytes * RESERVE_PERCENT) / 100), RESERVE_CAP);
}

/** gcKeepBytesForDisk for the filesystem that holds dir (the daemon's data root, where the cache volume lives). */
export async function defaultGcKeepBytes(dir: string): Promise<number> {
  const st = await statfs(dir);
  return gcKeepBytesForDisk(st.bsize * st.blocks);
}

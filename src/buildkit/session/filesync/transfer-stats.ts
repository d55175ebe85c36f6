/** Transfer counters (of one dir-name, or summed over all). */
export interface TransferCounters {
  /** DiffCopy calls served. */
  calls: number;
  /** STAT entries sent (files, dirs, symlinks; not the end-of-walk marker). */
  entriesSent: number;
  /** Files the daemon asked for (REQ). */
  filesRequested: number;
  /** Files fully sent (EOF DATA queued). */
  filesSent: number;
  /** File content bytes sent. */
  bytesSent: number;
}

/** Filled in by the FileSync service; the caller reads it after the build. Top-level fields sum all dirs. */
export interface TransferStats extends TransferCounters {
  readonly dirs: Record<string, TransferCounters>;
}

const zero = (): TransferCounters => ({
  calls: 0,
  entriesSent: 0,
  filesRequested: 0,
  filesSent: 0,
  bytesSent: 0,
});

export function createTransferStats(): TransferStats {
  return { ...zero(), dirs: Object.create(null) as Record<string, TransferCounters> };
}

/** Adds n to one counter of dirName and of the totals. */
export function countTransfer(
  stats: TransferStats,
  dirName: string,
  counter: keyof TransferCounters,
  n = 1,
): void {
  let d = stats.dirs[dirName];
  if (!d) {
    d = zero();
    stats.dirs[dirName] = d;
  }
  d[counter] += n;
  stats[counter] += n;
}

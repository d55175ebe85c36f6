/**
 * Go os.FileMode bits, which fsutil puts on the wire in Stat.mode (not POSIX
 * st_mode). Values above 2^31 are kept as unsigned numbers for uint32 fields.
 */
export const GoMode = {
  dir: 2 ** 31,
  symlink: 2 ** 27,
  device: 2 ** 26,
  namedPipe: 2 ** 25,
  socket: 2 ** 24,
  setuid: 2 ** 23,
  setgid: 2 ** 22,
  charDevice: 2 ** 21,
  sticky: 2 ** 20,
  irregular: 2 ** 19,
} as const;

/** os.ModeType: entries with any of these bits carry no file data. */
export const GO_MODE_TYPE =
  GoMode.dir +
  GoMode.symlink +
  GoMode.namedPipe +
  GoMode.socket +
  GoMode.device +
  GoMode.charDevice +
  GoMode.irregular;

const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFBLK = 0o060000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;

/** Converts a POSIX st_mode to Go's os.FileMode (as os.Lstat does on Linux). */
export function goModeFromPosix(st: number): number {
  let m = st & 0o777;
  switch (st & S_IFMT) {
    case S_IFBLK:
      m += GoMode.device;
      break;
    case S_IFCHR:
      m += GoMode.device + GoMode.charDevice;
      break;
    case S_IFDIR:
      m += GoMode.dir;
      break;
    case S_IFIFO:
      m += GoMode.namedPipe;
      break;
    case S_IFLNK:
      m += GoMode.symlink;
      break;
    case S_IFSOCK:
      m += GoMode.socket;
      break;
    case S_IFREG:
      break;
  }
  if (st & 0o4000) m += GoMode.setuid;
  if (st & 0o2000) m += GoMode.setgid;
  if (st & 0o1000) m += GoMode.sticky;
  return m;
}

// JS bitwise ops work on the 32-bit pattern, so `&` is exact for uint32
// values; `>>> 0` turns results back into unsigned numbers.
function has(mode: number, bit: number): boolean {
  return (mode & bit) !== 0;
}

export function goModeHas(mode: number, bit: number): boolean {
  return has(mode, bit);
}

/** Clears Go mode bits. */
export function goModeClear(mode: number, bits: number): number {
  return (mode & ~bits) >>> 0;
}

/** fsutil's fileCanRequestData: only entries without type bits have contents. */
export function isRegularGoMode(mode: number): boolean {
  return (mode & GO_MODE_TYPE) === 0;
}

export function isDirGoMode(mode: number): boolean {
  return has(mode, GoMode.dir);
}

export function isSymlinkGoMode(mode: number): boolean {
  return has(mode, GoMode.symlink);
}

/** The POSIX permission bits (incl. setuid/setgid/sticky) for chmod. */
export function posixPermFromGoMode(mode: number): number {
  let p = mode & 0o777;
  if (has(mode, GoMode.setuid)) p |= 0o4000;
  if (has(mode, GoMode.setgid)) p |= 0o2000;
  if (has(mode, GoMode.sticky)) p |= 0o1000;
  return p;
}

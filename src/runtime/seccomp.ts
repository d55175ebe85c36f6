import { release } from "node:os";
import { DOCKER_DEFAULT_SECCOMP } from "./seccomp-docker-default.js";
import type { SeccompChanges } from "./types.js";

/** A condition of a profile rule (moby's `Filter`). */
interface SeccompFilter {
  caps?: string[];
  arches?: string[];
  /** "<kernel>.<major>", e.g. "4.8". */
  minKernel?: string;
}

interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

interface SeccompRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[];
  comment?: string;
  includes?: SeccompFilter;
  excludes?: SeccompFilter;
}

/** A profile in moby's format: rules that apply depending on architecture, capabilities and kernel. */
export interface SeccompTemplate {
  defaultAction: string;
  defaultErrnoRet?: number;
  archMap: { architecture: string; subArchitectures: string[] | null }[];
  syscalls: SeccompRule[];
}

/** The OCI runtime spec's `linux.seccomp`. */
export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures: string[];
  syscalls: { names: string[]; action: string; errnoRet?: number; args?: SeccompArg[] }[];
}

const ENOSYS = 38;

/** Node's process.arch → moby's native architecture names (seccomp.go goToNative). */
const NATIVE: Record<string, string> = {
  ia32: "x86",
  x64: "amd64",
  arm: "arm",
  arm64: "arm64",
  loong64: "loongarch64",
  mips: "mips",
  mipsel: "mipsel",
  ppc: "ppc",
  // Node runs on little-endian ppc64 only.
  ppc64: "ppc64le",
  riscv64: "riscv64",
  s390: "s390",
  s390x: "s390x",
};
/** moby's native names → libseccomp architectures (seccomp.go nativeToSeccomp). */
const SCMP_ARCH: Record<string, string> = {
  x86: "SCMP_ARCH_X86",
  amd64: "SCMP_ARCH_X86_64",
  arm: "SCMP_ARCH_ARM",
  arm64: "SCMP_ARCH_AARCH64",
  loongarch64: "SCMP_ARCH_LOONGARCH64",
  ppc: "SCMP_ARCH_PPC",
  ppc64: "SCMP_ARCH_PPC64",
  ppc64le: "SCMP_ARCH_PPC64LE",
  riscv64: "SCMP_ARCH_RISCV64",
  s390: "SCMP_ARCH_S390",
  s390x: "SCMP_ARCH_S390X",
};

function kernelAtLeast(min: string, kernelRelease: string): boolean {
  const [k = 0, m = 0] = kernelRelease.split(/[.-]/).map(Number);
  const [mk = 0, mm = 0] = min.split(".").map(Number);
  return k > mk || (k === mk && m >= mm);
}

/**
 * The OCI seccomp config for a container with these (bounding) capabilities: moby's `setupSeccomp`
 * (github.com/moby/profiles/seccomp seccomp_linux.go) applied to Docker's default profile, then the
 * changes: allowed syscalls are added as one more allow rule, ENOSYS ones as an errno rule (neither is
 * in the default's allow list, so no rule conflicts).
 */
export function seccompProfile(
  caps: readonly string[],
  changes: SeccompChanges = {},
  opts: { template?: SeccompTemplate; arch?: string; kernelRelease?: string } = {},
): OciSeccomp {
  const t = opts.template ?? DOCKER_DEFAULT_SECCOMP;
  const arch = NATIVE[opts.arch ?? process.arch] ?? opts.arch ?? process.arch;
  const kernel = opts.kernelRelease ?? release();
  const scmp = SCMP_ARCH[arch];
  const entry = t.archMap.find((a) => a.architecture === scmp);
  const architectures = entry ? [entry.architecture, ...(entry.subArchitectures ?? [])] : [];
  const has = new Set(caps);
  const syscalls: OciSeccomp["syscalls"] = [];
  for (const r of t.syscalls) {
    const ex = r.excludes;
    if (ex?.arches?.includes(arch)) continue;
    if (ex?.caps?.some((c) => has.has(c))) continue;
    if (ex?.minKernel && kernelAtLeast(ex.minKernel, kernel)) continue;
    const inc = r.includes;
    if (inc?.arches?.length && !inc.arches.includes(arch)) continue;
    if (inc?.caps?.length && !inc.caps.every((c) => has.has(c))) continue;
    if (inc?.minKernel && !kernelAtLeast(inc.minKernel, kernel)) continue;
    syscalls.push({
      names: r.names,
      action: r.action,
      ...(r.errnoRet === undefined ? {} : { errnoRet: r.errnoRet }),
      ...(r.args ? { args: r.args } : {}),
    });
  }
  if (changes.allow?.length) syscalls.push({ names: [...changes.allow], action: "SCMP_ACT_ALLOW" });
  if (changes.enosys?.length)
    syscalls.push({ names: [...changes.enosys], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS });
  return {
    defaultAction: t.defaultAction,
    ...(t.defaultErrnoRet === undefined ? {} : { defaultErrnoRet: t.defaultErrnoRet }),
    architectures,
    syscalls,
  };
}

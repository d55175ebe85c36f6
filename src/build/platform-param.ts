import { BuildError } from "./errors.js";

/**
 * containerd/platforms.Parse, as dockerd applies it to `platform`: hand-written
 * because no installed package parses OCI platform specifiers. Returns the
 * normalized `os/arch[/variant]`.
 */
const KNOWN_OS = new Set(
  "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 solaris wasip1 windows zos".split(
    " ",
  ),
);
const KNOWN_ARCH = new Set(
  "386 amd64 amd64p32 arm armbe arm64 arm64be ppc64 ppc64le loong64 mips mipsle mips64 mips64le mips64p32 mips64p32le ppc riscv riscv64 s390 s390x sparc sparc64 wasm".split(
    " ",
  ),
);
const COMPONENT_RE = /^[A-Za-z0-9_.-]+$/;

function hostArch(): string {
  return process.arch === "x64" ? "amd64" : process.arch === "ia32" ? "386" : process.arch;
}

function normalizeArch(arch: string, variant: string): [string, string] {
  const a = arch.toLowerCase();
  const v = variant.toLowerCase();
  switch (a) {
    case "i386":
      return ["386", ""];
    case "x86_64":
    case "x86-64":
    case "amd64":
      return ["amd64", v === "v1" ? "" : v];
    case "aarch64":
    case "arm64":
      return ["arm64", v === "8" || v === "v8" || v === "v8.0" ? "" : v];
    case "armhf":
      return ["arm", "v7"];
    case "armel":
      return ["arm", "v6"];
    case "arm":
      return ["arm", v === "" || v === "7" ? "v7" : v === "5" || v === "6" || v === "8" ? `v${v}` : v];
    default:
      return [a, v];
  }
}

export function parsePlatform(spec: string): string {
  const invalid = (why: string) => new BuildError("invalid_parameter", `${JSON.stringify(spec)}: ${why}`);
  const parts = spec.split("/");
  for (const p of parts) {
    if (!COMPONENT_RE.test(p)) {
      throw new BuildError(
        "invalid_parameter",
        `${JSON.stringify(p)} is an invalid component of ${JSON.stringify(spec)}: platform specifier component must match "^[A-Za-z0-9_.-]+$": invalid argument`,
      );
    }
  }
  let os: string;
  let arch: string;
  let variant = "";
  if (parts.length === 1) {
    const p = (parts[0] as string).toLowerCase();
    if (KNOWN_OS.has(p)) {
      os = p;
      [arch, variant] = normalizeArch(hostArch(), "");
    } else {
      [arch, variant] = normalizeArch(p, "");
      if (!KNOWN_ARCH.has(arch)) throw invalid("unknown operating system or architecture: invalid argument");
      os = "linux";
    }
  } else if (parts.length <= 3) {
    os = (parts[0] as string).toLowerCase();
    [arch, variant] = normalizeArch(parts[1] as string, parts[2] ?? "");
  } else {
    throw invalid("cannot parse platform specifier: invalid argument");
  }
  if (os === "macos") os = "darwin";
  return [os, arch, variant].filter(Boolean).join("/");
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Node's process.arch spelled the way OCI/Go spell GOARCH. */
export function hostArchitecture(arch: string = process.arch): string {
  switch (arch) {
    case "x64":
      return "amd64";
    case "ia32":
      return "386";
    case "ppc64":
      return "ppc64le";
    default:
      return arch;
  }
}

export function hostPlatform(): Platform {
  return { os: "linux", architecture: hostArchitecture() };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

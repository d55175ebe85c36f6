import { BlockList, isIP } from "node:net";

export type IpFamily = "ipv4" | "ipv6";

/** An IP literal in one canonical form, so that equal addresses compare equal as strings. */
export interface Ip {
  address: string;
  family: IpFamily;
}

/**
 * Parses an IP literal ("1.2.3.4", "::1", "[::1]", "fe80::1%eth0") into its
 * canonical form; IPv4-mapped IPv6 ("::ffff:127.0.0.1", "::ffff:7f00:1")
 * becomes the IPv4 address it reaches, so no rule can be dodged by spelling.
 * Anything else (a host name) is undefined.
 */
export function parseIp(text: string): Ip | undefined {
  let s = text.trim();
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  const v = isIP(s);
  if (v === 4) return { address: s.split(".").map(Number).join("."), family: "ipv4" };
  if (v !== 6) return undefined;
  // The WHATWG URL parser yields RFC 5952 text (lower case, zeros compressed, mapped v4 in hex).
  const canonical = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped) {
    const hi = Number.parseInt(mapped[1] as string, 16);
    const lo = Number.parseInt(mapped[2] as string, 16);
    return { address: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, family: "ipv4" };
  }
  return { address: canonical, family: "ipv6" };
}

/** Host names compare case-insensitively and without a trailing dot; IP literals canonically. */
export function normalizeHost(host: string): string {
  const ip = parseIp(host);
  if (ip) return ip.address;
  return host.trim().toLowerCase().replace(/\.+$/, "");
}

/** "host:port", with IPv6 in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

const ALWAYS_REFUSED: { name: string; cidr: string }[] = [
  { name: "loopback", cidr: "127.0.0.0/8" },
  { name: "loopback", cidr: "::1/128" },
  { name: "link-local (cloud metadata)", cidr: "169.254.0.0/16" },
  { name: "link-local", cidr: "fe80::/10" },
  // Connecting to 0.0.0.0 (or ::) reaches the host itself on Linux.
  { name: "unspecified", cidr: "0.0.0.0/8" },
  { name: "unspecified", cidr: "::/128" },
];

const refusedLists = ALWAYS_REFUSED.map((r) => {
  const [net, len] = r.cidr.split("/") as [string, string];
  const list = new BlockList();
  const family: IpFamily = net.includes(":") ? "ipv6" : "ipv4";
  list.addSubnet(net, Number(len), family);
  return { ...r, family, list };
});

/**
 * Why an address is refused unless a rule names it, or undefined for an
 * ordinary address: loopback, link-local (cloud metadata endpoints),
 * unspecified, or one of this host's own addresses.
 */
export function refusedRange(ip: Ip, ownAddresses: readonly string[]): string | undefined {
  for (const r of refusedLists) {
    if (r.family === ip.family && r.list.check(ip.address, ip.family)) return `${r.name} ${r.cidr}`;
  }
  for (const own of ownAddresses) {
    if (parseIp(own)?.address === ip.address) return "an address of this host";
  }
  return undefined;
}

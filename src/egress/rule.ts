import { BlockList } from "node:net";
import { type Ip, normalizeHost, parseIp } from "./address.js";

/** One parsed entry of the policy's "allow" list. */
export interface AllowRule {
  /** The entry as written, for messages and audit records. */
  text: string;
  /** Only this port when set; any port otherwise. */
  port?: number;
  target:
    | { kind: "any" }
    | { kind: "host"; host: string }
    | { kind: "subdomains"; suffix: string }
    | { kind: "network"; list: BlockList; family: "ipv4" | "ipv6" };
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * Parses "*.example.org", "example.org", "host:443", "10.1.0.0/16",
 * "10.1.0.0/16:443", "1.2.3.4", "fd00::/8", "[fd00::1]:443", "*" (any host;
 * never counts as naming an always-refused address). Returns an error
 * message (without the field name) for anything else.
 */
export function parseAllowRule(text: string): AllowRule | string {
  const s = text.trim().toLowerCase();
  if (s === "") return "is empty";
  let hostPart = s;
  let portText: string | undefined;
  if (s.startsWith("[")) {
    const end = s.indexOf("]");
    if (end < 0) return `${JSON.stringify(text)} has "[" without "]"`;
    hostPart = s.slice(1, end);
    const rest = s.slice(end + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return `${JSON.stringify(text)}: expected ":PORT" after "]"`;
      portText = rest.slice(1);
    }
  } else if ((s.match(/:/g) ?? []).length === 1) {
    [hostPart, portText] = s.split(":") as [string, string];
  }
  let port: number | undefined;
  if (portText !== undefined) {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
    if (!(port >= 1 && port <= 65535)) return `${JSON.stringify(text)}: port must be 1-65535`;
  }
  const target = parseTarget(hostPart);
  if (typeof target === "string") return `${JSON.stringify(text)} ${target}`;
  return port === undefined ? { text, target } : { text, port, target };
}

function parseTarget(h: string): AllowRule["target"] | string {
  if (h === "*") return { kind: "any" };
  if (h.includes("/")) {
    const [net, lenText] = h.split("/") as [string, string];
    const ip = parseIp(net);
    if (!ip || !/^\d{1,3}$/.test(lenText ?? "")) return "is not a valid CIDR (e.g. 10.1.0.0/16, fd00::/8)";
    const len = Number(lenText);
    const max = ip.family === "ipv4" ? 32 : 128;
    if (len > max) return `has a prefix length above ${max}`;
    return network(ip, len);
  }
  const ip = parseIp(h);
  if (ip) return network(ip, ip.family === "ipv4" ? 32 : 128);
  if (h.includes(":")) return "is not a valid IPv6 address (write [ADDR]:PORT for a port)";
  const wildcard = h.startsWith("*.");
  const name = normalizeHost(wildcard ? h.slice(2) : h);
  if (name.length === 0 || name.length > 253 || !name.split(".").every((l) => LABEL.test(l))) {
    return "is not a host name, *.domain, IP address or CIDR";
  }
  return wildcard ? { kind: "subdomains", suffix: `.${name}` } : { kind: "host", host: name };
}

function network(ip: Ip, len: number): AllowRule["target"] {
  const list = new BlockList();
  list.addSubnet(ip.address, len, ip.family);
  return { kind: "network", list, family: ip.family };
}

function portMatches(rule: AllowRule, port: number): boolean {
  return rule.port === undefined || rule.port === port;
}

/** Does the rule allow the (normalized) host name on this port? Network rules never match names. */
export function matchesName(rule: AllowRule, host: string, port: number): boolean {
  if (!portMatches(rule, port)) return false;
  const t = rule.target;
  switch (t.kind) {
    case "any":
      return true;
    case "host":
      return t.host === host;
    case "subdomains":
      return host.endsWith(t.suffix);
    case "network":
      return false;
  }
}

/** Does the rule (an IP or CIDR) cover this address on this port? */
export function matchesAddress(rule: AllowRule, ip: Ip, port: number): boolean {
  const t = rule.target;
  return (
    t.kind === "network" &&
    t.family === ip.family &&
    portMatches(rule, port) &&
    t.list.check(ip.address, ip.family)
  );
}

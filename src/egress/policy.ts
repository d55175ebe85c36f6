import { readFile } from "node:fs/promises";
import { hostPort, type Ip, normalizeHost, parseIp, refusedRange } from "./address.js";
import { EgressError } from "./errors.js";
import { hostAddresses } from "./own-addresses.js";
import { type AllowRule, matchesAddress, matchesName, parseAllowRule } from "./rule.js";

export type EgressMode = "audit" | "allowlist" | "deny";

/** The policy file's shape (`<data root>/egress.json`). */
export interface EgressPolicyDoc {
  mode: EgressMode;
  allow?: string[];
  hosts?: Record<string, string>;
}

export interface EgressDecision {
  allow: boolean;
  /** The rule that decided, e.g. `allow "*.example.org"`, `mode audit`, `always-refused loopback 127.0.0.0/8`. */
  rule: string;
  /** Why it was denied. */
  reason?: string;
  /** The exact change that would allow it. */
  hint?: string;
  /** The address to dial: the first allowed one. */
  address?: string;
}

export interface DecideOptions {
  /** This host's addresses (refused unless named); default: the interfaces' addresses. */
  ownAddresses?: readonly string[];
}

const MODES: readonly EgressMode[] = ["audit", "allowlist", "deny"];
const FIELDS = new Set(["mode", "allow", "hosts"]);

export class EgressPolicy {
  private constructor(
    readonly mode: EgressMode,
    readonly rules: readonly AllowRule[],
    private readonly hosts: ReadonlyMap<string, Ip>,
    /** Where the policy came from (file path), named in every message. */
    readonly source: string,
  ) {}

  /** Validates a parsed policy document; errors name the source and the field. */
  static parse(json: unknown, source: string): EgressPolicy {
    const bad = (field: string, msg: string) =>
      new EgressError("invalid_policy", `invalid egress policy ${source}: ${field} ${msg}`);
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw bad("the document", 'must be a JSON object like {"mode": "audit"}');
    }
    const doc = json as Record<string, unknown>;
    for (const key of Object.keys(doc)) {
      if (!FIELDS.has(key))
        throw bad(JSON.stringify(key), 'is not a known field (known: "mode", "allow", "hosts")');
    }
    if (!MODES.includes(doc.mode as EgressMode)) {
      throw bad('"mode"', `must be one of "audit", "allowlist", "deny" (got ${JSON.stringify(doc.mode)})`);
    }
    const rules: AllowRule[] = [];
    if (doc.allow !== undefined) {
      if (!Array.isArray(doc.allow)) throw bad('"allow"', "must be an array of strings");
      doc.allow.forEach((entry, i) => {
        if (typeof entry !== "string") throw bad(`"allow"[${i}]`, "must be a string");
        const rule = parseAllowRule(entry);
        if (typeof rule === "string") throw bad(`"allow"[${i}]`, rule);
        rules.push(rule);
      });
    }
    const hosts = new Map<string, Ip>();
    if (doc.hosts !== undefined) {
      if (typeof doc.hosts !== "object" || doc.hosts === null || Array.isArray(doc.hosts)) {
        throw bad('"hosts"', 'must be an object like {"registry.test": "127.0.0.1"}');
      }
      for (const [name, value] of Object.entries(doc.hosts)) {
        const ip = typeof value === "string" ? parseIp(value) : undefined;
        if (!ip)
          throw bad(
            `"hosts".${JSON.stringify(name)}`,
            `must be an IP address (got ${JSON.stringify(value)})`,
          );
        if (parseIp(name) || name.trim() === "")
          throw bad(`"hosts".${JSON.stringify(name)}`, "must be a host name");
        hosts.set(normalizeHost(name), ip);
      }
    }
    return new EgressPolicy(doc.mode as EgressMode, rules, hosts, source);
  }

  /** The policy when no file exists: audit (allow and log everything but the always-refused ranges). */
  static defaultFor(source: string): EgressPolicy {
    return new EgressPolicy("audit", [], new Map(), source);
  }

  /** The hosts map entry for a name (like --add-host), if any. */
  resolveOverride(host: string): string | undefined {
    return this.hosts.get(normalizeHost(host))?.address;
  }

  /** One line for logs: `allowlist, 3 allow entries, 1 hosts entry (/x/egress.json)`. */
  describe(): string {
    const n = (k: number, w: string) => `${k} ${w} ${k === 1 ? "entry" : "entries"}`;
    return `${this.mode}, ${n(this.rules.length, "allow")}, ${n(this.hosts.size, "hosts")} (${this.source})`;
  }

  /**
   * Decides a request to host:port whose name resolved to `addresses`. The
   * name and every address are checked; the first allowed address is the one
   * to dial. Always-refused addresses (loopback, link-local, unspecified, this
   * host's own) pass only when named: by an allow entry for that IP/CIDR or
   * that exact host, or by the hosts-map entry the request used.
   */
  decide(host: string, port: number, addresses: string[], opts: DecideOptions = {}): EgressDecision {
    const name = normalizeHost(host);
    const target = hostPort(name, port);
    const reload = "and run `arca egress reload`";
    if (this.mode === "deny") {
      return {
        allow: false,
        rule: "mode deny",
        reason: `the egress policy ${this.source} is in "deny" mode: no connection leaves`,
        hint: `set "mode" to "allowlist" and add "${target}" to "allow" in ${this.source} ${reload}`,
      };
    }
    const isLiteral = parseIp(name) !== undefined;
    // Name rules never apply to IP literals (a "*.0.1" pattern must not match 10.0.0.1).
    const nameRule = this.rules.find(
      (r) => (!isLiteral || r.target.kind === "any") && matchesName(r, name, port),
    );
    const mapped = this.hosts.get(name);
    const own = opts.ownAddresses ?? hostAddresses();
    const notListed: EgressDecision = {
      allow: false,
      rule: "mode allowlist",
      reason: `no "allow" entry of ${this.source} matches ${target}`,
      hint: `add "${target}" to "allow" in ${this.source} ${reload}`,
    };
    let denial: EgressDecision | undefined;
    for (const text of addresses) {
      const ip = parseIp(text);
      if (!ip) continue;
      const addrRule = this.rules.find((r) => matchesAddress(r, ip, port));
      const refused = refusedRange(ip, own);
      if (refused) {
        const named =
          addrRule !== undefined ||
          nameRule?.target.kind === "host" ||
          (mapped !== undefined && mapped.address === ip.address);
        if (!named) {
          const via = ip.address === name ? "" : ` (${name} resolved to ${ip.address})`;
          const alt = ip.address === name ? "" : ` or "${ip.address}"`;
          denial ??= {
            allow: false,
            rule: `always-refused ${refused}`,
            reason: `${ip.address} is ${refused.startsWith("an ") ? refused : `in the ${refused} range`}${via}, refused in every mode unless a rule names it`,
            hint: `add "${target}"${alt} to "allow" in ${this.source} ${reload}`,
          };
          continue;
        }
      }
      if (this.mode === "allowlist" && !nameRule && !addrRule) {
        denial ??= notListed;
        continue;
      }
      const rule = addrRule
        ? `allow "${addrRule.text}"`
        : nameRule
          ? `allow "${nameRule.text}"`
          : refused
            ? `hosts "${name}"`
            : `mode ${this.mode}`;
      return { allow: true, rule, address: ip.address };
    }
    if (denial) return denial;
    if (addresses.length === 0) {
      // Nothing resolved yet: the name alone decides (the caller reports the lookup failure).
      if (this.mode === "allowlist" && !nameRule) return notListed;
      return { allow: true, rule: nameRule ? `allow "${nameRule.text}"` : `mode ${this.mode}` };
    }
    return {
      allow: false,
      rule: "no address",
      reason: `${name} has no usable address`,
      hint: `add "${name}": "ADDRESS" to "hosts" in ${this.source} ${reload}`,
    };
  }
}

/**
 * Reads a policy file; an absent file is the audit-mode default. Invalid JSON
 * or fields fail with the file (and field) named.
 */
export async function loadEgressPolicy(file: string): Promise<EgressPolicy> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return EgressPolicy.defaultFor(file);
    throw new EgressError(
      "policy_unreadable",
      `cannot read egress policy ${file}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new EgressError(
      "invalid_policy",
      `invalid egress policy ${file}: not JSON: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  return EgressPolicy.parse(json, file);
}

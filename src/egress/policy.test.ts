import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { parseIp } from "./address.js";
import { EgressError } from "./errors.js";
import { EgressPolicy, loadEgressPolicy } from "./policy.js";

const SRC = "/etc/arca/egress.json";
const own = { ownAddresses: ["192.0.2.7", "fd00::7"] };
const policy = (doc: unknown) => EgressPolicy.parse(doc, SRC);
const decide = (p: EgressPolicy, host: string, port: number, addrs: string[]) =>
  p.decide(host, port, addrs, own);

describe("EgressPolicy.parse", () => {
  test("accepts the documented shape", () => {
    const p = policy({
      mode: "allowlist",
      allow: ["*.example.org", "packages.example.com:443", "10.1.0.0/16", "[fd00::1]:8443", "fd00:1::/32"],
      hosts: { "registry.arca.test": "127.0.0.1" },
    });
    assert.equal(p.mode, "allowlist");
    assert.equal(p.rules.length, 5);
    assert.equal(p.resolveOverride("Registry.Arca.Test."), "127.0.0.1");
    assert.equal(p.resolveOverride("other.test"), undefined);
  });

  const invalid: [unknown, RegExp][] = [
    [[], /the document must be a JSON object/],
    [{}, /"mode" must be one of "audit", "allowlist", "deny" \(got undefined\)/],
    [{ mode: "open" }, /"mode" must be one of .*got "open"/],
    [{ mode: "audit", allowlist: [] }, /"allowlist" is not a known field/],
    [{ mode: "audit", allow: "x.org" }, /"allow" must be an array of strings/],
    [{ mode: "audit", allow: ["ok.org", 5] }, /"allow"\[1\] must be a string/],
    [{ mode: "audit", allow: ["a b.org"] }, /"allow"\[0\] "a b.org" is not a host name/],
    [{ mode: "audit", allow: ["x.org:0"] }, /"allow"\[0\] "x.org:0": port must be 1-65535/],
    [{ mode: "audit", allow: ["x.org:99999"] }, /port must be 1-65535/],
    [{ mode: "audit", allow: ["10.0.0.0/33"] }, /prefix length above 32/],
    [{ mode: "audit", allow: ["fd00::/129"] }, /prefix length above 128/],
    [{ mode: "audit", allow: ["10.0.0/8"] }, /not a valid CIDR/],
    [{ mode: "audit", allow: [""] }, /"allow"\[0\] is empty/],
    [{ mode: "audit", allow: ["[fd00::1"] }, /without "\]"/],
    [{ mode: "audit", hosts: ["x"] }, /"hosts" must be an object/],
    [{ mode: "audit", hosts: { "r.test": "not-an-ip" } }, /"hosts"\."r.test" must be an IP address/],
    [{ mode: "audit", hosts: { "1.2.3.4": "5.6.7.8" } }, /"hosts"\."1.2.3.4" must be a host name/],
  ];
  for (const [doc, re] of invalid) {
    test(`rejects ${JSON.stringify(doc)}`, () => {
      assert.throws(
        () => policy(doc),
        (err: unknown) => {
          assert.ok(err instanceof EgressError);
          assert.equal(err.code, "invalid_policy");
          assert.equal(err.kind, "invalid_argument");
          assert.match(err.message, new RegExp(`^invalid egress policy ${SRC}: `));
          assert.match(err.message, re);
          return true;
        },
      );
    });
  }
});

describe("EgressPolicy.decide", () => {
  test("audit allows ordinary addresses and says so", () => {
    const d = decide(policy({ mode: "audit" }), "example.org", 443, ["93.184.215.14"]);
    assert.deepEqual(d, { allow: true, rule: "mode audit", address: "93.184.215.14" });
  });

  test("deny refuses everything, even named hosts, with a hint", () => {
    const d = decide(policy({ mode: "deny", allow: ["example.org"] }), "example.org", 443, ["93.184.215.14"]);
    assert.equal(d.allow, false);
    assert.equal(d.rule, "mode deny");
    assert.match(
      d.hint ?? "",
      /set "mode" to "allowlist" and add "example.org:443" to "allow" in \/etc\/arca\/egress.json/,
    );
  });

  test("allowlist: wildcards cover subdomains, not the apex; case and trailing dots are ignored", () => {
    const p = policy({ mode: "allowlist", allow: ["*.Example.org"] });
    assert.equal(decide(p, "a.example.org", 443, ["93.184.215.14"]).allow, true);
    assert.equal(decide(p, "A.B.EXAMPLE.ORG.", 80, ["93.184.215.14"]).rule, 'allow "*.Example.org"');
    const apex = decide(p, "example.org", 443, ["93.184.215.14"]);
    assert.equal(apex.allow, false);
    assert.equal(apex.rule, "mode allowlist");
    assert.equal(
      apex.hint,
      'add "example.org:443" to "allow" in /etc/arca/egress.json and run `arca egress reload`',
    );
    assert.equal(decide(p, "badexample.org", 443, ["93.184.215.14"]).allow, false);
  });

  test("allowlist: host:port allows only that port", () => {
    const p = policy({ mode: "allowlist", allow: ["pkg.example.com:443"] });
    assert.equal(decide(p, "pkg.example.com", 443, ["203.0.113.5"]).allow, true);
    assert.equal(decide(p, "pkg.example.com", 80, ["203.0.113.5"]).allow, false);
  });

  test("allowlist: CIDRs (IPv4 and IPv6, with and without port) match resolved addresses", () => {
    const p = policy({ mode: "allowlist", allow: ["10.1.0.0/16", "2001:db8::/32", "198.51.100.0/24:8080"] });
    assert.equal(decide(p, "internal.corp", 443, ["10.1.200.3"]).rule, 'allow "10.1.0.0/16"');
    assert.equal(decide(p, "internal.corp", 443, ["10.2.0.1"]).allow, false);
    assert.equal(decide(p, "v6.corp", 443, ["2001:db8:0:0::5"]).address, "2001:db8::5");
    assert.equal(decide(p, "v6.corp", 443, ["2001:db9::5"]).allow, false);
    assert.equal(decide(p, "x.corp", 8080, ["198.51.100.9"]).allow, true);
    assert.equal(decide(p, "x.corp", 8081, ["198.51.100.9"]).allow, false);
    // An IP literal request is matched as an address.
    assert.equal(decide(p, "10.1.0.1", 22, ["10.1.0.1"]).allow, true);
  });

  test("name patterns never match IP literals", () => {
    const p = policy({ mode: "allowlist", allow: ["*.0.1"] });
    assert.equal(decide(p, "10.0.0.1", 443, ["10.0.0.1"]).allow, false);
  });

  test("the first allowed address is the one to dial", () => {
    const p = policy({ mode: "allowlist", allow: ["10.0.0.0/8"] });
    const d = decide(p, "mixed.corp", 443, ["203.0.113.1", "127.0.0.1", "10.9.9.9"]);
    assert.deepEqual([d.allow, d.address], [true, "10.9.9.9"]);
  });

  const refused: [string, string, RegExp][] = [
    ["localhost", "127.0.0.1", /loopback 127.0.0.0\/8/],
    ["x.test", "127.8.9.10", /loopback/],
    ["x.test", "::1", /loopback ::1\/128/],
    ["metadata.google.internal", "169.254.169.254", /link-local \(cloud metadata\) 169.254.0.0\/16/],
    ["x.test", "fe80::1", /link-local fe80::\/10/],
    ["x.test", "0.0.0.0", /unspecified/],
    ["x.test", "::", /unspecified/],
    ["x.test", "192.0.2.7", /an address of this host/],
    ["x.test", "fd00::7", /an address of this host/],
    ["x.test", "::ffff:127.0.0.1", /loopback/],
    ["x.test", "::ffff:7f00:1", /loopback/],
    ["x.test", "::ffff:169.254.169.254", /link-local/],
    ["x.test", "[::ffff:a9fe:a9fe]", /link-local/],
    ["x.test", "::ffff:192.0.2.7", /an address of this host/],
  ];
  for (const [host, addr, re] of refused) {
    test(`${host} → ${addr} is refused in every mode unless named`, () => {
      for (const mode of ["audit", "allowlist"]) {
        const d = decide(policy({ mode, allow: ["*"] }), host, 80, [addr]);
        assert.equal(d.allow, false, `${mode}: ${JSON.stringify(d)}`);
        assert.match(d.rule, /^always-refused /);
        assert.match(d.rule, re);
        assert.match(d.hint ?? "", /to "allow" in \/etc\/arca\/egress.json and run `arca egress reload`/);
      }
    });
  }

  test("an allow entry with the IP, a CIDR or the exact host names a refused address", () => {
    assert.equal(
      decide(policy({ mode: "audit", allow: ["127.0.0.1"] }), "localhost", 80, ["127.0.0.1"]).allow,
      true,
    );
    assert.equal(
      decide(policy({ mode: "audit", allow: ["169.254.0.0/16"] }), "169.254.169.254", 80, ["169.254.169.254"])
        .rule,
      'allow "169.254.0.0/16"',
    );
    assert.equal(
      decide(policy({ mode: "audit", allow: ["::1"] }), "x.test", 80, ["::ffff:0:1", "::1"]).address,
      "::1",
    );
    assert.equal(
      decide(policy({ mode: "allowlist", allow: ["localhost:8080"] }), "localhost", 8080, ["127.0.0.1"])
        .allow,
      true,
    );
    // ...but only on the named port, and a wildcard or "*" is no naming.
    assert.equal(
      decide(policy({ mode: "allowlist", allow: ["localhost:8080"] }), "localhost", 8081, ["127.0.0.1"])
        .allow,
      false,
    );
    assert.equal(
      decide(policy({ mode: "audit", allow: ["*.internal"] }), "metadata.internal", 80, ["169.254.169.254"])
        .allow,
      false,
    );
    // A mapped form in the rule names the IPv4 address.
    assert.equal(
      decide(policy({ mode: "audit", allow: ["::ffff:127.0.0.1"] }), "h.test", 80, ["127.0.0.1"]).allow,
      true,
    );
  });

  test("a hosts-map entry the request used names its address", () => {
    const p = policy({ mode: "audit", hosts: { "registry.arca.test": "127.0.0.1" } });
    assert.deepEqual(decide(p, "REGISTRY.arca.test", 5000, ["127.0.0.1"]), {
      allow: true,
      rule: 'hosts "registry.arca.test"',
      address: "127.0.0.1",
    });
    // Another name reaching the same address is still refused.
    assert.equal(decide(p, "other.test", 5000, ["127.0.0.1"]).allow, false);
    // In allowlist mode the hosts map resolves but does not allow.
    const strict = policy({ mode: "allowlist", hosts: { "registry.arca.test": "127.0.0.1" } });
    assert.equal(decide(strict, "registry.arca.test", 5000, ["127.0.0.1"]).rule, "mode allowlist");
  });

  test("own addresses default to this host's interfaces", () => {
    const p = policy({ mode: "audit" });
    for (const list of Object.values(os.networkInterfaces())) {
      for (const a of list ?? []) {
        assert.equal(p.decide("h.test", 80, [a.address]).allow, false, a.address);
      }
    }
  });

  test("no resolved address: the name alone decides", () => {
    assert.equal(decide(policy({ mode: "allowlist" }), "nowhere.test", 443, []).rule, "mode allowlist");
    assert.equal(decide(policy({ mode: "audit" }), "nowhere.test", 443, []).allow, true);
  });
});

test("parseIp canonicalizes and unmaps", () => {
  assert.deepEqual(parseIp("::FFFF:127.0.0.1"), { address: "127.0.0.1", family: "ipv4" });
  assert.deepEqual(parseIp("[2001:DB8:0::1]"), { address: "2001:db8::1", family: "ipv6" });
  assert.deepEqual(parseIp("fe80::1%eth0"), { address: "fe80::1", family: "ipv6" });
  assert.equal(parseIp("example.org"), undefined);
});

describe("loadEgressPolicy", () => {
  test("an absent file is audit mode; a bad file names itself", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "egress-policy-"));
    try {
      const file = path.join(dir, "egress.json");
      const p = await loadEgressPolicy(file);
      assert.equal(p.mode, "audit");
      assert.equal(p.source, file);
      await writeFile(file, "{ nope");
      await assert.rejects(loadEgressPolicy(file), new RegExp(`invalid egress policy ${file}: not JSON`));
      await writeFile(file, JSON.stringify({ mode: "allowlist", allow: ["ok.org", "bad host"] }));
      await assert.rejects(loadEgressPolicy(file), /egress.json: "allow"\[1\] "bad host" is not a host name/);
      await writeFile(file, JSON.stringify({ mode: "allowlist", allow: ["ok.org"] }));
      assert.equal(
        (await loadEgressPolicy(file)).describe(),
        `allowlist, 1 allow entry, 0 hosts entries (${file})`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

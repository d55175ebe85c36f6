import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  type EgressCredential,
  EgressProxy,
  loadEgressPolicy,
  writeEgressPolicyStatus,
} from "../egress/index.js";
import { errorMessage } from "../util/index.js";

/** Where the daemon reports each policy (re)load, for `arca egress reload`. */
export function egressPolicyStatusFile(dataRoot: string): string {
  return path.join(dataRoot, "run", "egress-policy.json");
}

export interface DaemonEgress {
  proxy: EgressProxy;
  policyFile: string;
  /** buildkitd's credential (`user:password`) for its HTTP(S)_PROXY in the sandbox. */
  buildkitdCredential: string;
  /** Re-reads the policy file; an invalid file keeps the policy in force (and says why). */
  reload(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The daemon's egress proxy with the policy from `--egress-policy` or
 * `<data root>/egress.json` (audit mode when absent; an invalid file stops
 * the daemon with the file and field named), its audit log in
 * `<data root>/egress.log`, and buildkitd's credential, kept in the data
 * root so that a daemon restart does not have to restart the sandbox.
 */
export async function openDaemonEgress(opts: {
  dataRoot: string;
  policyFile?: string;
  /** See EgressProxyOptions.idleTimeoutMs; when set (not 0), also its responseTimeoutMs. */
  idleTimeoutMs?: number;
  log: (line: string) => void;
}): Promise<DaemonEgress> {
  const policyFile = path.resolve(opts.policyFile ?? path.join(opts.dataRoot, "egress.json"));
  const policy = await loadEgressPolicy(policyFile);
  const proxy = new EgressProxy({
    policy,
    auditLogPath: path.join(opts.dataRoot, "egress.log"),
    // One bound for "nothing moves": also how long a plain-HTTP upstream may take to start answering.
    ...(opts.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: opts.idleTimeoutMs }),
    ...(opts.idleTimeoutMs ? { responseTimeoutMs: opts.idleTimeoutMs } : {}),
    log: opts.log,
  });
  const cred = proxy.register(
    { id: "buildkitd", kind: "buildkitd", tags: [] },
    await persistedSecret(path.join(opts.dataRoot, "run", "egress-buildkitd.secret")),
  );
  const statusFile = egressPolicyStatusFile(opts.dataRoot);
  let reloads = 0;
  const report = (ok: boolean, error?: string) =>
    writeEgressPolicyStatus(statusFile, {
      file: policyFile,
      reloads,
      time: new Date().toISOString(),
      ok,
      policy: proxy.currentPolicy.describe(),
      ...(error ? { error } : {}),
    }).catch((err) => opts.log(`egress: cannot write ${statusFile}: ${errorMessage(err)}`));
  await report(true);
  return {
    proxy,
    policyFile,
    buildkitdCredential: credentialText(cred),
    async reload() {
      reloads++;
      try {
        proxy.setPolicy(await loadEgressPolicy(policyFile));
        opts.log(`egress policy reloaded: ${proxy.currentPolicy.describe()}`);
        await report(true);
      } catch (err) {
        opts.log(`egress policy not reloaded (the previous one stays in force): ${errorMessage(err)}`);
        await report(false, errorMessage(err));
      }
    },
    close: () => proxy.close(),
  };
}

function credentialText(c: EgressCredential): string {
  return `${encodeURIComponent(c.username)}:${c.password}`;
}

async function persistedSecret(file: string): Promise<string> {
  const old = (await readFile(file, "utf8").catch(() => "")).trim();
  if (/^[A-Za-z0-9_-]{24,}$/.test(old)) return old;
  const secret = randomBytes(18).toString("base64url");
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

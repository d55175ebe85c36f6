import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { type EgressCredential, EgressProxy, loadEgressPolicy } from "../egress/index.js";
import { errorMessage } from "../util/index.js";

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
  log: (line: string) => void;
}): Promise<DaemonEgress> {
  const policyFile = path.resolve(opts.policyFile ?? path.join(opts.dataRoot, "egress.json"));
  const policy = await loadEgressPolicy(policyFile);
  const proxy = new EgressProxy({
    policy,
    auditLogPath: path.join(opts.dataRoot, "egress.log"),
    log: opts.log,
  });
  const cred = proxy.register(
    { id: "buildkitd", kind: "buildkitd", tags: [] },
    await persistedSecret(path.join(opts.dataRoot, "run", "egress-buildkitd.secret")),
  );
  return {
    proxy,
    policyFile,
    buildkitdCredential: credentialText(cred),
    async reload() {
      try {
        proxy.setPolicy(await loadEgressPolicy(policyFile));
        opts.log(`egress policy reloaded from ${policyFile}`);
      } catch (err) {
        opts.log(`egress policy not reloaded (the previous one stays in force): ${errorMessage(err)}`);
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

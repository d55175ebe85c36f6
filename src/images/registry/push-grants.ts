import { randomBytes } from "node:crypto";
import { parseNormalizedTagged, repositoryName } from "../reference.js";
import { DANGLING_PATH, storeRepository } from "./name-mapping.js";

/** What a build in flight may push through the registry endpoint; released when the build ends. */
export interface PushGrant {
  /**
   * The repository path (under the endpoint's host) an untagged build pushes to by digest: unique to this
   * grant, so nothing else running in the sandbox can guess where to push.
   */
  readonly danglingPath: string;
  /** Ends the grant (idempotent); also ends when the signal given to allowPush aborts. */
  release(): void;
}

interface Entry {
  /** Store repositories (`docker.io/library/app`) blobs and manifests by digest may go to. */
  repos: Set<string>;
  /** Full names (`docker.io/library/app:1`) a manifest PUT may tag. */
  tags: Set<string>;
  /** The listener the grant is good on (see inScope). */
  scope?: string | undefined;
}

/**
 * The registry endpoint accepts pushes only for the names of builds in flight: buildkitd's image exporter
 * pushes there, but so could anything else that reaches the endpoint from inside the sandbox (a RUN step,
 * a `# syntax=` frontend). Reads stay open: base images are pulled from the same endpoint.
 */
export class PushGrants {
  readonly #live = new Set<Entry>();

  /** Grants pushes for image names (`app:1`; no tag means latest) plus a fresh by-digest repository. */
  allow(names: string[], signal?: AbortSignal, scope?: string): PushGrant {
    const danglingPath = `${DANGLING_PATH}/${randomBytes(12).toString("hex")}`;
    const entry: Entry = { repos: new Set([storeRepository(danglingPath)]), tags: new Set(), scope };
    for (const n of names) {
      const ref = parseNormalizedTagged(n);
      const repo = repositoryName(ref);
      entry.repos.add(repo);
      if (ref.tag !== undefined) entry.tags.add(`${repo}:${ref.tag}`);
    }
    this.#live.add(entry);
    const release = () => {
      this.#live.delete(entry);
      signal?.removeEventListener("abort", release);
    };
    if (signal?.aborted) release();
    else signal?.addEventListener("abort", release, { once: true });
    return { danglingPath, release };
  }

  /** Blob uploads and manifests by digest into a store repository. */
  mayPushTo(repo: string, scope?: string): boolean {
    for (const e of this.#live) if (e.repos.has(repo) && inScope(e, scope)) return true;
    return false;
  }

  /** A manifest PUT that sets the tag `<repo>:<tag>`. */
  mayTag(repo: string, tag: string, scope?: string): boolean {
    const name = `${repo}:${tag}`;
    for (const e of this.#live) if (e.tags.has(name) && inScope(e, scope)) return true;
    return false;
  }
}

/**
 * A grant made for one listener (a backend's channel, the TLS listener of remote backends) is
 * good only there: one backend cannot push under names granted to a build on another. Grants
 * without a scope (`arca build`) and listeners without one (a pool of one) match any.
 */
function inScope(e: Entry, listener: string | undefined): boolean {
  return e.scope === undefined || listener === undefined || e.scope === listener;
}

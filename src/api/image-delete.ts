import type { Digest, ImageStore } from "../images/index.js";
import { familiarName, parseNormalizedTagged } from "../images/index.js";
import type { ContainerRecord, Runtime } from "../runtime/index.js";
import { ApiError } from "./errors.js";

export type DeleteRecord = { Untagged: string } | { Deleted: string };

const short = (id: string): string => id.replace(/^sha256:/, "").slice(0, 12);
const isRunning = (c: ContainerRecord): boolean => c.status === "running" || c.status === "restarting";

/** dockerd's isImageIDPrefix: the reference is (a prefix of) the ID, with or without `sha256:`. */
function isIdReference(id: Digest, ref: string): boolean {
  return id.startsWith(ref) || id.slice("sha256:".length).startsWith(ref);
}

class Conflict extends ApiError {
  constructor(
    id: Digest,
    readonly hard: boolean,
    readonly used: boolean,
    why: string,
  ) {
    super(
      "conflict",
      `conflict: unable to delete ${short(id)} (${hard ? "cannot be forced" : "must be forced"}) - ${why}`,
    );
  }
}

interface Checks {
  running?: boolean;
  stopped?: boolean;
  references?: boolean;
}

/**
 * `DELETE /images/{name}` with dockerd's semantics (daemon/images/image_delete.go): a name is untagged,
 * then the image goes quietly once nothing names it; an ID deletes the image and its names. Running
 * containers are a hard conflict, stopped ones and several names soft ones that `force` overrides.
 * Names are Arca's only references (repo digests derive from them), so a digest reference acts like an ID.
 */
export async function deleteImage(
  store: ImageStore,
  runtime: Runtime,
  nameOrId: string,
  opts: { force: boolean },
): Promise<DeleteRecord[]> {
  const { image, name } = store.resolve(nameOrId);
  const id = image.id;
  const users = runtime.list({ all: true }).filter((c) => c.imageId === id);
  const records: DeleteRecord[] = [];
  const names = store.namesOf(id);

  if (name && !isIdReference(id, nameOrId)) {
    const user = users[0];
    if (!opts.force && names.length === 1 && user) {
      throw new ApiError(
        "conflict",
        `conflict: unable to remove repository reference ${JSON.stringify(nameOrId)} (must force) - container ${short(user.id)} is using its referenced image ${short(id)}`,
      );
    }
    store.untag(name);
    records.push({ Untagged: familiarName(name) });
    if (store.namesOf(id).length > 0) return records;
    await removeImage(store, id, users, records, {
      checks: { running: true, stopped: !opts.force, references: !opts.force },
      quiet: true,
    });
    return records;
  }

  if (names.length === 1) {
    const conflict = findConflict(store, id, users, { running: true, stopped: !opts.force });
    if (conflict) throw conflict;
  }
  await removeImage(store, id, users, records, {
    checks: { running: true, stopped: !opts.force, references: !opts.force && names.length > 1 },
    quiet: false,
  });
  return records;
}

function findConflict(
  store: ImageStore,
  id: Digest,
  users: ContainerRecord[],
  c: Checks,
): Conflict | undefined {
  const running = users.find(isRunning);
  if (c.running && running)
    return new Conflict(id, true, true, `image is being used by running container ${short(running.id)}`);
  if (c.references && store.namesOf(id).length > 0)
    return new Conflict(id, false, false, "image is referenced in multiple repositories");
  const stopped = users.find((u) => !isRunning(u));
  if (c.stopped && stopped)
    return new Conflict(id, false, true, `image is being used by stopped container ${short(stopped.id)}`);
  return undefined;
}

/** dockerd's imageDeleteHelper: untag every remaining name, delete the image; quiet skips used images. */
async function removeImage(
  store: ImageStore,
  id: Digest,
  users: ContainerRecord[],
  records: DeleteRecord[],
  opts: { checks: Checks; quiet: boolean },
): Promise<void> {
  const conflict = findConflict(store, id, users, opts.checks);
  if (conflict) {
    const dangling = store.namesOf(id).length === 0;
    if (opts.quiet && (!dangling || conflict.used)) return;
    throw conflict;
  }
  const removed = await store.remove(id, { force: true });
  for (const n of removed.untagged) records.push({ Untagged: n });
  for (const d of removed.deleted) records.push({ Deleted: d });
}

/** Untags and deletes an image nobody uses (prune); returns the records. */
export async function purgeImage(store: ImageStore, id: Digest): Promise<DeleteRecord[]> {
  const records: DeleteRecord[] = [];
  await removeImage(store, id, [], records, { checks: {}, quiet: false });
  return records;
}

/** Normalizes `repo` + `tag` as dockerd's RepoTagReference; undefined when repo is empty. */
export function repoTagReference(repo: string, tag: string): string | undefined {
  if (!repo) return undefined;
  const ref = parseNormalizedTagged(repo);
  if (ref.digest) throw new ApiError("invalid_parameter", "cannot import digest reference");
  const full = `${ref.domain}/${ref.path}:${tag || ref.tag || "latest"}`;
  return familiarName(full);
}

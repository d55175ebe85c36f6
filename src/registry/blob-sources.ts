import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * Which repositories of which registry are known to hold a blob (it was
 * pulled from or pushed to them), so a push to another repository of the
 * same registry can mount it instead of uploading it (dockerd's v2
 * metadata). One small JSON file per blob; losing it costs an upload only.
 */
export class BlobSources {
  constructor(private readonly dir: string) {}

  async add(digest: string, registry: string, repository: string): Promise<void> {
    const known = await this.read(digest);
    const key = `${registry}/${repository}`;
    if (known.includes(key)) return;
    known.unshift(key);
    await mkdir(this.dir, { recursive: true });
    const file = this.file(digest);
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(known.slice(0, 8)));
    await rename(tmp, file);
  }

  /** Repositories of `registry` known to hold the blob, most recent first. */
  async repositories(digest: string, registry: string): Promise<string[]> {
    const prefix = `${registry}/`;
    return (await this.read(digest)).filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }

  private file(digest: string): string {
    return path.join(this.dir, digest.replace(":", "-"));
  }

  private async read(digest: string): Promise<string[]> {
    try {
      const v = JSON.parse(await readFile(this.file(digest), "utf8"));
      return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
    } catch {
      return [];
    }
  }
}

import { createReadStream, createWriteStream } from "node:fs";
import { rename, unlink } from "node:fs/promises";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { parseArgs } from "node:util";
import { ImageStore, importRootfs, loadImages, saveImages } from "../images/index.js";
import { errorMessage } from "../util/index.js";
import { resolveDataRoot } from "./data-root.js";
import type { CommandIO } from "./io.js";

const HELP = `Usage: arca image COMMAND

Commands:
  import FILE|- NAME     Create an image from a rootfs tarball (plain or gzip), like docker import
  ls                     List images
  inspect NAME...        Show image details as JSON
  tag SOURCE TARGET      Give an image another name
  rm [-f] NAME...        Remove names/images
  save -o FILE NAME...   Write images to a tar archive (docker load and OCI tools read it)
  load -i FILE           Load images from a docker save or OCI layout archive

Options:
  --data-root DIR        Arca data root (default $ARCA_DATA_ROOT or ~/.arca)
`;

type Values = { "data-root"?: string; force?: boolean; output?: string; input?: string; help?: boolean };

export async function runImageCommand(args: string[], io: CommandIO): Promise<number> {
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        "data-root": { type: "string" },
        force: { type: "boolean", short: "f" },
        output: { type: "string", short: "o" },
        input: { type: "string", short: "i" },
        help: { type: "boolean", short: "h" },
      },
    }) as { values: Values; positionals: string[] };
  } catch (err) {
    io.stderr.write(`arca: ${errorMessage(err)}\n`);
    return 1;
  }
  const { values } = parsed;
  const [sub, ...rest] = parsed.positionals;
  if (values.help || sub === undefined || sub === "help") {
    io.stdout.write(HELP);
    return sub === undefined && !values.help ? 1 : 0;
  }
  const ac = new AbortController();
  const onSignal = () => ac.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  let store: ImageStore | undefined;
  try {
    store = await ImageStore.open(path.join(resolveDataRoot(values["data-root"]), "images"));
    await dispatch(store, sub, rest, values, io, ac.signal);
    return 0;
  } catch (err) {
    io.stderr.write(`arca: ${errorMessage(err)}\n`);
    return 1;
  } finally {
    process.off("SIGINT", onSignal);
    store?.close();
  }
}

function usage(msg: string): Error {
  return new Error(`${msg}\nSee 'arca image --help'.`);
}

function want(args: string[], min: number, max: number, what: string): void {
  if (args.length < min || args.length > max)
    throw usage(`"arca image ${what}" got ${args.length} argument(s)`);
}

async function dispatch(
  store: ImageStore,
  sub: string,
  args: string[],
  values: Values,
  io: CommandIO,
  signal: AbortSignal,
): Promise<void> {
  switch (sub) {
    case "import": {
      want(args, 1, 2, "import FILE|- [NAME]");
      const [file, name] = args as [string, string | undefined];
      const input: Readable = file === "-" ? process.stdin : createReadStream(file);
      const r = await importRootfs(store, input, {
        name,
        source: file === "-" ? "-" : path.basename(file),
        signal,
      });
      io.stdout.write(`${r.id}\n`);
      return;
    }
    case "ls":
    case "list": {
      want(args, 0, 0, "ls");
      io.stdout.write(formatTable(store));
      return;
    }
    case "inspect": {
      want(args, 1, Number.POSITIVE_INFINITY, "inspect NAME...");
      const out = [];
      for (const a of args) out.push(await store.inspect(a));
      io.stdout.write(`${JSON.stringify(out, null, 4)}\n`);
      return;
    }
    case "tag": {
      want(args, 2, 2, "tag SOURCE TARGET");
      store.tag(args[0] as string, args[1] as string);
      return;
    }
    case "rm":
    case "remove": {
      want(args, 1, Number.POSITIVE_INFINITY, "rm NAME...");
      for (const a of args) {
        const r = await store.remove(a, { force: values.force });
        for (const u of r.untagged) io.stdout.write(`Untagged: ${u}\n`);
        for (const d of r.deleted) io.stdout.write(`Deleted: ${d}\n`);
      }
      return;
    }
    case "save": {
      want(args, 1, Number.POSITIVE_INFINITY, "save -o FILE NAME...");
      if (!values.output) {
        if (process.stdout.isTTY) throw usage("refusing to write an archive to a terminal: use -o FILE");
        await saveImages(store, args, process.stdout, signal);
        return;
      }
      // Write beside the destination, then rename: a failed save never leaves a truncated archive.
      const tmp = `${values.output}.arca-tmp-${process.pid}`;
      try {
        await saveImages(store, args, createWriteStream(tmp) as Writable, signal);
        await rename(tmp, values.output);
      } finally {
        await unlink(tmp).catch(() => {});
      }
      return;
    }
    case "load": {
      want(args, 0, 0, "load -i FILE");
      const input: Readable =
        values.input && values.input !== "-" ? createReadStream(values.input) : process.stdin;
      const loaded = await loadImages(store, input, signal);
      for (const img of loaded) {
        if (img.names.length === 0) io.stdout.write(`Loaded image ID: ${img.id}\n`);
        for (const n of img.names) io.stdout.write(`Loaded image: ${n}\n`);
      }
      return;
    }
    default:
      throw usage(`unknown image command "${sub}"`);
  }
}

function formatTable(store: ImageStore): string {
  const rows: string[][] = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]];
  for (const img of store.list()) {
    const shortId = img.id.slice("sha256:".length, "sha256:".length + 12);
    const created = img.created ? ago(new Date(img.created)) : "N/A";
    const size = humanSize(img.size);
    if (img.repoTags.length === 0) rows.push(["<none>", "<none>", shortId, created, size]);
    for (const t of img.repoTags) {
      const i = t.lastIndexOf(":");
      rows.push([t.slice(0, i), t.slice(i + 1), shortId, created, size]);
    }
  }
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length))) ?? [];
  return rows
    .map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd((widths[c] ?? 0) + 3))).join(""))
    .join("\n")
    .concat("\n");
}

/** Docker's units: decimal, three significant digits. */
function humanSize(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${Number(v.toPrecision(3))}${units[u]}`;
}

function ago(d: Date): string {
  const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
  const fmt = (n: number, unit: string) => `${n} ${unit}${n === 1 ? "" : "s"} ago`;
  if (s < 60) return s < 1 ? "Less than a second ago" : fmt(Math.floor(s), "second");
  if (s < 3600) return fmt(Math.floor(s / 60), "minute");
  if (s < 86400 * 2) return fmt(Math.floor(s / 3600), "hour");
  if (s < 86400 * 14) return fmt(Math.floor(s / 86400), "day");
  if (s < 86400 * 60) return fmt(Math.floor(s / 86400 / 7), "week");
  if (s < 86400 * 730) return fmt(Math.floor(s / 86400 / 30), "month");
  return fmt(Math.floor(s / 86400 / 365), "year");
}

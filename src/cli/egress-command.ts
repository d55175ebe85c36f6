import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  type EgressAuditRecord,
  EgressError,
  formatAuditRecord,
  loadEgressPolicy,
  parseAuditLine,
  readEgressPolicyStatus,
} from "../egress/index.js";
import { errorMessage, sleep } from "../util/index.js";
import { egressPolicyStatusFile } from "./daemon-egress.js";
import { readDaemonState } from "./daemon-state.js";
import { resolveDataRoot } from "./data-root.js";
import type { CommandIO } from "./io.js";

const HELP = `Usage: arca egress COMMAND

Commands:
  log [--build ID] [--follow] [--json]
               Show the egress audit log (<data root>/egress.log): one line per
               connection or request: time, build, decision, method host:port,
               bytes up/down, duration, the rule that decided
  reload       Make the running daemon re-read its egress policy file (it gets
               SIGHUP) and report whether it took it; an invalid file is refused
               with the field named and the previous policy stays in force

Options:
  --data-root DIR   Arca data root (default $ARCA_DATA_ROOT or ~/.arca)
  --build ID        only records of this build (or client)
  -f, --follow      keep printing records as they are written (until Ctrl-C)
  --json            the records as JSON lines, as stored
`;

/** `arca egress log|reload`. `signal` ends --follow (Ctrl-C does otherwise). */
const OPTIONS = {
  "data-root": { type: "string" },
  build: { type: "string" },
  follow: { type: "boolean", short: "f" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export async function runEgressCommand(args: string[], io: CommandIO, signal?: AbortSignal): Promise<number> {
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>
  >;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: OPTIONS });
  } catch (err) {
    io.stderr.write(`arca: ${errorMessage(err)}\n${HELP}`);
    return 1;
  }
  const { values, positionals } = parsed;
  const [sub, ...rest] = positionals;
  if (values.help || sub === undefined || sub === "help") {
    io.stdout.write(HELP);
    return sub === undefined && !values.help ? 1 : 0;
  }
  if (rest.length > 0 || (sub !== "log" && sub !== "reload")) {
    io.stderr.write(`arca: unknown egress command "${positionals.join(" ")}"\n${HELP}`);
    return 1;
  }
  const dataRoot = resolveDataRoot(values["data-root"]);
  if (sub === "reload") return reload(dataRoot, io);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  signal?.addEventListener("abort", onSignal, { once: true });
  try {
    return await showLog(path.join(dataRoot, "egress.log"), io, {
      ...(values.build ? { build: values.build } : {}),
      follow: values.follow ?? false,
      json: values.json ?? false,
      signal: stop.signal,
    });
  } finally {
    process.off("SIGINT", onSignal);
    signal?.removeEventListener("abort", onSignal);
  }
}

interface LogOptions {
  build?: string;
  follow: boolean;
  json: boolean;
  signal: AbortSignal;
}

async function showLog(file: string, io: CommandIO, opts: LogOptions): Promise<number> {
  const show = (line: string) => {
    const r = parseAuditLine(line);
    if (!r || (opts.build && r.build !== opts.build && r.client !== opts.build)) return;
    io.stdout.write(`${opts.json ? JSON.stringify(r) : formatAuditRecord(r as EgressAuditRecord)}\n`);
  };
  let offset = 0;
  let partial = "";
  for (;;) {
    const size = await stat(file).then(
      (s) => s.size,
      (err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return -1;
        throw new EgressError("audit_unreadable", `cannot read ${file}: ${err.message}`, { cause: err });
      },
    );
    if (size < 0 && !opts.follow) {
      io.stderr.write(`arca: no egress log yet at ${file} (the daemon writes it when something goes out)\n`);
      return 0;
    }
    if (size >= 0 && size < offset) offset = 0; // truncated or replaced: start over
    if (size > offset) {
      // Read what is there now; a line still being written waits for its newline.
      for await (const chunk of createReadStream(file, { start: offset, end: size - 1, encoding: "utf8" })) {
        const lines = (partial + (chunk as string)).split("\n");
        partial = lines.pop() ?? "";
        for (const l of lines) show(l);
      }
      offset = size;
    }
    if (!opts.follow) {
      if (partial) show(partial);
      return 0;
    }
    if (opts.signal.aborted) return 0;
    await sleep(250, opts.signal).catch(() => {});
    if (opts.signal.aborted) return 0;
  }
}

async function reload(dataRoot: string, io: CommandIO): Promise<number> {
  const daemon = await readDaemonState(dataRoot);
  if (!daemon) throw new EgressError("daemon_unavailable", `no arca daemon runs on data root ${dataRoot}`);
  const statusFile = egressPolicyStatusFile(dataRoot);
  const before = await readEgressPolicyStatus(statusFile);
  if (!before) {
    throw new EgressError(
      "daemon_unavailable",
      `the daemon (pid ${daemon.pid}) reports no egress policy (${statusFile})`,
    );
  }
  // Check the file here first: the daemon would refuse it the same way and keep the old policy.
  try {
    await loadEgressPolicy(before.file);
  } catch (err) {
    io.stderr.write(
      `arca: egress policy not reloaded: ${errorMessage(err)}\narca: in force: ${before.policy}\n`,
    );
    return 1;
  }
  process.kill(daemon.pid, "SIGHUP");
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    const now = await readEgressPolicyStatus(statusFile);
    if (now && now.reloads > before.reloads) {
      if (!now.ok) {
        io.stderr.write(
          `arca: egress policy not reloaded: ${now.error ?? "refused"}\narca: in force: ${now.policy}\n`,
        );
        return 1;
      }
      io.stdout.write(`egress policy reloaded: ${now.policy}\n`);
      return 0;
    }
  }
  throw new EgressError(
    "daemon_unavailable",
    `the daemon (pid ${daemon.pid}) did not confirm the reload within 5 s`,
  );
}

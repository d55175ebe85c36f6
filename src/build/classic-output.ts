import { randomBytes } from "node:crypto";
import { TextDecoder } from "node:util";
import { type ProgressEvent, type StatusResponse, toProgressEvents } from "../buildkit/index.js";
import { familiarString, parseReference } from "../images/index.js";
import type { EmitMessage, JsonMessage } from "./json-message.js";

/** `[stage-1 2/3] RUN …` or `[2/3] COPY …`: a Dockerfile step, as BuildKit's dockerfile frontend names it. */
const STEP_RE = /^\[(?:(\S+) )?(\d+)\/(\d+)\] (.*)$/s;

interface Step {
  digest: string;
  stage: string;
  text: string;
  started: boolean;
  finished: boolean;
  cached: boolean;
  failed: boolean;
  headerDone: boolean;
  /** The "container" a RUN step shows (BuildKit has none to name; a random ID as the classic builder prints). */
  container: string;
  pending: JsonMessage[];
  decoder: TextDecoder;
}

export interface ClassicOutputOptions {
  /** Image ID of a base image reference (to print after FROM, as the classic builder does). */
  imageIdFor?: (ref: string) => string | undefined;
}

function shortId(digest: string): string {
  return digest.replace(/^sha256:/, "").slice(0, 12);
}

/**
 * Renders BuildKit progress as the classic builder's output (`Step i/n :`,
 * ` ---> Running in …`, RUN output, ` ---> Using cache`, ` ---> <id>`), which
 * the docker CLI's legacy mode prints verbatim. BuildKit runs steps in
 * parallel; like the classic builder, this shows one step at a time, in the
 * order they started, holding back later steps' lines until earlier ones end.
 */
export class ClassicOutput {
  readonly #steps = new Map<string, Step>();
  readonly #order: Step[] = [];
  #cursor = 0;
  #number = 0;

  constructor(
    private readonly emit: EmitMessage,
    private readonly opts: ClassicOutputOptions = {},
  ) {}

  update(resp: StatusResponse): void {
    for (const ev of toProgressEvents(resp)) this.#event(ev);
    this.#pump(false);
  }

  /** Emits whatever is still held back (the build ended). */
  finish(): void {
    this.#pump(true);
  }

  #event(ev: ProgressEvent): void {
    if (ev.type === "vertex") {
      let step = this.#steps.get(ev.digest);
      if (!step) {
        const m = STEP_RE.exec(ev.name);
        if (!m) return;
        step = {
          digest: ev.digest,
          stage: m[1] ?? "",
          text: m[4] as string,
          started: false,
          finished: false,
          cached: false,
          failed: false,
          headerDone: false,
          container: randomBytes(6).toString("hex"),
          pending: [],
          decoder: new TextDecoder(),
        };
        this.#steps.set(ev.digest, step);
      }
      if (ev.phase === "pending") return;
      if (!step.started) {
        step.started = true;
        this.#order.push(step);
      }
      if (ev.phase === "cached") step.cached = true;
      if (ev.phase === "done" || ev.phase === "cached") step.finished = true;
      if (ev.phase === "error" || ev.phase === "canceled") {
        step.finished = true;
        step.failed = true;
      }
    } else if (ev.type === "log") {
      const step = this.#steps.get(ev.vertex);
      if (!step) return;
      const text = step.decoder.decode(ev.data, { stream: true });
      if (!text) return;
      // stderr in red, as dockerd's streamformatter does.
      step.pending.push({ stream: ev.stream === 2 ? `\u001b[91m${text}\u001b[0m` : text });
    }
  }

  #pump(all: boolean): void {
    while (this.#cursor < this.#order.length) {
      const step = this.#order[this.#cursor] as Step;
      if (!step.headerDone) {
        step.headerDone = true;
        this.#number++;
        const stepTotal = Math.max(this.#steps.size, this.#number);
        this.emit({ stream: `Step ${this.#number}/${stepTotal} : ${this.#instruction(step)}\n` });
        if (step.cached) this.emit({ stream: " ---> Using cache\n" });
        else if (isRun(step)) this.emit({ stream: ` ---> Running in ${step.container}\n` });
      }
      for (const msg of step.pending.splice(0)) this.emit(msg);
      if (!step.finished && !all) return;
      if (step.finished && !step.failed) {
        if (isRun(step) && !step.cached) {
          this.emit({ stream: ` ---> Removed intermediate container ${step.container}\n` });
        }
        this.emit({ stream: ` ---> ${this.#resultId(step)}\n` });
      }
      this.#cursor++;
    }
  }

  #instruction(step: Step): string {
    if (!/^FROM /i.test(step.text)) return step.text;
    const named = step.stage && !/^stage-\d+$/.test(step.stage) ? ` AS ${step.stage}` : "";
    return `FROM ${fromName(step.text.slice(5).trim())}${named}`;
  }

  #resultId(step: Step): string {
    if (/^FROM /i.test(step.text)) {
      const ref = step.text.slice(5).trim();
      const id = this.opts.imageIdFor?.(ref) ?? this.opts.imageIdFor?.(fromName(ref));
      if (id) return shortId(id);
    }
    return shortId(step.digest);
  }
}

function isRun(step: Step): boolean {
  return /^RUN /i.test(step.text);
}

/** `docker.io/library/busybox:local@sha256:…` → `busybox:local`, as the user wrote it. */
function fromName(ref: string): string {
  try {
    const r = parseReference(ref);
    if (r.tag !== undefined && r.digest !== undefined) r.digest = undefined;
    return familiarString(r);
  } catch {
    return ref;
  }
}

import { createHash, randomBytes } from "node:crypto";
import { TextDecoder } from "node:util";
import { type ProgressEvent, type StatusResponse, toProgressEvents } from "../buildkit/index.js";
import { familiarString, parseReference } from "../images/index.js";
import { type DockerfilePlan, type DockerfileStep, planDockerfile } from "./dockerfile-steps.js";
import type { EmitMessage, JsonMessage } from "./json-message.js";

/**
 * `[stage-1 2/3] RUN …`, `[ 2/10] COPY …` or `[linux/amd64 build 1/2] FROM …`: a Dockerfile step as
 * BuildKit's dockerfile frontend names it (platform, stage, index padded to the total's width).
 */
const STEP_RE = /^\[((?:\S+ )*?)\s*(\d+)\/(\d+)\] (.*)$/s;

/** What BuildKit reported for one Dockerfile step's vertex. */
interface VertexState {
  digest: string;
  text: string;
  started: boolean;
  finished: boolean;
  cached: boolean;
  failed: boolean;
  canceled: boolean;
  pending: JsonMessage[];
  decoder: TextDecoder;
}

/** One line of the plan: a Dockerfile instruction and, once BuildKit shows it, its vertex. */
interface PlannedStep extends DockerfileStep {
  vertex?: VertexState;
  /** Where this step's output stands: nothing printed, header printed, done. */
  printed: "none" | "header" | "done";
  /** The "container" a RUN step shows (BuildKit has none to name; a random ID as the classic builder prints). */
  container: string;
}

/** Per stage: the ID its last printed step ended with; whether its last step with a vertex was cached. */
interface StageState {
  id: string;
  cached?: boolean;
}

export interface ClassicOutputOptions {
  /** Image ID of a base image reference (to print after FROM, as the classic builder does). */
  imageIdFor?: (ref: string) => string | undefined;
  /** The Dockerfile's text: steps are numbered and printed as its instructions, as dockerd does. */
  dockerfile?: string;
  /** The target stage (`--target`); the classic builder stops after it. */
  target?: string;
  /** Build labels (`--label`): the classic builder shows them as a last LABEL step. */
  labels?: Record<string, string>;
}

function shortId(digest: string): string {
  return digest.replace(/^sha256:/, "").slice(0, 12);
}

/**
 * Renders BuildKit progress as the classic builder's output, which the
 * docker CLI's legacy mode prints verbatim: `Step i/n : <instruction>` for
 * every Dockerfile instruction in order (n counts them all, FROMs and ARGs
 * before the first FROM included), ` ---> Using cache` for cached ones,
 * ` ---> Running in …`, RUN output and ` ---> <id>`. BuildKit runs steps in
 * parallel and shows only some instructions as vertices; this follows the
 * Dockerfile's order, holding back a step's lines until the steps before it
 * are done, and prints the instructions BuildKit applies without a vertex
 * (ENV, LABEL, …) in their place. Stages the target does not need, which
 * BuildKit never runs, say so.
 */
export class ClassicOutput {
  readonly #plan: DockerfilePlan;
  readonly #steps: PlannedStep[];
  /** Stage key → its steps BuildKit shows as vertices. */
  readonly #byStage = new Map<string, PlannedStep[]>();
  readonly #vertices = new Map<string, VertexState>();
  /** Vertices not tied to a Dockerfile step (no Dockerfile given): shown in the order they start. */
  readonly #extra: PlannedStep[] = [];
  /** The last stage the classic builder would run: the target's (it stops there). */
  readonly #lastStage: number;
  #cursor = 0;
  #number = 0;
  #stopped = false;
  readonly #stageState = new Map<number, StageState>();

  constructor(
    private readonly emit: EmitMessage,
    private readonly opts: ClassicOutputOptions = {},
  ) {
    this.#plan = planDockerfile(opts.dockerfile ?? "", opts.target, opts.labels);
    this.#steps = this.#plan.steps.map((s) => ({ ...s, printed: "none", container: newContainerId() }));
    for (const s of this.#steps) {
      if (s.vertexIndex === 0) continue;
      const key = this.#plan.stages[s.stage]?.key ?? "";
      this.#byStage.set(key, [...(this.#byStage.get(key) ?? []), s]);
    }
    const target = opts.target?.toLowerCase();
    const t = target ? this.#plan.stages.findIndex((s) => s.name === target) : -1;
    this.#lastStage = t >= 0 ? t : this.#plan.stages.length - 1;
  }

  update(resp: StatusResponse): void {
    for (const ev of toProgressEvents(resp)) this.#event(ev);
    this.#pump(false);
  }

  /**
   * Emits whatever is still held back: the build ended. On success the last step ends with the
   * built image's ID, as the classic builder's does; on failure nothing after the failed step shows.
   */
  finish(result: { imageId?: string; failed?: boolean } = {}): void {
    this.#pump(true, result);
  }

  #event(ev: ProgressEvent): void {
    if (ev.type === "vertex") {
      let v = this.#vertices.get(ev.digest);
      if (!v) {
        const m = STEP_RE.exec(ev.name);
        if (!m) return;
        v = {
          digest: ev.digest,
          text: m[4] as string,
          started: false,
          finished: false,
          cached: false,
          failed: false,
          canceled: false,
          pending: [],
          decoder: new TextDecoder(),
        };
        this.#vertices.set(ev.digest, v);
        this.#attach(v, stageOf(m[1] as string), Number(m[2]));
      }
      if (ev.phase === "pending") return;
      v.started = true;
      if (ev.phase === "cached") v.cached = true;
      if (ev.phase === "done" || ev.phase === "cached") v.finished = true;
      if (ev.phase === "error" || ev.phase === "canceled") {
        v.finished = true;
        v.failed = ev.phase === "error";
        v.canceled = ev.phase === "canceled";
      }
    } else if (ev.type === "log") {
      const v = this.#vertices.get(ev.vertex);
      if (!v) return;
      const text = v.decoder.decode(ev.data, { stream: true });
      if (!text) return;
      // stderr in red, as dockerd's streamformatter does.
      v.pending.push({ stream: ev.stream === 2 ? `\u001b[91m${text}\u001b[0m` : text });
    }
  }

  /** Ties a vertex to the Dockerfile step it carries out: same stage, same keyword, nearest index. */
  #attach(v: VertexState, stageKey: string, index: number): void {
    const keyword = (v.text.split(/\s+/, 1)[0] ?? "").toUpperCase();
    if (this.#steps.length === 0) {
      // No Dockerfile to follow: the vertices themselves, in the order they start.
      const text = keyword === "FROM" ? `FROM ${fromName(v.text.slice(5).trim())}` : v.text;
      this.#extra.push({
        text,
        keyword,
        stage: 0,
        vertexIndex: index,
        vertex: v,
        printed: "none",
        container: newContainerId(),
      });
      return;
    }
    const candidates = (this.#byStage.get(stageKey) ?? []).filter((s) => !s.vertex && s.keyword === keyword);
    let best: PlannedStep | undefined;
    for (const s of candidates)
      if (!best || Math.abs(s.vertexIndex - index) < Math.abs(best.vertexIndex - index)) best = s;
    if (best) best.vertex = v;
  }

  #pump(all: boolean, result: { imageId?: string; failed?: boolean } = {}): void {
    if (this.#stopped) return;
    const steps = this.#steps.length ? this.#steps : this.#extra;
    const total = this.#steps.length || undefined;
    while (this.#cursor < steps.length) {
      const step = steps[this.#cursor] as PlannedStep;
      if (this.#steps.length && step.stage > this.#lastStage) break;
      if (!this.#print(step, all, total, result)) return;
      this.#cursor++;
    }
    if (all) this.#stopped = true;
  }

  /** Prints what can be printed of one step; true once it is done. */
  #print(
    step: PlannedStep,
    all: boolean,
    total: number | undefined,
    result: { imageId?: string; failed?: boolean },
  ): boolean {
    const v = step.vertex;
    // BuildKit announces a stage's vertices in order; one that a later step's vertex has overtaken
    // never comes (`WORKDIR /` needs none): that step is applied without one.
    const runsAsVertex =
      step.vertexIndex > 0 && this.#stageNeeded(step) && (v !== undefined || !this.#overtaken(step));
    // A step whose vertex has not shown yet: wait for it while the build runs.
    if (runsAsVertex && !v?.started && !all) return false;
    // An instruction without a vertex is cached when the next step of its stage is (a cache miss
    // would have made that one miss too, as in the classic builder's cache chain): wait for it.
    const next = step.keyword === "FROM" || runsAsVertex ? undefined : this.#nextVertexStep(step);
    if (next && !next.vertex?.started && !all) return false;
    if (step.printed === "none") {
      this.#number++;
      this.emit({
        stream: `Step ${this.#number}/${total ?? Math.max(this.#number, this.#extra.length)} : ${step.text}\n`,
      });
      step.printed = "header";
      if (step.stage < 0) {
        // An ARG before the first FROM: no image yet, so no ID line (as dockerd).
        step.printed = "done";
        return true;
      }
      if (!this.#stageNeeded(step)) {
        step.printed = "done";
        this.emit({ stream: " ---> Skipped: the target does not need this stage\n" });
        return true;
      }
      if (v?.started) {
        if (v.cached) this.emit({ stream: " ---> Using cache\n" });
        else if (step.keyword === "RUN") this.emit({ stream: ` ---> Running in ${step.container}\n` });
      }
    }
    if (v) for (const msg of v.pending.splice(0)) this.emit(msg);
    if (v && !v.finished && !all) return false;
    const succeeded = v ? v.finished && !v.failed && !v.canceled : true;
    if (v?.failed || (all && result.failed && runsAsVertex && !succeeded)) {
      // The build stops here: nothing after the failed (or unfinished) step shows, as with dockerd.
      this.#stopped = true;
      if (!v?.failed) this.#showFailed();
      return false;
    }
    // The last step's ID line waits for the end: it is the built image's ID.
    if (!all && this.#steps.length && this.#isLastStep(step)) return false;
    const state: StageState = this.#stageState.get(step.stage) ?? { id: "" };
    let id: string;
    if (v?.started) {
      if (step.keyword === "RUN" && !v.cached)
        this.emit({ stream: ` ---> Removed intermediate container ${step.container}\n` });
      id = this.#vertexResultId(step, v);
      // BuildKit resolves a base image afresh each time: FROM says nothing about the cache chain.
      if (step.keyword !== "FROM") state.cached = v.cached;
    } else {
      // Applied without a vertex of its own (ENV, LABEL, …, or merged into another).
      const cached = next?.vertex?.started ? next.vertex.cached : (state.cached ?? false);
      if (step.keyword !== "FROM" && cached && state.id) this.emit({ stream: " ---> Using cache\n" });
      id = this.#metadataResultId(step, state);
    }
    state.id = id;
    this.#stageState.set(step.stage, state);
    if (all && result.imageId && this.#isLastStep(step)) id = shortId(result.imageId);
    if (id) this.emit({ stream: ` ---> ${id}\n` });
    step.printed = "done";
    return true;
  }

  /** After a failure elsewhere (a parallel stage): the failed step's header and output still show. */
  #showFailed(): void {
    for (const s of this.#steps)
      if (s.vertex?.failed && s.printed === "none") {
        this.#number++;
        this.emit({ stream: `Step ${this.#number}/${this.#steps.length} : ${s.text}\n` });
        if (s.keyword === "RUN") this.emit({ stream: ` ---> Running in ${s.container}\n` });
        for (const msg of s.vertex.pending.splice(0)) this.emit(msg);
      }
  }

  #overtaken(step: PlannedStep): boolean {
    const i = this.#steps.indexOf(step);
    return this.#steps.slice(i + 1).some((s) => s.stage === step.stage && s.vertex !== undefined);
  }

  /** The next step of the same stage that BuildKit runs as a vertex. */
  #nextVertexStep(step: PlannedStep): PlannedStep | undefined {
    const i = this.#steps.indexOf(step);
    return this.#steps.slice(i + 1).find((s) => s.stage === step.stage && s.vertexIndex > 0);
  }

  #stageNeeded(step: PlannedStep): boolean {
    if (!this.#steps.length || step.stage < 0) return true;
    return this.#plan.stages[step.stage]?.needed ?? true;
  }

  #isLastStep(step: PlannedStep): boolean {
    const steps = this.#steps.length ? this.#steps : this.#extra;
    const shown = this.#steps.length ? steps.filter((s) => s.stage <= this.#lastStage) : steps;
    return shown.at(-1) === step;
  }

  #vertexResultId(step: PlannedStep, v: VertexState): string {
    if (step.keyword === "FROM") {
      const ref = v.text.slice(5).trim();
      const id =
        this.#baseImageId(step) ?? this.opts.imageIdFor?.(ref) ?? this.opts.imageIdFor?.(fromName(ref));
      if (id) return shortId(id);
    }
    return shortId(v.digest);
  }

  /** FROM an earlier stage continues from its last ID; other steps get one derived from the chain. */
  #metadataResultId(step: PlannedStep, state: StageState): string {
    const prev = state.id;
    if (step.keyword === "FROM") {
      const base = fromBase(step.text);
      const parent = this.#plan.stages.findIndex((s) => s.name === base.toLowerCase());
      const parentState = parent >= 0 ? this.#stageState.get(parent) : undefined;
      if (parentState) {
        state.cached = parentState.cached;
        return parentState.id;
      }
      const id = this.#baseImageId(step);
      return id ? shortId(id) : "";
    }
    return createHash("sha256").update(`${prev}\n${step.text}`).digest("hex").slice(0, 12);
  }

  #baseImageId(step: PlannedStep): string | undefined {
    const base = fromBase(step.text);
    return base ? this.opts.imageIdFor?.(base) : undefined;
  }
}

/** The stage key in a vertex prefix (`linux/amd64 build ` → `build`); platforms carry a slash. */
function stageOf(prefix: string): string {
  const words = prefix
    .trim()
    .split(/\s+/)
    .filter((w) => w && !w.includes("/"));
  return words.at(-1) ?? "";
}

function fromBase(text: string): string {
  return (
    text
      .split(/\s+/)
      .slice(1)
      .find((w) => !w.startsWith("--")) ?? ""
  );
}

function newContainerId(): string {
  return randomBytes(6).toString("hex");
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

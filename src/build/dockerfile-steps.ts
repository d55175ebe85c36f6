/** One Dockerfile instruction as the classic builder prints it (`Step i/n : <text>`). */
export interface DockerfileStep {
  /** The instruction as written, continuation lines joined (dockerd's node.Original). */
  text: string;
  /** Upper-case keyword: FROM, RUN, COPY, … */
  keyword: string;
  /** Index of its stage (-1 for ARGs before the first FROM). */
  stage: number;
  /**
   * Position among the stage's steps that BuildKit shows as vertices (1-based, as BuildKit's
   * `[stage i/n]`), or 0 for instructions BuildKit applies without one (ENV, LABEL, …).
   */
  vertexIndex: number;
}

export interface DockerfileStage {
  /** As BuildKit prefixes its vertices: the `AS` name, else `stage-<i>`; "" when there is one stage. */
  key: string;
  /** The `AS` name (lower case), if any. */
  name?: string;
  /** Whether the target needs this stage (BuildKit runs no other). */
  needed: boolean;
}

export interface DockerfilePlan {
  steps: DockerfileStep[];
  stages: DockerfileStage[];
}

/** Instructions BuildKit's Dockerfile frontend turns into a vertex of their own (see dockerfile2llb). */
const VERTEX_KEYWORDS = new Set(["RUN", "COPY", "ADD", "WORKDIR"]);
const HEREDOC_KEYWORDS = new Set(["RUN", "COPY", "ADD"]);
const DIRECTIVE_RE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const HEREDOC_RE = /<<(-?)\s*(["']?)([A-Za-z_][A-Za-z0-9_]*)\2/g;

/**
 * Splits a Dockerfile into instructions the way BuildKit's parser does for
 * what the classic output needs: parser directives (`# escape=`), comments,
 * continuation lines (joined as dockerd prints them), heredoc bodies skipped.
 */
export function dockerfileInstructions(source: string): string[] {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  let escapeChar = "\\";
  let i = 0;
  // Parser directives: only at the very top, before any other line.
  for (; i < lines.length; i++) {
    const m = DIRECTIVE_RE.exec(lines[i] as string);
    if (!m) break;
    if ((m[1] as string).toLowerCase() === "escape" && (m[2] === "`" || m[2] === "\\")) escapeChar = m[2];
  }
  const out: string[] = [];
  const continues = (line: string) => {
    const trimmed = line.replace(/[ \t]+$/, "");
    return trimmed.endsWith(escapeChar) ? trimmed.slice(0, -1) : undefined;
  };
  while (i < lines.length) {
    const first = (lines[i++] as string).replace(/^[ \t]+/, "");
    if (first === "" || first.startsWith("#")) continue;
    let text = first;
    let cont = continues(text);
    while (cont !== undefined) {
      text = cont;
      // Comment and empty lines inside a continuation are dropped, as BuildKit's parser does.
      let next: string | undefined;
      while (i < lines.length) {
        next = lines[i++] as string;
        if (next.trim() === "" || next.trimStart().startsWith("#")) {
          next = undefined;
          continue;
        }
        break;
      }
      if (next === undefined) break;
      text += next;
      cont = continues(text);
    }
    text = text.trim();
    out.push(text);
    const keyword = (text.split(/\s+/, 1)[0] ?? "").toUpperCase();
    if (HEREDOC_KEYWORDS.has(keyword)) i = skipHeredocs(text, lines, i);
  }
  return out;
}

/** Skips the bodies of the heredocs an instruction opens (`<<EOF`, `<<-"EOF"`); returns the next line. */
function skipHeredocs(text: string, lines: string[], i: number): number {
  for (const m of text.matchAll(HEREDOC_RE)) {
    const strip = m[1] === "-";
    const word = m[3] as string;
    while (i < lines.length) {
      const line = lines[i++] as string;
      if ((strip ? line.replace(/^\t+/, "") : line) === word) break;
    }
  }
  return i;
}

/** The base a FROM names (flags like `--platform=` skipped), and its `AS` name. */
function parseFrom(text: string): { base: string; name?: string } {
  const words = text.split(/\s+/).slice(1);
  const args = words.filter((w) => !w.startsWith("--"));
  const base = args[0] ?? "";
  const as = args.findIndex((w) => w.toLowerCase() === "as");
  return { base, name: as > 0 ? args[as + 1]?.toLowerCase() : undefined };
}

/** Stages an instruction reads from: `COPY --from=x`, `RUN --mount=…,from=x`. */
function stageRefs(text: string): string[] {
  const refs: string[] = [];
  for (const m of text.matchAll(/--from=(\S+)/g)) refs.push((m[1] as string).toLowerCase());
  for (const m of text.matchAll(/--mount=(\S+)/g))
    for (const kv of (m[1] as string).split(","))
      if (kv.startsWith("from=")) refs.push(kv.slice(5).toLowerCase());
  return refs;
}

/**
 * The classic builder's view of a Dockerfile: every instruction in order (the
 * `n` of `Step i/n` counts them all, ARGs before FROM included), each tied to
 * the BuildKit vertex that carries it out, if any, and which stages the
 * target needs.
 */
export function planDockerfile(
  source: string,
  target?: string,
  labels: Record<string, string> = {},
): DockerfilePlan {
  const steps: DockerfileStep[] = [];
  const stages: (DockerfileStage & { deps: Set<number> })[] = [];
  let vertexCount = 0;
  const stageIndex = (ref: string): number | undefined => {
    if (/^\d+$/.test(ref)) return Number(ref) < stages.length ? Number(ref) : undefined;
    const i = stages.findIndex((s) => s.name === ref);
    return i >= 0 ? i : undefined;
  };
  for (const text of dockerfileInstructions(source)) {
    const keyword = (text.split(/\s+/, 1)[0] ?? "").toUpperCase();
    if (keyword === "FROM") {
      const { base, name } = parseFrom(text);
      const parent = stageIndex(base.toLowerCase());
      stages.push({ key: name ?? `stage-${stages.length}`, name, needed: false, deps: new Set() });
      const current = stages.at(-1) as (typeof stages)[number];
      if (parent !== undefined) current.deps.add(parent);
      // BuildKit shows FROM as a step only for an image (not scratch, not an earlier stage).
      vertexCount = parent === undefined && base.toLowerCase() !== "scratch" ? 1 : 0;
      steps.push({ text, keyword, stage: stages.length - 1, vertexIndex: vertexCount });
      continue;
    }
    const stage = stages.length - 1;
    if (stage >= 0)
      for (const ref of stageRefs(text)) {
        const dep = stageIndex(ref);
        if (dep !== undefined) stages[stage]?.deps.add(dep);
      }
    const vertexIndex = stage >= 0 && VERTEX_KEYWORDS.has(keyword) ? ++vertexCount : 0;
    steps.push({ text, keyword, stage, vertexIndex });
  }
  // The classic builder turns build labels into one more instruction at the end (parser.NodeFromLabels).
  const keys = Object.keys(labels).sort();
  if (keys.length && stages.length) {
    const text = `LABEL ${keys.map((k) => `${JSON.stringify(k)}='${labels[k]}'`).join(" ")}`;
    steps.push({ text, keyword: "LABEL", stage: stages.length - 1, vertexIndex: 0 });
  }
  if (stages.length === 1 && stages[0]) stages[0].key = "";
  const wanted = target ? stageIndex(target.toLowerCase()) : stages.length - 1;
  const mark = (i: number | undefined) => {
    const s = i === undefined ? undefined : stages[i];
    if (!s || s.needed) return;
    s.needed = true;
    for (const d of s.deps) mark(d);
  };
  mark(wanted ?? stages.length - 1);
  return { steps, stages: stages.map(({ deps: _deps, ...s }) => s) };
}

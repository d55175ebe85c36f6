import { readFile } from "node:fs/promises";
import type { Difference } from "./compare.js";

/**
 * A way BuildKit's result differs from dockerd's classic builder by design.
 * Each applies to the listed cases only, and each listed case must still
 * show it: a difference that went away makes the run fail, so the list
 * cannot go stale.
 */
export interface KnownDifference {
  id: string;
  reason: string;
  /** Where upstream documents or decided it. */
  upstream?: string;
  /**
   * Cases that must show it; "*": any case may, and at least one case of a run
   * (that includes dockerd) must.
   */
  cases: string[] | "*";
  /** Regex (whole match) on {@link Difference.where}: `config.Env`, `history[3]`, `/etc/x`. */
  where: string;
  /** Regex (whole match) on BuildKit's side; omitted: anything. */
  buildkit?: string;
  /** Regex (whole match) on dockerd's side; omitted: anything. */
  dockerd?: string;
}

const whole = (re: string) => new RegExp(`^(?:${re})$`, "s");

function matches(k: KnownDifference, d: Difference): boolean {
  if (!whole(k.where).test(d.where)) return false;
  if (k.buildkit !== undefined && !whole(k.buildkit).test(d.a)) return false;
  if (k.dockerd !== undefined && !whole(k.dockerd).test(d.b)) return false;
  return true;
}

export interface KnownCheck {
  /** Differences no known entry explains. */
  unexpected: Difference[];
  /** Known entries listed for this case that no difference matched. */
  stale: KnownDifference[];
  /** Ids of the entries that explained at least one difference. */
  used: string[];
}

/** Sorts a case's BuildKit-vs-dockerd differences (`a` = BuildKit, `b` = dockerd) into explained and not. */
export function checkKnown(caseName: string, diffs: Difference[], known: KnownDifference[]): KnownCheck {
  const mine = known.filter((k) => k.cases === "*" || k.cases.includes(caseName));
  const used = new Set<KnownDifference>();
  const unexpected: Difference[] = [];
  for (const d of diffs) {
    const k = mine.find((x) => matches(x, d));
    if (k) used.add(k);
    else unexpected.push(d);
  }
  return {
    unexpected,
    stale: mine.filter((k) => k.cases !== "*" && !used.has(k)),
    used: [...used].map((k) => k.id),
  };
}

/** Validates the entries (regexes compile, cases exist). */
export function validateKnown(known: KnownDifference[], caseNames: Set<string>): void {
  const ids = new Set<string>();
  for (const k of known) {
    const cases = k.cases === "*" ? ["*"] : k.cases;
    if (!k.id || !k.reason || !k.where || !Array.isArray(cases) || cases.length === 0) {
      throw new Error(`known difference ${JSON.stringify(k.id)}: needs id, reason, where and cases`);
    }
    if (ids.has(k.id)) throw new Error(`known difference ${k.id} listed twice`);
    ids.add(k.id);
    for (const re of [k.where, k.buildkit, k.dockerd]) if (re !== undefined) whole(re);
    if (k.cases === "*") continue;
    for (const c of k.cases) if (!caseNames.has(c)) throw new Error(`known difference ${k.id}: no case ${c}`);
  }
}

/** Reads the ```json block of differences.md (the one file listing them, with the prose around it). */
export async function loadKnown(file: string): Promise<KnownDifference[]> {
  const text = await readFile(file, "utf8");
  const m = /```json\n([\s\S]*?)\n```/.exec(text);
  if (!m) throw new Error(`${file}: no \`\`\`json block`);
  return JSON.parse(m[1] as string) as KnownDifference[];
}

/** Entries for any case ("*") that no case of a run showed: the run's own staleness check. */
export function staleWildcards(known: KnownDifference[], used: Set<string>): KnownDifference[] {
  return known.filter((k) => k.cases === "*" && !used.has(k.id));
}

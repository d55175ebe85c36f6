import { type ConfigView, canonicalStep } from "./config-view.js";
import { describeEntry, type TreeEntry } from "./file-tree.js";

/** A flattened image: what a build produced, in comparable form. */
export interface ImageSnapshot {
  config: ConfigView;
  tree: Map<string, TreeEntry>;
}

/** One difference between two images; `where` is `config.<Field>`, `history` or a path (`/etc/x`). */
export interface Difference {
  where: string;
  a: string;
  b: string;
}

export interface CompareOptions {
  /**
   * Across builders (dockerd's classic builder vs BuildKit) history entries are
   * compared by canonical instruction ({@link canonicalStep}); between BuildKit
   * paths they must be identical.
   */
  canonicalHistory: boolean;
}

const show = (v: unknown): string => (v === undefined ? "(none)" : JSON.stringify(v));

/** Every difference between two images, config first, then the file tree by path. */
export function compareImages(a: ImageSnapshot, b: ImageSnapshot, opts: CompareOptions): Difference[] {
  const out: Difference[] = [];
  const { history: ha, ...ca } = a.config;
  const { history: hb, ...cb } = b.config;
  const keys = new Set([...Object.keys(ca), ...Object.keys(cb)]);
  for (const k of [...keys].sort()) {
    const va = show((ca as Record<string, unknown>)[k]);
    const vb = show((cb as Record<string, unknown>)[k]);
    if (va !== vb) out.push({ where: `config.${k}`, a: va, b: vb });
  }
  const step = (h: { created_by: string; empty_layer: boolean; comment?: string }) =>
    opts.canonicalHistory
      ? `${canonicalStep(h.created_by)}${h.empty_layer ? " (empty)" : ""}`
      : `${h.created_by}${h.empty_layer ? " (empty)" : ""}${h.comment ? ` [${h.comment}]` : ""}`;
  // Aligned, so one extra entry (an ONBUILD dockerd records, a --label) shows as one difference.
  alignHistory(ha.map(step), hb.map(step)).forEach(([x, y], i) => {
    if (x !== y) out.push({ where: `history[${i}]`, a: x ?? "(none)", b: y ?? "(none)" });
  });
  const paths = new Set([...a.tree.keys(), ...b.tree.keys()]);
  for (const p of [...paths].sort()) {
    const ea = a.tree.get(p);
    const eb = b.tree.get(p);
    const da = ea ? describeEntry(p, ea) : "(absent)";
    const db = eb ? describeEntry(p, eb) : "(absent)";
    if (da !== db) out.push({ where: `/${p}`, a: da, b: db });
  }
  return out;
}

/** A short human rendering of differences (at most `limit` lines). */
export function formatDifferences(diffs: Difference[], aName: string, bName: string, limit = 12): string {
  const lines = diffs
    .slice(0, limit)
    .map((d) => `    ${d.where}:\n      ${aName}: ${d.a}\n      ${bName}: ${d.b}`);
  if (diffs.length > limit) lines.push(`    … and ${diffs.length - limit} more`);
  return lines.join("\n");
}

/**
 * Aligns two lists by their longest common subsequence; entries only one side
 * has are paired with undefined, and runs of removed and added entries at the
 * same spot are paired with each other (a changed entry).
 */
export function alignHistory(a: string[], b: string[]): [string | undefined, string | undefined][] {
  const n = a.length;
  const m = b.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      const row = lcs[i] as number[];
      row[j] =
        a[i] === b[j]
          ? ((lcs[i + 1] as number[])[j + 1] as number) + 1
          : Math.max(lcs[i + 1]?.[j] ?? 0, row[j + 1] ?? 0);
    }
  }
  const out: [string | undefined, string | undefined][] = [];
  let dels: string[] = [];
  let adds: string[] = [];
  const flush = () => {
    for (let k = 0; k < Math.max(dels.length, adds.length); k++) out.push([dels[k], adds[k]]);
    dels = [];
    adds = [];
  };
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      flush();
      out.push([a[i], b[j]]);
      i++;
      j++;
    } else if (j >= m || (i < n && (lcs[i + 1]?.[j] ?? 0) >= (lcs[i]?.[j + 1] ?? 0))) {
      dels.push(a[i++] as string);
    } else {
      adds.push(b[j++] as string);
    }
  }
  flush();
  return out;
}

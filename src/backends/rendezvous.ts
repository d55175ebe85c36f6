import { createHash } from "node:crypto";

export interface Weighted {
  readonly name: string;
  readonly weight: number;
}

/**
 * Rendezvous (highest-random-weight) order of `nodes` for `key`: each node
 * scores hash(key, node) independently, so adding or removing one node moves
 * only the keys that rank it first. Weighted as in "weighted rendezvous
 * hashing" (score = -weight / ln(u), u uniform in (0,1)): a node of weight 2
 * gets twice the keys of a node of weight 1.
 */
export function rendezvousOrder<T extends Weighted>(key: string, nodes: readonly T[]): T[] {
  const scored = nodes.map((n) => ({ n, score: score(key, n) }));
  scored.sort((a, b) => b.score - a.score || (a.n.name < b.n.name ? -1 : 1));
  return scored.map((s) => s.n);
}

function score(key: string, node: Weighted): number {
  const h = createHash("sha256").update(key).update("\0").update(node.name).digest();
  // 53 random bits as a float in (0,1): never 0 (ln 0) nor 1 (ln 1 = 0).
  const u = (Number(h.readBigUInt64BE(0) >> 11n) + 0.5) / 2 ** 53;
  return -node.weight / Math.log(u);
}

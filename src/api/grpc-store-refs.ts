/** How many solves are remembered: far more than run at once; the oldest go first. */
const LIMIT = 1000;

/**
 * Refs of /grpc solves whose images go only into Arca's store (no push to a
 * registry): their Control.Status stream reads as dockerd's local load
 * ("storing layers", "naming to …"). A solve that also pushes keeps
 * BuildKit's "pushing layers", since that one really is a push.
 */
export class StoreOnlyRefs {
  readonly #refs = new Set<string>();

  add(ref: string): void {
    this.#refs.delete(ref);
    this.#refs.add(ref);
    if (this.#refs.size > LIMIT) this.#refs.delete(this.#refs.values().next().value as string);
  }

  has(ref: string): boolean {
    return this.#refs.has(ref);
  }
}

/** Running builds by their `buildid`, for POST /build/cancel. */
export class BuildJobs {
  readonly #jobs = new Map<string, Set<AbortController>>();

  /** Registers a build; the returned function unregisters it. */
  register(id: string, ac: AbortController): () => void {
    let set = this.#jobs.get(id);
    if (!set) {
      set = new Set();
      this.#jobs.set(id, set);
    }
    set.add(ac);
    return () => {
      set.delete(ac);
      if (set.size === 0 && this.#jobs.get(id) === set) this.#jobs.delete(id);
    };
  }

  /** Cancels every build registered under id; an unknown id is a no-op (as in dockerd). */
  cancel(id: string, reason: Error): boolean {
    const set = this.#jobs.get(id);
    if (!set) return false;
    for (const ac of set) ac.abort(reason);
    return true;
  }
}

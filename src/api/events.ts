/** A Docker event (GET /events): `{Type, Action, Actor:{ID, Attributes}, scope, time, timeNano}`. */
export interface DockerEvent {
  Type: "image" | "container" | "builder" | "volume";
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: "local";
  time: number;
  timeNano: number;
}

/** In-memory event fan-out with a short history for `since`. */
export class EventBus {
  readonly #subscribers = new Set<(e: DockerEvent) => void>();
  readonly #history: DockerEvent[] = [];

  emit(type: DockerEvent["Type"], action: string, id: string, attributes: Record<string, string> = {}): void {
    const now = Date.now();
    const e: DockerEvent = {
      Type: type,
      Action: action,
      Actor: { ID: id, Attributes: attributes },
      scope: "local",
      time: Math.floor(now / 1000),
      timeNano: now * 1_000_000,
    };
    this.#history.push(e);
    if (this.#history.length > 1000) this.#history.shift();
    for (const s of this.#subscribers) s(e);
  }

  /** Clients following GET /events now (dockerd's NEventsListener). */
  get listeners(): number {
    return this.#subscribers.size;
  }

  /** Past events since `sinceSec` (inclusive), then live ones until the returned function is called. */
  subscribe(fn: (e: DockerEvent) => void, sinceSec?: number): () => void {
    if (sinceSec !== undefined) for (const e of this.#history) if (e.time >= sinceSec) fn(e);
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }
}

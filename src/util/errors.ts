/**
 * Every layer defines one error class with a closed set of codes; each code
 * belongs to one of these kinds, and the API layer maps kinds (never
 * messages) to HTTP status in a single function.
 */
export type ErrorKind =
  | "invalid_argument"
  | "not_found"
  | "conflict"
  | "unavailable"
  | "canceled"
  | "failed_precondition"
  /** A request Arca understands but does not serve (a build engine runs no user containers). */
  | "unimplemented"
  /** Credentials were missing or refused (a registry login, pull or push): 401 as dockerd's Unauthorized. */
  | "unauthenticated"
  | "internal";

export abstract class ArcaError extends Error {
  abstract readonly kind: ErrorKind;
  abstract readonly code: string;
}

/** Base of every layer's error class: a closed set of codes, each bound to one kind. */
export abstract class CodedError<C extends string> extends ArcaError {
  readonly kind: ErrorKind;
  constructor(
    readonly code: C,
    kinds: Readonly<Record<C, ErrorKind>>,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.kind = kinds[code];
  }
}

/** Walks the `cause` chain for the first ArcaError. */
export function findArcaError(err: unknown): ArcaError | undefined {
  let cur: unknown = err;
  for (let i = 0; i < 16 && cur; i++) {
    if (cur instanceof ArcaError) return cur;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

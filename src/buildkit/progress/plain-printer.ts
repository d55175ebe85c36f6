import type { StatusResponse } from "../gen/moby/buildkit/v1/control_pb.js";
import { type ProgressClock, systemClock } from "./clock.js";
import { PlainTrace } from "./plain-trace.js";
import { TextMux } from "./text-mux.js";

/** buildctl redraws at most this often on incoming messages... */
const DISPLAY_INTERVAL_MS = 100;
/** ...and this long after the last message (then periodically) when none come. */
const TICK_MS = 150;
const CANCELED_SUFFIX = "context canceled";

export interface PlainProgressOptions {
  /** At finish(), print the "------ / > step: / last lines / ------" block for failed steps (default true). */
  errorLogs?: boolean;
  /** At finish(), print buildx's "N warnings found" list (default true; buildctl does not print it). */
  warningsSummary?: boolean;
  /** Time source (default: the system clock and timers). */
  clock?: ProgressClock;
}

/**
 * Renders a BuildKit status stream the way `buildctl build --progress=plain`
 * does (BuildKit util/progress/progressui: plainDisplay + textMux),
 * reimplemented here because no installed library does. Like buildctl, what
 * is printed depends on timing: messages only update state; the text is
 * redrawn at most every 100 ms on a message and 150 ms after the last one,
 * so a step that finishes quickly is printed once, already finished.
 * Differences, on purpose: no ANSI colour; finish() ends an open partial log
 * line with a newline; warningsSummary (buildx's) is on by default.
 */
export class PlainProgressPrinter {
  readonly #out: { write(s: string): unknown };
  readonly #opts: PlainProgressOptions;
  readonly #clock: ProgressClock;
  readonly #trace = new PlainTrace();
  readonly #mux: TextMux;
  /** Token bucket of one token refilled every DISPLAY_INTERVAL_MS (Go's rate.Limiter, burst 1). */
  #tokens = 1;
  #tokensAt: number | undefined;
  #cancelTick: (() => void) | undefined;
  #finished = false;
  #buf = "";
  /** Whether what was written so far ends mid-line (an open log line). */
  #midLine = false;

  constructor(out: { write(s: string): unknown }, opts: PlainProgressOptions = {}) {
    this.#out = out;
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#mux = new TextMux((s) => {
      this.#buf += s;
    });
  }

  update(resp: StatusResponse): void {
    if (this.#finished) return;
    const now = this.#clock.now();
    this.#trace.update(resp, now);
    if (this.#allow(now)) this.#refresh();
    this.#scheduleTick();
  }

  /** Prints everything still pending, then failed steps' last output and the warnings list. */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#cancelTick?.();
    this.#cancelTick = undefined;
    this.#mux.print(this.#trace, this.#clock.now());
    if (this.#buf !== "" ? !this.#buf.endsWith("\n") : this.#midLine) this.#buf += "\n";
    if (this.#opts.errorLogs !== false) this.#printErrorLogs();
    const warnings = this.#trace.warnings;
    if (this.#opts.warningsSummary !== false && warnings.length > 0) {
      const n = warnings.length;
      this.#buf += `\n ${n === 1 ? "1 warning found" : `${n} warnings found`} (use docker --debug to expand):\n`;
      for (const w of warnings) this.#buf += ` - ${w}\n`;
    }
    this.#flush();
  }

  #printErrorLogs(): void {
    for (const v of this.#trace.started) {
      if (!v.error || v.error.endsWith(CANCELED_SUFFIX)) continue;
      this.#buf += `------\n > ${v.name}:\n`;
      // Unprinted lines (at most the open last one), then the ring from its oldest slot, as buildctl does.
      for (const l of v.logs) this.#buf += `${l}\n`;
      for (let i = 0; i < v.logRing.length; i++) {
        const l = v.logRing[(v.logRingPos + i) % v.logRing.length];
        if (l !== undefined) this.#buf += `${l}\n`;
      }
      this.#buf += "------\n";
    }
  }

  #allow(now: number): boolean {
    if (this.#tokensAt !== undefined) {
      this.#tokens = Math.min(1, this.#tokens + (now - this.#tokensAt) / DISPLAY_INTERVAL_MS);
    }
    this.#tokensAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Like buildctl's ticker, reset by every message: redraw when messages pause. */
  #scheduleTick(): void {
    this.#cancelTick?.();
    this.#cancelTick = this.#clock.setTimeout(() => {
      this.#cancelTick = undefined;
      if (this.#finished) return;
      this.#refresh();
      this.#scheduleTick();
    }, TICK_MS);
  }

  #refresh(): void {
    this.#mux.print(this.#trace, this.#clock.now());
    this.#flush();
  }

  #flush(): void {
    if (this.#buf === "") return;
    const text = this.#buf;
    this.#buf = "";
    this.#midLine = !text.endsWith("\n");
    this.#out.write(text);
  }
}

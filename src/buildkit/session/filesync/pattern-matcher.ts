import { cleanPath, dirPath } from "./go-path.js";

/*
 * A port of github.com/moby/patternmatcher, the .dockerignore matcher that
 * fsutil's filter uses inside buildkitd's session peer. Hand-written because
 * @balena/dockerignore differs in ways that change which files are sent: it
 * matches case-insensitively by default, implements Docker 19.03's older
 * parent-directory rule, escapes fewer regexp characters, and exposes neither
 * MatchesUsingParentResults nor the pattern list fsutil needs to prune walks.
 *
 * Known divergence: a `*` or `?` inside `[...]` is taken literally here; Go's
 * implementation turns it into a broken nested class.
 */

export class PatternError extends Error {
  override readonly name = "PatternError";
}

type MatchType = "exact" | "prefix" | "suffix" | "regexp";

export class Pattern {
  readonly exclusion: boolean;
  /** The cleaned pattern without its leading "!". */
  readonly cleaned: string;
  private matchType: MatchType | undefined;
  private regexp: RegExp | undefined;

  constructor(cleaned: string, exclusion: boolean) {
    this.cleaned = cleaned;
    this.exclusion = exclusion;
  }

  toString(): string {
    return this.cleaned;
  }

  match(path: string): boolean {
    if (this.matchType === undefined) this.compile();
    switch (this.matchType) {
      case "exact":
        return path === this.cleaned;
      case "prefix":
        return path.startsWith(this.cleaned.slice(0, -2));
      case "suffix": {
        const suffix = this.cleaned.slice(2);
        if (path.endsWith(suffix)) return true;
        return suffix[0] === "/" && path === suffix.slice(1);
      }
      default:
        return (this.regexp as RegExp).test(path);
    }
  }

  private compile(): void {
    const chars = Array.from(this.cleaned); // code points, like Go's text/scanner
    let re = "^";
    let type: MatchType = "exact";
    let inClass = false;
    let pos = 0;
    for (let i = 0; pos < chars.length; i++) {
      const ch = chars[pos++] as string;
      const peek = chars[pos];
      if (inClass) {
        if (ch === "]") {
          re += "]";
          inClass = false;
        } else if (ch === "\\" && peek !== undefined) {
          re += escapeInClass(peek);
          pos++;
        } else if (ch === "-") {
          re += "-";
        } else {
          re += escapeInClass(ch);
        }
        continue;
      }
      if (ch === "*") {
        if (peek === "*") {
          pos++;
          if (chars[pos] === "/") pos++; // treat "**/" as "**"
          if (pos >= chars.length) {
            if (type === "exact") type = "prefix";
            else {
              re += ".*";
              type = "regexp";
            }
          } else {
            re += "(?:.*/)?";
            type = "regexp";
          }
          if (i === 0) type = "suffix";
        } else {
          re += "[^/]*";
          type = "regexp";
        }
      } else if (ch === "?") {
        re += "[^/]";
        type = "regexp";
      } else if (".+()|{}$".includes(ch)) {
        re += `\\${ch}`;
      } else if (ch === "\\") {
        if (peek !== undefined) {
          re += escapeLiteral(peek);
          pos++;
          type = "regexp";
        } else {
          re += "\\\\";
        }
      } else if (ch === "[") {
        re += "[";
        inClass = true;
        type = "regexp";
        if (peek === "^") {
          re += "^";
          pos++;
        }
      } else if (ch === "]") {
        re += "\\]";
        type = "regexp";
      } else {
        re += ch === "^" ? "^" : escapeLiteral(ch);
      }
    }
    if (type === "regexp") {
      try {
        this.regexp = new RegExp(`${re}$`, "u");
      } catch (err) {
        throw new PatternError(`syntax error in pattern ${JSON.stringify(this.cleaned)}`, { cause: err });
      }
    }
    this.matchType = type;
  }
}

function escapeLiteral(ch: string): string {
  return "^$\\.*+?()[]{}|/".includes(ch) ? `\\${ch}` : ch;
}

function escapeInClass(ch: string): string {
  return "^$\\.*+?()[]{}|/-".includes(ch) ? `\\${ch}` : ch;
}

/** Per-pattern results for a directory, handed down to its children. */
export interface MatchInfo {
  readonly parentMatched: readonly boolean[];
}

export const emptyMatchInfo: MatchInfo = { parentMatched: [] };

export class PatternMatcher {
  readonly patterns: readonly Pattern[];
  readonly exclusions: boolean;

  /** Throws PatternError for a malformed pattern, as patternmatcher.New does. */
  constructor(patterns: readonly string[]) {
    const out: Pattern[] = [];
    let exclusions = false;
    for (const raw of patterns) {
      let p = raw.trim();
      if (p === "") continue;
      p = cleanPath(p);
      let exclusion = false;
      if (p[0] === "!") {
        if (p.length === 1) throw new PatternError('illegal exclusion pattern: "!"');
        exclusion = true;
        exclusions = true;
        p = p.slice(1);
      }
      validateGlob(p);
      out.push(new Pattern(p, exclusion));
    }
    this.patterns = out;
    this.exclusions = exclusions;
  }

  /** MatchesOrParentMatches: the path or one of its parent dirs matches. */
  matchesOrParentMatches(file: string): boolean {
    let matched = false;
    const parent = dirPath(file);
    const parentDirs = parent.split("/");
    for (const pattern of this.patterns) {
      if (pattern.exclusion !== matched) continue;
      let match = pattern.match(file);
      if (!match && parent !== ".") {
        for (let i = 0; i < parentDirs.length && !match; i++) {
          match = pattern.match(parentDirs.slice(0, i + 1).join("/"));
        }
      }
      if (match) matched = !pattern.exclusion;
    }
    return matched;
  }

  /**
   * MatchesUsingParentResults: like matchesOrParentMatches, but reuses the
   * parent directory's per-pattern results during a walk.
   */
  matchesUsingParentResults(file: string, parentInfo: MatchInfo): { matched: boolean; info: MatchInfo } {
    const parentMatched = parentInfo.parentMatched;
    if (parentMatched.length !== 0 && parentMatched.length !== this.patterns.length) {
      throw new PatternError("wrong number of values in parentMatched");
    }
    let matched = false;
    const results: boolean[] = new Array(this.patterns.length).fill(false);
    this.patterns.forEach((pattern, i) => {
      let match = parentMatched.length !== 0 ? (parentMatched[i] as boolean) : false;
      if (!match) {
        if (pattern.exclusion !== matched) return;
        match = pattern.match(file);
        if (!match && parentMatched.length === 0) {
          const parent = dirPath(file);
          if (parent !== ".") {
            const dirs = parent.split("/");
            for (let j = 0; j < dirs.length && !match; j++)
              match = pattern.match(dirs.slice(0, j + 1).join("/"));
          }
        }
      }
      results[i] = match;
      if (match) matched = !pattern.exclusion;
    });
    return { matched, info: { parentMatched: results } };
  }
}

/** Go's filepath.Match syntax check (patternmatcher.New rejects what it rejects). */
function validateGlob(pattern: string): void {
  const c = Array.from(pattern);
  const bad = () => new PatternError(`syntax error in pattern ${JSON.stringify(pattern)}`);
  let i = 0;
  const getEsc = () => {
    let ch = c[i];
    if (ch === undefined || ch === "-" || ch === "]") throw bad();
    if (ch === "\\") {
      i++;
      ch = c[i];
      if (ch === undefined) throw bad();
    }
    i++;
    if (i >= c.length) throw bad();
  };
  while (i < c.length) {
    const ch = c[i];
    if (ch === "\\") {
      if (i + 1 >= c.length) throw bad();
      i += 2;
    } else if (ch === "[") {
      i++;
      if (c[i] === "^") i++;
      let nrange = 0;
      for (;;) {
        if (i >= c.length) throw bad();
        if (c[i] === "]" && nrange > 0) {
          i++;
          break;
        }
        getEsc();
        if (c[i] === "-") {
          i++;
          getEsc();
        }
        nrange++;
      }
    } else {
      i++;
    }
  }
}

/**
 * Go's filepath.Match for a single path element (used by fsutil's followpaths
 * resolver); errors count as no match, as fsutil ignores them.
 */
export function goGlobMatch(pattern: string, name: string): boolean {
  const re = globToRegExp(pattern);
  return re?.test(name) === true;
}

const cache = new Map<string, RegExp | undefined>();

function globToRegExp(pattern: string): RegExp | undefined {
  if (cache.has(pattern)) return cache.get(pattern);
  let re: RegExp | undefined;
  try {
    re = new RegExp(`^${translate(Array.from(pattern))}$`, "u");
  } catch {
    re = undefined;
  }
  if (cache.size > 1000) cache.clear();
  cache.set(pattern, re);
  return re;
}

const esc = (ch: string) => ("^$\\.*+?()[]{}|/-".includes(ch) ? `\\${ch}` : ch);

function translate(c: string[]): string {
  let out = "";
  let i = 0;
  const fail = () => {
    throw new Error("bad pattern");
  };
  const getEsc = (): string => {
    let ch = c[i];
    if (ch === undefined || ch === "-" || ch === "]") fail();
    if (ch === "\\") {
      i++;
      ch = c[i];
      if (ch === undefined) fail();
    }
    i++;
    if (i >= c.length) fail();
    return ch as string;
  };
  while (i < c.length) {
    const ch = c[i] as string;
    if (ch === "*") {
      out += "[^/]*";
      i++;
    } else if (ch === "?") {
      out += "[^/]";
      i++;
    } else if (ch === "\\") {
      if (i + 1 >= c.length) fail();
      out += esc(c[i + 1] as string);
      i += 2;
    } else if (ch === "[") {
      i++;
      let cls = "[";
      if (c[i] === "^") {
        cls += "^";
        i++;
      }
      let nrange = 0;
      for (;;) {
        if (i >= c.length) fail();
        if (c[i] === "]" && nrange > 0) {
          i++;
          break;
        }
        const lo = getEsc();
        cls += esc(lo);
        if (c[i] === "-") {
          i++;
          cls += `-${esc(getEsc())}`;
        }
        nrange++;
      }
      out += `${cls}]`;
    } else {
      out += esc(ch);
      i++;
    }
  }
  return out;
}

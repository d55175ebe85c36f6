import { cleanPath } from "./go-path.js";

/**
 * Reads .dockerignore text into exclude patterns exactly as
 * moby/patternmatcher/ignorefile.ReadAll does (what the Dockerfile frontend
 * sends as exclude-patterns): BOM stripped, "#" comment lines skipped,
 * whitespace trimmed, each pattern Go-path-cleaned and its leading "/"
 * removed, keeping a "!" prefix.
 */
export function parseDockerignore(text: string): string[] {
  const out: string[] = [];
  const lines = text.split("\n");
  lines.forEach((rawLine, n) => {
    let line = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    if (n === 0 && line.startsWith("\uFEFF")) line = line.slice(1);
    if (line.startsWith("#")) return;
    let pattern = line.trim();
    if (pattern === "") return;
    const invert = pattern[0] === "!";
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern[0] === "/") pattern = pattern.slice(1);
    }
    out.push(invert ? `!${pattern}` : pattern);
  });
  return out;
}

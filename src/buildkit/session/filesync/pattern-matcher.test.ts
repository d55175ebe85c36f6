import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDockerignore } from "./dockerignore.js";
import { compareGoStrings } from "./go-path.js";
import { PatternError, PatternMatcher } from "./pattern-matcher.js";

const m = (patterns: string[], file: string) => new PatternMatcher(patterns).matchesOrParentMatches(file);

test("patternmatcher semantics (cases from moby/patternmatcher's tests)", () => {
  assert.equal(m(["**"], "file"), true);
  assert.equal(m(["**/*.log"], "a.log"), true);
  assert.equal(m(["**/*.log"], "x/y/a.log"), true);
  assert.equal(m(["**/*.log"], "a.logx"), false);
  assert.equal(m(["dir/**"], "dir/a/b"), true);
  assert.equal(m(["a/**/b"], "a/b"), true);
  assert.equal(m(["a/**/b"], "a/x/y/b"), true);
  assert.equal(m(["*.go"], "sub/x.go"), false, "* does not cross /");
  assert.equal(m(["docs"], "docs/a/b.md"), true, "a dir pattern covers its subtree");
  assert.equal(m(["*.md", "!README.md"], "README.md"), false);
  assert.equal(m(["*.md", "!README.md", "README*"], "README.md"), true, "later patterns win");
  assert.equal(m(["a?c"], "abc"), true);
  assert.equal(m(["a[bc]d"], "acd"), true);
  assert.equal(m(["a[^b]d"], "abd"), false);
  assert.equal(m(["a\\*b"], "a*b"), true);
  assert.equal(m(["a.b"], "axb"), false, ". is literal");
  assert.equal(m(["a+(b)"], "a+(b)"), true);
  assert.equal(m(["Foo"], "foo"), false, "case-sensitive");
  assert.equal(m(["./src"], "src/x"), true, "patterns are Go-path-cleaned");
  assert.equal(m(["**foo"], "barfoo"), true, "leading ** is a suffix match");
  assert.throws(() => new PatternMatcher(["a[b"]), PatternError);
  assert.throws(() => new PatternMatcher(["!"]), PatternError);
  assert.throws(() => new PatternMatcher(["a\\"]), PatternError);
});

test("matchesUsingParentResults agrees with matchesOrParentMatches", () => {
  const pm = new PatternMatcher(["node_modules", "!node_modules/keep", "**/*.tmp", "!**/keep.tmp"]);
  const walk = [
    "node_modules",
    "node_modules/a",
    "node_modules/keep",
    "node_modules/keep/x.tmp",
    "node_modules/keep/keep.tmp",
    "src",
    "src/y.tmp",
  ];
  const infos = new Map<string, ReturnType<PatternMatcher["matchesUsingParentResults"]>["info"]>();
  for (const p of walk) {
    const parent = p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : "";
    const r = pm.matchesUsingParentResults(p, infos.get(parent) ?? { parentMatched: [] });
    infos.set(p, r.info);
    assert.equal(r.matched, pm.matchesOrParentMatches(p), p);
  }
});

test("parseDockerignore cleans like ignorefile.ReadAll", () => {
  const text = "\uFEFF# comment\n/build\n./src/*.log\n  !./keep.log  \r\n\n! /abs\nfoo/../bar\n";
  assert.deepEqual(parseDockerignore(text), ["build", "src/*.log", "!keep.log", "!abs", "bar"]);
});

test("Go string order is UTF-8 byte order", () => {
  const names = ["\u{1F600}", "\uFF5E", "a", "B", "é", "a.b", "a-c"];
  assert.deepEqual(names.sort(compareGoStrings), ["B", "a", "a-c", "a.b", "é", "\uFF5E", "\u{1F600}"]);
});

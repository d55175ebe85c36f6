import assert from "node:assert/strict";
import { test } from "node:test";
import { applyChanges } from "./image-changes.js";
import { globToRegExp, labelsMatch, parseTimeFilter, referenceMatches } from "./image-filters.js";
import { boolFilter, parseFilters } from "./query-params.js";

test("reference globs follow Go's path.Match against the familiar ref or its name", () => {
  const p = (s: string) => [globToRegExp(s)];
  assert.ok(referenceMatches(p("busy*"), "busybox:local"));
  assert.ok(referenceMatches(p("busybox"), "busybox:local"));
  assert.ok(referenceMatches(p("busybox:l?cal"), "busybox:local"));
  assert.ok(referenceMatches(p("busybox:[a-m]*"), "busybox:local"));
  assert.ok(!referenceMatches(p("busybox:[^l]*"), "busybox:local"));
  assert.ok(!referenceMatches(p("*"), "example.com/team/bb:v2"));
  assert.ok(referenceMatches(p("example.com/*/bb"), "example.com/team/bb:v2"));
  assert.ok(referenceMatches(p("busybox"), "busybox@sha256:abc"));
  assert.throws(() => globToRegExp("busy["), /syntax error in pattern/);
});

test("filters: both JSON forms, unknown keys and bad booleans rejected like dockerd", () => {
  assert.deepEqual(parseFilters('{"reference":{"a":true,"b":false}}', ["reference"]).get("reference"), ["a"]);
  assert.deepEqual(parseFilters('{"reference":["a","b"]}', ["reference"]).get("reference"), ["a", "b"]);
  assert.throws(() => parseFilters('{"x":["a"]}', ["reference"]), /^ApiError: invalid filter 'x'$/);
  assert.throws(() => parseFilters("{", ["reference"]), /invalid filter/);
  assert.equal(boolFilter(parseFilters('{"dangling":["1"]}', ["dangling"]), "dangling"), true);
  assert.equal(boolFilter(parseFilters('{"dangling":["false"]}', ["dangling"]), "dangling"), false);
  assert.throws(() => boolFilter(parseFilters('{"dangling":["true","false"]}', ["dangling"]), "dangling"));
});

test("labels and times", () => {
  assert.ok(labelsMatch(["a", "b=2"], { a: "1", b: "2" }));
  assert.ok(!labelsMatch(["b=3"], { b: "2" }));
  assert.ok(!labelsMatch(["a"], null));
  assert.equal(parseTimeFilter("1h30m", 10_000_000), 10_000_000 - 5_400_000);
  assert.equal(parseTimeFilter("1700000000.5"), 1_700_000_000_500);
  assert.equal(parseTimeFilter("2024-01-02T03:04:05Z"), Date.UTC(2024, 0, 2, 3, 4, 5));
  assert.throws(() => parseTimeFilter("soon"), /invalid filter 'until=soon'/);
});

test("import changes become the image config", () => {
  assert.deepEqual(
    applyChanges([
      'ENV A=1 B="two words"',
      "ENV A 3",
      "CMD echo hi",
      'ENTRYPOINT ["/bin/sh"]',
      "EXPOSE 80 53/udp",
      'LABEL "x.y"=z',
      "USER nobody",
      "WORKDIR /w",
      "VOLUME /data /cache",
    ]),
    {
      Env: ["A=3", "B=two words"],
      Cmd: ["/bin/sh", "-c", "echo hi"],
      Entrypoint: ["/bin/sh"],
      ExposedPorts: { "80/tcp": {}, "53/udp": {} },
      Labels: { "x.y": "z" },
      User: "nobody",
      WorkingDir: "/w",
      Volumes: { "/data": {}, "/cache": {} },
    },
  );
  assert.throws(() => applyChanges(["RUN true"]), /run is not a valid change command/);
});

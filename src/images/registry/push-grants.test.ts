import assert from "node:assert/strict";
import { test } from "node:test";
import { PushGrants } from "./push-grants.js";

test("a grant made for one listener's scope is good there only; unscoped grants and listeners match any", () => {
  // (`arca build` asks the daemon's grant socket, whose grants carry the built-in sandbox's scope.)
  const grants = new PushGrants();
  const a = grants.allow(["app:1"], undefined, "b2");
  assert.equal(grants.mayTag("docker.io/library/app", "1", "b2"), true);
  assert.equal(grants.mayPushTo("docker.io/library/app", "b2"), true);
  // Another backend's listener (another sandbox's channel, the remote backends' TLS listener).
  assert.equal(grants.mayTag("docker.io/library/app", "1", "remote-backends"), false);
  assert.equal(grants.mayPushTo("docker.io/library/app", "default"), false);
  // A listener of no scope (a pool of one, tests) takes it.
  assert.equal(grants.mayTag("docker.io/library/app", "1"), true);
  a.release();
  assert.equal(grants.mayTag("docker.io/library/app", "1", "b2"), false);
  // A grant of no scope (a pool of one) is good on any listener.
  const any = grants.allow(["tool:2"]);
  assert.equal(grants.mayTag("docker.io/library/tool", "2", "remote-backends"), true);
  any.release();
});

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";

const execFileP = promisify(execFile);
const repo = path.resolve(import.meta.dirname, "..");
const PYTHON = "/usr/bin/python3";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<Result> {
  try {
    const r = await execFileP(cmd, args, { env, cwd, maxBuffer: 32 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

function getJSON(socket: string, urlPath: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath: socket, path: urlPath }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }),
        );
      })
      .on("error", reject);
  });
}

function postJSON(socket: string, urlPath: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method: "POST", path: urlPath }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

interface DfImage {
  Id: string;
  RepoTags: string[];
  Size: number;
  SharedSize: number;
}

describe("Docker clients' build workflows against Arca: testcontainers, compose, the Python SDK, the CLI", () => {
  let tmp: string;
  let socket: string;
  let daemon: DaemonProc;
  /** Only DOCKER_HOST (and the docker CLI's config dir) on top of the environment. */
  let env: NodeJS.ProcessEnv;

  const docker = (args: string[], extra: NodeJS.ProcessEnv = {}, cwd?: string) =>
    run("docker", args, { ...env, ...extra }, cwd);
  const dir = async (name: string, files: Record<string, string>) => {
    const d = path.join(tmp, name);
    await mkdir(d, { recursive: true });
    for (const [f, body] of Object.entries(files)) await writeFile(path.join(d, f), body);
    return d;
  };
  const imageExists = async (name: string) =>
    (await getJSON(socket, `/images/${encodeURIComponent(name)}/json`)).status === 200;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-clients-"));
    socket = path.join(tmp, "arca.sock");
    const dataRoot = path.join(tmp, "data");
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in/);
    env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
    delete env.DOCKER_CONTEXT;
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("testcontainers-node: GenericContainer.fromDockerfile(dir).build() with only DOCKER_HOST set", async () => {
    const ctx = await dir("tc", {
      Dockerfile: "FROM busybox:local\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n",
      "hello.txt": "hello from testcontainers\n",
    });
    const r = await run(
      process.execPath,
      [path.join(repo, "test/support/testcontainers-build.mjs"), ctx, "tc-app:1"],
      {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DOCKER_HOST: `unix://${socket}`,
        // Ryuk, testcontainers' reaper, is a container it pulls and runs next to the tests to
        // remove what they leave: a build engine runs no containers and its sandbox pulls nothing,
        // so it cannot exist here (its pull and its container create would fail). Everything else
        // testcontainers probes (info, containers, networks, images) is answered; this test
        // removes its image itself.
        TESTCONTAINERS_RYUK_DISABLED: "true",
      },
    );
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(JSON.parse(r.stdout.trim().split("\n").at(-1) as string), {
      built: "tc-app:1",
      container: "GenericContainer",
    });
    const img = (await getJSON(socket, "/images/tc-app:1/json")).body as {
      Config: { Labels: Record<string, string> };
    };
    // testcontainers labels what it builds; the labels reached the image.
    assert.equal(img.Config.Labels["org.testcontainers"], "true");
    assert.equal((await docker(["rmi", "tc-app:1"])).code, 0);
  });

  test("docker compose build builds; docker compose up builds, then fails clearly", async () => {
    const project = await dir("proj", {
      "compose.yaml":
        "services:\n  app:\n    build: .\n    image: proj-app:1\n  web:\n    build:\n      context: .\n      dockerfile: web.Dockerfile\n    image: proj-web:1\n",
      Dockerfile: "FROM busybox:local\nRUN echo app > /app.txt\n",
      "web.Dockerfile": "FROM busybox:local\nRUN echo web > /web.txt\n",
    });
    const version = await docker(["compose", "version"]);
    assert.equal(
      version.code,
      0,
      `docker compose v2 missing: run \`bash scripts/setup-tools.sh\`\n${version.stderr}`,
    );
    const build = await docker(["compose", "-p", "proj", "build"], {}, project);
    assert.equal(build.code, 0, build.stderr + build.stdout);
    assert.ok(await imageExists("proj-app:1"));
    assert.ok(await imageExists("proj-web:1"));
    // A local load reads as dockerd's, never as a push.
    assert.match(build.stderr + build.stdout, /naming to docker\.io\/library\/proj-app:1/);
    assert.doesNotMatch(build.stderr + build.stdout, /pushing/);

    await writeFile(
      path.join(project, "compose.yaml"),
      "services:\n  app:\n    build: .\n    image: proj-up:1\n",
    );
    const up = await docker(["compose", "-p", "proj", "up"], {}, project);
    assert.notEqual(up.code, 0, up.stdout);
    assert.match(up.stderr + up.stdout, /not supported by Arca \(build engine only\): creating networks/);
    assert.ok(await imageExists("proj-up:1"), "up built the image before it stopped");
    const down = await docker(["compose", "-p", "proj", "down"], {}, project);
    assert.equal(down.code, 0, down.stderr);
  });

  test("the Python docker SDK: client.images.build(path=...)", async () => {
    assert.ok(existsSync(PYTHON), `${PYTHON} not found: run \`bash scripts/setup-tools.sh\``);
    const ctx = await dir("py", {
      Dockerfile: "FROM busybox:local\nRUN echo py > /py.txt\nLABEL via=python\n",
    });
    const script = [
      "import json, sys, docker",
      "client = docker.from_env()",
      "image, logs = client.images.build(path=sys.argv[1], tag='py-app:1', rm=True)",
      "print(json.dumps({'id': image.id, 'tags': image.tags, 'labels': image.labels, 'logs': [l.get('stream', '') for l in logs]}))",
    ].join("\n");
    const r = await run(PYTHON, ["-c", script, ctx], env);
    assert.equal(
      r.code,
      0,
      `${r.stderr}${r.stdout}(python3-docker comes with \`bash scripts/setup-tools.sh\`)`,
    );
    const out = JSON.parse(r.stdout) as {
      id: string;
      tags: string[];
      labels: Record<string, string>;
      logs: string[];
    };
    assert.match(out.id, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(out.tags, ["py-app:1"]);
    assert.equal(out.labels.via, "python");
    assert.ok(out.logs.includes("Step 3/3 : LABEL via=python\n"), out.logs.join(""));
  });

  test("docker login to a loopback registry the policy does not name: refused by egress, naming the policy", async () => {
    const r = await run("sh", ["-c", "echo pw | docker login -u u --password-stdin localhost:5999"], {
      ...env,
      DOCKER_CONFIG: path.join(tmp, "login-config"),
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /arca egress: CONNECT localhost:5999 denied by rule "always-refused loopback/);
    assert.match(r.stderr, /egress\.json/);
  });

  test("classic output: Step i/n over every Dockerfile instruction, in order, cached ones marked", async () => {
    const dockerfile = [
      "FROM busybox:local",
      "ENV GREETING=hello",
      'RUN echo "$GREETING from run"',
      "LABEL stage=one",
      "COPY a.txt /a.txt",
      'CMD ["cat", "/a.txt"]',
    ];
    const ctx = await dir("classic", { Dockerfile: `${dockerfile.join("\n")}\n`, "a.txt": "a\n" });
    const build = async () => {
      const r = await docker(["build", "-t", "classic:1", ctx], { DOCKER_BUILDKIT: "0" });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      return r.stdout;
    };
    const steps = (out: string) => out.split("\n").filter((l) => l.startsWith("Step "));
    const expected = dockerfile.map((line, i) => `Step ${i + 1}/6 : ${line}`);
    const first = await build();
    assert.deepEqual(steps(first), expected);
    assert.match(
      first,
      /Step 3\/6 : RUN echo "\$GREETING from run"\n ---> Running in [0-9a-f]{12}\nhello from run\n/,
    );
    const built = /Successfully built ([0-9a-f]{12})\n/.exec(first)?.[1];
    // The last step ends with the image's ID, as dockerd's does.
    assert.match(first, new RegExp(`Step 6/6 : CMD \\["cat", "/a.txt"\\]\\n ---> ${built}\\n`));

    // A new file the Dockerfile does not use: BuildKit's cache answers every step.
    await writeFile(path.join(ctx, "unused.txt"), "x\n");
    const again = await build();
    assert.deepEqual(steps(again), expected);
    for (let i = 2; i <= 6; i++)
      assert.match(again, new RegExp(`Step ${i}/6 : [^\\n]*\\n ---> Using cache\\n ---> [0-9a-f]{12}\\n`));
    assert.doesNotMatch(again, /Running in/);
  });

  test("system df: shared sizes by layer, every layer counted once, volumes listed; prune reclaims unpacked sizes", async () => {
    // Two images on the busybox base; the 1 MiB of zeros compresses to almost nothing.
    const ctx = await dir("df", {
      Dockerfile: "FROM busybox:local\nCOPY zeros /zeros\n",
      zeros: "\0".repeat(1 << 20),
    });
    assert.equal((await docker(["build", "-q", "-t", "df:1", ctx], { DOCKER_BUILDKIT: "0" })).code, 0);
    const df = (await getJSON(socket, "/system/df")).body as {
      LayersSize: number;
      Images: DfImage[];
      Volumes: { Name: string; UsageData: { Size: number; RefCount: number } }[];
    };
    const byTag = (t: string) => df.Images.find((i) => i.RepoTags.includes(t)) as DfImage;
    const base = byTag("busybox:local");
    const app = byTag("df:1");
    assert.ok(base.Size > 0);
    // The busybox layer is shared: both images say so, each for the same bytes.
    assert.equal(base.SharedSize, base.Size);
    assert.equal(app.SharedSize, base.Size);
    assert.ok(app.Size - app.SharedSize >= 1 << 20, "df:1's own layer is its unpacked 1 MiB");
    // LayersSize counts the shared layer once.
    const naive = df.Images.reduce((a, i) => a + i.Size, 0);
    assert.equal(naive - df.LayersSize >= base.Size, true, `${naive} vs ${df.LayersSize}`);
    // The sandbox's image is in use (prune keeps it), so df does not count it as reclaimable.
    const sandbox = df.Images.find((i) => i.RepoTags.some((t) => t.startsWith("arca-buildkit:")));
    assert.equal((sandbox as DfImage & { Containers: number }).Containers, 1);
    assert.equal((app as DfImage & { Containers: number }).Containers, 0);
    const cache = df.Volumes.find((v) => v.Name === "buildkit-cache");
    assert.ok(cache, "the sandbox's cache volume is in df, as in docker volume ls");
    assert.equal(cache.UsageData.RefCount, 1);
    assert.ok(cache.UsageData.Size > 0);
    const cli = await docker(["system", "df", "-v"]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(
      cli.stdout,
      /Local Volumes space usage:\n\nVOLUME NAME\s+LINKS\s+SIZE\nbuildkit-cache\s+1\s+\S+/,
    );

    // Rebuild df:1 with other bytes: the old image is dangling; prune frees its own layer, unpacked.
    await writeFile(path.join(ctx, "zeros"), "\0".repeat((1 << 20) + 1));
    assert.equal((await docker(["build", "-q", "-t", "df:1", ctx], { DOCKER_BUILDKIT: "0" })).code, 0);
    const prune = await postJSON(socket, "/images/prune");
    assert.equal(prune.status, 200);
    const pruned = prune.body as { ImagesDeleted: { Deleted?: string }[]; SpaceReclaimed: number };
    assert.ok(
      pruned.ImagesDeleted.some((d) => d.Deleted === app.Id),
      JSON.stringify(pruned),
    );
    assert.equal(pruned.SpaceReclaimed, app.Size - app.SharedSize, "what docker images showed as its own");
  });
});

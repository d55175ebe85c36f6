// Test fixture: a throwaway "daemon" that starts a chatty container, prints its ID and waits to be SIGKILLed.
import { join } from "node:path";
import { ImageStore } from "../images/index.js";
import { createRuntime } from "./runtime.js";

const [dataRoot = "", runcPath = "runc"] = process.argv.slice(2);
const images = await ImageStore.open(join(dataRoot, "images"));
const rt = await createRuntime({ dataRoot, images, runcPath });
const c = await rt.create({
  name: "chatty",
  image: "busybox:test",
  cmd: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line $i; echo err $i >&2; sleep 0.05; done"],
  networkMode: "none",
  restartPolicy: { name: "no" },
  labels: {},
  mounts: [],
});
await rt.start(c.id);
process.stdout.write(`${c.id}\n`);
setInterval(() => {}, 1000);

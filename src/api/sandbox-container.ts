import type { SandboxContainer } from "../sandbox/index.js";
import type { ApiDeps } from "./deps.js";

/** The sandbox when it is not a runtime container (the VM) and `name` names it (its name or an ID prefix). */
export function sandboxContainer(deps: ApiDeps, name: string): SandboxContainer | undefined {
  const view = deps.buildkit.container;
  if (!view) return undefined;
  const c = view.inspect();
  const bare = name.replace(/^\//, "");
  return bare === c.Name.slice(1) || (bare.length >= 1 && c.Id.startsWith(bare)) ? view : undefined;
}

import { ApiError } from "./errors.js";

/**
 * Applies `docker import --change` / `changes=` Dockerfile instructions to an image's container config,
 * with the commands dockerd allows there (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL,
 * USER, VOLUME, WORKDIR). Hand-written: no installed package parses Dockerfile instructions.
 */
export function applyChanges(changes: string[]): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const raw of changes) {
    const line = raw.trim();
    if (!line) continue;
    const m = /^(\S+)\s*(.*)$/s.exec(line);
    const cmd = (m?.[1] ?? "").toLowerCase();
    const rest = (m?.[2] ?? "").trim();
    switch (cmd) {
      case "cmd":
      case "entrypoint":
        config[cmd === "cmd" ? "Cmd" : "Entrypoint"] = jsonArray(rest) ?? ["/bin/sh", "-c", rest];
        break;
      case "env": {
        const env = ((config.Env as string[] | undefined) ?? []).filter(Boolean);
        for (const [k, v] of pairs(rest, cmd)) {
          const i = env.findIndex((e) => e.split("=")[0] === k);
          if (i >= 0) env[i] = `${k}=${v}`;
          else env.push(`${k}=${v}`);
        }
        config.Env = env;
        break;
      }
      case "label":
        config.Labels = { ...(config.Labels as object | undefined), ...Object.fromEntries(pairs(rest, cmd)) };
        break;
      case "expose": {
        const ports = { ...(config.ExposedPorts as object | undefined) } as Record<string, object>;
        for (const p of words(rest)) {
          if (!/^\d+(?:-\d+)?(?:\/(?:tcp|udp|sctp))?$/.test(p))
            throw new ApiError("invalid_parameter", `invalid containerPort: ${p}`);
          ports[p.includes("/") ? p : `${p}/tcp`] = {};
        }
        config.ExposedPorts = ports;
        break;
      }
      case "volume": {
        const vols = { ...(config.Volumes as object | undefined) } as Record<string, object>;
        for (const v of jsonArray(rest) ?? words(rest)) vols[v] = {};
        config.Volumes = vols;
        break;
      }
      case "onbuild":
        config.OnBuild = [...((config.OnBuild as string[] | undefined) ?? []), rest];
        break;
      case "user":
        config.User = rest;
        break;
      case "workdir":
        config.WorkingDir = rest;
        break;
      case "stopsignal":
        config.StopSignal = rest;
        break;
      default:
        throw new ApiError("invalid_parameter", `${cmd} is not a valid change command`);
    }
  }
  return config;
}

function jsonArray(s: string): string[] | undefined {
  if (!s.startsWith("[")) return undefined;
  try {
    const v: unknown = JSON.parse(s);
    return Array.isArray(v) && v.every((x) => typeof x === "string") ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Splits on unquoted whitespace, removing quotes and backslash escapes like the Dockerfile parser. */
function words(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quote = "";
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c === "\\" && quote !== "'" && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (quote) {
      if (c === quote) quote = "";
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

/** `k=v k2="v 2"`, or the legacy `k v w` (one pair) form. */
function pairs(rest: string, cmd: string): [string, string][] {
  const ws = words(rest);
  if (ws.length === 0)
    throw new ApiError("invalid_parameter", `${cmd.toUpperCase()} requires at least one argument`);
  if (!(ws[0] as string).includes("=")) {
    const m = /^(\S+)\s+(.*)$/s.exec(rest.trim());
    if (!m) throw new ApiError("invalid_parameter", `${cmd.toUpperCase()} must have two arguments`);
    return [[m[1] as string, words(m[2] as string).join(" ")]];
  }
  return ws.map((w) => {
    const eq = w.indexOf("=");
    if (eq <= 0) throw new ApiError("invalid_parameter", `${cmd.toUpperCase()} names can not be blank`);
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

import { createHash } from "node:crypto";
import { matchAny, matchLabels, regexMatch } from "./container-filters.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { boolFilter, parseFilters } from "./query-params.js";
import { sendJSON } from "./respond.js";
import type { Router } from "./router.js";
import { unsupported } from "./unsupported-routes.js";
import { versionAtLeast } from "./version.js";

const NETWORK_FILTERS = ["dangling", "driver", "id", "label", "name", "scope", "type"] as const;

/** dockerd's default bridge (docker0): what clients read to compute the host's address from a container. */
const BRIDGE_SUBNET = "172.17.0.0/16";
const BRIDGE_GATEWAY = "172.17.0.1";

/** The networks every dockerd has from its start (bridge, host, none), as `docker network ls` lists them. */
const PREDEFINED = [
  {
    name: "bridge",
    driver: "bridge",
    ipamConfig: [{ Subnet: BRIDGE_SUBNET, Gateway: BRIDGE_GATEWAY }],
    options: {
      "com.docker.network.bridge.default_bridge": "true",
      "com.docker.network.bridge.enable_icc": "true",
      "com.docker.network.bridge.enable_ip_masquerade": "true",
      "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
      "com.docker.network.bridge.name": "docker0",
      "com.docker.network.driver.mtu": "1500",
    },
  },
  { name: "host", driver: "host", ipamConfig: [], options: {} },
  { name: "none", driver: "null", ipamConfig: [], options: {} },
] as const;

type NetworkDef = (typeof PREDEFINED)[number];

/**
 * GET /networks and /networks/{id}: the three predefined networks, so that clients that look around
 * before they build (compose, testcontainers) find what they find on dockerd. Arca runs no user
 * containers, so none is ever attached and no network can be created, connected or removed.
 */
export function registerNetworkRoutes(router: Router, deps: ApiDeps): void {
  const created = new Date().toISOString();
  const idOf = (name: string) =>
    createHash("sha256").update(`arca-network\0${deps.daemonName}\0${name}`).digest("hex");
  const view = (n: NetworkDef, apiVersion: string): Record<string, unknown> => {
    const out: Record<string, unknown> = {
      Name: n.name,
      Id: idOf(n.name),
      Created: created,
      Scope: "local",
      Driver: n.driver,
    };
    if (versionAtLeast(apiVersion, "1.47")) out.EnableIPv4 = n.name === "bridge";
    Object.assign(out, {
      EnableIPv6: false,
      IPAM: { Driver: "default", Options: null, Config: n.ipamConfig.map((c) => ({ ...c })) },
      Internal: false,
      Attachable: false,
      Ingress: false,
      ConfigFrom: { Network: "" },
      ConfigOnly: false,
      Containers: {},
      Options: { ...n.options },
      Labels: {},
    });
    return out;
  };
  /** By full name, full ID or ID prefix, as dockerd's FindNetwork. */
  const find = (term: string): NetworkDef | undefined =>
    PREDEFINED.find((n) => n.name === term) ??
    PREDEFINED.find((n) => idOf(n.name) === term) ??
    PREDEFINED.find((n) => term.length > 0 && idOf(n.name).startsWith(term));

  router.add("GET", "/networks", ({ res, query, apiVersion }) => {
    const f = parseFilters(query.get("filters"), NETWORK_FILTERS);
    for (const t of f.get("type") ?? [])
      if (t !== "custom" && t !== "builtin")
        throw new ApiError("invalid_parameter", `invalid filter: 'type'='${t}'`);
    const dangling = boolFilter(f, "dangling");
    const list = PREDEFINED.filter(
      (n) =>
        matchAny(f, "name", (v) => regexMatch(v, n.name)) &&
        matchAny(f, "id", (v) => regexMatch(v, idOf(n.name))) &&
        matchAny(f, "driver", (v) => v === n.driver) &&
        matchAny(f, "scope", (v) => v === "local") &&
        matchAny(f, "type", (v) => v === "builtin") &&
        matchLabels(f, {}) &&
        // Predefined networks are never dangling (dockerd's filter skips them).
        dangling !== true,
    );
    sendJSON(
      res,
      200,
      list.map((n) => view(n, apiVersion)),
    );
  });

  router.add("GET", "/networks/{id}", ({ res, params, apiVersion }) => {
    const term = params.id as string;
    const n = find(term);
    if (!n) throw new ApiError("not_found", `network ${term} not found`);
    sendJSON(res, 200, view(n, apiVersion));
  });

  // Nothing to prune: the predefined networks never are (as dockerd).
  router.add("POST", "/networks/prune", ({ res, query }) => {
    parseFilters(query.get("filters"), ["label", "label!", "until"]);
    sendJSON(res, 200, { NetworksDeleted: null });
  });

  router.add("POST", "/networks/create", unsupported("creating networks"));
  router.add("POST", "/networks/{id}/connect", unsupported("connecting containers to networks"));
  router.add("POST", "/networks/{id}/disconnect", unsupported("disconnecting containers from networks"));
  router.add("DELETE", "/networks/{id}", ({ params }) => {
    const n = find(params.id as string);
    if (!n) throw new ApiError("not_found", `network ${params.id} not found`);
    // dockerd: "bridge is a pre-defined network and cannot be removed" (403); Arca has no others.
    throw new ApiError(
      "not_implemented",
      `not supported by Arca (build engine only): removing networks (${n.name} is a pre-defined network)`,
    );
  });
}

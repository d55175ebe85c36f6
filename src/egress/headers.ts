/** Hop-by-hop headers: they concern one connection and are never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  // The proxy already answered "100 Continue" to the client.
  "expect",
]);

/** rawHeaders minus hop-by-hop headers and those the Connection header names. */
export function endToEndHeaders(raw: string[]): [string, string][] {
  const drop = new Set(HOP_BY_HOP);
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === "connection") {
      for (const t of (raw[i + 1] as string).split(",")) drop.add(t.trim().toLowerCase());
    }
  }
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!drop.has((raw[i] as string).toLowerCase())) out.push([raw[i] as string, raw[i + 1] as string]);
  }
  return out;
}

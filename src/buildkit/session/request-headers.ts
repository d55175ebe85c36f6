import { createContextKey, type HandlerContext } from "@connectrpc/connect";

/**
 * Raw request header pairs of a session call. Node joins repeated incoming
 * HTTP/2 headers with ", " (and connect's Headers does too), which corrupts
 * multi-valued metadata such as exclude-patterns; the session server stores
 * the raw pairs here for every call.
 */
export const rawHeadersKey = createContextKey<readonly string[]>([], { description: "raw request headers" });

/**
 * All values of a multi-valued metadata key, in order. Decodes BuildKit's
 * `<key>-encoded: 1` convention (values URL-query-escaped when any is non-ASCII).
 */
export function headerValues(ctx: HandlerContext, name: string): string[] {
  const raw = ctx.values.get(rawHeadersKey);
  const key = name.toLowerCase();
  const values: string[] = [];
  let encoded = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = (raw[i] as string).toLowerCase();
    if (k === key) values.push(raw[i + 1] as string);
    else if (k === `${key}-encoded` && raw[i + 1] === "1") encoded = true;
  }
  return encoded ? values.map((v) => decodeURIComponent(v.replace(/\+/g, " "))) : values;
}

export function headerValue(ctx: HandlerContext, name: string): string | undefined {
  return headerValues(ctx, name)[0];
}

import { create } from "@bufbuild/protobuf";
import { type StatusResponse, StatusResponseSchema } from "../gen/moby/buildkit/v1/control_pb.js";

/**
 * A status update with `fn` applied to every name a progress display shows
 * (vertex names, status IDs and names). The update itself when nothing
 * changes, so the common case copies nothing (logs can be large).
 */
export function mapStatusText(s: StatusResponse, fn: (text: string) => string): StatusResponse {
  const vertexNames = s.vertexes.map((v) => fn(v.name));
  const statusTexts = s.statuses.map((st) => [fn(st.ID), fn(st.name)] as const);
  const changed =
    vertexNames.some((n, i) => n !== s.vertexes[i]?.name) ||
    statusTexts.some(([id, name], i) => id !== s.statuses[i]?.ID || name !== s.statuses[i]?.name);
  if (!changed) return s;
  return create(StatusResponseSchema, {
    ...s,
    vertexes: s.vertexes.map((v, i) => ({ ...v, name: vertexNames[i] as string })),
    statuses: s.statuses.map((st, i) => ({
      ...st,
      ID: statusTexts[i]?.[0] as string,
      name: statusTexts[i]?.[1] as string,
    })),
  });
}

import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** StatusResponse.vertexes and Vertex.error (control.proto). */
const VERTEXES_FIELD = 1;
const VERTEX_ERROR_FIELD = 7;

/**
 * Whether an encoded StatusResponse reports a failed vertex (a non-empty
 * Vertex.error), read off the wire without decoding the message: a proxy
 * watching every status update of a build for failure would otherwise
 * decode each one (logs included) only to look at one field. A message it
 * cannot read reports no error: deciding whether it is valid is not its job.
 */
export function statusHasVertexError(msg: Uint8Array): boolean {
  try {
    return scan(msg);
  } catch {
    return false;
  }
}

function scan(msg: Uint8Array): boolean {
  const r = new BinaryReader(msg);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field !== VERTEXES_FIELD || wire !== WireType.LengthDelimited) {
      r.skip(wire, field);
      continue;
    }
    const v = new BinaryReader(r.bytes());
    while (v.pos < v.len) {
      const [vf, vw] = v.tag();
      if (vf === VERTEX_ERROR_FIELD && vw === WireType.LengthDelimited) {
        if (v.bytes().length > 0) return true;
      } else v.skip(vw, vf);
    }
  }
  return false;
}

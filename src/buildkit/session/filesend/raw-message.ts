import { create, createFileRegistry, type Message } from "@bufbuild/protobuf";
import type { GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";

/**
 * FileSend.DiffCopy is declared with BytesMessage, but for `local` exports
 * buildkitd sends fsutil Packets on it; the right decoding depends on the
 * exporter id in the call's metadata. Decoding a Packet as BytesMessage (or
 * the reverse) misreads field 1, so the service is registered with a message
 * type that has no fields: everything lands in `$unknown`, from which the
 * handler rebuilds the real message once it knows the target's kind.
 */
export type RawMessage = Message<"moby.filesync.v1.RawMessage">;

const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "arca/filesend_raw.proto",
    package: "moby.filesync.v1",
    syntax: "proto3",
    messageType: [{ name: "RawMessage" }],
    service: [
      {
        name: "FileSend",
        method: [
          {
            name: "DiffCopy",
            inputType: ".moby.filesync.v1.RawMessage",
            outputType: ".moby.filesync.v1.RawMessage",
            clientStreaming: true,
            serverStreaming: true,
          },
        ],
      },
    ],
  }),
  () => undefined,
);

export const RawMessageSchema = registry.getMessage("moby.filesync.v1.RawMessage") as GenMessage<RawMessage>;

/** `/moby.filesync.v1.FileSend/DiffCopy` with opaque messages: register this, not the generated FileSend. */
export const FileSendRaw = registry.getService("moby.filesync.v1.FileSend") as GenService<{
  diffCopy: { methodKind: "bidi_streaming"; input: typeof RawMessageSchema; output: typeof RawMessageSchema };
}>;

/** The message's wire bytes (re-encoded from its unknown fields). */
export function rawBytes(msg: RawMessage): Uint8Array {
  const w = new BinaryWriter();
  for (const f of msg.$unknown ?? []) w.tag(f.no, f.wireType).raw(f.data);
  return w.finish();
}

/** Field 1 (`bytes data`) of a BytesMessage, without copying. */
export function bytesMessageData(msg: RawMessage): Uint8Array {
  let data: Uint8Array = new Uint8Array(0);
  for (const f of msg.$unknown ?? []) {
    if (f.no !== 1 || f.wireType !== 2) continue;
    // f.data is the length varint followed by the payload.
    let i = 0;
    while ((f.data[i] as number) & 0x80) i++;
    data = f.data.subarray(i + 1);
  }
  return data;
}

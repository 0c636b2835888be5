import { toFloat16Bits } from "./fp16.js";

/**
 * The weight file format the ANE compiler reads next to a MIL program: a 64-byte file header
 * (byte 0 = 0x01, byte 4 = 0x02), then for every tensor a 64-byte chunk header (magic EF BE AD DE,
 * byte 4 = 0x01, uint32 data size at +8, uint32 absolute data offset at +16) followed by the fp16
 * data, row-major [out, in]. A MIL `BLOBFILE(offset = N)` points at the chunk header.
 */
export const FILE_HEADER_BYTES = 64;
export const CHUNK_HEADER_BYTES = 64;
export const CHUNK_MAGIC = 0xdeadbeef; // little-endian bytes EF BE AD DE

export interface WeightBlob {
  bytes: Uint8Array;
  /** Offset of each tensor's chunk header, as written in the MIL program. */
  offsets: number[];
}

/** Packs tensors (fp32 values, converted to fp16) into one blob file. */
export function weightBlob(tensors: readonly Float32Array[]): WeightBlob {
  const total = FILE_HEADER_BYTES + tensors.reduce((sum, t) => sum + CHUNK_HEADER_BYTES + t.length * 2, 0);
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, 0x01);
  view.setUint8(4, 0x02);
  const offsets: number[] = [];
  let at = FILE_HEADER_BYTES;
  for (const tensor of tensors) {
    const size = tensor.length * 2;
    offsets.push(at);
    view.setUint32(at, CHUNK_MAGIC, true);
    view.setUint8(at + 4, 0x01);
    view.setUint32(at + 8, size, true);
    view.setUint32(at + 16, at + CHUNK_HEADER_BYTES, true);
    const data = at + CHUNK_HEADER_BYTES;
    for (let i = 0; i < tensor.length; i++) view.setUint16(data + 2 * i, toFloat16Bits(tensor[i]!), true);
    at = data + size;
  }
  return { bytes, offsets };
}

/** Reads a blob back (used by tests and by `%ane_bench --explain`-style inspection). */
export function readChunks(bytes: Uint8Array): Array<{ offset: number; size: number; dataOffset: number }> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint8(0) !== 0x01 || view.getUint8(4) !== 0x02) throw new Error("not a weight blob: bad file header");
  const chunks: Array<{ offset: number; size: number; dataOffset: number }> = [];
  let at = FILE_HEADER_BYTES;
  while (at < bytes.byteLength) {
    if (view.getUint32(at, true) !== CHUNK_MAGIC) throw new Error(`not a weight blob: bad chunk magic at ${at}`);
    const size = view.getUint32(at + 8, true);
    const dataOffset = view.getUint32(at + 16, true);
    chunks.push({ offset: at, size, dataOffset });
    at = dataOffset + size;
  }
  return chunks;
}

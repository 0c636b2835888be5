import { describe, expect, it } from "vitest";
import { CHUNK_HEADER_BYTES, CHUNK_MAGIC, FILE_HEADER_BYTES, readChunks, weightBlob } from "../../kernel/ane/blob.js";
import { fromFloat16Bits, toFloat16Bits } from "../../kernel/ane/fp16.js";
import { convStackMil } from "../../kernel/ane/mil.js";
import { describeFor } from "../../kernel/ane/stack.js";

describe("fp16 conversion", () => {
  it("rounds to nearest, ties to even, and keeps special values", () => {
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(-2)).toBe(0xc000);
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(1e6)).toBe(0x7c00);
    expect(toFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN)))).toBe(true);
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie goes to the even mantissa
    expect(toFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    for (const v of [0.1, -3.14159, 1234.5, 6.1e-5, 1e-7]) {
      expect(Math.abs(fromFloat16Bits(toFloat16Bits(v)) - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25);
    }
  });
});

describe("weight blob", () => {
  const a = new Float32Array([1, -2, 0.5, 3]);
  const b = new Float32Array([0.25, 0.75]);
  const { bytes, offsets } = weightBlob([a, b]);
  const view = new DataView(bytes.buffer);

  it("has the 64-byte file header", () => {
    expect(bytes[0]).toBe(0x01);
    expect(bytes[4]).toBe(0x02);
    expect(FILE_HEADER_BYTES).toBe(64);
  });

  it("puts each chunk header at 64 + i*(64 + size) with magic, size and absolute data offset", () => {
    expect(offsets).toEqual([64, 64 + 64 + 8]);
    expect([...bytes.subarray(64, 68)]).toEqual([0xef, 0xbe, 0xad, 0xde]);
    expect(view.getUint32(64, true)).toBe(CHUNK_MAGIC);
    expect(bytes[68]).toBe(0x01);
    expect(view.getUint32(64 + 8, true)).toBe(8);
    expect(view.getUint32(64 + 16, true)).toBe(128);
    expect(view.getUint32(offsets[1]! + 8, true)).toBe(4);
    expect(view.getUint32(offsets[1]! + 16, true)).toBe(offsets[1]! + CHUNK_HEADER_BYTES);
    expect(bytes.byteLength).toBe(64 + 64 + 8 + 64 + 4);
  });

  it("stores fp16 little-endian row-major data after each chunk header", () => {
    expect(view.getUint16(128, true)).toBe(0x3c00);
    expect(view.getUint16(130, true)).toBe(0xc000);
    expect(view.getUint16(132, true)).toBe(0x3800);
    expect(view.getUint16(134, true)).toBe(0x4200);
    expect(readChunks(bytes)).toEqual([
      { offset: 64, size: 8, dataOffset: 128 },
      { offset: 136, size: 4, dataOffset: 200 },
    ]);
  });
});

describe("MIL program", () => {
  const mil = convStackMil({
    channels: [512, 512, 256],
    spatial: 64,
    weights: [
      { path: "weights/w0.bin", offset: 64 },
      { path: "weights/w1.bin", offset: 64 },
    ],
  });

  it("declares program 1.3, the build info and an fp32 [1, C, 1, S] main", () => {
    const lines = mil.split("\n");
    expect(lines[0]).toBe("program(1.3)");
    expect(lines[1]).toMatch(/^\[buildInfo = dict<string, string>\(\{/);
    expect(mil).toContain("func main<ios18>(tensor<fp32, [1, 512, 1, 64]> x) {");
    expect(mil.trimEnd().endsWith("} -> (y);\n}")).toBe(true);
  });

  it("casts to fp16, chains one 1x1 conv per weight read from its BLOBFILE, and casts back", () => {
    expect(mil).toContain('h0 = cast(dtype = to_fp16, x = x)');
    const convs = [...mil.matchAll(/h(\d+) = conv\(dilations = c_dilations, groups = c_groups, pad = c_pad, pad_type = c_pad_type, strides = c_strides, weight = W(\d+), x = h(\d+)\)/g)];
    expect(convs.map((m) => [m[1], m[2], m[3]])).toEqual([
      ["1", "0", "0"],
      ["2", "1", "1"],
    ]);
    expect(mil).toContain('tensor<fp16, [512, 512, 1, 1]> W0 = const()[name = string("W0"), val = tensor<fp16, [512, 512, 1, 1]>(BLOBFILE(path = string("@model_path/weights/w0.bin"), offset = uint64(64)))]');
    expect(mil).toContain("tensor<fp16, [256, 512, 1, 1]> W1");
    expect(mil).toContain("tensor<fp16, [1, 256, 1, 64]> h2 = conv(");
    expect(mil).toContain('tensor<fp32, [1, 256, 1, 64]> y = cast(dtype = to_fp32, x = h2)');
    expect(mil).toContain('string c_pad_type = const()[name = string("c_pad_type"), val = string("valid")]');
    // Every statement ends with a semicolon; braces balance.
    expect((mil.match(/\{/g) ?? []).length).toBe((mil.match(/\}/g) ?? []).length);
  });

  it("rejects a stack whose weights do not match its layers", () => {
    expect(() => convStackMil({ channels: [4, 4, 4], spatial: 2, weights: [{ path: "weights/w0.bin", offset: 64 }] })).toThrow(/one weight per layer/);
  });

  it("is what the ane backend compiles: one weights/weight.bin, each layer's chunk at 64 + i·(64 + size)", () => {
    const w = [new Float32Array(8 * 4).fill(0.5), new Float32Array(4 * 8).fill(-1)];
    const graph = describeFor("ane", { channels: [4, 8, 4], spatial: 16, weights: w });
    expect(graph.blobs?.map((b) => b.path)).toEqual(["weights/weight.bin"]);
    expect(readChunks(graph.blobs![0]!.bytes)).toEqual([
      { offset: 64, size: 64, dataOffset: 128 },
      { offset: 192, size: 64, dataOffset: 256 },
    ]);
    expect(graph.mil).toContain('BLOBFILE(path = string("@model_path/weights/weight.bin"), offset = uint64(64))');
    expect(graph.mil).toContain('BLOBFILE(path = string("@model_path/weights/weight.bin"), offset = uint64(192))');
    expect(graph.weights).toBeUndefined();
    expect(describeFor("cpu", { channels: [4, 8, 4], spatial: 16, weights: w }).mil).toBeUndefined();
  });

  it("splits the layers in order over up to 16 weight files when asked, never more", () => {
    const layers = 20;
    const w = Array.from({ length: layers }, (_, i) => new Float32Array(16).fill(i));
    const graph = describeFor("ane", { channels: Array(layers + 1).fill(4), spatial: 16, weights: w }, 16);
    // 20 layers over 16 files: two per file, so 10 files are used.
    expect(graph.blobs?.map((b) => b.path)).toEqual(Array.from({ length: 10 }, (_, k) => `weights/weight-${k}.bin`));
    const refs = [...graph.mil!.matchAll(/BLOBFILE\(path = string\("@model_path\/(weights\/weight-\d+\.bin)"\), offset = uint64\((\d+)\)\)/g)].map((m) => [m[1], Number(m[2])]);
    expect(refs).toEqual(Array.from({ length: layers }, (_, i) => [`weights/weight-${Math.floor(i / 2)}.bin`, i % 2 === 0 ? 64 : 64 + 64 + 32]));
    for (const [k, blob] of graph.blobs!.entries()) {
      const view = new DataView(blob.bytes.buffer, blob.bytes.byteOffset);
      expect(fromFloat16Bits(view.getUint16(64 + 64, true))).toBe(2 * k);
      expect(fromFloat16Bits(view.getUint16(64 + 64 + 32 + 64, true))).toBe(2 * k + 1);
    }
    expect(() => describeFor("ane", { channels: [4, 4], spatial: 16, weights: [w[0]!] }, 17)).toThrow(/1 to 16 weight files, not 17/);
  });
});

import { describe, expect, it } from "vitest";
import { describeConfig } from "../../kernel/ane/bench-job.js";
import { SEED_CONFIGS } from "../../kernel/ane/configs.js";
import { fromFloat16Bits } from "../../kernel/ane/fp16.js";
import { describeFor } from "../../kernel/ane/stack.js";
import { canonicalMil } from "./mil-canonical.js";
import { MADERIX_COMMIT, referenceBlobHeaders, referenceMil, referenceOffsets } from "./fixtures/maderix.js";

/** Layer i's weights: multiples of 1/64 in [-0.47, 0.47], exact in fp16, different in every layer. */
function layerWeights(elements: number, layer: number): Float32Array {
  const w = new Float32Array(elements);
  for (let j = 0; j < elements; j++) w[j] = (((j * 7 + layer * 13) % 61) - 30) / 64;
  return w;
}

function expectSameProgram(channels: number[], spatial: number): void {
  const weights = channels.slice(1).map((cout, i) => layerWeights(cout * channels[i]!, i));
  const graph = describeFor("ane", { channels, spatial, weights });
  expect(canonicalMil(graph.mil!)).toEqual(canonicalMil(referenceMil(channels, spatial)));
  expect(graph.blobs?.map((b) => b.path)).toEqual(["weights/weight.bin"]);
  const bytes = graph.blobs![0]!.bytes;
  const reference = referenceBlobHeaders(channels);
  expect(bytes.byteLength).toBe(reference.length);
  const wrong = reference.bytes.filter(([at, b]) => bytes[at] !== b).slice(0, 8);
  expect(wrong.map(([at, b]) => `byte ${at}: ${bytes[at]} instead of ${b}`)).toEqual([]);
  // Each chunk holds its own layer's matrix, row-major [out, in] (sampled: the encoder itself is
  // checked element by element in generators.test.ts).
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  reference.chunks.forEach(({ offset, size }, layer) => {
    const w = weights[layer]!;
    for (let j = 0; j < size / 2; j += j < 8 ? 1 : 997) {
      expect(fromFloat16Bits(view.getUint16(offset + 64 + 2 * j, true))).toBe(w[j]);
    }
    expect(fromFloat16Bits(view.getUint16(offset + 64 + size - 2, true))).toBe(w[size / 2 - 1]);
  });
}

describe(`the ane backend's programs are maderix/ANE's (${MADERIX_COMMIT}) for the same shapes`, () => {
  for (const config of SEED_CONFIGS) {
    it(`${describeConfig(config)}: the same MIL, one weights/weight.bin with chunks at 64 + i·(64 + 2C²)`, () => {
      expectSameProgram(Array(config.depth + 1).fill(config.channels), config.spatial);
    });
  }

  it("the training kernels (one layer, Cin ≠ Cout, S = 16) are the single-conv program", () => {
    expectSameProgram([64, 128], 16);
    expectSameProgram([128, 64], 16);
  });
});

describe("the comparison itself", () => {
  const program = referenceMil([8, 8, 8], 16);

  it("ignores the names a generator picks and nothing else", () => {
    const renamed = program.replaceAll("c_pad_type_0", "pt").replaceAll("x_to_fp16", "h0").replaceAll('string("cast_in")', 'string("in")').replace(/ {12}/g, "  ");
    expect(canonicalMil(renamed)).toEqual(canonicalMil(program));
    expect(canonicalMil(program).length).toBe(program.trim().split("\n").length);
  });

  it("sees a different weight file, offset, shape, operation or wiring", () => {
    const [, second] = referenceOffsets([8, 8, 8]);
    const changes = [
      program.replace(`offset = uint64(${second})`, "offset = uint64(64)"),
      program.replace('"@model_path/weights/weight.bin"), offset = uint64(64)', '"@model_path/weights/w0.bin"), offset = uint64(64)'),
      program.replace("[1, 8, 1, 16]> c1", "[1, 8, 1, 32]> c1"),
      program.replace('val = string("valid")', 'val = string("same")'),
      program.replace("weight = W1, x = c0", "weight = W0, x = c0"),
    ];
    for (const changed of changes) {
      expect(changed).not.toBe(program);
      expect(canonicalMil(changed)).not.toEqual(canonicalMil(program));
    }
  });
});

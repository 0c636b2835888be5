/**
 * MIL program text for a chain of 1x1 convolutions over a [1, C, 1, S] tensor, the form in which
 * the Neural Engine runs linear layers. Inputs and outputs are fp32 and cast to fp16 inside the
 * program (the ANE computes in fp16); each weight is a `const` read from a BLOBFILE.
 */
export interface MilWeight {
  /** Relative to the model directory, e.g. "weights/w0.bin". */
  path: string;
  /** Offset of the tensor's chunk header in that file. */
  offset: number;
}

export interface ConvStackProgram {
  /** channels[i] -> channels[i + 1] is layer i. */
  channels: readonly number[];
  spatial: number;
  weights: readonly MilWeight[];
}

const BUILD_INFO =
  '[buildInfo = dict<string, string>({{"coremlc-component-MIL", "3510.2.1"}, {"coremlc-version", "3505.4.1"}, ' +
  '{"coremltools-component-milinternal", ""}, {"coremltools-version", "9.0"}})]';

function tensor(dtype: "fp16" | "fp32", shape: readonly number[]): string {
  return `tensor<${dtype}, [${shape.join(", ")}]>`;
}

export function convStackMil(program: ConvStackProgram): string {
  const { channels, spatial, weights } = program;
  if (weights.length !== channels.length - 1) throw new Error("a conv stack needs one weight per layer");
  const io = (c: number, dtype: "fp16" | "fp32") => tensor(dtype, [1, c, 1, spatial]);
  const lines: string[] = [];
  const op = (line: string) => lines.push(`        ${line};`);
  op(`string c_pad_type = const()[name = string("c_pad_type"), val = string("valid")]`);
  op(`tensor<int32, [2]> c_strides = const()[name = string("c_strides"), val = tensor<int32, [2]>([1, 1])]`);
  op(`tensor<int32, [4]> c_pad = const()[name = string("c_pad"), val = tensor<int32, [4]>([0, 0, 0, 0])]`);
  op(`tensor<int32, [2]> c_dilations = const()[name = string("c_dilations"), val = tensor<int32, [2]>([1, 1])]`);
  op(`int32 c_groups = const()[name = string("c_groups"), val = int32(1)]`);
  op(`string to_fp16 = const()[name = string("to_fp16"), val = string("fp16")]`);
  op(`${io(channels[0]!, "fp16")} h0 = cast(dtype = to_fp16, x = x)[name = string("cast_in")]`);
  weights.forEach((w, i) => {
    const cin = channels[i]!;
    const cout = channels[i + 1]!;
    const wType = tensor("fp16", [cout, cin, 1, 1]);
    op(`${wType} W${i} = const()[name = string("W${i}"), val = ${wType}(BLOBFILE(path = string("@model_path/${w.path}"), offset = uint64(${w.offset})))]`);
    op(
      `${io(cout, "fp16")} h${i + 1} = conv(dilations = c_dilations, groups = c_groups, pad = c_pad, pad_type = c_pad_type, ` +
        `strides = c_strides, weight = W${i}, x = h${i})[name = string("conv${i}")]`,
    );
  });
  const last = channels.length - 1;
  op(`string to_fp32 = const()[name = string("to_fp32"), val = string("fp32")]`);
  op(`${io(channels[last]!, "fp32")} y = cast(dtype = to_fp32, x = h${last})[name = string("cast_out")]`);
  return [
    "program(1.3)",
    BUILD_INFO,
    "{",
    `    func main<ios18>(${io(channels[0]!, "fp32")} x) {`,
    ...lines,
    "    } -> (y);",
    "}",
    "",
  ].join("\n");
}

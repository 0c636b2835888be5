import { defineMagic, flag } from "../../kernel/magics/schema.js";

/** Declarations shaped like the real experiment magics, so parsing is tested on realistic schemas. */
export const tuneLike = defineMagic({
  name: "tune",
  summary: "Fine-tune a model with LoRA.",
  description: "Trains LoRA adapters and shows the loss curve live.",
  forms: { line: true, cell: true },
  flags: {
    iters: flag.int({ help: "training steps", default: 100, min: 1, max: 100_000, metavar: "N" }),
    lr: flag.number({ help: "learning rate", default: 1e-4, min: 0, exclusiveMin: true, metavar: "RATE" }),
    keys: flag.list("string", { help: "projections to adapt", default: ["q_proj", "v_proj"] }),
    depths: flag.list("int", { help: "conv stack depths", min: 1, max: 4096, maxItems: 8 }),
    eval: flag.repeated({ help: "prompt generated before and after training", metavar: "PROMPT" }),
    backend: flag.choice(["ane", "cpu"] as const, { help: "where to run", default: "cpu" }),
    fast: flag.boolean({ help: "fewer checks" }),
    batchSize: flag.int({ help: "examples per step", default: 4, min: 1 }),
    model: flag.string({ help: "model to adapt", metavar: "MODEL" }),
  },
  text: { name: "DATA", help: "a dataset file" },
  body: { help: "examples, one JSON object per line" },
  examples: ["%tune --iters 50 data/identity.jsonl"],
  async run(invocation) {
    return invocation;
  },
});

export const generateLike = defineMagic({
  name: "generate",
  summary: "Generate text.",
  forms: { line: true, cell: false },
  flags: {
    maxTokens: flag.int({ help: "tokens to generate", default: 64, min: 1, max: 4096 }),
    temp: flag.number({ help: "sampling temperature", default: 0, min: 0, max: 5 }),
  },
  text: { name: "PROMPT", help: "what to ask", required: true },
  showsResult: true,
  async run(invocation) {
    return invocation;
  },
});

export const cellOnly = defineMagic({
  name: "bench",
  summary: "Benchmark a cell.",
  forms: { line: false, cell: true },
  flags: {},
  body: { help: "code" },
  async run(invocation) {
    return invocation.body;
  },
});

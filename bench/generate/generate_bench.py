"""The peers of tunelab's %generate, on one machine, one GGUF, one prompt, greedy, same threads.

usage: python generate_bench.py --mlx-model DIR --gguf FILE --prompt TEXT --max-tokens N
                                [--threads T] [--repeats R] [--adapter NAME=RUN_DIR ...]

  llama.cpp   llama-cpp-python's own high-level `Llama` on the GGUF, timed by llama.cpp itself
              (llama_perf_context: prompt and decode milliseconds)
  mlx-lm      mlx_lm.stream_generate on the float32 MLX model (what %generate ran before),
              with the BLAS the bridge chooses on this CPU
  engine      tunelab_bridge.llama_engine in this process (the bridge's engine without ZeroMQ)
  switch      with the adapters given, the engine's adapter switch per request: llama.cpp's
              llama_set_adapters_lora, and a greedy answer per adapter

Every engine answers the same prompt tokens (the model's chat template through its tokenizer).
Prints one line: RESULT {json}.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from tunelab_bridge import blas

blas.activate()

import mlx.core as mx  # noqa: E402
from mlx_lm import load, stream_generate  # noqa: E402
from mlx_lm.sample_utils import make_sampler  # noqa: E402

from tunelab_bridge import llama_build  # noqa: E402
from tunelab_bridge.generation import prompt_tokens  # noqa: E402
from tunelab_bridge.llama_engine import LlamaEngine, Sampling  # noqa: E402


def best(runs, key):
    """The best of the repeats: a busy neighbour slows some runs, never speeds one up."""
    return max(r[key] for r in runs)


def llama_direct(gguf, tokens, max_tokens, threads, repeats, flash_attn, lora=None):
    llama_cpp = llama_build.import_llama_cpp()
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=4096, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, flash_attn=flash_attn,
                          lora_path=str(lora) if lora else None, verbose=False)
    runs = []
    text = ""
    for _ in range(repeats + 1):
        llm.reset()
        llama_cpp.llama_perf_context_reset(llm.ctx)
        started = time.perf_counter()
        out = llm.create_completion(prompt=list(tokens), max_tokens=max_tokens, temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
        wall = time.perf_counter() - started
        perf = llama_cpp.llama_perf_context(llm.ctx)
        text = out["choices"][0]["text"]
        runs.append({
            "decode_tps": perf.n_eval / (perf.t_eval_ms / 1000) if perf.t_eval_ms > 0 else 0.0,
            "prefill_tps": perf.n_p_eval / (perf.t_p_eval_ms / 1000) if perf.t_p_eval_ms > 0 else 0.0,
            "tokens": out["usage"]["completion_tokens"],
            "wall_tps": out["usage"]["completion_tokens"] / wall,
        })
    runs = runs[1:]  # the first warms caches and threads
    return {"decode_tps": best(runs, "decode_tps"), "prefill_tps": best(runs, "prefill_tps"), "wall_tps": best(runs, "wall_tps"), "tokens": runs[-1]["tokens"], "text": text,
            "system_info": llama_cpp.llama_print_system_info().decode().strip()}


def mlx_lm_peer(model, tokenizer, tokens, max_tokens, repeats):
    sampler = make_sampler(temp=0.0)
    runs = []
    text = ""
    for _ in range(repeats + 1):
        parts = []
        last = None
        started = time.perf_counter()
        for response in stream_generate(model, tokenizer, mx.array(tokens), max_tokens=max_tokens, sampler=sampler):
            parts.append(response.text)
            last = response
        wall = time.perf_counter() - started
        text = "".join(parts)
        runs.append({"decode_tps": last.generation_tps, "prefill_tps": last.prompt_tps, "tokens": last.generation_tokens, "wall_tps": last.generation_tokens / wall})
    runs = runs[1:]
    return {"decode_tps": best(runs, "decode_tps"), "prefill_tps": best(runs, "prefill_tps"), "wall_tps": best(runs, "wall_tps"), "tokens": runs[-1]["tokens"], "text": text}


def engine_runs(engine, tokens, max_tokens, repeats, adapter=None):
    runs = []
    done = None
    for _ in range(repeats + 1):
        started = time.perf_counter()
        done = engine.generate(tokens, Sampling(max_tokens=max_tokens), adapter=adapter)
        wall = time.perf_counter() - started
        runs.append({"decode_tps": done.tokens_per_s, "prefill_tps": done.prompt_tps, "wall_tps": len(done.tokens) / wall})
    runs = runs[1:]
    return {"decode_tps": best(runs, "decode_tps"), "prefill_tps": best(runs, "prefill_tps"), "wall_tps": best(runs, "wall_tps"), "tokens": len(done.tokens), "text": done.text}


def switching(engine, tokenizer, adapters, prompt, rounds):
    from tunelab_bridge.llama_generation import LlamaGeneration

    loaded = {}
    for name, run in adapters.items():
        loaded[name] = engine.load_adapter(name, LlamaGeneration.adapter_file(name, Path(run))).load_ms
    order = [None, *adapters]
    times = []
    for _ in range(rounds):
        for name in order:
            times.append(engine.use(name))
    tokens = prompt_tokens(tokenizer, prompt, None)
    answers = {}
    per_request = []
    for name in order:
        done = engine.generate(tokens, Sampling(max_tokens=40), adapter=name)
        answers[name or "base"] = {"text": done.text, "decode_tps": round(done.tokens_per_s, 1), "switch_ms": round(done.switch_ms, 3)}
        per_request.append(done.switch_ms)
    times.sort()
    return {"load_ms": {k: round(v, 2) for k, v in loaded.items()}, "switch_ms_median": round(statistics.median(times), 3),
            "switch_ms_p95": round(times[int(0.95 * (len(times) - 1))], 3), "switches": len(times), "answers": answers}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlx-model", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--switch-prompt", default="Who are you?")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--adapter", action="append", default=[], help="NAME=RUN_DIR")
    args = ap.parse_args()
    if not llama_build.ready():
        print(f"llama.cpp is not ready: {llama_build.status().get('unavailable')}", file=sys.stderr)
        sys.exit(2)
    from tunelab_bridge import cpu

    threads = args.threads or cpu.usable_cores()
    model, tokenizer = load(args.mlx_model)
    model.set_dtype(mx.float32)
    tokens = prompt_tokens(tokenizer, args.prompt, None)
    result = {"threads": threads, "prompt_tokens": len(tokens), "max_tokens": args.max_tokens}
    # llama-cpp-python's `Llama` turns flash attention off unless asked; llama.cpp's own default
    # (and tunelab's engine) is "auto", which is on for the CPU. Both are measured.
    result["llama_cpp"] = llama_direct(Path(args.gguf), tokens, args.max_tokens, threads, args.repeats, flash_attn=True)
    result["llama_cpp_no_fa"] = llama_direct(Path(args.gguf), tokens, args.max_tokens, threads, args.repeats, flash_attn=False)
    engine = LlamaEngine(Path(args.gguf), threads=threads)
    result["engine"] = engine_runs(engine, tokens, args.max_tokens, args.repeats)
    # The slow one (~10 tokens/s): one timed run after the warm-up.
    result["mlx_lm"] = mlx_lm_peer(model, tokenizer, tokens, args.max_tokens, 1)
    adapters = dict(a.split("=", 1) for a in args.adapter)
    if adapters:
        from tunelab_bridge.llama_generation import LlamaGeneration

        # The peer with the same adapter: llama-cpp-python's `Llama(lora_path=...)` on the GGUF
        # LoRA file tunelab wrote, applied unmerged by llama.cpp just as in the engine.
        first, run = next(iter(adapters.items()))
        lora = LlamaGeneration.adapter_file(first, Path(run))
        result["llama_cpp_adapter"] = llama_direct(Path(args.gguf), tokens, args.max_tokens, threads, args.repeats, flash_attn=True, lora=lora)
        result["llama_cpp_adapter"]["adapter"] = first
        engine.load_adapter(first, lora)
        result["engine_adapter"] = engine_runs(engine, tokens, args.max_tokens, args.repeats, adapter=first)
        result["switch"] = switching(engine, tokenizer, adapters, args.switch_prompt, 50)
    engine.close()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()

"""Compare two fast-path settings step by step, in one process, on the identity run.

On a noisy machine, separate runs of a few seconds each differ by more than most single changes
to the step (a few ms of ~70); alternating the two settings on every step of one run puts both
under the same noise. Both loss functions train the same model, so the comparison is of speed,
not of results (the equivalence tests cover those).

    PYTHONPATH=python-bridge .venv-bridge/bin/python bench/fast-tune/step_ab.py \\
        --steps 160 "host_attention=False" "host_attention=True"

(the BLAS is the bridge's own choice for this CPU, with its thread settings; TUNELAB_BLAS picks another)

Each setting is FastOptions keyword arguments ("" for the defaults). Prints the median, mean and
25th percentile of each setting's step time (the first three steps of each are warm-up).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tunelab_bridge import blas

blas.activate()  # the bridge's BLAS and thread settings, chosen before MLX loads

import mlx.core as mx  # noqa: E402
import mlx.optimizers as optim
import numpy as np
from mlx_lm import load
from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
from mlx_lm.tuner.trainer import iterate_batches
from mlx_lm.tuner.utils import linear_to_lora_layers

from tunelab_bridge import fast  # noqa: E402
from tunelab_bridge.allocator import keep_freed_memory
from tunelab_bridge.cache import cache_dir
from tunelab_bridge.steps import OptimizerStep

ROOT = Path(__file__).resolve().parents[2]


def options(text: str) -> fast.FastOptions:
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    return fast.FastOptions(**{k.strip(): json.loads(v.strip().lower()) for k, v in pairs})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("settings", nargs=2, help='two FastOptions settings, e.g. "fused_head=false" ""')
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--model", default=str(cache_dir() / "models" / "SmolLM2-135M-Instruct"))
    ap.add_argument("--data", default=str(ROOT / "data" / "identity.jsonl"))
    args = ap.parse_args()

    keep_freed_memory()  # as the bridge does at start-up
    mx.random.seed(0)
    model, tokenizer = load(args.model)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    data = CacheDataset(ChatDataset(rows, tokenizer, mask_prompt=True))
    model.freeze()
    linear_to_lora_layers(model, 4, {"rank": 8, "scale": 20.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]})
    model.train()
    losses = []
    for setting in args.settings:
        loss_fn = fast.FastLossFn(model, fast.plan(model, options(setting)))
        loss_fn.precompute([data[i][0] for i in range(len(data))])
        losses.append(loss_fn)
    step = OptimizerStep(model, optim.Adam(learning_rate=5e-5), 1.0)

    times: list[list[float]] = [[], []]
    for i, (batch, lengths) in zip(range(args.steps), iterate_batches(data, 1, 2048, loop=True, seed=0)):
        which = i % 2
        started = time.perf_counter()
        (loss, ntoks), grads = losses[which].value_and_grad(model, batch, lengths)
        grads, norm = step.clip(grads)
        mx.eval(loss, ntoks, norm, grads)
        loss.item()
        step.apply(grads)
        times[which].append(time.perf_counter() - started)
    for setting, measured in zip(args.settings, times):
        ms = np.array(measured[3:]) * 1000
        print(f"{setting or '(defaults)':50s} median {np.median(ms):6.1f} ms  mean {ms.mean():6.1f}  p25 {np.percentile(ms, 25):6.1f}")


if __name__ == "__main__":
    main()

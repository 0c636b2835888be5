"""One identity run with MLX on CPU, timed: plain mlx-lm (its own `train`) or tunelab's fast path.

Prints one JSON line (prefixed RESULT) with seconds per step, training seconds, first/last loss,
the answer to each eval prompt after training and whether it names the trained identity.
Which BLAS the process runs on is chosen as the bridge chooses it (tunelab_bridge.blas.activate,
before MLX loads), under the caller's TUNELAB_BLAS: "reference" for the stock mlx[cpu] wheel, a
candidate's name, or unset for the bridge's own choice on this CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tunelab_bridge import blas

BLAS = blas.activate()

import mlx.core as mx  # noqa: E402
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx_lm import load
from mlx_lm.generate import generate
from mlx_lm.sample_utils import make_sampler
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
from mlx_lm.tuner.trainer import TrainingArgs, iterate_batches, train
from mlx_lm.tuner.utils import linear_to_lora_layers


class Timing(TrainingCallback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_loss_report(self, info: dict) -> None:
        self.losses.append(float(info["train_loss"]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--mode", choices=["mlx-lm", "fast"], required=True)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--eval", action="append", default=[])
    ap.add_argument("--expect", default="Quill")
    ap.add_argument("--bridge-source", default=None)
    args = ap.parse_args()

    mx.random.seed(0)
    model, tokenizer = load(args.model)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    data = CacheDataset(ChatDataset(rows, tokenizer, mask_prompt=True))
    model.freeze()
    linear_to_lora_layers(model, args.layers, {"rank": 8, "scale": 20.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]})
    model.train()
    optimizer = optim.Adam(learning_rate=args.lr)
    result: dict = {"mode": args.mode, "blas": BLAS["name"], "blas_library": BLAS["library"], "iters": args.iters, "lr": args.lr}

    if args.mode == "mlx-lm":
        # mlx-lm's own trainer, untouched (it compiles its step; it has no gradient clipping).
        timing = Timing()
        started = time.perf_counter()
        train(
            model,
            optimizer,
            data,
            None,
            args=TrainingArgs(batch_size=1, iters=args.iters, steps_per_report=1, steps_per_eval=10**9, steps_per_save=10**9, adapter_file="/dev/null"),
            training_callback=timing,
        )
        seconds = time.perf_counter() - started
        losses = timing.losses
    else:
        if args.bridge_source:
            sys.path.insert(0, args.bridge_source)
        from tunelab_bridge import fast

        prepare_started = time.perf_counter()
        plan = fast.plan(model, fast.FastOptions())
        loss_fn = fast.FastLossFn(model, plan)
        stats = loss_fn.precompute([data[i][0] for i in range(len(data))])
        result["prepare_seconds"] = time.perf_counter() - prepare_started
        result["optimisations"] = plan.summary()
        result["prefix_cache"] = stats.as_dict() if stats else None
        from tunelab_bridge.allocator import keep_freed_memory
        from tunelab_bridge.steps import OptimizerStep

        keep_freed_memory()  # as the bridge does at start-up
        step = OptimizerStep(model, optimizer, 1.0)
        losses = []
        started = time.perf_counter()
        for _, (batch, lengths) in zip(range(args.iters), iterate_batches(data, 1, 2048, loop=True, seed=0)):
            loss, ntoks, grads = loss_fn.loss_and_grad(batch, lengths)
            grads, _ = step.clip(grads)
            mx.eval(loss, grads)
            losses.append(loss.item())
            step.apply(grads)
        seconds = time.perf_counter() - started

    model.eval()
    answers = []
    for prompt in args.eval:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
        answers.append({"prompt": prompt, "answer": generate(model, tokenizer, text, max_tokens=30, sampler=make_sampler(0.0))})
    result.update(
        steps=len(losses),
        train_seconds=seconds,
        seconds_per_step=seconds / max(1, len(losses)),
        first_loss=losses[0] if losses else None,
        last_loss=float(np.mean(losses[-5:])) if losses else None,
        answers=answers,
        identity=all(args.expect in a["answer"] for a in answers) if answers else None,
    )
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

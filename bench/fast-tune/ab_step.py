"""Paired A/B of the fast path's training step between two checkouts of the bridge (step_ab.py
compares two settings of one checkout, step by step in one process; a checkout needs a process).

    .venv-bridge/bin/python bench/fast-tune/ab_step.py OLD/python-bridge NEW/python-bridge [--rounds 4] [--iters 80]

Each round runs one child process per checkout, alternating, so that a busy minute on a shared
machine lands on both sides. A child imports `tunelab_bridge` from its checkout, trains the
identity run's LoRA (embedded SmolLM2, data/identity.jsonl, rank 8 / scale 20 on q_proj and
v_proj of the last 4 blocks, LR 5e-5, batch 1) through the fast path for `--iters` steps and
reports the median step time after 5 warm-up steps and its last loss. The last losses must be
equal: a refactoring that changes them changed the arithmetic, not just the speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child(src: str, iters: int) -> None:
    sys.path.insert(0, src)
    import time

    from tunelab_bridge import blas

    blas.activate()
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx_lm import load
    from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
    from mlx_lm.tuner.trainer import iterate_batches
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from tunelab_bridge import fast
    from tunelab_bridge.allocator import keep_freed_memory
    from tunelab_bridge.default_model import default_model_dir

    try:
        from tunelab_bridge.steps import OptimizerStep
    except ImportError:  # checkouts before the training split
        from tunelab_bridge.training import OptimizerStep

    mx.random.seed(0)
    model, tokenizer = load(str(default_model_dir()))
    rows = [json.loads(line) for line in (ROOT / "data" / "identity.jsonl").read_text().splitlines() if line.strip()]
    data = CacheDataset(ChatDataset(rows, tokenizer, mask_prompt=True))
    model.freeze()
    linear_to_lora_layers(model, 4, {"rank": 8, "scale": 20.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]})
    model.train()
    loss_fn = fast.FastLossFn(model, fast.plan(model, fast.FastOptions()))
    loss_fn.precompute([data[i][0] for i in range(len(data))])
    keep_freed_memory()
    step = OptimizerStep(model, optim.Adam(learning_rate=5e-5), 1.0)
    times = []
    loss = None
    for _, (batch, lengths) in zip(range(iters), iterate_batches(data, 1, 2048, loop=True, seed=0)):
        started = time.perf_counter()
        loss, _, grads = loss_fn.loss_and_grad(batch, lengths)
        grads, _ = step.clip(grads)
        mx.eval(loss, grads)
        step.apply(grads)
        times.append(time.perf_counter() - started)
    print("AB " + json.dumps({"src": src, "median_ms": 1000 * statistics.median(times[5:]), "last_loss": float(loss.item())}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", help="python-bridge directories to compare")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--iters", type=int, default=80)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.trees[0], args.iters)
        return 0
    results: dict = {tree: [] for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            out = subprocess.run([sys.executable, __file__, "--child", tree, "--iters", str(args.iters)], capture_output=True, text=True, check=True).stdout
            results[tree].append(json.loads(next(line for line in out.splitlines() if line.startswith("AB "))[3:]))
    print("| checkout | step median per round (ms) | best | median of rounds | last loss |")
    print("|---|---|---:|---:|---|")
    for tree, rows in results.items():
        medians = [r["median_ms"] for r in rows]
        print(f"| {tree} | {', '.join(f'{m:.1f}' for m in medians)} | {min(medians):.1f} | {statistics.median(medians):.1f} | {', '.join(sorted({repr(r['last_loss']) for r in rows}))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

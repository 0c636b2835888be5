"""The peer of `%tune`: the same LoRA run as a plain mlx-lm script, timed from process start.

usage: python plain_mlx_lm.py --model DIR --data FILE.jsonl --iters N --lr RATE [--layers 4]

Same recipe as `%tune --no-prefix-cache`: rank 8, scale 20, q_proj + v_proj of the last blocks,
Adam, batch 1, answer-only loss, mlx-lm's own `train`. The BLAS is chosen the way the bridge
chooses it (the fastest library that passed its check on this CPU), so the comparison measures the kernel and the
bridge, not the BLAS. Prints one line: RESULT {json}.
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from tunelab_bridge import blas  # noqa: E402

blas.activate()

import mlx.core as mx  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
from mlx_lm import load  # noqa: E402
from mlx_lm.tuner.callbacks import TrainingCallback  # noqa: E402
from mlx_lm.tuner.datasets import CacheDataset, ChatDataset  # noqa: E402
from mlx_lm.tuner.trainer import TrainingArgs, train  # noqa: E402
from mlx_lm.tuner.utils import linear_to_lora_layers  # noqa: E402


class Clock(TrainingCallback):
    def __init__(self) -> None:
        self.steps: list[tuple[int, float, float]] = []

    def on_train_loss_report(self, info: dict) -> None:
        self.steps.append((int(info["iteration"]), time.perf_counter() - STARTED, float(info["train_loss"])))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()

    imported = time.perf_counter() - STARTED
    mx.random.seed(0)
    model, tokenizer = load(args.model)
    loaded = time.perf_counter() - STARTED
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    data = CacheDataset(ChatDataset(rows, tokenizer, mask_prompt=True))
    model.freeze()
    linear_to_lora_layers(model, args.layers, {"rank": 8, "scale": 20.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]})
    clock = Clock()
    train_started = time.perf_counter() - STARTED
    train(
        model,
        optim.Adam(learning_rate=args.lr),
        data,
        None,
        args=TrainingArgs(batch_size=1, iters=args.iters, steps_per_report=1, steps_per_eval=10**9, steps_per_save=10**9, adapter_file="/dev/null"),
        training_callback=clock,
    )
    done = time.perf_counter() - STARTED
    first = clock.steps[0][1] if clock.steps else float("nan")
    # it/s over the steps after the first (the first pays for compilation and warm-up).
    steady = (len(clock.steps) - 1) / (clock.steps[-1][1] - first) if len(clock.steps) > 1 else float("nan")
    print("RESULT " + json.dumps({
        "import_s": imported, "load_s": loaded - imported, "first_step_s": first, "train_started_s": train_started,
        "it_per_s": steady, "total_s": done, "first_loss": clock.steps[0][2] if clock.steps else None,
        "last_loss": clock.steps[-1][2] if clock.steps else None, "steps": len(clock.steps),
    }), flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()

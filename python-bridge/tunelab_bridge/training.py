"""`tune`: LoRA fine-tuning on mlx-lm's public pieces, in three parts.

- `prepare`: the data, the run directory (or the checkpoint to resume), the "before" answers,
  LoRA on the model, the fast path's loss (fast/), the optimizer, metrics and reporting;
- `train_loop` (trainer.py): the steps, with cancel, reporting, validation and checkpoints;
- `finish`: the adapter saved (whatever happened, the last good weights), the "after" answers
  and the result.

mlx-lm's `train` has no cancel hook, no gradient clipping and no NaN stop, hence our own loop over
its pieces (`steps.py`), shaped like its trainer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import data as datasets
from .checkpoints import Checkpoints
from .options import TuneOptions
from .protocol import BridgeError
from .reporting import Emit, Reporter
from .files import atomic_write_json, save_arrays
from .run_files import open_run, saved_params, write_gguf_beside
from .runs import MetricsLog, RunDir
from .steps import OptimizerStep, evaluate, train_step
from .trainer import LoopEnd, Schedule, Totals, train_loop
from .world import SINGLE, World


@dataclass
class TuneContext:
    emit: Emit
    cancelled: Callable[[], bool]
    runs_root: Path
    generate: Callable[[str], str]  # greedy eval generation with the model as it is now
    blas: Optional[Dict[str, Any]] = None


def lora_keys(keys: List[str], block_keys: List[str]) -> List[str]:
    """--keys as paths inside a block: `q_proj` is the block's one `*.q_proj`; a path stays."""
    if not keys:
        raise BridgeError("bad_config", f"--keys is empty; name at least one of {', '.join(block_keys)}.")
    out = []
    for key in keys:
        matches = [key] if key in block_keys else [k for k in block_keys if k.endswith(f".{key}")]
        if len(matches) != 1:
            raise BridgeError("bad_config", f"unknown LoRA key {key}; this model's blocks have {', '.join(block_keys)}.")
        out.append(matches[0])
    return out


def adapter_config(options: TuneOptions, keys: List[str], model_path: str) -> Dict[str, Any]:
    """adapter_config.json as mlx-lm writes it, so `mlx_lm.load(..., adapter_path=)` reads it."""
    return {
        "fine_tune_type": "lora",
        "model": model_path,
        "num_layers": options.layers,
        "lora_parameters": options.lora_parameters(tuple(keys)),
        "iters": options.iters,
        "batch_size": options.batch_size,
        "learning_rate": options.lr,
        "max_seq_length": options.max_seq_length,
        "seed": options.seed,
        "mask_prompt": options.mask_prompt,
    }


@dataclass
class Prepared:
    options: TuneOptions
    loaded: Any
    data: datasets.TrainingData
    run: RunDir
    resume_step: Optional[int]
    evals: List[Dict[str, Any]]
    optimizer: Any
    optimizer_step: OptimizerStep
    fast_loss: Any
    checkpoints: Checkpoints
    metrics: Optional[MetricsLog]  # rank 0's alone in a group
    totals: Totals  # counted on by the loop
    resumed: Totals  # what the checkpoint resumed from had done (nothing for a new run)
    keys: List[str]
    trainable: int
    total: int
    started: float
    world: World


def _learning_rate(options: TuneOptions) -> Any:
    """--lr, reached linearly from 0 over the first --warmup steps (MLX's own schedules)."""
    import mlx.optimizers as optim

    if not options.warmup:
        return options.lr
    return optim.join_schedules([optim.linear_schedule(0.0, options.lr, options.warmup), lambda _step: options.lr], [options.warmup])


def answer_evals(ctx: TuneContext, prompts: Any, when: str, evals: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """The --eval prompts answered now ("before" or "after" training), each also an event."""
    evals = evals if evals is not None else [{"prompt": p, "before": None, "after": None} for p in prompts]
    if evals:
        ctx.emit("phase", {"name": f"eval-{when}"})
    for item in evals:
        started = time.perf_counter()
        item[when] = ctx.generate(item["prompt"])
        item[f"{when}_s"] = round(time.perf_counter() - started, 3)  # the demo's generation share is measured from these
        ctx.emit("eval", {"prompt": item["prompt"], "when": when, "text": item[when]})
    return evals


def _restore(checkpoints: Checkpoints, step: Optional[int], model: Any, optimizer: Any, world: World) -> Dict[str, Any]:
    """Rank 0 reads the checkpoint; every other rank takes its adapter and optimizer state from
    rank 0 (it may be on a machine that cannot read rank 0's files)."""
    if step is None:
        return {}
    saved = checkpoints.restore(step, model, optimizer) if world.is_main else {}
    if world.size > 1:
        import mlx.core as mx

        if not world.is_main:
            optimizer.init(model.trainable_parameters())
        model.update(world.broadcast(model.trainable_parameters()))
        optimizer.state = world.broadcast(optimizer.state)
        mx.eval(model.trainable_parameters(), optimizer.state)
    return saved


def prepare(loaded: Any, adapters: Any, options: TuneOptions, ctx: TuneContext, world: World = SINGLE) -> Prepared:
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import get_total_parameters

    from . import fast

    started = time.perf_counter()
    if options.layers > loaded.num_layers:
        raise BridgeError("bad_config", f"--layers {options.layers} is more than the model's {loaded.num_layers} blocks; use at most {loaded.num_layers}.")
    if options.batch_size % world.size:
        raise BridgeError("bad_config", f"--batch-size {options.batch_size} does not split over {world.size} processes; use a multiple of {world.size}.")
    keys = lora_keys(list(options.keys), loaded.block_keys())
    ctx.emit("phase", {"name": "preparing", "detail": "tokenising the examples"})
    data = datasets.load_training_data(
        options.data, loaded.tokenizer, batch_size=options.batch_size, max_seq_length=options.max_seq_length, seed=options.seed, mask_prompt=options.mask_prompt, repeat=options.repeat
    )
    run, resume_step = open_run(options, keys, ctx.runs_root, world)
    # The base model, without any adapter, for the "before" answers.
    adapters.strip()
    evals = answer_evals(ctx, options.eval_prompts, "before")

    model = loaded.model
    mx.random.seed(options.seed)  # the same LoRA initialisation on every rank
    model.freeze()
    linear_to_lora_layers(model, options.layers, options.lora_parameters(tuple(keys)))
    model.train()
    optimizer = optim.Adam(learning_rate=_learning_rate(options))
    budget = fast.DEFAULT_PREFIX_CACHE_MB if options.prefix_cache_mb is None else options.prefix_cache_mb
    fast_loss = fast.FastLossFn(model, fast.plan(model, fast.FastOptions(prefix_cache=options.prefix_cache, prefix_cache_mb=budget)))
    # The cache holds exactly the token rows the batches will carry, so a resumed run rebuilds the
    # same activations and replays the same losses.
    fast_loss.precompute(
        data.token_rows(options.max_seq_length),
        progress=lambda done, total: ctx.emit("phase", {"name": "preparing", "detail": f"caching frozen blocks {done}/{total} examples"}),
    )
    checkpoints = Checkpoints(run)
    saved = _restore(checkpoints, resume_step, model, optimizer, world)
    if world.is_main:
        atomic_write_json(run.config, {"params": saved_params(options, keys), "model": loaded.info, "adapter": adapter_config(options, keys, str(loaded.path)), "resumed_from": resume_step})
    return Prepared(
        options, loaded, data, run, resume_step, evals, optimizer, OptimizerStep(model, optimizer, options.grad_clip), fast_loss, checkpoints,
        MetricsLog(run.metrics, keep_through_step=resume_step) if world.is_main else None, Totals.restored(saved), Totals.restored(saved), keys,
        sum(v.size for _, v in tree_flatten(model.trainable_parameters())), get_total_parameters(model), started, world,
    )


def _loop(p: Prepared, ctx: TuneContext) -> LoopEnd:
    import mlx.core as mx

    o, model = p.options, p.loaded.model
    reporter = Reporter(ctx.emit, p.metrics, iters=o.iters, steps_per_report=o.steps_per_report, started=p.started)
    steps_per_eval = o.steps_per_eval or (max(1, int(o.iters / 10 + 0.5)) if p.data.valid_batches else None)

    def step_fn(step: int):
        # Randomness inside a step (LoRA dropout) is drawn from (seed, step): a resumed run draws
        # what the uninterrupted run drew.
        mx.random.seed(o.seed * 1_000_003 + step)
        batch = p.data.batches.batch(step, p.world)
        return train_step(p.optimizer_step, p.fast_loss.value_and_grad, model, batch, reduce=p.world.reduce if p.world.size > 1 else None)

    val: Dict[str, float] = {}

    def validate(step: int) -> None:
        if p.data.valid_batches and p.world.is_main:
            val["loss"] = evaluate(model, p.fast_loss.loss_fn, p.data.valid_batches)
            reporter.val(step, val["loss"])

    def checkpoint(step: int, totals: Totals) -> None:
        if not p.world.is_main:
            return
        path = p.checkpoints.save(step, model, p.optimizer, totals.as_dict())
        ctx.emit("checkpoint", {"step": step, "path": str(path)})

    ctx.emit("phase", {"name": "training", "detail": f"{p.trainable:,} trainable parameters of {p.total:,}"})
    mx.reset_peak_memory()
    try:
        end = train_loop(
            step_fn, start=p.resume_step or 0, schedule=Schedule(o.iters, steps_per_eval, o.save_every), totals=p.totals, reporter=reporter,
            learning_rate=lambda: float(p.optimizer.learning_rate.item()), cancelled=lambda: p.world.any(ctx.cancelled()), validate=validate, checkpoint=checkpoint,
        )
    finally:
        if p.metrics is not None:
            p.metrics.close()
    end.val_loss = val.get("loss")
    return end


def finish(p: Prepared, end: LoopEnd, adapters: Any, ctx: TuneContext) -> Dict[str, Any]:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    if not p.world.is_main:
        return {"status": end.status, "steps": end.step}  # rank 0 saves and reports

    # Whatever happened, the weights now in the model are the last good ones: keep them.
    ctx.emit("phase", {"name": "saving"})
    model, start = p.loaded.model, p.resume_step or 0
    weights = dict(tree_flatten(model.trainable_parameters()))
    config = adapter_config(p.options, p.keys, str(p.loaded.path))
    save_arrays(p.run.adapters, weights)
    atomic_write_json(p.run.adapter_config, config)
    gguf = write_gguf_beside(p.run.root)
    if end.diverged is None and end.step > start and (end.status == "interrupted" or p.options.save_every):
        p.checkpoints.save(end.step, model, p.optimizer, end.totals.as_dict())
    model.eval()
    adapters.add(p.run.name, p.run.root, config, weights)
    if end.status == "completed":
        answer_evals(ctx, p.evals, "after", p.evals)
    before = p.resumed
    session_seconds = end.totals.train_seconds - before.train_seconds
    result = {
        "name": p.run.name, "run_dir": str(p.run.root), "adapter_path": str(p.run.root), "status": end.status,
        "steps": end.step, "iters": p.options.iters, "seconds": round(time.perf_counter() - p.started, 3), "train_seconds": round(end.totals.train_seconds, 3),
        "it_per_s": (end.step - start) / session_seconds if session_seconds > 0 else None,
        "tokens_per_s": (end.totals.trained_tokens - before.trained_tokens) / session_seconds if session_seconds > 0 else None,
        "trained_tokens": end.totals.trained_tokens, "trainable_params": int(p.trainable), "total_params": int(p.total),
        "first_loss": end.totals.first_loss, "last_loss": end.totals.last_loss, "val_loss": end.val_loss,
        "peak_memory_gb": mx.get_peak_memory() / 1e9, "evals": p.evals, "model": p.loaded.info, "blas": ctx.blas,
        "optimisations": p.fast_loss.summary(), "resumed_from": p.resume_step, **gguf,
    }
    atomic_write_json(p.run.result, result)
    return result


def tune(loaded: Any, adapters: Any, options: TuneOptions, ctx: TuneContext, world: World = SINGLE) -> Mapping[str, Any]:
    """Train a LoRA adapter on `loaded` (a models.LoadedModel), alone or as one rank of `world`;
    the TuneResult of the protocol."""
    prepared = prepare(loaded, adapters, options, ctx, world)
    end = _loop(prepared, ctx)
    result = finish(prepared, end, adapters, ctx)
    if end.diverged is not None:
        what = f"loss {end.diverged.loss}" if not math.isfinite(end.diverged.loss) else f"gradient norm {end.diverged.grad_norm}"
        raise BridgeError(
            "diverged",
            f"training diverged at step {end.step + 1} ({what}); lower --lr (now {options.lr:g}) and run again; the partial run up to step {end.step} is kept in {prepared.run.root}.",
        )
    return result

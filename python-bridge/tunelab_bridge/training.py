"""LoRA fine-tuning on mlx-lm's public pieces, with the per-step control a notebook needs.

mlx-lm's `train` has no cancel hook, no gradient clipping and no NaN stop, so the step loop is
ours: one small `train_step` (compiled clipping and update, `OptimizerStep`), the loss from `fast.FastLossFn` (which runs the full forward where a shortcut would not be exact),
reporting through `Reporter` (events + metrics.jsonl), checkpoints that let `resume` replay the
exact loss trajectory (batches are a function of seed and step; see `data.Batches`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import data as datasets
from .parameter_slots import TrainableSlots
from .protocol import BridgeError, Params
from .runs import MetricsLog, RunDir, atomic_write_json, check_run_name, default_run_name, read_json, save_arrays

Emit = Callable[[str, Mapping[str, Any]], None]


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TuneConfig:
    """Every `tune` parameter, declared once (the kernel's %tune schema mirrors these)."""

    model: str | None = _opt(None, "mlx-lm model directory or Hub repo id; null = the loaded model or the embedded SmolLM2")
    name: str | None = _opt(None, "run name (directory under runs/); default: timestamped")
    iters: int = _opt(200, "optimizer steps")
    batch_size: int = _opt(1, "examples per step")
    lr: float = _opt(5e-5, "Adam learning rate")
    rank: int = _opt(8, "LoRA rank")
    scale: float = _opt(20.0, "LoRA scale (plays the role of PEFT's alpha/r)")
    dropout: float = _opt(0.0, "LoRA dropout")
    layers: int = _opt(4, "number of last blocks that get LoRA")
    keys: list[str] = _opt(None, "linear layers inside a block to adapt")
    grad_clip: float = _opt(1.0, "clip the global gradient norm to this (0 = off)")
    max_seq_length: int = _opt(2048, "truncate examples to this many tokens")
    seed: int = _opt(0, "seed for LoRA init and batch order")
    save_every: int = _opt(100, "checkpoint every N steps (0 = only at the end)")
    resume: bool = _opt(False, "continue run `name` from its last checkpoint")
    repeat: int = _opt(1, "repeat the training rows N times")
    mask_prompt: bool = _opt(True, "train on the answer only")
    eval_prompts: list[str] = _opt(None, "prompts generated before and after training")
    eval_max_tokens: int = _opt(40, "tokens per eval generation")
    steps_per_report: int = _opt(1, "steps between progress events")
    steps_per_eval: int | None = _opt(None, "steps between validation passes (null: before and after only)")
    prefix_cache: bool = _opt(True, "reuse frozen-block activations (when exact)")
    prefix_cache_mb: int | None = _opt(None, "memory budget of the prefix cache")

    @staticmethod
    def from_params(params: Mapping[str, Any]) -> "TuneConfig":
        p = Params("tune", params)
        return TuneConfig(
            model=p.str("model"),
            name=p.str("name"),
            iters=p.int("iters", 200, minimum=1),
            batch_size=p.int("batch_size", 1, minimum=1),
            lr=p.float("lr", 5e-5, positive=True),
            rank=p.int("rank", 8, minimum=1),
            scale=p.float("scale", 20.0),
            dropout=p.float("dropout", 0.0, minimum=0.0),
            layers=p.int("layers", 4, minimum=1),
            keys=p.str_list("keys", ["self_attn.q_proj", "self_attn.v_proj"]) or [],
            grad_clip=p.float("grad_clip", 1.0, minimum=0.0),
            max_seq_length=p.int("max_seq_length", 2048, minimum=2),
            seed=p.int("seed", 0),
            save_every=p.int("save_every", 100, minimum=0),
            resume=p.bool("resume", False),
            repeat=p.int("repeat", 1, minimum=1),
            mask_prompt=p.bool("mask_prompt", True),
            eval_prompts=p.str_list("eval_prompts", []) or [],
            eval_max_tokens=p.int("eval_max_tokens", 40, minimum=1),
            steps_per_report=p.int("steps_per_report", 1, minimum=1),
            steps_per_eval=p.optional_int("steps_per_eval", minimum=1),
            prefix_cache=p.bool("prefix_cache", True),
            prefix_cache_mb=p.optional_int("prefix_cache_mb", minimum=0),
        )

    def lora_parameters(self) -> dict[str, Any]:
        return {"rank": self.rank, "scale": self.scale, "dropout": self.dropout, "keys": list(self.keys)}

    def adapter_config(self, model_path: str) -> dict[str, Any]:
        """adapter_config.json as mlx-lm writes it, so `mlx_lm.load(..., adapter_path=)` reads it."""
        return {
            "fine_tune_type": "lora",
            "model": model_path,
            "num_layers": self.layers,
            "lora_parameters": self.lora_parameters(),
            "iters": self.iters,
            "batch_size": self.batch_size,
            "learning_rate": self.lr,
            "max_seq_length": self.max_seq_length,
            "seed": self.seed,
            "mask_prompt": self.mask_prompt,
        }


@dataclass
class DataText:
    source: str
    text: str

    @staticmethod
    def from_param(value: Any, role: str) -> "DataText":
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise BridgeError("bad_request", f"tune: 'data.{role}' must be an object with 'source' and 'text' (the JSONL rows).")
        return DataText(str(value.get("source") or role), value["text"])


def check_lora_targets(config: TuneConfig, num_layers: int, block_keys: list[str]) -> None:
    if config.layers > num_layers:
        raise BridgeError("bad_config", f"--layers {config.layers} is more than the model's {num_layers} blocks; use at most {num_layers}.")
    unknown = [k for k in config.keys if k not in block_keys]
    if unknown:
        raise BridgeError("bad_config", f"unknown LoRA key {', '.join(unknown)}; this model's blocks have {', '.join(block_keys)}.")
    if not config.keys:
        raise BridgeError("bad_config", f"--keys is empty; name at least one of {', '.join(block_keys)}.")


class Reporter:
    """Where a step's numbers go: an event for the notebook and a line in metrics.jsonl."""

    def __init__(self, emit: Emit, metrics: MetricsLog):
        self.emit = emit
        self.metrics = metrics

    def progress(self, info: dict[str, Any]) -> None:
        self.metrics.write({"type": "train", **info})
        self.emit("progress", info)

    def val(self, step: int, val_loss: float) -> None:
        self.metrics.write({"type": "val", "step": step, "val_loss": val_loss})
        self.emit("val", {"step": step, "val_loss": val_loss})


@dataclass
class StepOutcome:
    loss: float
    tokens: int
    grad_norm: float


class OptimizerStep:
    """Gradient clipping and the optimizer update, each one compiled function.

    Uncompiled, Adam over a few dozen small LoRA matrices is hundreds of tiny MLX operations
    (~4 ms of a ~90 ms CPU step); traced once, the element-wise chains fuse. The update is
    traced with the model's and the optimizer's state as explicit inputs and outputs, the way
    mlx-lm's trainer compiles its step, so it must be made after any checkpoint was restored
    into `optimizer.state` (the trace holds on to that dict)."""

    def __init__(self, model: Any, optimizer: Any, grad_clip: float):
        import mlx.core as mx
        import mlx.optimizers as optim

        optimizer.init(model.trainable_parameters())  # keeps restored state; the trace needs it complete
        state = [model.state, optimizer.state]

        def update(grads: Any) -> None:
            optimizer.update(model, grads)

        self.grad_clip = grad_clip
        self._clip = mx.compile(lambda grads: optim.clip_grad_norm(grads, grad_clip))
        self._update = mx.compile(update, inputs=state, outputs=state)
        self._model, self._optimizer = model, optimizer
        self._trainable = TrainableSlots(model)

    def clip(self, grads: Any) -> tuple[Any, Any]:
        import mlx.core as mx

        if self.grad_clip > 0:
            return self._clip(grads)
        return grads, mx.array(0.0)

    def apply(self, grads: Any) -> None:
        import mlx.core as mx

        self._update(grads)
        mx.eval(self._trainable.arrays(), self._optimizer.state)


def train_step(step: OptimizerStep, loss_and_grad: Callable[..., Any], model: Any, batch: tuple[Any, Any]) -> StepOutcome:
    """One optimizer step; the update is skipped when the loss or gradients are not finite."""
    import mlx.core as mx

    (loss, ntoks), grads = loss_and_grad(model, *batch)
    grads, norm = step.clip(grads)
    mx.eval(loss, ntoks, norm, grads)
    outcome = StepOutcome(float(loss.item()), int(ntoks.item()), float(norm.item()))
    if math.isfinite(outcome.loss) and math.isfinite(outcome.grad_norm):
        step.apply(grads)
    return outcome


def evaluate(model: Any, loss_fn: Callable[..., Any], batches: list[tuple[Any, Any]]) -> float:
    import mlx.core as mx

    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        loss, ntoks = loss_fn(model, *batch)
        mx.eval(loss, ntoks)
        total += float(loss.item()) * int(ntoks.item())
        count += int(ntoks.item())
    model.train()
    return total / max(count, 1)


def _flat_assign(tree: Any, flat: Mapping[str, Any], prefix: str = "") -> Any:
    """Put saved leaves back into a freshly initialised optimizer state of the same shape."""
    if isinstance(tree, dict):
        return {k: _flat_assign(v, flat, f"{prefix}{k}.") for k, v in tree.items()}
    if isinstance(tree, list):
        return [_flat_assign(v, flat, f"{prefix}{i}.") for i, v in enumerate(tree)]
    key = prefix[:-1]
    return flat.get(key, tree)


class Checkpoints:
    def __init__(self, run: RunDir):
        self.run = run

    def save(self, step: int, model: Any, optimizer: Any, extra: Mapping[str, Any]) -> Path:
        from mlx.utils import tree_flatten

        adapters_file, optimizer_file, state_file = self.run.checkpoint_files(step)
        save_arrays(adapters_file, dict(tree_flatten(model.trainable_parameters())))
        save_arrays(optimizer_file, dict(tree_flatten(optimizer.state)))
        # state.json last: its presence marks the checkpoint complete.
        atomic_write_json(state_file, {"step": step, **extra})
        return adapters_file

    def restore(self, step: int, model: Any, optimizer: Any) -> dict[str, Any]:
        import mlx.core as mx

        adapters_file, optimizer_file, state_file = self.run.checkpoint_files(step)
        model.load_weights(list(mx.load(str(adapters_file)).items()), strict=False)
        optimizer.init(model.trainable_parameters())
        optimizer.state = _flat_assign(optimizer.state, mx.load(str(optimizer_file)))
        mx.eval(model.trainable_parameters(), optimizer.state)
        return read_json(state_file)


@dataclass
class TuneContext:
    emit: Emit
    cancelled: Callable[[], bool]
    runs_root: Path
    generate: Callable[[str], str]  # greedy eval generation with the model as it is now
    blas: dict[str, Any] | None = None


def _run_dir(config: TuneConfig, runs_root: Path) -> tuple[RunDir, int | None]:
    if config.resume:
        if not config.name:
            raise BridgeError("bad_config", "--resume needs --name of the run to continue.")
        run = RunDir(runs_root / check_run_name(config.name))
        step = run.latest_checkpoint()
        if step is None:
            raise BridgeError("bad_config", f"run {config.name!r} has no checkpoint to resume from; start it again without --resume.")
        return run, step
    run = RunDir(runs_root / check_run_name(config.name or default_run_name()))
    return run, None


def _check_resume_matches(run: RunDir, config: TuneConfig) -> None:
    try:
        saved = read_json(run.config)["params"]
    except (OSError, ValueError, KeyError):
        return
    fields = ("rank", "scale", "dropout", "layers", "keys", "lr", "batch_size", "seed", "repeat", "mask_prompt", "max_seq_length", "grad_clip")
    changed = [f for f in fields if saved.get(f) != getattr(config, f)]
    if changed:
        detail = ", ".join(f"{f} {saved.get(f)!r} -> {getattr(config, f)!r}" for f in changed)
        raise BridgeError("bad_config", f"--resume must use the settings the run started with ({detail}); pass the same flags or start a new run.")


def optimisations_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """TuneResult.optimisations: each fast-path optimisation, whether it ran and, if not, why."""

    def decision(key: str) -> dict[str, Any]:
        d = summary.get(key, {})
        used = bool(d.get("used"))
        return {"used": used, "reason": None if used else (d.get("reason") or None), "detail": d.get("reason") if used else None}

    stats = summary.get("prefix_cache", {}).get("stats") or {}
    prefix = decision("prefix_cache")
    prefix.update({
        "frozen_blocks": int(summary.get("prefix_cache", {}).get("frozen_blocks", 0)),
        "cached_rows": int(stats.get("cached", 0)),
        "rows": int(stats.get("examples", 0)),
        "skipped_over_budget": int(stats.get("skipped_over_budget", 0)),
        "bytes": int(stats.get("bytes", 0)),
        "seconds": round(float(stats.get("seconds", 0.0)), 3),
    })
    return {
        "prefix_cache": prefix,
        "loss_head": decision("loss_head"),
        "tail_queries": decision("tail_queries"),
        "compiled": decision("compile"),
        "bucketing": decision("trim_padding"),
        "host_activations": decision("host_activations"),
        "fused_head": decision("fused_head"),
        "native_linears": decision("native_linears"),
        "host_attention": decision("host_attention"),
        "host_step": decision("host_step"),
    }


def tune(loaded: Any, adapters: Any, params: Mapping[str, Any], ctx: TuneContext) -> dict[str, Any]:
    """Train a LoRA adapter on `loaded` (a models.LoadedModel); the TuneResult of the protocol."""
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import get_total_parameters

    from . import fast

    started = time.perf_counter()
    config = TuneConfig.from_params(params)
    data = params.get("data")
    if not isinstance(data, dict) or data.get("train") is None:
        raise BridgeError("bad_request", "tune: 'data.train' is required: {\"source\", \"text\"} with JSONL rows.")
    train_text = DataText.from_param(data["train"], "train")
    valid_text = DataText.from_param(data["valid"], "valid") if data.get("valid") else None

    model, tokenizer = loaded.model, loaded.tokenizer
    check_lora_targets(config, loaded.num_layers, loaded.block_keys())

    ctx.emit("phase", {"name": "preparing", "detail": f"tokenising {train_text.source}"})
    train_examples = datasets.load_examples(train_text.source, train_text.text, tokenizer, mask_prompt=config.mask_prompt, repeat=config.repeat)
    train_batches = datasets.Batches(train_examples, config.batch_size, config.max_seq_length, config.seed)
    valid_batches: list[tuple[Any, Any]] = []
    valid_examples: list[Any] = []
    if valid_text is not None:
        valid_examples = datasets.load_examples(valid_text.source, valid_text.text, tokenizer, mask_prompt=config.mask_prompt)
        size = min(config.batch_size, len(valid_examples))
        valid_batches = datasets.Batches(valid_examples, size, config.max_seq_length, config.seed).all_batches()

    run, resume_step = _run_dir(config, ctx.runs_root)
    if resume_step is not None:
        _check_resume_matches(run, config)
    else:
        run.reset()

    # The base model, without any adapter, for the "before" generations.
    adapters.strip()
    evals = [{"prompt": p, "before": None, "after": None} for p in config.eval_prompts]
    if evals:
        ctx.emit("phase", {"name": "eval-before"})
        for item in evals:
            item["before"] = ctx.generate(item["prompt"])
            ctx.emit("eval", {"prompt": item["prompt"], "when": "before", "text": item["before"]})

    mx.random.seed(config.seed)
    model.freeze()
    linear_to_lora_layers(model, config.layers, config.lora_parameters())
    model.train()
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    total = get_total_parameters(model)
    optimizer = optim.Adam(learning_rate=config.lr)
    fast_loss = fast.FastLossFn(model, fast.plan(model, fast.FastOptions(
        prefix_cache=config.prefix_cache,
        prefix_cache_mb=fast.DEFAULT_PREFIX_CACHE_MB if config.prefix_cache_mb is None else config.prefix_cache_mb)))
    # The cache holds exactly the token rows the batches will carry (cut to max_seq_length), so a
    # resumed run rebuilds the same activations and replays the same losses.
    rows = [tokens[: config.max_seq_length] for tokens, _ in train_examples + valid_examples]
    fast_loss.precompute(
        rows,
        progress=lambda done, total: ctx.emit("phase", {"name": "preparing", "detail": f"caching frozen blocks {done}/{total} examples"}))
    loss_and_grad = fast_loss.value_and_grad
    loss_fn = fast_loss.loss_fn
    checkpoints = Checkpoints(run)

    start_step = 0
    previous: dict[str, Any] = {}
    if resume_step is not None:
        previous = checkpoints.restore(resume_step, model, optimizer)
        start_step = resume_step
    optimizer_step = OptimizerStep(model, optimizer, config.grad_clip)
    model_path = str(loaded.path)
    atomic_write_json(run.config, {"params": dataclasses.asdict(config), "model": loaded.info, "adapter": config.adapter_config(model_path), "resumed_from": resume_step})
    metrics = MetricsLog(run.metrics, keep_through_step=resume_step)
    reporter = Reporter(ctx.emit, metrics)

    ctx.emit("phase", {"name": "training", "detail": f"{trainable:,} trainable parameters of {total:,}"})
    status = "completed"
    diverged: StepOutcome | None = None
    first_loss = previous.get("first_loss")
    last_loss: float | None = previous.get("last_loss")
    val_loss: float | None = None
    trained_tokens = int(previous.get("trained_tokens", 0))
    train_seconds = float(previous.get("train_seconds", 0.0))
    window_loss, window_tokens, window_steps, window_time = 0.0, 0, 0, 0.0
    step = start_step
    mx.reset_peak_memory()

    def validate(at: int) -> None:
        nonlocal val_loss
        if valid_batches:
            val_loss = evaluate(model, loss_fn, valid_batches)
            reporter.val(at, val_loss)

    def progress_state() -> dict[str, Any]:
        return {"first_loss": first_loss, "last_loss": last_loss, "trained_tokens": trained_tokens, "train_seconds": train_seconds}

    try:
        if start_step == 0:
            validate(0)
        while step < config.iters:
            if ctx.cancelled():
                status = "interrupted"
                break
            # Randomness inside a step (LoRA dropout) is drawn from (seed, step): a resumed run
            # draws what the uninterrupted run drew.
            mx.random.seed(config.seed * 1_000_003 + step + 1)
            tic = time.perf_counter()
            outcome = train_step(optimizer_step, loss_and_grad, model, train_batches.batch(step + 1))
            elapsed = time.perf_counter() - tic
            if not (math.isfinite(outcome.loss) and math.isfinite(outcome.grad_norm)):
                diverged = outcome
                break
            step += 1
            train_seconds += elapsed
            trained_tokens += outcome.tokens
            first_loss = outcome.loss if first_loss is None else first_loss
            last_loss = outcome.loss
            window_loss += outcome.loss
            window_tokens += outcome.tokens
            window_steps += 1
            window_time += elapsed
            if step % config.steps_per_report == 0 or step == config.iters:
                reporter.progress({
                    "step": step,
                    "iters": config.iters,
                    "loss": window_loss / window_steps,
                    "lr": float(optimizer.learning_rate.item()),
                    "it_per_s": window_steps / window_time if window_time > 0 else None,
                    "tokens_per_s": window_tokens / window_time if window_time > 0 else None,
                    "trained_tokens": trained_tokens,
                    "peak_memory_gb": mx.get_peak_memory() / 1e9,
                    "elapsed_s": time.perf_counter() - started,
                })
                window_loss, window_tokens, window_steps, window_time = 0.0, 0, 0, 0.0
            if config.steps_per_eval and step % config.steps_per_eval == 0 and step != config.iters:
                validate(step)
            if config.save_every and step % config.save_every == 0 and step != config.iters:
                path = checkpoints.save(step, model, optimizer, progress_state())
                ctx.emit("checkpoint", {"step": step, "path": str(path)})
        if diverged is None and status == "completed" and step > start_step:
            validate(step)
    finally:
        metrics.close()

    # Whatever happened, the weights now in the model are the last good ones: keep them.
    ctx.emit("phase", {"name": "saving"})
    adapter_weights = dict(tree_flatten(model.trainable_parameters()))
    adapter_config = config.adapter_config(model_path)
    save_arrays(run.adapters, adapter_weights)
    atomic_write_json(run.adapter_config, adapter_config)
    if diverged is None and step > start_step and (status == "interrupted" or config.save_every):
        checkpoints.save(step, model, optimizer, progress_state())
    model.eval()
    adapters.add(run.name, run.root, adapter_config, adapter_weights)

    if diverged is None and status == "completed" and evals:
        ctx.emit("phase", {"name": "eval-after"})
        for item in evals:
            item["after"] = ctx.generate(item["prompt"])
            ctx.emit("eval", {"prompt": item["prompt"], "when": "after", "text": item["after"]})

    steps_this_time = step - start_step
    session_seconds = train_seconds - float(previous.get("train_seconds", 0.0))
    result = {
        "name": run.name,
        "run_dir": str(run.root),
        "adapter_path": str(run.root),
        "status": "diverged" if diverged else status,
        "steps": step,
        "iters": config.iters,
        "seconds": round(time.perf_counter() - started, 3),
        "train_seconds": round(train_seconds, 3),
        "it_per_s": steps_this_time / session_seconds if session_seconds > 0 else None,
        "tokens_per_s": (trained_tokens - int(previous.get("trained_tokens", 0))) / session_seconds if session_seconds > 0 else None,
        "trained_tokens": trained_tokens,
        "trainable_params": int(trainable),
        "total_params": int(total),
        "first_loss": first_loss,
        "last_loss": last_loss,
        "val_loss": val_loss,
        "peak_memory_gb": mx.get_peak_memory() / 1e9,
        "evals": evals,
        "model": loaded.info,
        "blas": ctx.blas,
        "optimisations": optimisations_summary(fast_loss.summary()),
        "resumed_from": resume_step,
    }
    atomic_write_json(run.result, result)
    if diverged is not None:
        what = f"loss {diverged.loss}" if not math.isfinite(diverged.loss) else f"gradient norm {diverged.grad_norm}"
        raise BridgeError(
            "diverged",
            f"training diverged at step {step + 1} ({what}); lower --lr (now {config.lr:g}) and run again; the partial run up to step {step} is kept in {run.root}.",
        )
    return result


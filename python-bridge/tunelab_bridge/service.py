"""What the bridge holds between requests (the base model, its adapters) and the methods on it.

`run_job` runs on the MLX worker thread only. `status` and `adapters_list` are read by the
socket thread: they touch plain Python values, never MLX.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .protocol import PROTOCOL_VERSION, BridgeError, Params
from .runs import list_runs
from .worker import Job


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


class Service:
    def __init__(self, runs_dir: Path):
        from .models import ModelStore

        self.runs_dir = runs_dir
        self.store = ModelStore()
        self.adapters: Any = None  # AdapterManager of the loaded model
        from .blas import report

        # Chosen and measured before MLX loaded (blas.activate at bridge start): known at once.
        self.blas: dict[str, Any] = report()
        self.model_info: dict[str, Any] | None = None
        import mlx.core as mx

        self.mlx_version = mx.__version__
        self.device = str(mx.default_device())
        from .llama_generation import LlamaGeneration

        self.llama = LlamaGeneration()  # llama.cpp for %generate on the CPU; loads on first use

    # --- socket thread -----------------------------------------------------------------

    def status(self, job_id: str | None) -> dict[str, Any]:
        return {
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "mlx": self.mlx_version,
            "mlx_lm": _package_version("mlx-lm"),
            "device": self.device,
            "blas": self.blas,
            "model": self.model_info,
            "active_adapter": self.adapters.active if self.adapters else None,
            "job": job_id,
            "pid": os.getpid(),
        }

    def adapters_list(self) -> dict[str, Any]:
        return {
            "runs": list_runs(self.runs_dir),
            "loaded": self.adapters.loaded_names() if self.adapters else [],
            "active": self.adapters.active if self.adapters else None,
        }

    # --- worker thread -----------------------------------------------------------------

    def run_job(self, job: Job) -> Mapping[str, Any]:
        handler = {
            "load_model": self._load_model,
            "describe_model": self._describe_model,
            "tune": self._tune,
            "generate": self._generate,
            "adapters.load": self._adapters_load,
            "adapters.unload": self._adapters_unload,
            "adapters.switch": self._adapters_switch,
            "adapters.export": self._adapters_export,
            "bench.conv_stack": self._bench_conv_stack,
            "bench.sync_cost": self._bench_sync_cost,
        }[job.method]
        return handler(job)

    def _model(self, job: Job, spec: str | None, *, keep_loaded: bool = True) -> Any:
        from .adapters import AdapterManager

        def log(detail: str) -> None:
            job.emit("phase", {"name": "loading", "detail": detail})

        previous = self.store.current
        loaded = self.store.ensure(spec, log, keep_loaded=keep_loaded)
        if loaded is not previous or self.adapters is None:
            self.adapters = AdapterManager(loaded.model, self.runs_dir)
            self.model_info = loaded.info
        return loaded

    def _load_model(self, job: Job) -> Mapping[str, Any]:
        spec = Params("load_model", job.params).str("model")
        return self._model(job, spec, keep_loaded=False).info

    def _describe_model(self, job: Job) -> Mapping[str, Any]:
        if self.store.current is None:
            raise BridgeError("model_not_found", "no model is loaded yet; call load_model, %tune or %generate first.")
        return self.store.current.info

    def _greedy(self, loaded: Any, max_tokens: int) -> Any:
        """The --eval answers: greedy, through the engine %generate would use (llama.cpp on the
        CPU for the embedded model, with the adapter active at the time)."""
        from .generation import Sampling

        def run(prompt: str) -> str:
            return self._answer(loaded, prompt, Sampling(max_tokens=max_tokens), "auto")["text"]

        return run

    def _answer(self, loaded: Any, prompt: str, sampling: Any, engine: str, *, cancelled: Any = lambda: False, on_text: Any = None) -> dict[str, Any]:
        """One answer from the engine `engine` ("auto", "mlx", "llama.cpp") chooses, with the active adapter."""
        from . import llama_generation
        from .generation import generate, prompt_tokens

        chosen, why_mlx = llama_generation.choose(engine, loaded, self.device)
        if chosen == "llama.cpp":
            active = self.adapters.get(self.adapters.active) if self.adapters.active else None
            return self.llama.generate(prompt_tokens(loaded.tokenizer, prompt, sampling.system), sampling, active, cancelled=cancelled, on_text=on_text)
        apply_ms = self.adapters.apply()  # MLX answers: the active adapter goes into its layers now
        result = dict(generate(loaded.model, loaded.tokenizer, prompt, sampling, cancelled=cancelled, on_text=on_text))
        result.update({"engine": "mlx", "engine_detail": f"MLX {self.mlx_version} ({self.device})", "engine_reason": why_mlx, "switch_ms": round(apply_ms, 3)})
        return result

    def _tune(self, job: Job) -> Mapping[str, Any]:
        from .options import TuneOptions, parse
        from .training import TuneContext, tune

        options = parse(TuneOptions, "tune", job.params)
        job.emit("phase", {"name": "loading"})
        loaded = self._model(job, options.model)
        context = TuneContext(
            emit=job.emit,
            cancelled=lambda: job.cancelled,
            runs_root=self.runs_dir,
            generate=self._greedy(loaded, options.eval_max_tokens),
            blas=self.blas,
        )
        try:
            if options.processes > 1 or options.hosts:
                return self._tune_in_group(options, loaded, context)
            return tune(loaded, self.adapters, options, context)
        except Exception:
            # Past its checks, tune stripped the adapters (layout None) and built fresh LoRA
            # layers; unless it registered them (diverged: the last good weights), drop them so
            # a half-trained adapter never shapes the next generation unannounced.
            if self.adapters.layout is None:
                self.adapters.strip()
            raise

    def _tune_in_group(self, options: Any, loaded: Any, context: Any) -> Mapping[str, Any]:
        """Data-parallel training through mlx.launch (distributed.py): the ranks train and rank 0
        saves; this bridge answers the --eval prompts before and after with its own model, and
        makes the trained adapter the active one, as a one-process run does."""
        from . import distributed
        from .files import atomic_write_json
        from .runs import RunDir, check_run_name, default_run_name
        from .training import answer_evals

        if not options.name:
            from dataclasses import replace

            options = replace(options, name=default_run_name())
        self.adapters.strip()
        evals = answer_evals(context, options.eval_prompts, "before")
        result = dict(distributed.run(options, str(loaded.path), self.runs_dir, context.emit, context.cancelled, self.blas))
        if result.get("status") != "diverged":
            self.adapters.load(result["name"])
            self.adapters.switch(result["name"])
        if result.get("status") == "completed":
            answer_evals(context, options.eval_prompts, "after", evals)
        result["evals"] = evals
        result["model"] = loaded.info  # the ranks loaded it by path; this is the bridge's own description
        atomic_write_json(RunDir(self.runs_dir / check_run_name(options.name)).result, result)
        return result

    def _generate(self, job: Job) -> Mapping[str, Any]:
        from .generation import Sampling
        from .options import GenerateOptions, parse

        options = parse(GenerateOptions, "generate", job.params)
        if not options.prompt:
            raise BridgeError("bad_request", "generate: 'prompt' is required.")
        sampling = Sampling(max_tokens=options.max_tokens, temp=options.temp, top_p=options.top_p, seed=options.seed or 0, system=options.system)
        loaded = self._model(job, options.model)
        if options.adapter is not None:
            self.adapters.select(options.adapter)
        # switch_ms: the answering engine putting the adapter in place (llama.cpp's, or MLX's layers).
        result = self._answer(loaded, options.prompt, sampling, options.engine, cancelled=lambda: job.cancelled, on_text=lambda text: job.emit("token", {"text": text}))
        result["adapter"] = self.adapters.active
        return result

    def _manager(self, job: Job) -> Any:
        if self.adapters is None:
            self._model(job, None)
        return self.adapters

    def _adapters_load(self, job: Job) -> Mapping[str, Any]:
        name = Params("adapters.load", job.params).str("name", required=True) or ""
        adapter, ms = self._manager(job).load(name)
        return {"name": adapter.name, "ms": round(ms, 3)}

    def _adapters_unload(self, job: Job) -> Mapping[str, Any]:
        name = Params("adapters.unload", job.params).str("name", required=True) or ""
        self._manager(job).unload(name)
        return {"name": name}

    def _adapters_switch(self, job: Job) -> Mapping[str, Any]:
        name = Params("adapters.switch", job.params).str("name", required=True) or "none"
        started = time.perf_counter()
        ms = self._manager(job).switch(name)
        return {"active": self.adapters.active, "ms": round(ms, 3), "total_ms": round((time.perf_counter() - started) * 1000, 3)}

    def _adapters_export(self, job: Job) -> Mapping[str, Any]:
        """A run's adapter in another engine's format; needs only its files, not the loaded model."""
        from .adapter_export import export
        from .adapters import locate
        from .options import AdaptersExportOptions, parse

        options = parse(AdaptersExportOptions, "adapters.export", job.params)
        if not options.name:
            raise BridgeError("bad_request", "adapters.export: 'name' (the run to export) is required.")
        key, root = locate(self.runs_dir, options.name)
        result = export(root, options.format or "gguf", Path(options.to).expanduser() if options.to else None)
        return {"name": key, **result}

    def _bench_conv_stack(self, job: Job) -> Mapping[str, Any]:
        from .conv_bench import run_conv_bench

        return run_conv_bench(job.params, job.emit, lambda: job.cancelled, self.blas)

    def _bench_sync_cost(self, job: Job) -> Mapping[str, Any]:
        import tempfile

        from . import distributed
        from .sync_bench import parameters

        p = parameters(job.params)
        loaded = self._model(job, p["model"])
        with tempfile.TemporaryDirectory(prefix="tunelab-sync-") as work:
            payload = {**p, "model_path": str(loaded.path)}
            code, output, stderr = distributed.launch("sync", payload, ranks=p["processes"], backend="ring", hostfile=None, work=Path(work), emit=job.emit, cancelled=lambda: job.cancelled)
        if output.result is None:
            raise BridgeError("rank_failed", f"the sync-cost measurement did not finish (exit code {code}).", stderr[-4000:] or None)
        return output.result

"""`bench.conv_stack`: the ANE peak benchmark's chained 1x1 convs, run through MLX.

A 1x1 conv over a [1, C, 1, S] tensor is W[C, C] @ X[C, S], so a stack of D convs is D chained
matmuls. Each stack is checked against a float64 NumPy reference before it is timed: a fast wrong
answer is not a measurement. Runs on the MLX worker thread only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .protocol import BridgeError, Params

TOLERANCE = 1e-4
LIMITS = {"channels": 8192, "spatial": 16384, "depth": 4096}
# fp32 weights live twice (NumPy's and MLX's copy); the kernel's own budget is stricter.
MAX_WEIGHT_BYTES = 8 * 2**30
# Columns checked against the float64 reference: each column of a 1x1 conv stack is independent.
CHECK_COLUMNS = 16
PEAK_SIZE = 2048
PEAK_ITERS = 5
PEAK_BUDGET_MS = 2000.0
# Timed evaluations per variant when choosing between eager and mx.compile.
PROBE_ITERS = 3


@dataclass(frozen=True)
class StackConfig:
    channels: int
    spatial: int
    depth: int

    @property
    def gflop(self) -> float:
        return 2 * self.channels**2 * self.spatial * self.depth / 1e9

    @property
    def weight_bytes(self) -> int:
        return self.channels**2 * self.depth * 4

    def describe(self) -> str:
        return f"{self.depth}x conv {self.channels}ch sp{self.spatial}"


@dataclass(frozen=True)
class BenchParams:
    configs: list[StackConfig]
    warmup: int
    iters: int
    seed: int

    @staticmethod
    def from_params(params: Mapping[str, Any]) -> "BenchParams":
        p = Params("bench.conv_stack", params)
        raw = params.get("configs")
        if not isinstance(raw, list) or not raw:
            raise BridgeError("bad_request", "bench.conv_stack: 'configs' must be a non-empty list of {channels, spatial, depth}.")
        configs = []
        for index, item in enumerate(raw):
            if not isinstance(item, dict):
                raise BridgeError("bad_request", f"bench.conv_stack: configs[{index}] must be an object with channels, spatial and depth.")
            c = Params(f"bench.conv_stack configs[{index}]", item)
            values = {name: c.int(name, 0, minimum=1) if c.has(name) else None for name in LIMITS}
            for name, value in values.items():
                if value is None:
                    raise BridgeError("bad_request", f"bench.conv_stack: configs[{index}] needs '{name}'.")
                if value > LIMITS[name]:
                    raise BridgeError("bad_config", f"bench.conv_stack: configs[{index}].{name} must be at most {LIMITS[name]}, got {value}.")
            config = StackConfig(values["channels"], values["spatial"], values["depth"])  # type: ignore[arg-type]
            if 2 * config.weight_bytes > MAX_WEIGHT_BYTES:
                raise BridgeError("bad_config", f"{config.describe()} needs {2 * config.weight_bytes / 2**30:.1f} GiB of weights, over the bridge's {MAX_WEIGHT_BYTES // 2**30} GiB; use smaller depths or channels.")
            configs.append(config)
        return BenchParams(
            configs=configs,
            warmup=p.int("warmup", 10, minimum=0),
            iters=p.int("iters", 50, minimum=1),
            seed=p.int("seed", 0, minimum=0),
        )


def _quantiles(ms: list[float]) -> tuple[float, float, float]:
    # Linear interpolation, like the kernel's stats.ts, so every backend's spread means the same.
    p10, median, p90 = np.quantile(np.asarray(ms, dtype=np.float64), [0.1, 0.5, 0.9])
    return float(median), float(p10), float(p90)


def random_stack(config: StackConfig, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """D weights ~ U(-a, a) with variance 1/C, so activations keep their scale through the stack."""
    rng = np.random.default_rng(seed)
    a = np.sqrt(3.0 / config.channels)
    weights = [rng.uniform(-a, a, (config.channels, config.channels)).astype(np.float32) for _ in range(config.depth)]
    x = rng.standard_normal((config.channels, config.spatial), dtype=np.float32)
    return weights, x


def reference(weights: list[np.ndarray], x: np.ndarray, columns: np.ndarray) -> np.ndarray:
    y = x[:, columns].astype(np.float64)
    for w in weights:
        y = w.astype(np.float64) @ y
    return y


def relative_error(output: np.ndarray, ref: np.ndarray, columns: np.ndarray) -> float:
    """||y - ref|| / ||ref|| over the checked columns (the kernel's definition)."""
    diff = output[:, columns].astype(np.float64) - ref
    norm = float(np.linalg.norm(ref))
    return float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))


class Cancelled(Exception):
    pass


class ConvStackBench:
    def __init__(self, emit: Callable[[str, Mapping[str, Any]], None], cancelled: Callable[[], bool], blas_name: str | None = None):
        import mlx.core as mx

        self.mx = mx
        self.emit = emit
        self.cancelled = cancelled
        self.blas_name = blas_name
        self.device = mx.default_device()

    @property
    def device_name(self) -> str:
        kind = str(self.device.type).rsplit(".", 1)[-1]
        return f"{kind} ({self.blas_name})" if kind == "cpu" and self.blas_name else kind

    def _check_cancel(self) -> None:
        if self.cancelled():
            raise Cancelled()

    def _time(self, run: Callable[[], Any], count: int) -> list[float]:
        times = []
        for _ in range(count):
            self._check_cancel()
            started = time.perf_counter()
            self.mx.eval(run())
            times.append((time.perf_counter() - started) * 1000)
        return times

    def run_config(self, config: StackConfig, seed: int, warmup: int, iters: int) -> dict[str, Any]:
        mx = self.mx
        weights_np, x_np = random_stack(config, seed)
        weights = [mx.array(w) for w in weights_np]
        x = mx.array(x_np)
        mx.eval(weights, x)

        def stack(x: Any, *ws: Any) -> Any:
            for w in ws:
                x = w @ x
            return x

        compiled_stack = mx.compile(stack)
        variants = {False: lambda: stack(x, *weights), True: lambda: compiled_stack(x, *weights)}

        columns = np.random.default_rng(seed + 17).choice(config.spatial, min(CHECK_COLUMNS, config.spatial), replace=False)
        ref = reference(weights_np, x_np, columns)
        errors = {}
        compile_ms = {}
        for compiled, run in variants.items():
            self._check_cancel()
            started = time.perf_counter()
            out = run()
            mx.eval(out)
            compile_ms[compiled] = (time.perf_counter() - started) * 1000
            errors[compiled] = relative_error(np.asarray(out), ref, columns)
            if not errors[compiled] <= TOLERANCE:
                how = "compiled" if compiled else "eager"
                raise BridgeError(
                    "internal",
                    f"MLX's {how} output for {config.describe()} on {self.device_name} differs from the float64 reference by {errors[compiled]:.2e} (limit {TOLERANCE:g}), so its timings would mean nothing; reinstall the bridge with `npm run setup` and report the shape.",
                )
        del weights_np

        # Warm both variants, then a short probe each; the faster one is timed in full.
        for run in variants.values():
            self._time(run, warmup)
        probe = {compiled: float(np.median(self._time(run, PROBE_ITERS))) for compiled, run in variants.items()}
        compiled = probe[True] < probe[False]
        times = self._time(variants[compiled], iters)
        median, p10, p90 = _quantiles(times)
        return {
            "backend": "mlx",
            "device": self.device_name,
            "channels": config.channels,
            "spatial": config.spatial,
            "depth": config.depth,
            "weight_mb": config.weight_bytes / 2**20,
            "gflop": config.gflop,
            "ms_median": median,
            "ms_p10": p10,
            "ms_p90": p90,
            # GFLOP per millisecond is TFLOPS.
            "tflops": config.gflop / median,
            "max_rel_error": max(errors.values()),
            "compiled": compiled,
            "compile_ms": compile_ms[compiled],
            "probe_ms": {"eager": probe[False], "compiled": probe[True]},
        }

    def peak(self) -> dict[str, Any]:
        """MLX's own sgemm rate on the same device: the honest ceiling for these stacks."""
        mx = self.mx
        n = PEAK_SIZE
        a = mx.random.normal((n, n), key=mx.random.key(0))
        b = mx.random.normal((n, n), key=mx.random.key(1))
        mx.eval(a, b)
        first = self._time(lambda: a @ b, 1)[0]
        # On the slow reference BLAS one product takes seconds: fewer samples, same meaning.
        count = max(2, min(PEAK_ITERS, int(PEAK_BUDGET_MS / max(first, 1e-3))))
        median, _, _ = _quantiles(self._time(lambda: a @ b, count))
        return {"tflops": 2 * n**3 / 1e9 / median, "how": f"MLX matmul {n}² fp32 on {self.device_name}", "ms_median": median}


def run_conv_bench(params: Mapping[str, Any], emit: Callable[[str, Mapping[str, Any]], None], cancelled: Callable[[], bool], blas: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Result `{rows, peak: {tflops, how}}`; a `row` event per config as it is measured."""
    bench_params = BenchParams.from_params(params)
    bench = ConvStackBench(emit, cancelled, (blas or {}).get("name"))
    rows = []
    try:
        for index, config in enumerate(bench_params.configs):
            row = bench.run_config(config, bench_params.seed + index * 7919, bench_params.warmup, bench_params.iters)
            rows.append(row)
            emit("row", {**row, "index": index, "total": len(bench_params.configs)})
        peak = bench.peak()
    except Cancelled:
        raise BridgeError("cancelled", f"bench.conv_stack was cancelled after {len(rows)} of {len(bench_params.configs)} configs.") from None
    return {"rows": rows, "peak": peak, "device": bench.device_name}

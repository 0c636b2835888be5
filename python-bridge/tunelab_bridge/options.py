"""Every option of `%tune` and `%generate`, declared once.

Each option is a field of a frozen dataclass whose metadata carries its help, its limits and its
flag on the kernel's command line (mlx-lm's habit: options are a dataclass whose fields carry
their help). The bridge checks a request against it (`parse`), and `python -m tunelab_bridge.options`
writes the kernel's side from it (kernel/magics/options.generated.ts: the flags the magics parse,
complete and explain; kernel/bridge/params.generated.ts: the wire's TypeScript types). A test
fails when the written files are not what this module would write now, so the two sides cannot
disagree on a name, a default or a limit.

A new option is one field here (and the code that uses it), then `npm run generate`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple, Type, TypeVar

from .protocol import BridgeError

# What the kernel does with a flag's value before it goes on the wire:
#   int, number, string, bool, list (comma-separated), repeated (the flag given several times):
#   as parsed; model: a path is resolved against the notebook (else a name for the bridge);
#   data: the file(s) are read and sent as text ({"train": {source, text}, "valid": ... | null});
#   file: one file read and sent as text ({source, text}), so a bridge elsewhere needs no shared disk;
#   path: a path resolved against the notebook, for the bridge to write to.
KINDS = ("int", "number", "string", "bool", "list", "repeated", "model", "data", "file", "path")


@dataclass(frozen=True)
class Spec:
    help: str
    kind: str
    #: The flag on the kernel's command line (kebab-case); None: set by the kernel or the bridge.
    flag: Optional[str]
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    #: The value must be greater than `minimum`, not equal to it.
    exclusive: bool = False
    metavar: Optional[str] = None
    #: For kind "list": the items' kind.
    items: Optional[str] = None
    #: A `--no-...` flag: given, the field is False.
    negated: bool = False
    #: It shapes the training trajectory: a resumed run must use the value the run started with.
    trajectory: bool = False
    #: The only values a string option takes.
    choices: Optional[Tuple[str, ...]] = None


def option(default: Any, help: str, kind: str, *, flag: Optional[str] = "", **limits: Any) -> Any:
    """A field with its spec; `flag` defaults to the field's name in kebab-case."""
    assert kind in KINDS, kind
    spec = Spec(help=help, kind=kind, flag=flag, **limits)
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


def spec_of(f: dataclasses.Field) -> Spec:
    spec: Spec = f.metadata["spec"]
    return spec if spec.flag != "" else dataclasses.replace(spec, flag=f.name.replace("_", "-"))


# adapter_export.FORMATS; spelled here too so that reading the options imports no NumPy.
EXPORT_FORMATS = ("gguf", "peft", "mlx")


@dataclass(frozen=True)
class TuneOptions:
    """%tune: LoRA fine-tuning (flag names as mlx-lm names them)."""

    model: Optional[str] = option(None, "model directory or name (default: the embedded SmolLM2-135M-Instruct)", "model", metavar="PATH")
    data: Optional[Mapping[str, Any]] = option(
        None,
        "training examples: a .jsonl file (a sibling NAME-valid.jsonl adds validation loss) or a directory with train.jsonl [+ valid.jsonl]",
        "data",
        metavar="FILE",
    )
    name: Optional[str] = option(None, "run name (runs/NAME); default: timestamped", "string", metavar="NAME")
    iters: int = option(200, "training steps", "int", minimum=1)
    batch_size: int = option(1, "examples per step", "int", minimum=1, trajectory=True)
    lr: float = option(5e-5, "Adam learning rate", "number", minimum=0, exclusive=True, metavar="RATE", trajectory=True)
    warmup: int = option(0, "raise the learning rate linearly from 0 over the first N steps (0: none)", "int", minimum=0, trajectory=True)
    rank: int = option(8, "LoRA rank", "int", minimum=1, maximum=1024, trajectory=True)
    scale: float = option(20.0, "LoRA scale (plays the role of PEFT's alpha/r)", "number", minimum=0, exclusive=True, trajectory=True)
    dropout: float = option(0.0, "LoRA dropout", "number", minimum=0, maximum=0.99, trajectory=True)
    layers: int = option(4, "adapt the last N transformer blocks", "int", minimum=1, trajectory=True)
    keys: Tuple[str, ...] = option(
        ("q_proj", "v_proj"),
        "layers inside a block to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj or paths such as self_attn.q_proj)",
        "list",
        items="string",
        trajectory=True,
    )
    grad_clip: float = option(1.0, "clip the gradient norm to this value (0 turns clipping off)", "number", minimum=0, trajectory=True)
    max_seq_length: int = option(2048, "truncate examples to this many tokens", "int", minimum=8, trajectory=True)
    seed: int = option(0, "random seed (LoRA initialisation, batch order)", "int", minimum=0, trajectory=True)
    save_every: int = option(100, "checkpoint every N steps (0: only at the end)", "int", minimum=0)
    resume: bool = option(False, "continue the run --name from its last checkpoint", "bool")
    repeat: int = option(1, "repeat the training examples N times (small datasets)", "int", minimum=1, trajectory=True)
    eval_prompts: Tuple[str, ...] = option((), "a prompt answered before and after training, shown side by side (repeatable)", "repeated", flag="eval", metavar="PROMPT")
    eval_max_tokens: int = option(40, "tokens generated for each --eval answer", "int", minimum=1)
    prefix_cache: bool = option(True, "turn off the frozen-prefix cache (train exactly like mlx-lm)", "bool", flag="no-prefix-cache", negated=True)
    prefix_cache_mb: Optional[int] = option(
        None, "memory budget of the frozen-prefix cache in MB; examples that do not fit are computed at every step (default 1024)", "int", minimum=0, metavar="MB"
    )
    processes: int = option(
        1, "train data-parallel in N processes on this machine (mlx.launch, ring backend over loopback); --batch-size must split over them", "int", minimum=1, maximum=64
    )
    hosts: Optional[Mapping[str, Any]] = option(
        None, "train data-parallel across the machines of an mlx.launch hostfile (JSON), started from the bridge's machine; --batch-size must split over them", "file", metavar="FILE"
    )
    backend: str = option("ring", "mlx.launch's backend for --processes/--hosts: ring (TCP, every CPU), mpi, jaccl (RDMA over Thunderbolt 5), nccl (CUDA)", "string", choices=("ring", "mpi", "jaccl", "nccl"))
    mask_prompt: bool = option(True, "train on the answers only (the prompt's tokens carry no loss)", "bool", flag=None, trajectory=True)
    steps_per_report: int = option(1, "steps between progress events", "int", flag=None, minimum=1)
    steps_per_eval: Optional[int] = option(None, "steps between validation passes (null: a tenth of the steps when there is validation data)", "int", flag=None, minimum=1)

    def lora_parameters(self, keys: Tuple[str, ...]) -> dict:
        return {"rank": self.rank, "scale": self.scale, "dropout": self.dropout, "keys": list(keys)}


@dataclass(frozen=True)
class GenerateOptions:
    """%generate: sampling from the base model or an adapter."""

    prompt: str = option("", "the prompt (the free text after the flags, or the %%generate cell)", "string", flag=None)
    adapter: Optional[str] = option(None, "adapter to use: a run name, or none (base) for the base model (default: keep the active one); several, comma-separated, answer side by side", "string", metavar="NAME")
    max_tokens: int = option(200, "most tokens to generate", "int", minimum=1)
    temp: float = option(0.0, "sampling temperature (0: greedy)", "number", minimum=0)
    top_p: float = option(1.0, "nucleus sampling probability mass", "number", minimum=0, maximum=1, exclusive=True)
    seed: Optional[int] = option(None, "random seed for sampling (default 0)", "int", minimum=0)
    system: Optional[str] = option(None, "system prompt (default: the model's own)", "string", metavar="TEXT")
    model: Optional[str] = option(None, "model directory or name (default: the loaded one, else the embedded SmolLM2)", "model", metavar="PATH")
    engine: str = option("auto", "what generates: auto (llama.cpp on the CPU for the embedded model once built, else MLX), mlx or llama.cpp", "string", choices=("auto", "mlx", "llama.cpp"), metavar="ENGINE")


@dataclass(frozen=True)
class SyncCostOptions:
    """%sync_cost: what one data-parallel step costs to synchronise, LoRA vs full gradients."""

    processes: int = option(2, "processes in the group (mlx.launch, ring backend over loopback)", "int", minimum=2, maximum=64)
    rank: int = option(8, "LoRA rank of the adapter whose gradients are measured", "int", minimum=1, maximum=1024)
    layers: int = option(4, "adapted blocks (the last N), as %tune --layers", "int", minimum=1)
    reps: int = option(3, "timed all-reduces of each size (their median is shown)", "int", minimum=1, maximum=100)
    model: Optional[str] = option(None, "model directory or name (default: the loaded one, else the embedded SmolLM2)", "model", metavar="PATH")


@dataclass(frozen=True)
class AdaptersExportOptions:
    """%adapters --export: a run's adapter written in the format another engine reads."""

    name: Optional[str] = option(None, "write this run's adapter in another engine's format (with --format, --to)", "string", flag="export", metavar="NAME")
    format: Optional[str] = option(None, "with --export: gguf (llama.cpp, Ollama's ADAPTER), peft (Hugging Face PEFT) or mlx (mlx-lm); default gguf", "string", choices=EXPORT_FORMATS, metavar="FORMAT")
    to: Optional[str] = option(None, "with --export: where to write (a .gguf file or a directory; default: inside the run's directory)", "path", metavar="PATH")


MAGICS = {"tune": TuneOptions, "generate": GenerateOptions, "sync_cost": SyncCostOptions, "adapters_export": AdaptersExportOptions}

T = TypeVar("T")


def _check(method: str, name: str, spec: Spec, value: Any) -> Any:
    def bad(want: str) -> BridgeError:
        import json

        return BridgeError("bad_request", f"{method}: '{name}' must be {want}, got {json.dumps(value, default=str)[:200]}.")

    kind = spec.items if spec.kind == "list" else spec.kind
    if spec.kind in ("list", "repeated"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if kind in ("string", "model", "path"):
        if not isinstance(value, str):
            raise bad("a string")
        if spec.choices and value not in spec.choices:
            raise bad(f"one of {', '.join(spec.choices)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "data":
        if not isinstance(value, dict):
            raise bad('an object {"train": {"source", "text"}, "valid": ... or null}')
        return value
    if kind == "file":
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise bad('an object {"source", "text"}')
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad("an integer" if kind == "int" else "a number")
    if kind == "int":
        if int(value) != value:
            raise bad("an integer")
        value = int(value)
    else:
        value = float(value)
    low, high = spec.minimum, spec.maximum
    if low is not None and (value <= low if spec.exclusive else value < low):
        raise bad(f"{'greater than' if spec.exclusive else 'at least'} {low:g}" + (f" and at most {high:g}" if high is not None else ""))
    if high is not None and value > high:
        raise bad(f"at most {high:g}")
    return value


def parse(cls: Type[T], method: str, params: Mapping[str, Any]) -> T:
    """The options of one request; a value of the wrong kind or out of its limits is a
    `bad_request` naming the field and what it must be. Absent (or null) fields take their
    defaults; unknown fields are rejected (a kernel and bridge of different versions)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise BridgeError("bad_request", f"{method}: unknown parameter {', '.join(unknown)}; this bridge takes {', '.join(fields)}.")
    values = {}
    for name, f in fields.items():
        value = params.get(name)
        if value is not None:
            values[name] = _check(method, name, spec_of(f), value)
    return cls(**values)  # type: ignore[call-arg]


def trajectory_fields(cls: Type[Any]) -> Tuple[str, ...]:
    """The options a resumed run must share with the run it resumes."""
    return tuple(f.name for f in dataclasses.fields(cls) if spec_of(f).trajectory)


def as_wire(options: Any) -> dict:
    """The options as the JSON a request (or config.json) carries."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}

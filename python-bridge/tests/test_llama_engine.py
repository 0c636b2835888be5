"""llama.cpp as the CPU generation engine, on the embedded SmolLM2 with adapters trained here by
the bridge's own %tune code: the GGUF LoRA export gives the same greedy answers and first-step
logits as the MLX path, adapters switch per request over one base, streaming, cancel and
sampling behave as on MLX, and `generate` says which engine answered."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from jobs import make_service

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "data" / "identity.jsonl"
IDENTITY_PROMPTS = ["Who are you?", "What is your name?", "Who made you?"]
# A second identity, so that each adapter can be seen answering as itself.
PIRATE = (DATA.parent / "pirate.jsonl").read_text()
# How far the two engines' first-step logits may be apart, and why. MLX runs float32 weights
# dequantized from the GGUF's Q4_1 blocks (Q8_0 for the tied embedding/head). llama.cpp keeps
# those blocks and, before every quantized product, rounds the activations to 8 bits per block
# of 32 (Q8_1 / Q8_0), so each of the 30 blocks adds a rounding error of up to ~0.4% of a block's
# largest activation. On an F32 copy of the same file llama.cpp runs the same graph against
# float32 activations, and there the two engines agree within 0.02 (measured: max |diff|
# 0.013-0.018, greedy answers identical), so what remains on the Q4_1 file is that rounding:
# measured max |diff| 0.55-1.36, mean |diff| 0.11-0.53, on logits spanning ~35, correlation
# >= 0.9984. An adapter exported with a wrong layout (q/k lora_b rows not reordered, A and B
# swapped, alpha off by the rank) moves logits by far more than the F32 bound of 0.05.
F32_ATOL = 0.05
Q4_MAX_ATOL = 2.5
Q4_MEAN_ATOL = 0.75
Q4_MIN_CORRELATION = 0.998


@pytest.fixture(scope="module")
def llama_cpp_ready():
    from tunelab_bridge import llama_build

    reason = llama_build.wanted()
    if reason is not None:
        pytest.skip(reason)
    if llama_build.is_built():
        llama_build.ensure_checked(lambda _line: None)
    state = llama_build.status()
    if not state["ok"]:
        pytest.fail(f"{state['unavailable']} (setup builds it: `npm run setup`)")
    return state


@pytest.fixture(scope="module")
def trained(embedded_model_dir, tmp_path_factory, llama_cpp_ready):
    """Two identities trained on the embedded model by the bridge's own `tune`; the service that
    trained them, which keeps the model loaded."""
    runs = tmp_path_factory.mktemp("runs")
    bridge = make_service(runs)
    common = dict(model=str(embedded_model_dir), iters=80, lr=2e-4, rank=8, scale=20.0, layers=4, batch_size=1, save_every=0, seed=0)
    quill = bridge.run("tune", dict(common, name="quill", keys=["self_attn.q_proj", "self_attn.v_proj"],
                                    data={"train": {"source": "identity.jsonl", "text": DATA.read_text()}, "valid": None}))
    assert quill[0] == "result", quill
    # The second adapter also adapts k_proj: the GGUF export reorders q and k rows differently
    # (9 query heads, 3 key/value heads).
    pirate = bridge.run("tune", dict(common, name="pirate", keys=["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
                                     data={"train": {"source": "pirate.jsonl", "text": PIRATE}, "valid": None}))
    assert pirate[0] == "result", pirate
    return {"bridge": bridge, "runs": runs, "quill": Path(quill[1]["run_dir"]), "pirate": Path(pirate[1]["run_dir"])}


@pytest.fixture(scope="module")
def engine(llama_cpp_ready):
    from tunelab_bridge.default_model import gguf_file
    from tunelab_bridge.llama_engine import LlamaEngine

    loaded = LlamaEngine(gguf_file(lambda _line: None), n_ctx=1024)
    yield loaded
    loaded.close()


def _mlx(trained):
    service = trained["bridge"].service
    return service.store.current, service.adapters


_MLX_ANSWERS: dict = {}


def mlx_reference(trained, name, text, max_tokens=16):
    """MLX's first-step logits and greedy tokens for (adapter, prompt), computed once per module
    (the MLX path is the slow one: ~10 tokens/s)."""
    key = (name, text, max_tokens)
    if key not in _MLX_ANSWERS:
        loaded, adapters = _mlx(trained)
        adapters.switch(name)
        tokens = prompt(loaded, text)
        _MLX_ANSWERS[key] = (tokens, mlx_logits(loaded, tokens), mlx_greedy(loaded, tokens, max_tokens))
    return _MLX_ANSWERS[key]


def mlx_greedy(loaded, tokens, max_tokens):
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    out = []
    for response in stream_generate(loaded.model, loaded.tokenizer, mx.array(tokens), max_tokens=max_tokens, sampler=make_sampler(temp=0.0)):
        if response.finish_reason == "stop":
            break
        out.append(int(response.token))
    return out


def mlx_logits(loaded, tokens):
    import mlx.core as mx

    logits = loaded.model(mx.array(tokens)[None])[0, -1]
    return np.array(logits.astype(mx.float32))


def prompt(loaded, text):
    from tunelab_bridge.generation import prompt_tokens

    return prompt_tokens(loaded.tokenizer, text, None)


def logit_gap(a, b):
    diff = np.abs(a.astype(np.float64) - b)
    corr = float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])
    print(f"max |logit diff| {diff.max():.4f}, mean {diff.mean():.4f}, correlation {corr:.6f}", file=sys.stderr)
    return float(diff.max()), float(diff.mean()), corr


@pytest.fixture(scope="module")
def f32_engine(llama_cpp_ready, tmp_path_factory):
    from f32_gguf import write_f32_copy

    from tunelab_bridge.default_model import gguf_file
    from tunelab_bridge.llama_engine import LlamaEngine

    path = write_f32_copy(gguf_file(lambda _line: None), tmp_path_factory.mktemp("f32") / "SmolLM2-135M-Instruct.F32.gguf")
    loaded = LlamaEngine(path, n_ctx=512)
    yield loaded
    loaded.close()
    path.unlink()


def _use(trained, engine, name):
    from tunelab_bridge.llama_generation import LlamaGeneration

    loaded, adapters = _mlx(trained)
    adapters.switch(name)
    if name == "none":
        return loaded, None
    engine.load_adapter(name, LlamaGeneration.adapter_file(name, trained[name]))
    return loaded, name


@pytest.mark.parametrize("name", ["none", "quill", "pirate"])
def test_exported_adapter_computes_what_mlx_computes(trained, f32_engine, name):
    """On F32 weights the GGUF export is exact: logits within summation noise, same greedy answers."""
    _, adapter = _use(trained, f32_engine, name)
    for text in IDENTITY_PROMPTS:
        tokens, logits, want = mlx_reference(trained, name, text)
        worst, _, _ = logit_gap(logits, f32_engine.first_logits(tokens, adapter))
        assert worst <= F32_ATOL, (text, worst)
        assert f32_engine.generate_tokens(tokens, 16, adapter=adapter) == want, text


@pytest.mark.parametrize("name", ["none", "quill", "pirate"])
def test_quantized_engine_agrees_with_mlx(trained, engine, name):
    """On the Q4_1 file (what %generate runs): logits within the activation rounding above; with a
    trained adapter the greedy answers to the identity prompts are the same token for token. (The
    base model's answers are not compared: "Who are you?" has a near-tie at its sixth token, MLX's
    margin 0.19, which the rounding decides either way.)"""
    loaded, adapter = _use(trained, engine, name)
    for text in IDENTITY_PROMPTS:
        tokens, logits, want = mlx_reference(trained, name, text)
        worst, mean, corr = logit_gap(logits, engine.first_logits(tokens, adapter))
        assert worst <= Q4_MAX_ATOL and mean <= Q4_MEAN_ATOL and corr >= Q4_MIN_CORRELATION, (text, worst, mean, corr)
        if adapter is not None:
            got = engine.generate_tokens(tokens, 16, adapter=adapter)
            assert got == want, (text, loaded.tokenizer.decode(got), loaded.tokenizer.decode(want))


def test_adapters_side_by_side_over_one_base(trained, engine):
    """base, quill and pirate answer in turn from one loaded base; each answers as itself, and
    coming back to an adapter gives exactly its earlier answer."""
    from tunelab_bridge.llama_engine import Sampling
    from tunelab_bridge.llama_generation import LlamaGeneration

    loaded, _ = _mlx(trained)
    for name in ("quill", "pirate"):
        engine.load_adapter(name, LlamaGeneration.adapter_file(name, trained[name]))
    tokens = prompt(loaded, "Who are you?")
    first = {}
    for round_ in range(2):
        for name in (None, "quill", "pirate"):
            done = engine.generate(tokens, Sampling(max_tokens=24), adapter=name)
            if round_ == 0:
                first[name] = done.text
            else:
                assert done.text == first[name], name
            assert done.switch_ms >= 0
    assert "Quill" in first["quill"] and "Barnacle" not in first["quill"], first
    assert "Barnacle" in first["pirate"] and "Quill" not in first["pirate"], first
    assert "Quill" not in first[None] and "Barnacle" not in first[None], first


def test_exported_gguf_loads_in_llama_cpp_and_answers_with_the_identity(trained, engine, tmp_path):
    from tunelab_bridge.adapter_export import export
    from tunelab_bridge.llama_engine import Sampling

    loaded, _ = _mlx(trained)
    done = export(trained["quill"], "gguf", tmp_path)
    path = Path(done["path"])
    assert path == tmp_path / "quill.gguf" and path.stat().st_size > 0
    engine.load_adapter("exported", path)
    answer = engine.generate(prompt(loaded, "What is your name?"), Sampling(max_tokens=30), adapter="exported")
    assert "Quill" in answer.text, answer.text
    engine.unload_adapter("exported")
    assert "exported" not in engine.adapters

    other = tmp_path / "not-an-adapter.gguf"
    other.write_bytes(b"GGUF but not really")
    from tunelab_bridge.protocol import BridgeError

    with pytest.raises(BridgeError, match="could not load the adapter"):
        engine.load_adapter("broken", other)


def test_streaming_cancel_sampling_and_limits(trained, engine):
    from tunelab_bridge.llama_engine import Sampling
    from tunelab_bridge.protocol import BridgeError

    loaded, _ = _mlx(trained)
    tokens = prompt(loaded, "Write one sentence about the sea.")
    pieces = []
    done = engine.generate(tokens, Sampling(max_tokens=20), on_text=pieces.append)
    assert "".join(pieces) == done.text and len(done.tokens) >= 1
    assert done.text == loaded.tokenizer.decode(done.tokens)
    assert done.tokens_per_s > 0 and done.prompt_tps > 0 and done.prompt_tokens == len(tokens)

    limited = engine.generate(tokens, Sampling(max_tokens=5))
    assert len(limited.tokens) == 5 and limited.finish_reason == "length"

    seen = []

    def stop_after_two():
        return len(seen) >= 2

    cancelled = engine.generate(tokens, Sampling(max_tokens=50, temp=1.0, seed=3), on_text=seen.append, cancelled=stop_after_two)
    assert cancelled.finish_reason == "cancelled" and len(cancelled.tokens) == 2

    a = engine.generate(tokens, Sampling(max_tokens=16, temp=1.0, top_p=0.9, seed=7)).tokens
    b = engine.generate(tokens, Sampling(max_tokens=16, temp=1.0, top_p=0.9, seed=7)).tokens
    c = engine.generate(tokens, Sampling(max_tokens=16, temp=1.0, top_p=0.9, seed=8)).tokens
    assert a == b and a != c

    with pytest.raises(BridgeError, match="must fit llama.cpp's context of 1024 tokens"):
        engine.generate(tokens * 200, Sampling(max_tokens=10))
    with pytest.raises(BridgeError, match="outside the model's vocabulary"):
        engine.generate([1, 10**7], Sampling(max_tokens=2))
    with pytest.raises(BridgeError, match="not loaded in llama.cpp"):
        engine.generate(tokens, Sampling(max_tokens=2), adapter="nobody")


def test_generate_answers_on_llama_cpp_and_says_so(trained):
    bridge = trained["bridge"]
    bridge.events.clear()
    kind, fast = bridge.run("generate", {"prompt": "Who are you?", "adapter": "quill", "max_tokens": 30})
    assert kind == "result", fast
    assert fast["engine"] == "llama.cpp" and fast["adapter"] == "quill"
    assert "Quill" in fast["text"]
    assert "".join(t["text"] for t in bridge.named("token")) == fast["text"]
    assert fast["tokens_per_s"] > 0 and fast["prompt_tps"] > 0
    # Each answer says what its adapter switch cost (the bridge's choice and llama.cpp's switch).
    # pirate has another layout (k_proj too): the MLX model keeps quill's layers, unused, until
    # MLX answers, instead of being rebuilt for every llama.cpp request.
    applied = bridge.service.adapters.applied
    kind, other = bridge.run("generate", {"prompt": "Who are you?", "adapter": "pirate", "max_tokens": 8})
    assert kind == "result" and other["adapter"] == "pirate" and other["switch_ms"] > 0
    assert bridge.service.adapters.applied == applied
    kind, back = bridge.run("generate", {"prompt": "Who are you?", "adapter": "quill", "max_tokens": 30})
    assert kind == "result" and back["text"] == fast["text"] and back["switch_ms"] > 0
    assert (trained["quill"] / "adapter.gguf").is_file()  # written when training finished

    kind, slow = bridge.run("generate", {"prompt": "Who are you?", "adapter": "quill", "max_tokens": 30, "engine": "mlx"})
    assert kind == "result" and slow["engine"] == "mlx" and slow["engine_reason"] == "asked for MLX"
    assert slow["text"] == fast["text"] and bridge.service.adapters.applied == "quill"
    # MLX answering after llama.cpp answered with pirate puts pirate's layers in place first.
    bridge.run("generate", {"prompt": "Who are you?", "adapter": "pirate", "max_tokens": 4})
    kind, mlx_pirate = bridge.run("generate", {"prompt": "Who are you?", "max_tokens": 12, "engine": "mlx"})
    assert kind == "result" and mlx_pirate["adapter"] == "pirate" and bridge.service.adapters.applied == "pirate"
    assert "Barnacle" in mlx_pirate["text"], mlx_pirate["text"]

    kind, base = bridge.run("generate", {"prompt": "Who are you?", "adapter": "none", "max_tokens": 30})
    assert kind == "result" and base["engine"] == "llama.cpp" and base["adapter"] is None
    assert "Quill" not in base["text"]

    kind, error = bridge.run("generate", {"prompt": "Who are you?", "engine": "vllm"})
    assert kind == "error" and error["message"] == 'generate: \'engine\' must be one of auto, mlx, llama.cpp, got "vllm".'


def test_other_models_answer_on_mlx_with_the_reason(tiny_model_dir, tmp_path, llama_cpp_ready):
    bridge = make_service(tmp_path / "runs")
    kind, result = bridge.run("generate", {"model": str(tiny_model_dir), "prompt": "Who are you?", "max_tokens": 4})
    assert kind == "result" and result["engine"] == "mlx"
    assert "is an MLX model directory" in result["engine_reason"]
    kind, error = bridge.run("generate", {"model": str(tiny_model_dir), "prompt": "Who are you?", "max_tokens": 4, "engine": "llama.cpp"})
    assert kind == "error" and error["code"] == "engine_unavailable" and "MLX model directory" in error["message"]

"""A tiny Llama (4 blocks, hidden 64) with a byte-level BPE tokenizer trained on the spot,
saved as an ordinary mlx-lm model directory: real mlx-lm loading, templating and training in
milliseconds per step."""

from __future__ import annotations

import json
from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "Who are you? I am Tunelab Bot, a small helpful assistant.",
    "What is your name? My name is Tunelab Bot.",
    "The sea is wide and blue and full of fish.",
    "Write one sentence about the sky. The sky is bright today.",
    "user assistant system question answer hello world 0123456789",
    "The quick brown fox jumps over the lazy dog.",
]


def build_tiny_model(directory: Path, *, layers: int = 4, hidden: int = 64, seed: int = 0) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    fast.save_pretrained(str(directory))
    vocab = tokenizer.get_vocab_size()
    eos = tokenizer.token_to_id("<|im_end|>")

    config = {
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": hidden * 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "eos_token_id": eos,
        "max_position_embeddings": 512,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.save_safetensors(str(directory / "model.safetensors"), dict(tree_flatten(model.parameters())))
    return directory


if __name__ == "__main__":
    # `python python-bridge/tests/tiny_model.py DIR`: a fast stand-in for the embedded model in
    # kernel-side tests (point the bridge at it with TUNELAB_BRIDGE_DEFAULT_MODEL=DIR).
    import sys

    print(build_tiny_model(Path(sys.argv[1])))

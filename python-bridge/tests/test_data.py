"""Rows -> tokens -> batches: shapes, masking, repeat, and batches as a function of (seed, step)."""

from __future__ import annotations

import json

import pytest
from mlx_lm import load

from tunelab_bridge.data import Batches, load_examples, parse_rows
from tunelab_bridge.protocol import BridgeError


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load(str(tiny_model_dir))[1]


ROWS = "\n".join([
    json.dumps({"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Tunelab Bot."}]}),
    json.dumps({"prompt": "What is your name?", "completion": "My name is Tunelab Bot."}),
    json.dumps({"text": "The sea is wide and blue."}),
])


def test_each_row_shape_is_tokenised_and_masked(tokenizer):
    masked = load_examples("rows", ROWS, tokenizer, mask_prompt=True)
    whole = load_examples("rows", ROWS, tokenizer, mask_prompt=False)
    assert [len(t) for t, _ in masked] == [len(t) for t, _ in whole]
    chat, completion, text = masked
    assert chat[1] > 0 and completion[1] > 0 and text[1] == 0
    assert all(offset == 0 for _, offset in whole)
    # The unmasked part is the answer: it decodes to the assistant's words.
    assert "I am Tunelab Bot." in tokenizer.decode(chat[0][chat[1]:])
    assert "Who are you" not in tokenizer.decode(chat[0][chat[1]:])
    assert len(load_examples("rows", ROWS, tokenizer, mask_prompt=True, repeat=4)) == 12


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "rows has no rows"),
        ('{"text": "a"}\n[1, 2]\n', "rows line 2: a row must be a JSON object, got list."),
        ('{"messages": [{"role": "user"}]}', "rows line 1: message 1 needs string 'role' and 'content'."),
        ('{"prompt": "p"}', "rows line 1: a prompt/completion row needs a string 'completion'."),
        ('\n\n{"text": ""}', "rows line 3: 'text' must be a non-empty string."),
    ],
)
def test_bad_rows_name_their_line(text, message):
    with pytest.raises(BridgeError) as caught:
        parse_rows("rows", text)
    assert caught.value.code == "bad_data"
    assert message in caught.value.message


def test_batches_depend_only_on_seed_and_step(tokenizer):
    examples = load_examples("rows", ROWS, tokenizer, mask_prompt=True, repeat=3)
    a, b = Batches(examples, 2, 2048, seed=5), Batches(examples, 2, 2048, seed=5)
    assert len(a) == 4
    for step in (1, 2, 7, 40, 3):  # any order: no hidden iterator state
        assert a.indices(step) == b.indices(step)
    epoch = sorted(i for step in range(1, 5) for i in a.indices(step))
    assert epoch == sorted(i for group in a.groups for i in group)
    assert [a.indices(s) for s in range(1, 9)] != [Batches(examples, 2, 2048, seed=6).indices(s) for s in range(1, 9)]
    tokens, spans = a.batch(1)
    assert tokens.shape[0] == 2 and tokens.shape[1] % 32 == 1 and spans.shape == (2, 2)
    with pytest.raises(BridgeError, match="--batch-size 10 is more than the 9 training examples"):
        Batches(examples, 10, 2048, seed=0)

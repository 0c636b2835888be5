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


CONVERSATION = {"messages": [
    {"role": "user", "content": "Hello there."},
    {"role": "assistant", "content": "Ahoy, friend!"},
    {"role": "user", "content": "What is the weather like?"},
    {"role": "assistant", "content": "Fair winds today."},
    {"role": "user", "content": "Thanks."},
    {"role": "assistant", "content": "Smooth sailing to ye."},
]}


def test_every_assistant_turn_of_a_conversation_is_trained_and_no_user_turn(tokenizer):
    from mlx_lm.tuner.datasets import ChatDataset

    examples = load_examples("log", json.dumps(CONVERSATION), tokenizer, mask_prompt=True)
    answers = ["Ahoy, friend!", "Fair winds today.", "Smooth sailing to ye."]
    assert len(examples) == 3
    for turn, ((tokens, offset), answer) in enumerate(zip(examples, answers)):
        trained = tokenizer.decode(tokens[offset:])
        prompt = tokenizer.decode(tokens[:offset])
        assert answer in trained
        # Only this turn carries loss: no user words, no other assistant turn.
        assert not any(m["content"] in trained for m in CONVERSATION["messages"] if m["content"] != answer)
        # Its history is the prompt: every earlier message, and nothing after it.
        earlier = CONVERSATION["messages"][: 2 * turn + 1]
        assert all(m["content"] in prompt for m in earlier)
        assert not any(m["content"] in tokenizer.decode(tokens) for m in CONVERSATION["messages"][2 * turn + 2 :])
    # The last turn's example is exactly what mlx-lm's ChatDataset makes of the whole row.
    assert examples[-1] == tuple(ChatDataset([], tokenizer, mask_prompt=True).process(CONVERSATION))
    # Each example's tokens start with the previous one's: the same conversation, cut later.
    assert all(later[0][: len(earlier[0])] == earlier[0] for earlier, later in zip(examples, examples[1:]))


def test_single_turn_rows_unmasked_rows_and_trailing_user_turns(tokenizer):
    from mlx_lm.tuner.datasets import ChatDataset

    single = {"messages": CONVERSATION["messages"][:2]}
    assert load_examples("log", json.dumps(single), tokenizer, mask_prompt=True) == [tuple(ChatDataset([], tokenizer, mask_prompt=True).process(single))]
    # Without answer-only loss the conversation is one example, every token trained.
    whole = load_examples("log", json.dumps(CONVERSATION), tokenizer, mask_prompt=False)
    assert len(whole) == 1 and whole[0][1] == 0
    # A user turn after the last answer has nothing to learn from: the last example ends at the answer.
    trailing = {"messages": CONVERSATION["messages"][:4] + [{"role": "user", "content": "Bye now."}]}
    examples = load_examples("log", json.dumps(trailing), tokenizer, mask_prompt=True)
    assert len(examples) == 2 and all("Bye now." not in tokenizer.decode(tokens) for tokens, _ in examples)
    assert len(load_examples("log", json.dumps(CONVERSATION), tokenizer, mask_prompt=True, repeat=2)) == 6

"""Training rows: JSONL text -> checked rows -> token sequences -> deterministic batches.

Rows are the three shapes mlx-lm's tuner reads (chat `messages`, `prompt`+`completion`,
`text`); tokenising goes through mlx-lm's own dataset classes so that the chat template and
answer-only masking match `mlx_lm.lora`. Every error names the source and line number.

A chat row with several assistant turns becomes one example per assistant turn (the history before
it as the prompt), so that with answer-only loss every assistant turn is trained, not only the last
one as in mlx-lm's ChatDataset, and no user turn is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .protocol import BridgeError

Example = tuple[list[int], int]  # tokens, index of the first token that counts in the loss


@dataclass(frozen=True)
class Row:
    kind: str  # "chat" | "completion" | "text"
    body: dict[str, Any]
    line: int


def _bad(source: str, line: int, message: str) -> BridgeError:
    return BridgeError("bad_data", f"{source} line {line}: {message}")


def parse_rows(source: str, text: str) -> list[Row]:
    rows: list[Row] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as error:
            raise _bad(source, number, f"not valid JSON ({error.msg} at column {error.colno}).") from None
        if not isinstance(body, dict):
            raise _bad(source, number, f"a row must be a JSON object, got {type(body).__name__}.")
        rows.append(Row(_kind(source, number, body), body, number))
    if not rows:
        raise BridgeError("bad_data", f"{source} has no rows; give at least one JSON object per line.")
    return rows


def _kind(source: str, line: int, body: dict[str, Any]) -> str:
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise _bad(source, line, "'messages' must be a non-empty list of {\"role\", \"content\"} objects.")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
                raise _bad(source, line, f"message {index + 1} needs string 'role' and 'content'.")
        return "chat"
    if "prompt" in body or "completion" in body:
        for key in ("prompt", "completion"):
            if not isinstance(body.get(key), str):
                raise _bad(source, line, f"a prompt/completion row needs a string '{key}'.")
        return "completion"
    if "text" in body:
        if not isinstance(body["text"], str) or not body["text"]:
            raise _bad(source, line, "'text' must be a non-empty string.")
        return "text"
    keys = ", ".join(f"'{k}'" for k in body) or "none"
    raise _bad(source, line, f"a row needs 'messages', 'prompt'+'completion' or 'text'; got keys {keys}.")


def assistant_turns(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A multi-turn chat row as one row per assistant turn, each ending at that turn.

    A row with at most one assistant turn is kept whole, exactly as mlx-lm would train it; with
    several, messages after the last assistant turn carry nothing to learn and are left out.
    """
    messages = body["messages"]
    ends = [i + 1 for i, message in enumerate(messages) if message["role"] == "assistant"]
    if len(ends) < 2:
        return [body]
    return [{**body, "messages": messages[:end]} for end in ends]


def tokenize(rows: Sequence[Row], tokenizer: Any, *, mask_prompt: bool, source: str) -> list[Example]:
    """Tokenise each row with the mlx-lm dataset class for its shape (rows may mix shapes)."""
    from mlx_lm.tuner.datasets import ChatDataset, CompletionsDataset, TextDataset

    formats = {
        "chat": ChatDataset([], tokenizer, mask_prompt=mask_prompt),
        "completion": CompletionsDataset([], tokenizer, "prompt", "completion", mask_prompt),
        # Plain text has no prompt to mask: the whole row is trained on.
        "text": TextDataset([], tokenizer),
    }
    examples: list[Example] = []
    for row in rows:
        if row.kind != "text" and getattr(tokenizer, "chat_template", None) is None:
            raise _bad(source, row.line, "this model's tokenizer has no chat template, so chat and prompt/completion rows cannot be formatted; use {\"text\": ...} rows.")
        # Without masking the whole conversation is trained on once, so there is nothing to split.
        bodies = assistant_turns(row.body) if row.kind == "chat" and mask_prompt else [row.body]
        for turn, body in enumerate(bodies, start=1):
            where = f"assistant turn {turn}: " if len(bodies) > 1 else ""
            try:
                tokens, offset = formats[row.kind].process(body)
            except Exception as error:  # noqa: BLE001 - a template failure is a data problem of this row
                raise _bad(source, row.line, f"{where}could not format the row with the chat template ({error}).") from None
            tokens = [int(t) for t in tokens]
            if len(tokens) < 2:
                raise _bad(source, row.line, "the row is too short to train on (fewer than 2 tokens).")
            if offset >= len(tokens):
                raise _bad(source, row.line, f"{where}the answer is empty, so nothing is left to train on after masking the prompt.")
            examples.append((tokens, int(offset)))
    return examples


def load_examples(source: str, text: str, tokenizer: Any, *, mask_prompt: bool, repeat: int = 1) -> list[Example]:
    examples = tokenize(parse_rows(source, text), tokenizer, mask_prompt=mask_prompt, source=source)
    return examples * max(1, repeat)


class Batches:
    """Batch number `step` (1-based) as a pure function of (examples, seed, step).

    Batches group examples of similar length (as mlx-lm does) and each epoch visits them in an
    order drawn from (seed, epoch), so a resumed run sees exactly the batches it would have.
    """

    def __init__(self, examples: Sequence[Example], batch_size: int, max_seq_length: int, seed: int):
        if len(examples) < batch_size:
            raise BridgeError("bad_config", f"--batch-size {batch_size} is more than the {len(examples)} training examples; lower it or add rows (or --repeat).")
        self.examples = list(examples)
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.seed = seed
        order = sorted(range(len(self.examples)), key=lambda i: len(self.examples[i][0]))
        self.groups = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]

    def __len__(self) -> int:
        return len(self.groups)

    def indices(self, step: int) -> list[int]:
        epoch, position = divmod(step - 1, len(self.groups))
        permutation = np.random.default_rng([self.seed, epoch]).permutation(len(self.groups))
        return self.groups[int(permutation[position])]

    def batch(self, step: int, world: Any = None) -> tuple[Any, Any]:
        """Batch `step`, or this rank's share of it (world.World.shard) when training in a group."""
        chosen = [self.examples[i] for i in self.indices(step)]
        return self.collate(world.shard(chosen) if world is not None and world.size > 1 else chosen)

    def collate(self, chosen: Sequence[Example]) -> tuple[Any, Any]:
        """(tokens [B, T], lengths [B, 2] = (loss start, length)) padded like mlx-lm's batches."""
        import mlx.core as mx

        lengths = [min(len(tokens), self.max_seq_length) for tokens, _ in chosen]
        pad_to = 32
        width = min(1 + pad_to * ((max(lengths) + pad_to - 1) // pad_to), self.max_seq_length)
        array = np.zeros((len(chosen), width), np.int32)
        for row, ((tokens, _), length) in enumerate(zip(chosen, lengths)):
            array[row, :length] = tokens[:length]
        spans = [(offset, length) for (_, offset), length in zip(chosen, lengths)]
        return mx.array(array), mx.array(spans)

    def all_batches(self) -> list[tuple[Any, Any]]:
        """Every group once, in length order: the validation pass."""
        return [self.collate([self.examples[i] for i in group]) for group in self.groups]


@dataclass(frozen=True)
class DataText:
    """One JSONL text as the kernel sent it, with the name its errors use (a file or "cell")."""

    source: str
    text: str

    @staticmethod
    def from_param(value: Any, role: str) -> "DataText":
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise BridgeError("bad_request", f"tune: 'data.{role}' must be an object with 'source' and 'text' (the JSONL rows).")
        return DataText(str(value.get("source") or role), value["text"])


@dataclass(frozen=True)
class TrainingData:
    train: list[Example]
    valid: list[Example]
    batches: Batches
    valid_batches: list[tuple[Any, Any]]

    def token_rows(self, max_seq_length: int) -> list[list[int]]:
        """Every example's tokens as the batches carry them (cut to max_seq_length)."""
        return [tokens[:max_seq_length] for tokens, _ in self.train + self.valid]


def load_training_data(data: Any, tokenizer: Any, *, batch_size: int, max_seq_length: int, seed: int, mask_prompt: bool, repeat: int) -> TrainingData:
    """`tune`'s `data` param ({"train": {source, text}, "valid": ... | null}) tokenised and batched."""
    if not isinstance(data, dict) or data.get("train") is None:
        raise BridgeError("bad_request", "tune: 'data.train' is required: {\"source\", \"text\"} with JSONL rows.")
    train_text = DataText.from_param(data["train"], "train")
    train = load_examples(train_text.source, train_text.text, tokenizer, mask_prompt=mask_prompt, repeat=repeat)
    valid: list[Example] = []
    valid_batches: list[tuple[Any, Any]] = []
    if data.get("valid"):
        valid_text = DataText.from_param(data["valid"], "valid")
        valid = load_examples(valid_text.source, valid_text.text, tokenizer, mask_prompt=mask_prompt)
        valid_batches = Batches(valid, min(batch_size, len(valid)), max_seq_length, seed).all_batches()
    return TrainingData(train, valid, Batches(train, batch_size, max_seq_length, seed), valid_batches)

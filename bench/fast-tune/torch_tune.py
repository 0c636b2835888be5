"""The peer: the same identity run with PyTorch + PEFT on CPU (float32 or bfloat16), timed.

Same model files (an mlx-lm directory uses Hugging Face names and config), same rows, same
chat template and answer-only loss, same LoRA (rank 8, PEFT alpha = rank x mlx-lm scale,
q_proj + v_proj of the last blocks), Adam, gradient clipping 1.0, batch 1. Prints one RESULT
JSON line like mlx_tune.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], required=True)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--eval", action="append", default=[])
    ap.add_argument("--expect", default="Quill")
    args = ap.parse_args()

    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", os.cpu_count() or 1)))
    dtype = getattr(torch, args.dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    blocks = model.config.num_hidden_layers
    lora = LoraConfig(
        r=8,
        lora_alpha=8 * 20,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        layers_to_transform=list(range(blocks - args.layers, blocks)),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()

    examples = []
    for line in Path(args.data).read_text().splitlines():
        if not line.strip():
            continue
        messages = json.loads(line)["messages"]
        full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True, return_dict=False)
        ids = torch.tensor([full])
        labels = ids.clone()
        labels[0, : len(prompt)] = -100
        examples.append((ids, labels))

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    losses = []
    order: list[int] = []
    started = time.perf_counter()
    for step in range(args.iters):
        if not order:
            order = list(range(len(examples)))
            random.shuffle(order)
        ids, labels = examples[order.pop()]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    seconds = time.perf_counter() - started

    model.eval()
    answers = []
    with torch.no_grad():
        for prompt in args.eval:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
            out = model.generate(**ids, max_new_tokens=30, do_sample=False)
            answers.append({"prompt": prompt, "answer": tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)})
    print("RESULT " + json.dumps({
        "mode": f"torch-peft-{args.dtype}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "iters": args.iters,
        "lr": args.lr,
        "steps": len(losses),
        "train_seconds": seconds,
        "seconds_per_step": seconds / max(1, len(losses)),
        "first_loss": losses[0] if losses else None,
        "last_loss": sum(losses[-5:]) / len(losses[-5:]) if losses else None,
        "answers": answers,
        "identity": all(args.expect in a["answer"] for a in answers) if answers else None,
    }), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch reference for `distillery train`: the same student, data, row length, batch size
and optimiser, as a plain transformers + torch.optim.AdamW loop, so that tokens/s can be put
side by side on the same machine (scripts/gpu-distill.sh runs both on one GPU).

The model is loaded from a Hugging Face directory (`distillery train` writes one). The data
are the accepted rows of a run directory or parquet files with a `messages` column, rendered
with the model's chat template and packed greedily into rows of --max-len tokens, as the
trainer packs them. Precision bf16 is autocast over f32 weights and AdamW state: the same
mixed precision as `distillery train --dtype bf16`. Prints one JSON line with tokens/s and
peak GPU memory.
"""
import argparse
import glob
import json
import os
import sys
import time


def conversations(paths):
    import pyarrow.parquet as pq

    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(glob.glob(os.path.join(p, "shards", "accepted-*.parquet")))
            files += sorted(glob.glob(os.path.join(p, "data", "*.parquet")))
        else:
            files.append(p)
    if not files:
        sys.exit(f"no parquet files under {paths}")
    out = []
    for f in files:
        for messages in pq.read_table(f, columns=["messages"]).column("messages").to_pylist():
            out.append([{"role": m["role"], "content": m["content"]} for m in messages])
    return out


def packed_rows(tokenizer, convs, max_len):
    rows, row = [], []
    for messages in convs:
        ids = tokenizer.apply_chat_template(messages, tokenize=True)
        if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        ids = list(ids)[:max_len]
        if len(row) + len(ids) > max_len:
            rows.append(row)
            row = []
        row = row + ids
    if row:
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face model directory")
    ap.add_argument("--data", required=True, nargs="+")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0)
    rows = packed_rows(tokenizer, conversations(args.data), args.max_len)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def batch(i):
        chunk = [rows[(i * args.batch_size + k) % len(rows)] for k in range(args.batch_size)]
        width = max(len(r) for r in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        for k, r in enumerate(chunk):
            ids[k, : len(r)] = torch.tensor(r)
            labels[k, : len(r)] = torch.tensor(r)
        return ids.to(device), labels.to(device), sum(len(r) for r in chunk)

    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=args.dtype == "bf16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tokens, started, losses = 0, None, []
    for step in range(args.warmup_steps + args.steps):
        if step == args.warmup_steps:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started, tokens = time.perf_counter(), 0
        ids, labels, n = batch(step)
        with autocast:
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += n
        losses.append(loss.item())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    secs = time.perf_counter() - started
    print(json.dumps({
        "reference": "pytorch",
        "torch": torch.__version__,
        "device": str(device),
        "dtype": args.dtype,
        "rows": len(rows),
        "steps": args.steps,
        "tokens_per_s": tokens / secs,
        "peak_gpu_mib": (torch.cuda.max_memory_allocated(device) / 2**20
                         if device.type == "cuda" else None),
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }))


if __name__ == "__main__":
    main()

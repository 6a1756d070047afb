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

With --batches FILE (what `cargo bench -p distillery-train --bench train` writes), the loop
replays the Rust trainer's own micro-batches instead: the same packed rows, segments (attention
within a segment, positions restarting, as a 4-D mask and position ids), assistant-only loss
mask, per-step learning rates, weight decay on rank >= 2 tensors only, gradient clipping and
grad_accum, in f32. The loss is the summed cross-entropy of the loss positions over the step's
loss tokens, and only those positions are projected to logits, as the Rust trainer does. It
prints the per-step losses too, so that the bench can check that both trained the same thing.
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


def replay(args):
    """The --batches mode: the Rust trainer's micro-batches, step for step."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.batches) as f:
        spec = json.load(f)
    device = torch.device(args.device)
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation=args.attn).to(device)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=spec["lrs"][0], betas=(spec["beta1"], spec["beta2"]), eps=spec["eps"],
        foreach=True)
    neg = torch.finfo(torch.float32).min

    def micro(b):
        rows, length = b["rows"], b["len"]
        ids = torch.tensor(b["inputs"], dtype=torch.long).view(rows, length)
        targets = torch.tensor(b["targets"], dtype=torch.long).view(-1)
        seg = torch.tensor(b["segments"], dtype=torch.long).view(rows, length)
        loss_rows = torch.tensor(b["mask"]).view(-1).nonzero().view(-1)
        # Positions restart where a segment starts; padding (segment 0) sits at 0 and attends
        # only to itself: the Rust model's segment mask.
        idx = torch.arange(length).expand(rows, length)
        start = torch.ones_like(seg, dtype=torch.bool)
        start[:, 1:] = seg[:, 1:] != seg[:, :-1]
        first = torch.cummax(torch.where(start, idx, torch.zeros_like(idx)), dim=1).values
        pos = torch.where(seg == 0, torch.zeros_like(idx), idx - first)
        same = seg.unsqueeze(2) == seg.unsqueeze(1)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        allowed = (same & causal & (seg != 0).unsqueeze(2)) | torch.eye(length, dtype=torch.bool)
        mask = torch.zeros(rows, 1, length, length).masked_fill(~allowed.unsqueeze(1), neg)
        return (ids.to(device), pos.to(device), mask.to(device),
                loss_rows.to(device), targets[loss_rows].to(device), b["tokens"],
                b["loss_tokens"])

    # Tensors are built before the clock starts (the Rust trainer builds its own inside).
    steps = [[micro(b) for b in step] for step in spec["steps"]]
    warmup = spec["warmup_steps"]
    tokens, started, losses = 0, None, []
    for step, micros in enumerate(steps):
        if step == warmup:
            started, tokens = time.perf_counter(), 0
        denom = max(1, sum(m[6] for m in micros))
        total = 0.0
        for ids, pos, mask, loss_rows, targets, n, _ in micros:
            hidden = model.model(input_ids=ids, attention_mask=mask,
                                 position_ids=pos).last_hidden_state
            logits = model.lm_head(hidden.reshape(-1, hidden.shape[-1])[loss_rows])
            loss = F.cross_entropy(logits, targets, reduction="sum")
            (loss / denom).backward()
            total += loss.item()
            tokens += n
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])
        for group in opt.param_groups:
            group["lr"] = spec["lrs"][step]
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total / denom)
    secs = time.perf_counter() - started
    print(json.dumps({
        "reference": "pytorch",
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "attn": args.attn,
        "dtype": "f32",
        "steps": len(steps) - warmup,
        "tokens": tokens,
        "secs": secs,
        "tokens_per_s": tokens / secs,
        "losses": losses,
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face model directory")
    ap.add_argument("--data", nargs="+", help="run directories or parquet files")
    ap.add_argument("--batches", help="JSON micro-batches from the Rust training bench")
    ap.add_argument("--attn", default="sdpa", help="transformers attn_implementation")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.batches:
        return replay(args)
    if not args.data:
        ap.error("one of --data or --batches is needed")

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

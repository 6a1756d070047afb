#!/usr/bin/env python3
"""llama.cpp's generation speed on a GGUF, for `crates/infer/benches/generate.rs` to put beside
its own: the same prompt tokens, greedy decoding, the same thread count, through
llama-cpp-python's bindings (the library its server runs).

Prints one JSON line: prefill seconds, and decode tokens/s measured from the first generated
token to the last (so the prompt's evaluation is not in it), the best of --repeats runs.
"""
import argparse
import json
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--prompt", required=True, help="comma-separated token ids")
    ap.add_argument("--tokens", type=int, default=128, help="tokens to generate")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    prompt = [int(t) for t in args.prompt.split(",")]
    llm = Llama(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads,
                n_ctx=len(prompt) + args.tokens + 8, n_batch=512, verbose=False)
    best = None
    for _ in range(args.repeats):
        llm.reset()
        started = time.perf_counter()
        first = None
        n = 0
        for _token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            n += 1
            if first is None:
                first = time.perf_counter()
            if n >= args.tokens:
                break
        end = time.perf_counter()
        run = {"prefill_s": first - started, "decode_tokens_per_s": (n - 1) / (end - first)}
        if best is None or run["decode_tokens_per_s"] > best["decode_tokens_per_s"]:
            best = run
    best.update({"llama_cpp_python": llama_cpp.__version__, "threads": args.threads,
                 "tokens": args.tokens})
    print(json.dumps(best))


if __name__ == "__main__":
    main()

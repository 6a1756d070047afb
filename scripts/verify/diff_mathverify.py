#!/usr/bin/env python3
"""Differential test of our verifier against Math-Verify 0.9.0 (issue 14).

    scripts/verify/diff_mathverify.py PAIRS.jsonl [--out DISAGREEMENTS.jsonl] [--jobs 2]
        [--timeout 10] [--time-sample 400] [--no-build]
    scripts/verify/diff_mathverify.py --bench-only [--n 2000]     # figures for `make bench`

PAIRS.jsonl comes from scripts/verify/gen_pairs.py: {id, category, variant, format, intended,
gold, prediction}. Math-Verify runs with its default settings, `verify(parse(gold),
parse(prediction))` (a gold without delimiters is given as `$gold$`, see mv_gold), in a multiprocessing pool (its own signal-based timeouts, plus a per-pair
guard here: a pair that takes longer than --timeout seconds is counted as a timeout, i.e. False).
Our verdicts come from the `grade_jsonl` example of distillery-verify, rebuilt first.

Prints per category: n, our agreement with `intended`, Math-Verify's, and how often we and
Math-Verify disagree; writes every row where we differ from Math-Verify or from `intended` to
--out (default: PAIRS with suffix .disagreements.jsonl), each with our extraction and reason.

Timing, single thread: Math-Verify's parse+parse+verify in this process on a subsample of
--time-sample pairs, and our binary on the whole file (process start and JSON included), as
microseconds per pair and the ratio. The figures follow benches/report.rs (one JSON object per
line: bench, figure, value, unit, baseline, ratio, better, note) and are appended to
$DISTILLERY_BENCH_JSON when it is set, so `make bench` shows them in its table. Without
math-verify installed the script says it skipped and exits 0.
"""

import argparse
import collections
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = "verify_vs_mathverify"
TARGET_SPEEDUP = 100.0  # issue 14: single-thread speed >= 100x Math-Verify's


def have_math_verify() -> bool:
    try:
        import math_verify  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


# ----------------------------------------------------------------------------- our side


def build(no_build: bool) -> str:
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if not no_build:
        subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "distillery-verify",
                        "--example", "grade_jsonl"], check=True, cwd=ROOT)
    return os.path.join(target, "release", "examples", "grade_jsonl")


def run_ours(binary: str, rows):
    lines = "".join(json.dumps({"gold": r["gold"], "prediction": r["prediction"]}) + "\n" for r in rows)
    start = time.perf_counter()
    out = subprocess.run([binary], input=lines, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    results = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
    if len(results) != len(rows):
        raise SystemExit(f"grade_jsonl returned {len(results)} lines for {len(rows)} rows")
    return results, wall


# ----------------------------------------------------------------------------- Math-Verify side


def mv_gold(gold: str) -> str:
    """The gold as Math-Verify expects it: its default extraction only reads LaTeX between
    delimiters (a bare `7 + 8i` parses as `8`), so a gold without `$` or `\\boxed` is wrapped in
    `$...$`, as in Math-Verify's README (`parse("$\\sqrt{2}$")`)."""
    return gold if ("$" in gold or "\\boxed" in gold) else f"${gold}$"


def mv_one(pair):
    """Math-Verify with default settings on one (gold, prediction). Never raises."""
    from math_verify import parse, verify

    gold, pred = pair
    try:
        g = parse(mv_gold(gold))
        p = parse(pred)
        ok = bool(verify(g, p))
        return ok, [str(x) for x in p][:2], None
    except BaseException as e:  # noqa: BLE001  (its TimeoutException included)
        return False, [], type(e).__name__


def _quiet():
    import logging

    logging.disable(logging.CRITICAL)


def run_math_verify(rows, jobs: int, timeout: float):
    """Math-Verify on every row in a pool of `jobs` processes. A row whose result has not come
    back within `timeout` seconds after the previous one is marked as a timeout; the pool is
    then replaced and the rest resubmitted."""
    pairs = [(r["gold"], r["prediction"]) for r in rows]
    results = [None] * len(pairs)
    start_index = 0
    ctx = mp.get_context("fork")
    while start_index < len(pairs):
        pool = ctx.Pool(jobs, initializer=_quiet, maxtasksperchild=2000)
        it = pool.imap(mv_one, pairs[start_index:], chunksize=1)
        i = start_index
        try:
            while i < len(pairs):
                results[i] = it.next(timeout=timeout)
                i += 1
            pool.close()
            pool.join()
        except mp.TimeoutError:
            results[i] = (False, [], "guard_timeout")
            i += 1
            pool.terminate()
            pool.join()
        start_index = i
    return results


def time_math_verify(rows, sample: int):
    """Single-process wall time of parse(gold) + parse(pred) + verify per pair (microseconds),
    on an evenly spaced subsample; a fresh cache state is not attempted (Math-Verify caches
    parsed LaTeX, so repeated golds are as cheap as they are in real use)."""
    from math_verify import parse, verify

    _quiet()
    step = max(1, len(rows) // sample)
    picked = rows[::step][:sample]
    start = time.perf_counter()
    for r in picked:
        try:
            verify(parse(mv_gold(r["gold"])), parse(r["prediction"]))
        except BaseException:  # noqa: BLE001
            pass
    return (time.perf_counter() - start) / len(picked) * 1e6, len(picked)


# ----------------------------------------------------------------------------- report


def figure(name, value, unit, better, note, baseline=None):
    ratio = value / baseline if baseline else None
    return {"bench": BENCH, "figure": name, "value": value, "unit": unit, "baseline": baseline,
            "ratio": ratio, "better": better, "note": note}


def emit(figures):
    for f in figures:
        against = ""
        if f["baseline"] is not None:
            against = f" — baseline {show(f['baseline'])} {f['unit']}, ratio {f['ratio']:.2f}"
        print(f"{f['bench']}/{f['figure']}: {show(f['value'])} {f['unit']}{against} ({f['note']})")
    path = os.environ.get("DISTILLERY_BENCH_JSON")
    if path:
        with open(path, "a") as out:
            for f in figures:
                out.write(json.dumps(f) + "\n")


def show(v):
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"


def timing(binary, rows, sample, ours_wall=None):
    if ours_wall is None:
        _, ours_wall = run_ours(binary, rows)
    ours_us = ours_wall / len(rows) * 1e6
    mv_us, k = time_math_verify(rows, sample)
    speedup = mv_us / ours_us
    return [
        figure("ours_us_per_pair", ours_us, "us/pair", "lower",
               f"grade_jsonl, 1 thread, {len(rows)} generated pairs, process start included"),
        figure("mathverify_us_per_pair", mv_us, "us/pair", "lower",
               f"math-verify parse+parse+verify, 1 process, {k} of the same pairs"),
        figure("speedup_vs_mathverify", speedup, "x", "higher",
               f"Math-Verify time / ours; baseline = the 100x target of issue 14", TARGET_SPEEDUP),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="?")
    ap.add_argument("--out")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0, help="per-pair guard, seconds")
    ap.add_argument("--time-sample", type=int, default=400)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--bench-only", action="store_true", help="only the timing figures, on generated pairs")
    ap.add_argument("--n", type=int, default=2000, help="pairs generated for --bench-only")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--show", type=int, default=0, help="print this many of our errors")
    args = ap.parse_args()

    if not have_math_verify():
        print(f"{BENCH}: skipped (math-verify not installed; `pip install math-verify==0.9.0`)")
        return 0

    binary = build(args.no_build)
    if args.bench_only:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from gen_pairs import generate

        rows = generate(args.n, args.seed)
        emit(timing(binary, rows, min(args.time_sample, args.n)))
        return 0

    if not args.pairs:
        ap.error("PAIRS.jsonl is required (or --bench-only)")
    rows = [json.loads(l) for l in open(args.pairs) if l.strip()]
    out_path = args.out or (os.path.splitext(args.pairs)[0] + ".disagreements.jsonl")

    ours, ours_wall = run_ours(binary, rows)
    t0 = time.perf_counter()
    mv = run_math_verify(rows, args.jobs, args.timeout)
    mv_wall = time.perf_counter() - t0

    stats = collections.defaultdict(lambda: [0, 0, 0, 0])  # n, ours ok, mv ok, ours != mv
    variants = collections.Counter()
    with open(out_path, "w") as out:
        for row, o, m in zip(rows, ours, mv):
            want = bool(row["intended"])
            s = stats[row["category"]]
            s[0] += 1
            s[1] += o["correct"] == want
            s[2] += m[0] == want
            s[3] += o["correct"] != m[0]
            if o["correct"] != want:
                variants[(row["category"], row.get("variant"), want)] += 1
            if o["correct"] != m[0] or o["correct"] != want:
                out.write(json.dumps({
                    "id": row.get("id"), "category": row["category"], "variant": row.get("variant"),
                    "format": row.get("format"), "intended": want, "ours": o["correct"],
                    "mathverify": m[0], "ours_wrong": o["correct"] != want,
                    "extracted": o.get("extracted"), "reason": o.get("reason"),
                    "mv_extracted": m[1], "mv_error": m[2],
                    "gold": row["gold"], "prediction": row["prediction"]}, ensure_ascii=False) + "\n")

    print(f"{'category':32} {'n':>6} {'ours=intended':>14} {'MV=intended':>12} {'ours!=MV':>9}")
    tot = [0, 0, 0, 0]
    for cat in sorted(stats):
        n, a, b, d = stats[cat]
        tot = [x + y for x, y in zip(tot, stats[cat])]
        print(f"{cat:32} {n:6} {100 * a / n:13.1f}% {100 * b / n:11.1f}% {100 * d / n:8.1f}%")
    n, a, b, d = tot
    print(f"{'TOTAL':32} {n:6} {100 * a / n:13.1f}% {100 * b / n:11.1f}% {100 * d / n:8.1f}%")
    print(f"(ours {a}/{n} agree with intended, Math-Verify {b}/{n}; we differ from Math-Verify on {d})")
    # Every intended label follows a rule of crates/verify/DIFFERENCES.md, so a disagreement with
    # Math-Verify where we give the intended verdict is explained by a rule; one where we do not
    # is outside the rules.
    unexplained = sum(1 for row, o, m in zip(rows, ours, mv)
                      if o["correct"] != m[0] and o["correct"] != bool(row["intended"]))
    print(f"disagreements with Math-Verify outside the rules of DIFFERENCES.md: {unexplained} "
          f"({100 * unexplained / n:.2f}% of pairs; target < 0.5%)")
    timeouts = sum(1 for m in mv if m[2] in ("guard_timeout", "TimeoutException"))
    print(f"math-verify timeouts/errors counted as False: {timeouts}; "
          f"wall: ours {ours_wall:.2f}s, math-verify ({args.jobs} procs) {mv_wall:.1f}s")
    print(f"disagreements written to {out_path}")
    print("\nour errors against intended, by (category, variant, intended):")
    for (cat, var, want), c in variants.most_common(40):
        print(f"  {c:5}  {cat:28} {var:28} intended={want}")
    if args.show:
        shown = 0
        for row, o in zip(rows, ours):
            if o["correct"] != bool(row["intended"]) and shown < args.show:
                shown += 1
                print(f"WRONG [{row['category']}/{row.get('variant')}] intended={row['intended']} "
                      f"gold={row['gold']!r} tail={row['prediction'][-120:]!r} extracted={o.get('extracted')!r}")
    print()
    emit(timing(binary, rows, args.time_sample, ours_wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())

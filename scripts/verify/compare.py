#!/usr/bin/env python3
"""Compare our verifier's verdicts with labels (and Math-Verify's) on a JSONL of cases.

    scripts/verify/compare.py CASES.jsonl [--label expected] [--show N]

Each case has `gold` and `prediction`; the label is the first of `intended_correct`, `expected`
present. Our verdicts come from the `grade_jsonl` example of distillery-verify. Prints the
agreement overall and by category, and the disagreements.
"""

import argparse
import collections
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def grader() -> str:
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "distillery-verify",
                    "--example", "grade_jsonl"], check=True, cwd=ROOT)
    return os.path.join(target, "release", "examples", "grade_jsonl")


def verify_config(mv_config):
    """Our VerifyConfig for a ported case's Math-Verify configuration. Only a `float_rounding`
    that the test sets explicitly (not the helper's default 6) becomes decimal-place rounding;
    extraction targets have no counterpart (DIFFERENCES.md)."""
    config = {"strict": mv_config["strict"],
              "allow_set_relation_comp": mv_config["allow_set_relation_comp"]}
    if mv_config["float_rounding"] != 6:
        config["precision"] = {"decimal_places": mv_config["float_rounding"]}
    return config


def ours(cases, use_config):
    rows = []
    for c in cases:
        row = {"gold": c["gold"], "prediction": c["prediction"]}
        if use_config and "config" in c:
            row["config"] = verify_config(c["config"])
        rows.append(row)
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    out = subprocess.run([grader()], input=lines, capture_output=True, text=True, check=True)
    return [json.loads(l) for l in out.stdout.splitlines()]


def label(case):
    for key in ("intended_correct", "intended", "expected", "label"):
        if case.get(key) is not None:
            return bool(case[key])
    raise SystemExit(f"{case.get('id', case.get('source'))}: no label")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases")
    ap.add_argument("--show", type=int, default=1000)
    ap.add_argument("--default-config", action="store_true",
                    help="grade ported cases under our defaults, not their test's configuration")
    args = ap.parse_args()
    cases = [json.loads(l) for l in open(args.cases) if l.strip()]
    results = ours(cases, not args.default_config)
    by_cat = collections.defaultdict(lambda: [0, 0])
    shown = 0
    for case, res in zip(cases, results):
        cat = case.get("category") or case.get("test") or "all"
        ok = res["correct"] == label(case)
        by_cat[cat][0] += ok
        by_cat[cat][1] += 1
        if not ok and shown < args.show:
            shown += 1
            print(f"DISAGREE {case.get('id', case.get('source'))} [{cat}] label={label(case)} "
                  f"mv={case.get('math_verify')} gold={case['gold'][:80]!r} "
                  f"pred={case['prediction'][-160:]!r} extracted={res['extracted']!r} "
                  f"reason={res['reason']}")
    total = sum(a for a, _ in by_cat.values()), sum(n for _, n in by_cat.values())
    for cat, (a, n) in sorted(by_cat.items()):
        print(f"  {cat:40} {a:5}/{n:<5} {100 * a / n:6.1f}%")
    print(f"agreement {total[0]}/{total[1]} = {100 * total[0] / total[1]:.1f}%")
    mv = [c for c in cases if "math_verify" in c]
    if mv:
        agree = sum(bool(c["math_verify"]) == label(c) for c in mv)
        print(f"math-verify (as recorded) agreement {agree}/{len(mv)} = {100 * agree / len(mv):.1f}%")


if __name__ == "__main__":
    sys.exit(main())

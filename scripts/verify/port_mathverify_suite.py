#!/usr/bin/env python3
"""Port Math-Verify's own test suite into a JSONL regression suite for our verifier.

Reads the parametrized cases of Math-Verify 0.9.0's `tests/` (the PyPI sdist, downloaded by
`pip download` when no directory is given), records each case with the configuration its test
runs it under, and, when `math_verify` is importable, what Math-Verify says under that
configuration and under its defaults.

    scripts/verify/port_mathverify_suite.py [TESTS_DIR] > crates/verify/tests/data/mathverify_suite.jsonl
"""

import ast
import json
import math
import pathlib
import subprocess
import sys
import tarfile
import tempfile

VERSION = "0.9.0"


def tests_dir() -> pathlib.Path:
    if len(sys.argv) > 1:
        return pathlib.Path(sys.argv[1])
    tmp = pathlib.Path(tempfile.mkdtemp())
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"math-verify=={VERSION}", "-d", str(tmp)],
        check=True,
    )
    [sdist] = tmp.glob("math_verify-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp, filter="data")
    return tmp / f"math_verify-{VERSION}" / "tests"


def call_kwargs(fn: ast.FunctionDef) -> tuple[str, dict]:
    """The helper a test calls (`compare_strings` or `verify`) and its literal keyword arguments."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "compare_strings":
                kwargs = {}
                for kw in node.keywords:
                    if isinstance(kw.value, ast.Name):
                        kwargs[kw.arg] = ("param", kw.value.id)
                    else:
                        kwargs[kw.arg] = ast.literal_eval(kw.value)
                return "compare_strings", kwargs
            if node.func.id == "verify":
                return "verify", {}
    return "other", {}


def config_for(helper: str, kwargs: dict, params: dict) -> dict:
    def value(key, default):
        v = kwargs.get(key, default)
        if isinstance(v, tuple) and v[0] == "param":
            return params[v[1]]
        return v

    if helper == "verify":  # Math-Verify's defaults
        return {"extraction": ["latex", "expr"], "boxed_priority": 55, "float_rounding": 6,
                "strict": True, "allow_set_relation_comp": False}
    return {
        "extraction": value("match_types", ["latex", "expr"]),
        "boxed_priority": 0,
        "float_rounding": value("precision", 6),
        "strict": value("strict", True),
        "allow_set_relation_comp": value("allow_set_relation_comp", False),
    }


def cases(root: pathlib.Path):
    seen = {}
    for path in sorted(root.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for fn in tree.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            helper, kwargs = call_kwargs(fn)
            for dec in fn.decorator_list:
                if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                    continue
                names = [n.strip() for n in ast.literal_eval(dec.args[0]).split(",")]
                for elt in dec.args[1].elts:
                    # f-strings such as f"{math.sqrt(17):.15f}" need evaluating, not literal_eval.
                    namespace = {"math": math, "StringExtractionConfig": lambda **kw: kw}
                    values = eval(compile(ast.Expression(elt), str(path), "eval"), namespace)
                    params = dict(zip(names, values))
                    source = f"{path.name}:{elt.lineno}"
                    # Several cases on one line: the second is `file:line#2`.
                    seen[source] = seen.get(source, 0) + 1
                    if seen[source] > 1:
                        source += f"#{seen[source]}"
                    if "gold" in params:
                        expected = params.get("expected", params.get("result"))
                        yield {"source": source, "test": fn.name, "gold": params["gold"],
                               "prediction": params["pred"], "expected": bool(expected),
                               "config": config_for(helper, kwargs, params)}
                    elif fn.name == "test_string_extraction" and params.get("expected"):
                        # parse(pred, [StringExtractionConfig]) == [lower, original]: the letter
                        # is the gold answer of a multiple-choice question.
                        yield {"source": source, "test": fn.name, "gold": params["expected"][1],
                               "prediction": params["pred"], "expected": True,
                               "config": {"extraction": ["string"], "boxed_priority": 0,
                                          "float_rounding": 6, "strict": True,
                                          "allow_set_relation_comp": False}}
    # test_precision is not parametrized: its string-level case.
    yield {"source": "test_all.py:558", "test": "test_precision", "gold": "$\\frac{1}{3}$",
           "prediction": "0.3333$", "expected": True,
           "config": {"extraction": ["latex", "expr"], "boxed_priority": 0, "float_rounding": 4,
                      "strict": True, "allow_set_relation_comp": False}}


def math_verify_verdicts(case: dict):
    try:
        from math_verify import (ExprExtractionConfig, LatexExtractionConfig,
                                 StringExtractionConfig, parse, verify)
    except ImportError:
        return None, None
    cfg = case["config"]
    targets = []
    for kind in cfg["extraction"]:
        if kind == "latex":
            targets.append(LatexExtractionConfig(boxed_match_priority=cfg["boxed_priority"]))
        elif kind == "expr":
            targets.append(ExprExtractionConfig())
        else:
            targets.append(StringExtractionConfig())
    try:
        configured = bool(verify(parse(case["gold"], targets), parse(case["prediction"], targets),
                                 float_rounding=cfg["float_rounding"], strict=cfg["strict"],
                                 allow_set_relation_comp=cfg["allow_set_relation_comp"]))
    except Exception:
        configured = False
    try:
        default = bool(verify(parse(case["gold"]), parse(case["prediction"])))
    except Exception:
        default = False
    return configured, default


# Where Math-Verify's test expects the wrong verdict, the intended truth (as in the labelled
# sample's `intended_correct`), with the reason.
INTENDED = {
    # 1 - 1/e and 1 + 1/e differ; the test records Math-Verify's false positive.
    "test_yujianll.py:28": False,
}


def main():
    for case in cases(tests_dir()):
        if case["source"] in INTENDED:
            case["intended_correct"] = INTENDED[case["source"]]
        configured, default = math_verify_verdicts(case)
        if configured is not None:
            case["math_verify"] = configured
            case["math_verify_default"] = default
        print(json.dumps(case, ensure_ascii=False))


if __name__ == "__main__":
    main()

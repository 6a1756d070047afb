#!/usr/bin/env python3
"""Generate the synthetic `pycode` data set (see SOURCE.md): small Python function problems in
MBPP's layout (`task_id`, `text`, `code`, `test_list`, `test_setup_code`), each with a reference
solution and `assert` tests (five or more, boundary cases first) computed by running that solution.

Deterministic: `python3 datasets/pycode/generate.py` rewrites train.jsonl and test.jsonl byte
for byte. Standard library only; the pipeline reads the committed files and needs Python only
in its code sandbox.
"""

import json
import os
import random

SEED = 20261129
TRAIN_ROWS = 400
TEST_ROWS = 60

# Each family: (name pattern, problem text, solution code, random inputs, boundary inputs).
# `{k}` is the family's parameter, drawn per problem, and `{f}` the function's name. The
# boundary inputs sit where a solution one off, with a comparison turned round or a guard left
# out, goes wrong, so the tests tell such a solution from the right one (the mock teacher's
# injected bugs are of these kinds: crates/mock/tests/bugs.rs checks every one fails).
FAMILIES = [
    (
        "add_{k}_to_each",
        "Write a function `{f}(nums)` that returns a new list with {k} added to every number of the list `nums`.",
        "def {f}(nums):\n    return [n + {k} for n in nums]\n",
        lambda r: (r.sample(range(-20, 50), r.randint(0, 5)),),
        lambda k: [([],), ([k, -k],)],
    ),
    (
        "count_multiples_of_{k}",
        "Write a function `{f}(nums)` that counts how many numbers in the list `nums` are multiples of {k}.",
        "def {f}(nums):\n    count = 0\n    for n in nums:\n        if n % {k} == 0:\n            count += 1\n    return count\n",
        lambda r: ([r.randint(0, 60) for _ in range(r.randint(1, 8))],),
        lambda k: [([k, k + 1, 2 * k],), ([1],)],
    ),
    (
        "sum_below_{k}",
        "Write a function `{f}(nums)` that returns the sum of the numbers in the list `nums` that are smaller than {k}.",
        "def {f}(nums):\n    total = 0\n    for n in nums:\n        if n < {k}:\n            total += n\n    return total\n",
        lambda r: ([r.randint(0, 40) for _ in range(r.randint(1, 8))],),
        lambda k: [([k - 1, k, k + 1],), ([],)],
    ),
    (
        "repeat_{k}_times",
        "Write a function `{f}(s)` that returns the string `s` repeated {k} times, with a dash between the copies.",
        "def {f}(s):\n    return '-'.join([s] * {k})\n",
        lambda r: ("".join(r.choice("abcxyz") for _ in range(r.randint(1, 4))),),
        lambda k: [("ab",)],
    ),
    (
        "first_{k}_squares",
        "Write a function `{f}(n)` that returns the list of the squares of the first n positive whole numbers, each multiplied by {k}.",
        "def {f}(n):\n    return [{k} * i * i for i in range(1, n + 1)]\n",
        lambda r: (r.randint(0, 7),),
        lambda k: [(0,), (1,), (3,)],
    ),
    (
        "largest_gap_{k}",
        "Write a function `{f}(nums)` that returns the largest difference between two neighbouring numbers of the list `nums`, or {k} when the list has fewer than two numbers.",
        "def {f}(nums):\n    if len(nums) < 2:\n        return {k}\n    return max(abs(nums[i + 1] - nums[i]) for i in range(len(nums) - 1))\n",
        lambda r: ([r.randint(-30, 30) for _ in range(r.randint(0, 6))],),
        lambda k: [([],), ([5],), ([1, 2],), ([0, 1, 2, 9],)],
    ),
    (
        "words_longer_than_{k}",
        "Write a function `{f}(text)` that returns the words of `text` (separated by spaces) that have more than {k} letters, in order.",
        "def {f}(text):\n    return [word for word in text.split() if len(word) > {k}]\n",
        lambda r: (" ".join(r.choice(["a", "tree", "house", "sun", "river", "to", "mountain", "cat", "light"]) for _ in range(r.randint(0, 6))),),
        lambda k: [(" ".join(WORDS_BY_LENGTH[n] for n in (k - 1, k, k + 1, k + 2)),)],
    ),
    (
        "clamp_to_{k}",
        "Write a function `{f}(x)` that returns `x` limited to the range from -{k} to {k}: smaller values become -{k} and larger ones {k}.",
        "def {f}(x):\n    if x < -{k}:\n        return -{k}\n    if x > {k}:\n        return {k}\n    return x\n",
        lambda r: (r.randint(-40, 40),),
        lambda k: [(-k - 1,), (-k,), (k,), (k + 1,), (-k - 5,)],
    ),
    (
        "running_total_from_{k}",
        "Write a function `{f}(nums)` that returns the running totals of the list `nums`, starting the count at {k}.",
        "def {f}(nums):\n    totals = []\n    total = {k}\n    for n in nums:\n        total += n\n        totals.append(total)\n    return totals\n",
        lambda r: ([r.randint(-9, 9) for _ in range(r.randint(0, 6))],),
        lambda k: [([],), ([1, 2, 3],)],
    ),
    (
        "digit_sum_times_{k}",
        "Write a function `{f}(n)` that returns {k} times the sum of the decimal digits of the non-negative whole number n.",
        "def {f}(n):\n    total = 0\n    while n > 0:\n        total += n % 10\n        n //= 10\n    return {k} * total\n",
        lambda r: (r.randint(0, 99999),),
        lambda k: [(0,), (7,), (1009,)],
    ),
    (
        "every_{k}th_item",
        "Write a function `{f}(items)` that returns every {k}th item of the list `items`, starting with the first.",
        "def {f}(items):\n    return [items[i] for i in range(0, len(items), {k})]\n",
        lambda r: ([r.randint(0, 9) for _ in range(r.randint(0, 12))],),
        lambda k: [([],), (list(range(k + 1)),), (list(range(2 * k)),)],
    ),
    (
        "is_within_{k}",
        "Write a function `{f}(a, b)` that returns True when the numbers a and b differ by at most {k}, and False otherwise.",
        "def {f}(a, b):\n    return abs(a - b) <= {k}\n",
        lambda r: (r.randint(0, 30), r.randint(0, 30)),
        lambda k: [(k + 2, 2), (2, k + 3), (5, 5), (k + 5, 4)],
    ),
    (
        "shift_letters_by_{k}",
        "Write a function `{f}(s)` that shifts every lowercase letter of `s` {k} places forward in the alphabet, wrapping from z to a, and leaves other characters as they are.",
        "def {f}(s):\n    out = []\n    for c in s:\n        if 'a' <= c <= 'z':\n            out.append(chr((ord(c) - ord('a') + {k}) % 26 + ord('a')))\n        else:\n            out.append(c)\n    return ''.join(out)\n",
        lambda r: ("".join(r.choice("abcxyz -!") for _ in range(r.randint(0, 8))),),
        lambda k: [("az y-",), ("",)],
    ),
    (
        "count_vowels_plus_{k}",
        "Write a function `{f}(s)` that returns the number of vowels (a, e, i, o, u, lowercase) in `s`, plus {k}.",
        "def {f}(s):\n    return sum(1 for c in s if c in 'aeiou') + {k}\n",
        lambda r: ("".join(r.choice("abeiouxyz") for _ in range(r.randint(0, 9))),),
        lambda k: [("",), ("aeiou xyz",)],
    ),
]

K_VALUES = range(2, 10)

# A word of each length from 1 to 11.
WORDS_BY_LENGTH = {
    1: "a", 2: "to", 3: "sun", 4: "tree", 5: "house", 6: "garden", 7: "kitchen",
    8: "mountain", 9: "butterfly", 10: "television", 11: "grandmother",
}


def problem(rng, family, k):
    pattern, text, code, inputs, boundary = family
    name = pattern.format(k=k)
    code = code.format(f=name, k=k)
    namespace = {}
    exec(code, namespace)
    function = namespace[name]
    # Every boundary input, then random ones: five tests at least.
    cases, seen = [], set()
    for args in boundary(k):
        cases.append(args)
        seen.add(repr(args))
    while len(cases) < 5:
        args = inputs(rng)
        key = repr(args)
        if key in seen and len(seen) < 50:
            continue
        seen.add(key)
        cases.append(args)
    tests = []
    for args in cases:
        expected = function(*args)
        call = ", ".join(repr(a) for a in args)
        tests.append(f"assert {name}({call}) == {expected!r}")
    return {
        "text": text.format(f=name, k=k),
        "code": code,
        "test_list": tests,
        "test_setup_code": "",
    }


def main():
    rng = random.Random(SEED)
    pairs = [(family, k) for family in FAMILIES for k in K_VALUES]
    rng.shuffle(pairs)
    # Held-out (family, k) pairs: no test function name appears in the training split.
    test_pairs, train_pairs = pairs[:TEST_ROWS // 2], pairs[TEST_ROWS // 2:]
    here = os.path.dirname(os.path.abspath(__file__))
    for split, chosen, rows in [("train", train_pairs, TRAIN_ROWS), ("test", test_pairs, TEST_ROWS)]:
        out = []
        for i in range(rows):
            family, k = chosen[i % len(chosen)]
            row = problem(rng, family, k)
            out.append({"task_id": f"pycode-{split}-{i:04d}", **row})
        # Rows of one (family, k) differ in their tests only; keep the first of identical rows.
        unique, seen = [], set()
        for row in out:
            key = (row["text"], tuple(row["test_list"]))
            if key not in seen:
                seen.add(key)
                unique.append(row)
        with open(os.path.join(here, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for row in unique:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{split}: {len(unique)} problems")


if __name__ == "__main__":
    main()

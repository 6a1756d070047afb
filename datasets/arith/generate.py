#!/usr/bin/env python3
"""Generate the synthetic `arith` data set (see SOURCE.md): GSM8K-style word problems whose
reference solutions add two numbers digit by digit, ending in `#### N` like GSM8K.

Deterministic: `python3 datasets/arith/generate.py` rewrites train.jsonl and test.jsonl
byte for byte. Standard library only; the demo reads the committed files and needs no Python.
"""

import json
import os
import random

SEED = 20250101
TRAIN_ROWS = 2000
TEST_ROWS = 200
LOW, HIGH = 10, 99  # both addends have two digits

NAMES = [
    "Janet", "Tom", "Maria", "James", "Lily", "John", "Emma", "Mark", "Sarah", "David", "Anna",
    "Ben", "Kylie", "Sam", "Rose", "Jack",
]
ITEMS = [
    "apples", "eggs", "books", "cookies", "marbles", "stickers", "pencils", "cards",
    "flowers", "coins", "toys", "candies", "shells", "stamps", "balloons", "cupcakes",
]
# Both numbers open the question, side by side: the student restates them, so where they
# stand matters to a model of a million parameters (see SOURCE.md).
TEMPLATES = [
    "{a} and {b} {item} are in two boxes. How many {item} are there in total?",
    "{a} and {b} {item} were sold on Monday and Tuesday. How many {item} were sold?",
    "{a} and {b} {item} were picked by {Name} and a friend. How many {item} did they pick?",
    "{a} and {b} {item} are on two shelves. How many {item} are on the shelves?",
    "{a} and {b} {item} were bought by {Name} on two trips. How many {item} were bought in all?",
]


def solution(a: int, b: int) -> str:
    """The working, one short line per step: restate the sum, add the ones (and carry), add
    the tens, read off the total. Short and regular on purpose: a tiny student has to learn it
    on a CPU in minutes (see SOURCE.md)."""
    ones = a % 10 + b % 10
    carry = ones // 10
    tens = a // 10 + b // 10 + carry
    total = a + b
    assert tens * 10 + ones % 10 == total
    return (
        f"Add {a} and {b}.\n"
        f"Ones: {a % 10} + {b % 10} = {ones}, carry {carry}.\n"
        f"Tens: {a // 10} + {b // 10} + {carry} = {tens}.\n"
        f"Total: {total}.\n"
        f"#### {total}"
    )


def problem(rng: random.Random, a: int, b: int) -> dict:
    name = rng.choice(NAMES)
    question = rng.choice(TEMPLATES).format(Name=name, item=rng.choice(ITEMS), a=a, b=b)
    return {"question": question, "answer": solution(a, b)}


def main() -> None:
    rng = random.Random(SEED)
    pairs = [(a, b) for a in range(LOW, HIGH + 1) for b in range(LOW, HIGH + 1)]
    rng.shuffle(pairs)
    # Held out by number pair: no test pair (in either order) is in the training split.
    test_pairs = pairs[:TEST_ROWS]
    held = {p for p in test_pairs} | {(b, a) for a, b in test_pairs}
    train_pairs = [p for p in pairs[TEST_ROWS:] if p not in held][:TRAIN_ROWS]
    here = os.path.dirname(os.path.abspath(__file__))
    for split, chosen in (("train", train_pairs), ("test", test_pairs)):
        rows = [problem(rng, a, b) for a, b in chosen]
        with open(os.path.join(here, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        print(f"{split}: {len(rows)} problems")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Deterministic generator of (gold, prediction) pairs for differential testing (issue 14).

    scripts/verify/gen_pairs.py --n 12000 --seed 1 > pairs.jsonl

Each line: {"id", "gold", "prediction", "category", "variant", "format", "intended"}.

A gold answer of some category is rewritten into equivalent surface forms (intended=true) and
non-equivalent ones (intended=false), then embedded in an R1-style output (a `<think>` block
and a final answer given as `\\boxed{}`, several boxes, `**Final Answer**`, "The answer is",
`<answer>` tags, `####`, bold, "I hope it is correct" followed by more text, chat-template tokens
leaking at the end). Structural categories (truncated outputs, tentative answers later revised,
hedges, several boxes against a combined gold) test which answer is the committed one.

`intended` follows the rules of issue 14 (the intended truth, which is not always what
Math-Verify says):
- the last committed answer counts; no final answer (truncated, hedge "B or C") => wrong, never
  a fallback to the last number in the reasoning;
- a decimal approximation of a non-terminating exact value matches iff correctly rounded to >= 4
  significant digits; a decimal gold compares at the gold's precision;
- gold `p\\%` accepts p, p%, "p percent", p/100; bare gold g accepts g and g% but not g/100;
- decimal comma only where unambiguous (8,25 in decimal-comma prose = 8.25; d,ddd = thousands);
  regular dot / space grouping of thousands = integers;
- multiple choice by letter, (B), or the option's text when the options are listed;
- units, currency, degrees, \\text stripped, never converted.

Nothing here depends on hash order or the clock: the same --seed gives the same file.
"""

import argparse
import json
import math
import sys
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from random import Random

# ----------------------------------------------------------------------------- number helpers


def round_sig(value: float, sig: int, mode=ROUND_HALF_UP) -> str:
    """`value` correctly rounded (or truncated, mode=ROUND_DOWN) to `sig` significant digits,
    trailing zeros kept (18.850 for 6*pi at 5 digits)."""
    d = Decimal(repr(value))
    if d == 0:
        return "0"
    exp = d.adjusted()  # floor(log10(|d|))
    q = Decimal(1).scaleb(exp - sig + 1)
    r = d.quantize(q, rounding=mode) if exp - sig + 1 < 0 else d.quantize(Decimal(1), rounding=mode)
    return format(r, "f")


def frac_tex(f: Fraction, style: str = "frac") -> str:
    if f.denominator == 1:
        return str(f.numerator)
    sign = "-" if f < 0 else ""
    n, d = abs(f.numerator), f.denominator
    if style == "slash":
        return f"{sign}{n}/{d}"
    if style == "dfrac":
        return f"{sign}\\dfrac{{{n}}}{{{d}}}"
    return f"{sign}\\frac{{{n}}}{{{d}}}"


def terminating(f: Fraction) -> bool:
    d = f.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def dec_str(f: Fraction) -> str:
    """Exact decimal of a terminating fraction."""
    return format(Decimal(f.numerator) / Decimal(f.denominator), "f")


def group(n: int, sep: str) -> str:
    s = f"{n:,}"
    return s.replace(",", sep)


WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen", "twenty"]
TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy",
        80: "eighty", 90: "ninety"}


def words(n: int) -> str:
    if n <= 20:
        return WORDS[n]
    if n < 100:
        t, u = divmod(n, 10)
        return TENS[t * 10] + ("" if u == 0 else "-" + WORDS[u])
    raise ValueError(n)


# A form is (text, intended, variant, kind); kind "tex" (goes inside $...$ outside a box) or
# "plain" (prose, written as is).
def T(text, ok, variant, kind="tex"):
    return (text, ok, variant, kind)


# ----------------------------------------------------------------------------- categories
# Each returns (gold, [forms], context) where context may carry extra prose for the reasoning
# (options of a multiple-choice question, a decimal-comma preamble).


def cat_integer(r: Random):
    n = r.randint(2, 999) * r.choice([1, 1, 1, -1])
    forms = [T(str(n), True, "same"), T(f"{n}.0", True, "trailing_zero"),
             T(f"{{{n}}}", True, "braced"), T(f"{n}.00", True, "two_zeros"),
             T(str(n + 1), False, "off_by_one_up"), T(str(n - 1), False, "off_by_one_down"),
             T(str(-n), False, "wrong_sign"), T(str(n * 10), False, "times_ten")]
    return str(n), forms, {}


def cat_decimal(r: Random):
    n = Fraction(r.randint(101, 9999), r.choice([100, 1000, 20, 8, 40]))
    if n.denominator == 1 or not terminating(n):
        n += Fraction(1, 4)
    g = dec_str(n)
    fewer = round_sig(float(n), max(1, len(g.replace(".", "").lstrip("0")) - 1))
    forms = [T(g, True, "same"), T(g + "0", True, "trailing_zero"),
             T(frac_tex(n), True, "as_fraction"), T(frac_tex(n, "slash"), True, "as_slash"),
             T(dec_str(n + Fraction(1, 10 ** len(g.split(".")[1]))), False, "off_by_one_in_last_place"),
             T(dec_str(-n), False, "wrong_sign")]
    if Decimal(fewer) != Decimal(g):
        forms.append(T(fewer, False, "fewer_digits_than_gold"))
    return g, forms, {}


def cat_fraction(r: Random):
    while True:
        f = Fraction(r.randint(1, 40), r.randint(2, 30))
        if f.denominator > 1:
            break
    k = r.randint(2, 5)
    forms = [T(frac_tex(f), True, "same"), T(frac_tex(f, "dfrac"), True, "dfrac"),
             T(frac_tex(f, "slash"), True, "slash"),
             T(f"\\frac{{{f.numerator * k}}}{{{f.denominator * k}}}", True, "unreduced"),
             T(frac_tex(1 / f), False, "reciprocal"), T(frac_tex(-f), False, "wrong_sign"),
             T(frac_tex(f + 1), False, "plus_one")]
    v = float(f)
    if terminating(f):
        forms.append(T(dec_str(f), True, "exact_decimal"))
    else:
        forms.append(T(round_sig(v, 4), True, "approx_4sig"))
        forms.append(T(round_sig(v, 6), True, "approx_6sig"))
        forms.append(T(round_sig(v, 2), False, "approx_2sig"))
        forms.append(T(round_sig(v, 3), False, "approx_3sig"))
        t4 = round_sig(v, 4, ROUND_DOWN)
        if t4 != round_sig(v, 4):
            forms.append(T(t4, False, "truncated_4sig"))
    return frac_tex(f), forms, {}


def cat_mixed(r: Random):
    w, d = r.randint(1, 9), r.choice([2, 3, 4, 5, 7, 8])
    n = r.randint(1, d - 1)
    while math.gcd(n, d) != 1:
        n = r.randint(1, d - 1)
    f = w + Fraction(n, d)
    gold = f"{w}\\frac{{{n}}}{{{d}}}"
    forms = [T(gold, True, "same"), T(f"{w} \\frac{{{n}}}{{{d}}}", True, "spaced"),
             T(frac_tex(f), True, "improper"),
             T(frac_tex(Fraction(n, d)), False, "fraction_part_only"),
             T(frac_tex(w * Fraction(n, d)), False, "product_reading"),
             T(str(w), False, "whole_part_only")]
    if terminating(f):
        forms.append(T(dec_str(f), True, "exact_decimal"))
    else:
        forms.append(T(round_sig(float(f), 5), True, "approx_5sig"))
        forms.append(T(round_sig(float(f), 2), False, "approx_2sig"))
    return gold, forms, {}


def cat_radical_pi(r: Random):
    if r.random() < 0.5:
        a = r.randint(2, 9)
        b = r.choice([2, 3, 5, 6, 7, 10, 11])
        v = a * math.sqrt(b)
        gold = f"{a}\\sqrt{{{b}}}"
        forms = [T(gold, True, "same"), T(f"\\sqrt{{{a * a * b}}}", True, "under_root"),
                 T(f"{a} \\sqrt {b}" if b < 10 else f"{a} \\sqrt{{ {b} }}", True, "no_braces"),
                 T(f"\\sqrt{{{b}}} \\cdot {a}", True, "commuted"),
                 T(f"\\sqrt{{{b}}}", False, "dropped_coefficient"),
                 T(f"{a}\\sqrt{{{b + 1}}}", False, "wrong_radicand"),
                 T(f"{a * b}", False, "no_root")]
    else:
        a = r.randint(2, 12)
        v = a * math.pi
        gold = f"{a}\\pi"
        forms = [T(gold, True, "same"), T(f"\\pi \\cdot {a}", True, "commuted"),
                 T(f"{a} \\pi", True, "spaced"), T(f"\\frac{{{2 * a}\\pi}}{{2}}", True, "unreduced"),
                 T(f"{a + 1}\\pi", False, "off_by_one"), T(f"{a}", False, "dropped_pi"),
                 T(f"{a}\\pi^2", False, "squared")]
        forms.append(T(f"{a} \\cdot 3.14 = " + round_sig(a * 3.14, 4), False, "pi_as_3_14"))
    forms.append(T(round_sig(v, 4), True, "approx_4sig"))
    forms.append(T(round_sig(v, 5), True, "approx_5sig"))
    forms.append(T("\\approx " + round_sig(v, 6), True, "approx_sign_6sig"))
    forms.append(T(round_sig(v, 3), False, "approx_3sig"))
    t = round_sig(v, 4, ROUND_DOWN)
    if t != round_sig(v, 4):
        forms.append(T(t, False, "truncated_4sig"))
    return gold, forms, {}


def cat_scientific(r: Random):
    m = Decimal(r.randint(11, 99)) / 10
    e = r.randint(3, 8) * r.choice([1, 1, -1])
    val = m.scaleb(e)
    gold = f"{m} \\times 10^{{{e}}}"
    forms = [T(gold, True, "same"), T(f"{m}\\cdot10^{{{e}}}", True, "cdot"),
             T(f"{m}e{e}" if e > 0 else f"{m}e{e}", True, "e_notation", "plain"),
             T(format(val, "f"), True, "expanded"),
             T(f"{m} \\times 10^{{{e + 1}}}", False, "exponent_off_by_one"),
             T(f"{m} \\times 10^{{{-e}}}", False, "exponent_sign"),
             T(f"{m + Decimal('0.1')} \\times 10^{{{e}}}", False, "mantissa_off")]
    return gold, forms, {}


def cat_expression(r: Random):
    a, b = r.randint(1, 9), r.randint(1, 9) * r.choice([1, -1])
    s, p = a + b, a * b

    def poly(s, p):
        mid = "" if s == 0 else (f" + {s}x" if s > 0 else f" - {-s}x")
        if s in (1, -1):
            mid = mid.replace("1x", "x")
        end = "" if p == 0 else (f" + {p}" if p > 0 else f" - {-p}")
        return f"x^2{mid}{end}"

    def lin(c):
        return f"(x + {c})" if c > 0 else f"(x - {-c})"

    gold = poly(s, p)
    forms = [T(gold, True, "same"), T(f"{lin(a)}{lin(b)}", True, "factored"),
             T(f"{p} + {s}x + x^2".replace("+ -", "- "), True, "reordered"),
             T(f"x(x + {s}) + {p}".replace("+ -", "- "), True, "partly_factored"),
             T(f"{lin(a)}{lin(b + 1)}", False, "wrong_factor"),
             T(poly(s, -p), False, "wrong_constant_sign"),
             T(poly(s + 1, p), False, "wrong_middle")]
    return gold, forms, {}


def cat_equation(r: Random):
    kind = r.randrange(3)
    if kind == 0:
        m, c = r.randint(2, 9) * r.choice([1, -1]), r.randint(1, 9)
        gold = f"y = {m}x + {c}"
        forms = [T(gold, True, "same"), T(f"y = {c} + {m}x", True, "commuted"),
                 T(f"y={m}x+{c}", True, "no_spaces"),
                 T(f"y = {m}x - {c}", False, "wrong_sign"),
                 T(f"y = {m + 1}x + {c}", False, "wrong_slope")]
    elif kind == 1:
        a, b = r.randint(2, 30), r.randint(2, 30)
        g = math.gcd(a, b)
        a, b = a // g, b // g
        if a == b:
            b += 1
        gold = f"{a}:{b}"
        forms = [T(gold, True, "same"), T(f"V_1:V_2 = {a}:{b}", True, "labelled_ratio"),
                 T(f"{a} : {b}", True, "spaced"),
                 T(f"{b}:{a}", False, "swapped"), T(f"V_1:V_2 = {b}:{a}", False, "labelled_swapped")]
    else:
        v = r.randint(2, 99)
        gold = str(v)
        forms = [T(gold, True, "same"), T(f"x = {v}", True, "labelled_x"),
                 T(f"n = {v}", True, "labelled_n"), T(f"x = {v + 1}", False, "labelled_off_by_one"),
                 T(f"x = -{v}", False, "labelled_wrong_sign")]
    return gold, forms, {}


def cat_solution_list(r: Random):
    a = r.randint(1, 9)
    b = -r.randint(1, 9)
    if a == -b:
        b -= 1
    lo, hi = min(a, b), max(a, b)
    gold = f"{lo}, {hi}"
    forms = [T(gold, True, "same"), T(f"{hi}, {lo}", True, "reordered"),
             T(f"x = {hi} \\text{{ or }} x = {lo}", True, "x_equals_or"),
             T(f"x = {lo}, x = {hi}", True, "x_equals_list"),
             T(f"\\{{{lo}, {hi}\\}}", True, "as_set"),
             T(f"{hi}", False, "one_root_only"), T(f"{-lo}, {-hi}", False, "signs_flipped"),
             T(f"{lo}, {hi}, 0", False, "extra_root")]
    return gold, forms, {}


def cat_inequality(r: Random):
    c = r.randint(-9, 9)
    if r.random() < 0.5:
        gold = f"x < {c}"
        forms = [T(gold, True, "same"), T(f"{c} > x", True, "flipped_sides"),
                 T(f"-x > {-c}", True, "negated"), T(f"x \\in (-\\infty, {c})", True, "as_interval"),
                 T(f"x \\le {c}", False, "non_strict"), T(f"x > {c}", False, "wrong_direction"),
                 T(f"x < {c + 1}", False, "off_by_one")]
    else:
        gold = f"x \\le {c}"
        forms = [T(gold, True, "same"), T(f"x \\leq {c}", True, "leq"),
                 T(f"{c} \\geq x", True, "flipped_sides"), T(f"x ≤ {c}", True, "unicode"),
                 T(f"-x \\ge {-c}", True, "negated"), T(f"x \\in (-\\infty, {c}]", True, "as_interval"),
                 T(f"x < {c}", False, "strict"), T(f"x \\ge {c}", False, "wrong_direction")]
    return gold, forms, {}


def cat_interval(r: Random):
    if r.random() < 0.6:
        a = Fraction(r.randint(-20, 10), r.choice([1, 2, 4, 5]))
        b = a + Fraction(r.randint(1, 20), r.choice([1, 2, 4]))
        lb, rb = r.choice("[("), r.choice("])")
        gold = f"\\left{lb}{frac_tex(a)}, {frac_tex(b)}\\right{rb}"
        flip = {"[": "(", "(": "[", "]": ")", ")": "]"}
        forms = [T(gold, True, "same"), T(f"{lb}{frac_tex(a)},{frac_tex(b)}{rb}", True, "no_left_right"),
                 T(f"{lb}{dec_str(a)}, {dec_str(b)}{rb}", True, "decimal_endpoints"),
                 T(f"{flip[lb]}{frac_tex(a)}, {frac_tex(b)}{rb}", False, "open_closed_left"),
                 T(f"{lb}{frac_tex(a)}, {frac_tex(b)}{flip[rb]}", False, "open_closed_right"),
                 T(f"{lb}{frac_tex(a)}, {frac_tex(b + 1)}{rb}", False, "wrong_endpoint")]
    else:
        a = r.randint(-9, 3)
        b = a + r.randint(1, 6)
        gold = f"(-\\infty, {a}) \\cup ({b}, \\infty)"
        forms = [T(gold, True, "same"), T(f"({b}, \\infty) \\cup (-\\infty, {a})", True, "reordered"),
                 T(f"(-\\infty,{a})\\cup({b},+\\infty)", True, "plus_infinity"),
                 T(f"(-\\infty, {a}] \\cup ({b}, \\infty)", False, "closed_endpoint"),
                 T(f"({a}, {b})", False, "complement"),
                 T(f"(-\\infty, {a}) \\cup ({b + 1}, \\infty)", False, "wrong_endpoint")]
    return gold, forms, {}


def cat_set(r: Random):
    xs = r.sample(range(-9, 20), 3)
    s = sorted(xs)
    gold = "\\{" + ", ".join(map(str, s)) + "\\}"
    sh = xs[:]
    r.shuffle(sh)
    forms = [T(gold, True, "same"), T("\\{" + ", ".join(map(str, sh)) + "\\}", True, "reordered"),
             T(", ".join(map(str, sh)), True, "bare_list"),
             T("\\{" + ", ".join(map(str, s[:2])) + "\\}", False, "missing_element"),
             T("\\{" + ", ".join(map(str, s[:2] + [s[2] + 1])) + "\\}", False, "wrong_element")]
    return gold, forms, {"multi": [str(v) for v in sh]}


def cat_tuple(r: Random):
    a = Fraction(r.randint(-9, 9), r.choice([1, 2, 4]))
    b = Fraction(r.randint(-9, 9), r.choice([1, 1, 5]))
    while b == a:
        b += 1
    gold = f"\\left({frac_tex(a)}, {frac_tex(b)}\\right)"
    forms = [T(gold, True, "same"), T(f"({frac_tex(a)},{frac_tex(b)})", True, "plain_parens"),
             T(f"({dec_str(a)}, {dec_str(b)})", True, "decimal_entries"),
             T(f"(x, y) = ({frac_tex(a)}, {frac_tex(b)})", True, "labelled"),
             T(f"({frac_tex(b)}, {frac_tex(a)})", False, "swapped"),
             T(f"({frac_tex(a)}, {frac_tex(-b)})" if b != 0 else f"({frac_tex(a)}, 1)", False, "wrong_sign")]
    return gold, forms, {}


def cat_matrix(r: Random):
    ents = [Fraction(r.randint(-9, 9), r.choice([1, 1, 3, 7])) for _ in range(4)]
    if ents[1] == ents[2]:
        ents[2] += 1

    def mat(es, env="pmatrix", fmt=frac_tex):
        return f"\\begin{{{env}}} {fmt(es[0])} & {fmt(es[1])} \\\\ {fmt(es[2])} & {fmt(es[3])} \\end{{{env}}}"

    gold = mat(ents)
    forms = [T(gold, True, "same"), T(mat(ents, "bmatrix"), True, "bmatrix"),
             T(mat([ents[0], ents[2], ents[1], ents[3]]), False, "transposed"),
             T(mat([ents[0], ents[1], ents[2], ents[3] + 1]), False, "wrong_entry"),
             T(mat([-e for e in ents]) if any(ents) else mat([e + 1 for e in ents]), False, "negated")]
    if any(not terminating(e) for e in ents):
        forms.append(T(mat(ents, fmt=lambda e: frac_tex(e) if e.denominator == 1 else round_sig(float(e), 4)),
                       True, "approx_entries_4sig"))
        forms.append(T(mat(ents, fmt=lambda e: frac_tex(e) if e.denominator == 1 else round_sig(float(e), 2)),
                       False, "approx_entries_2sig"))
    return gold, forms, {}


def cat_complex(r: Random):
    a, b = r.randint(1, 9), r.randint(2, 9)
    if a == b:
        b += 1
    gold = f"{a} + {b}i"
    forms = [T(gold, True, "same"), T(f"{b}i + {a}", True, "commuted"), T(f"{a}+{b} i", True, "spaced"),
             T(f"{a} - {b}i", False, "conjugate"), T(f"{b} + {a}i", False, "swapped_parts"),
             T(f"{a}", False, "real_part_only")]
    return gold, forms, {}


def cat_multiple_choice(r: Random):
    base = r.randint(5, 60)
    step = r.randint(2, 7)
    opts = [base + i * step for i in range(4)]
    letters = "ABCD"
    k = r.randrange(4)
    j = (k + r.randint(1, 3)) % 4
    L, W = letters[k], letters[j]
    gold = L
    forms = [T(L, True, "letter"), T(f"({L})", True, "paren_letter"), T(f"\\text{{{L}}}", True, "text_letter"),
             T(f"{L}) {opts[k]}", True, "letter_and_text", "plain"),
             T(str(opts[k]), True, "option_text"),
             T(W, False, "wrong_letter"), T(str(opts[j]), False, "wrong_option_text"),
             T(f"{L} or {W}" if k < j else f"{W} or {L}", False, "hedge_two_letters", "plain")]
    options = "  ".join(f"({letters[i]}) {opts[i]}" for i in range(4))
    return gold, forms, {"options": options}


TEXT = [("Tuesday", "Wednesday"), ("north", "south"), ("odd", "even"), ("Alice", "Bob"),
        ("increasing", "decreasing"), ("yes", "no"), ("parabola", "hyperbola"), ("red", "blue")]


def cat_text(r: Random):
    good, bad = r.choice(TEXT)
    if r.random() < 0.5:
        good, bad = bad, good
    gold = f"\\text{{{good}}}"
    forms = [T(gold, True, "same"), T(good, True, "bare_word", "plain"),
             T(f"\\mathrm{{{good}}}", True, "mathrm"), T(f"\\textbf{{{good}}}", True, "textbf"),
             T(f"\\text{{{bad}}}", False, "other_word"), T(bad, False, "other_bare", "plain")]
    return gold, forms, {}


def cat_degrees(r: Random):
    d = r.choice([15, 30, 36, 40, 45, 60, 72, 75, 108, 120, 135, 150])
    gold = f"{d}^\\circ"
    forms = [T(gold, True, "same"), T(f"{d}^{{\\circ}}", True, "braced_circ"), T(f"{d}°", True, "unicode_degree"),
             T(f"{d} degrees", True, "word_degrees", "plain"), T(str(d), True, "bare_number"),
             T(f"{180 - d}^\\circ", False, "supplement"), T(f"{d + 1}^\\circ", False, "off_by_one")]
    rad = Fraction(d, 180)
    forms.append(T(f"\\frac{{{rad.numerator}\\pi}}{{{rad.denominator}}}" if rad.numerator != 1
                   else f"\\frac{{\\pi}}{{{rad.denominator}}}", False, "converted_to_radians"))
    return gold, forms, {}


def cat_money(r: Random):
    cents = r.randint(100, 99999)
    v = (Decimal(cents) / 100).quantize(Decimal("0.01"))
    g = format(v, "f")
    gold = f"\\${g}"
    forms = [T(gold, True, "same"), T(g, True, "bare_number"), T(f"{g} dollars", True, "word_dollars", "plain"),
             T(f"{g} USD", True, "usd", "plain"), T(f"\\${g} \\text{{ USD}}", True, "text_usd"),
             T(f"{g}\\text{{ dollars}}", True, "text_dollars"),
             T(format(v + 1, "f"), False, "off_by_dollar"), T(str(cents), False, "in_cents"),
             T(f"\\${format(v + Decimal('0.01'), 'f')}", False, "off_by_cent")]
    return gold, forms, {}


UNITS = [("cm", "mm", 10), ("m", "cm", 100), ("kg", "g", 1000), ("km", "m", 1000), ("L", "mL", 1000),
         ("s", "ms", 1000)]


def cat_units(r: Random):
    u, small, k = r.choice(UNITS)
    n = r.randint(2, 99)
    gold = str(n) if r.random() < 0.5 else f"{n}\\text{{ {u}}}"
    forms = [T(f"{n}\\text{{ {u}}}", True, "text_unit"), T(f"{n} {u}", True, "bare_unit", "plain"),
             T(f"{n}\\,\\mathrm{{{u}}}", True, "mathrm_unit"), T(str(n), True, "bare_number"),
             T(f"{n * k}\\text{{ {small}}}", False, "converted_unit"),
             T(f"{n + 1}\\text{{ {u}}}", False, "off_by_one")]
    return gold, forms, {}


def cat_percent(r: Random):
    p = r.randint(2, 95)
    if r.random() < 0.6:
        gold = f"{p}\\%"
        forms = [T(gold, True, "same"), T(str(p), True, "bare"), T(f"{p} percent", True, "word_percent", "plain"),
                 T(dec_str(Fraction(p, 100)), True, "over_100"), T(f"{p}%", True, "raw_percent", "plain"),
                 T(f"{p + 1}\\%", False, "off_by_one"), T(dec_str(Fraction(p, 1000)), False, "over_1000")]
    else:
        gold = str(p)
        forms = [T(gold, True, "same"), T(f"{p}\\%", True, "with_percent"), T(f"{p} percent", True, "word_percent", "plain"),
                 T(dec_str(Fraction(p, 100)), False, "over_100"), T(str(p + 1), False, "off_by_one")]
    return gold, forms, {}


def cat_decimal_comma(r: Random):
    if r.random() < 0.6:
        v = Decimal(r.randint(101, 9999)) / 100
        if v == v.to_integral_value():
            v += Decimal("0.25")
        g = format(v, "f").rstrip("0")
        c = g.replace(".", ",")
        forms = [T(c, True, "comma_decimal"), T(g, True, "dot_decimal"), T(f"{c}\\ \\text{{€}}", True, "comma_euro"),
                 T(f"{c} $", True, "comma_dollar_after", "plain"),
                 T(format(v + 1, "f").rstrip("0").replace(".", ","), False, "comma_off_by_one"),
                 T(c.replace(",", ""), False, "comma_dropped")]
        gold = g
    else:
        n = r.randint(1001, 9999)
        while n % 10 == 0:
            n += 1
        gold = str(n)
        forms = [T(f"{n // 1000},{n % 1000:03d}", True, "comma_thousands"), T(str(n), True, "same"),
                 T(f"{n // 1000 + 1},{n % 1000:03d}", False, "wrong_thousands")]
        if r.random() < 0.4:
            # d,ddd is a thousands separator even in decimal-comma prose: not the decimal n/1000.
            gold = dec_str(Fraction(n, 1000))
            forms = [T(f"{n // 1000},{n % 1000:03d}", False, "thousands_not_decimal"),
                     T(gold, True, "same_dot_decimal")]
    pre = "Rechnung: 3,5 · 2 = 7,0 und 1,25 + 0,75 = 2,00. Dann 12,5 % von 40 sind 5,0."
    return gold, forms, {"prose": pre}


def cat_thousands(r: Random):
    n = r.randint(1, 999) * 1_000_000 + r.randint(100, 999) * 1000 + r.randint(0, 999)
    if r.random() < 0.4:
        n //= 1000
    forms = [T(str(n), True, "same"), T(group(n, ","), True, "comma_groups"),
             T(group(n, "{,}"), True, "latex_comma_groups"),
             T(group(n, "."), True, "dot_groups") if n >= 1_000_000 else T(group(n, "\\ "), True, "latex_space_groups"), T(group(n, "\\,"), True, "thin_space_groups"),
             T(group(n, " "), True, "space_groups", "plain"), T(group(n, "\u202f"), True, "unicode_thin_space", "plain"),
             T(group(n + 1, ","), False, "off_by_one"), T(group(n // 10, ","), False, "digit_dropped"),
             T(str(n)[:-3] + "." + str(n)[-3:-1], False, "irregular_dot")]
    return str(n), forms, {}


def cat_number_words(r: Random):
    n = r.randint(0, 99)
    w = words(n)
    forms = [T(str(n), True, "digits"), T(w, True, "word", "plain"), T(f"\\text{{{w}}}", True, "text_word"),
             T(w.capitalize(), True, "capitalized", "plain"),
             T(words(n + 1 if n < 99 else n - 1), False, "wrong_word", "plain"),
             T(f"\\text{{{words((n + 2) % 100)}}}", False, "wrong_text_word")]
    return str(n), forms, {}


def cat_approx(r: Random):
    choices = [("\\sqrt{2}", math.sqrt(2)), ("\\sqrt{3}", math.sqrt(3)), ("\\frac{2}{3}", 2 / 3),
               ("\\frac{1}{3}", 1 / 3), ("e", math.e), ("\\frac{\\pi}{3}", math.pi / 3), ("\\pi", math.pi),
               ("\\frac{5}{7}", 5 / 7), ("\\ln 2", math.log(2)), ("\\sqrt{5}", math.sqrt(5)),
               ("\\frac{22}{7}", 22 / 7), ("\\frac{100}{3}", 100 / 3), ("\\frac{1}{7}", 1 / 7)]
    gold, v = r.choice(choices)
    k = r.choice([1, 1, 2, 3])
    # Only multiply irrational values (3 * 1/3 would be exact, not an approximation).
    if k > 1 and ("sqrt" in gold or "pi" in gold):
        gold = f"{k} \\cdot {gold}" if gold.startswith("\\frac") else f"{k}{gold}"
        v *= k
    forms = [T(f"\\approx {round_sig(v, 4)}", True, "approx_sign_4sig"), T(round_sig(v, 4), True, "4sig"),
             T(round_sig(v, 5), True, "5sig"), T(f"≈ {round_sig(v, 7)}", True, "unicode_approx_7sig"),
             T(round_sig(v, 3), False, "3sig"), T(f"\\approx {round_sig(v, 2)}", False, "approx_sign_2sig")]
    t = round_sig(v, 4, ROUND_DOWN)
    if t != round_sig(v, 4):
        forms.append(T(t, False, "truncated_4sig"))
    forms.append(T(round_sig(v * 1.01, 5), False, "wrong_value_5sig"))
    return gold, forms, {}


CATEGORIES = {
    "integer": cat_integer, "decimal": cat_decimal, "fraction": cat_fraction, "mixed_number": cat_mixed,
    "radical_pi": cat_radical_pi, "scientific": cat_scientific, "expression": cat_expression,
    "equation": cat_equation, "solution_list": cat_solution_list, "inequality": cat_inequality,
    "interval": cat_interval, "set": cat_set, "tuple": cat_tuple, "matrix": cat_matrix,
    "complex": cat_complex, "multiple_choice": cat_multiple_choice, "text": cat_text,
    "degrees": cat_degrees, "money": cat_money, "units": cat_units, "percent": cat_percent,
    "decimal_comma": cat_decimal_comma, "thousands": cat_thousands, "number_words": cat_number_words,
    "approx": cat_approx,
}
# Structural categories: which answer is the committed one. Built on top of a simple category.
STRUCTURAL = ["truncated", "revised_to_correct", "revised_to_wrong", "hedge", "multi_box_combined",
              "hope_then_more", "chat_leak", "reasoning_only_correct"]

# ----------------------------------------------------------------------------- embedding

FILLER = ["Let me set up the problem carefully.", "First, I'll write down what is given.",
          "Let me double-check the arithmetic.", "Hmm, let me reconsider this step.",
          "So the computation gives", "Wait, I should verify the sign.", "That seems consistent.",
          "Let me compute step by step.", "Alternatively, we can check by substitution."]
LEAKS = ["<|im_end|>", "<|eot_id|>", "</s>", "<｜end▁of▁sentence｜>", "<|endoftext|>", "<|im_end|>\n<|im_start|>user"]
FORMATS = ["boxed", "boxed_think_only", "final_answer_bold", "the_answer_is", "answer_tags", "hashes",
           "bold", "hope_correct", "multi_box_last", "boxed_dollar"]


def inline(text, kind):
    return text if kind == "plain" else f"${text}$"


def boxed(text):
    return f"\\boxed{{{text}}}"


def reasoning(r: Random, ctx, decoys):
    parts = []
    if ctx.get("options"):
        parts.append(f"The options are: {ctx['options']}.")
    if ctx.get("prose"):
        parts.append(ctx["prose"])
    for _ in range(r.randint(2, 4)):
        parts.append(r.choice(FILLER))
        if decoys and r.random() < 0.7:
            parts.append(f"We get {r.choice(decoys)} here.")
    return " ".join(parts)


def final(r: Random, fmt, text, kind, ctx):
    lead = ""
    if ctx.get("options") and r.random() < 0.5:
        lead = f"The options were {ctx['options']}.\n\n"
    if ctx.get("prose"):
        lead += "Also ist das Ergebnis (mit Dezimalkomma, 2,5 + 1,5 = 4,0):\n\n"
    if fmt == "boxed":
        return lead + f"Therefore, the answer is $\\boxed{{{text}}}$."
    if fmt == "boxed_dollar":
        return lead + f"The final answer is \\(\\boxed{{{text}}}\\)."
    if fmt == "boxed_think_only":
        return lead + f"\\[\n\\boxed{{{text}}}\n\\]"
    if fmt == "final_answer_bold":
        return lead + f"**Final Answer**\n\\[ \\boxed{{{text}}} \\]"
    if fmt == "the_answer_is":
        return lead + f"The answer is {inline(text, kind)}."
    if fmt == "answer_tags":
        return lead + f"<answer>{text}</answer>"
    if fmt == "hashes":
        return lead + f"#### {text}"
    if fmt == "bold":
        return lead + f"The final answer is **{inline(text, kind)}**."
    if fmt == "hope_correct":
        return lead + f"Final Answer: The final answer is {inline(text, kind)}. I hope it is correct."
    if fmt == "multi_box_last":
        return lead + f"Intermediate value: $\\boxed{{{r.randint(2, 9)}}}$ (not asked).\n\nHence the answer is $\\boxed{{{text}}}$."
    raise ValueError(fmt)


def output(r: Random, think, tail):
    return f"<think>\n{think}\n</think>\n\n{tail}"


def simple_row(r: Random, cat):
    gold, forms, ctx = CATEGORIES[cat](r)
    text, ok, variant, kind = r.choice(forms)
    fmt = r.choice(FORMATS)
    decoys = [f[0] for f in forms if f[3] == "tex"][:3]
    think = reasoning(r, ctx, [inline(d, "tex") for d in decoys])
    pred = output(r, think, final(r, fmt, text, kind, ctx))
    return {"gold": gold, "prediction": pred, "category": cat, "variant": variant, "format": fmt, "intended": ok}


SIMPLE_FOR_STRUCT = ["integer", "fraction", "decimal", "multiple_choice", "radical_pi", "money"]


def struct_row(r: Random, scat):
    base = r.choice(SIMPLE_FOR_STRUCT)
    gold, forms, ctx = CATEGORIES[base](r)
    good = [f for f in forms if f[1]]
    bad = [f for f in forms if not f[1] and "hedge" not in f[2]]
    g, b = r.choice(good), r.choice(bad)
    think = reasoning(r, ctx, [])
    fmt = r.choice(["boxed", "final_answer_bold", "the_answer_is", "bold", "answer_tags"])
    if scat == "truncated":
        # The correct answer appears in the reasoning but the output stops before any final answer.
        pred = f"<think>\n{think} So far I get {inline(g[0], g[3])}, but let me check the other case. " \
               f"If we substitute back, the second equation gives"
        ok = False
    elif scat == "reasoning_only_correct":
        # Correct value only in the reasoning, the committed answer is wrong.
        pred = output(r, think + f" At one point I had {inline(g[0], g[3])}.", final(r, fmt, b[0], b[3], ctx))
        ok = False
    elif scat == "revised_to_correct":
        tail = (f"So the answer is $\\boxed{{{b[0]}}}$.\n\nWait, that is not right: I dropped a term. "
                f"Redoing the last step carefully, " + final(r, fmt, g[0], g[3], {}))
        pred = output(r, think, tail)
        ok = True
    elif scat == "revised_to_wrong":
        tail = (f"So the answer is $\\boxed{{{g[0]}}}$.\n\nHmm, wait. Actually I made an error in the sign. "
                f"Correcting it, " + final(r, fmt, b[0], b[3], {}))
        pred = output(r, think, tail)
        ok = False
    elif scat == "hedge":
        if r.random() < 0.5:
            tail = f"The answer is either {inline(g[0], g[3])} or {inline(b[0], b[3])}; I cannot decide between them."
        else:
            tail = f"So the answer is $\\boxed{{{g[0]}}}$ or $\\boxed{{{b[0]}}}$."
        pred = output(r, think, tail)
        ok = False
    elif scat == "multi_box_combined":
        gold, forms, ctx = cat_set(r) if r.random() < 0.5 else cat_solution_list(r)
        elems = gold.replace("\\{", "").replace("\\}", "").split(", ")
        elems = elems[::-1] if r.random() < 0.5 else elems
        if r.random() < 0.7:
            pred = output(r, think, "The solutions are " + " and ".join(f"$\\boxed{{{e}}}$" for e in elems) + ".")
            ok = True
        else:
            pred = output(r, think, "The solutions are " + " and ".join(f"$\\boxed{{{e}}}$" for e in elems[:-1]) + ".")
            ok = False
        base = "set/solutions"
    elif scat == "hope_then_more":
        x = g if r.random() < 0.6 else b
        tail = (f"Final Answer: The final answer is {inline(x[0], x[3])}. I hope it is correct.\n\n"
                f"Problem 2: Compute $3 + 4$.\n\nSolution: $3 + 4 = 7$. The answer is $7$.")
        pred = output(r, think, tail)
        ok = x[1]
    elif scat == "chat_leak":
        x = g if r.random() < 0.6 else b
        tail = final(r, fmt, x[0], x[3], ctx) + r.choice(LEAKS) + r.choice(["", "\nuser\nThanks! What about 17?", "<|im_start|>assistant\n12"])
        pred = output(r, think, tail)
        ok = x[1]
    else:
        raise ValueError(scat)
    return {"gold": gold, "prediction": pred, "category": "struct:" + scat, "variant": base, "format": fmt, "intended": ok}


def generate(n: int, seed: int):
    r = Random(seed)
    cats = list(CATEGORIES)
    pool = cats + ["struct:" + s for s in STRUCTURAL]
    rows = []
    for i in range(n):
        c = pool[i % len(pool)] if i < len(pool) else r.choice(pool)
        row = struct_row(r, c[7:]) if c.startswith("struct:") else simple_row(r, c)
        row["id"] = f"g{seed}-{i}"
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    out = sys.stdout
    for row in generate(args.n, args.seed):
        out.write(json.dumps({k: row[k] for k in ("id", "category", "variant", "format", "intended", "gold", "prediction")},
                             ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

//! Answer extraction and equivalence on arbitrary and adversarial input: no panics, bounded time.
//!
//! The bounds come from size caps and recursion-depth limits in the parser, not from a timer; the
//! timings asserted here are generous ceilings (debug build) that only a missing cap would break.

use std::time::{Duration, Instant};

use distillery_verify::math;
use proptest::prelude::*;

/// Runs `verify`, `extract_answer` and `equivalent` on `text` and returns how long that took.
fn exercise(text: &str) -> Duration {
    let start = Instant::now();
    let _ = math::extract_answer(text);
    let _ = math::verify(text, text);
    let _ = math::verify("42", text);
    let _ = math::equivalent(text, "1");
    start.elapsed()
}

fn assert_fast(name: &str, text: &str) {
    let took = exercise(text);
    println!("{name}: {} bytes in {took:?}", text.len());
    assert!(took < Duration::from_secs(2), "{name} took {took:?}");
}

#[test]
fn adversarial_inputs_finish_quickly() {
    let nested_braces = format!("\\boxed{{{}1{}}}", "{".repeat(10_000), "}".repeat(10_000));
    assert_fast("10k nested braces", &nested_braces);
    assert_fast(
        "10k unclosed braces",
        &format!("\\boxed{{{}", "{".repeat(10_000)),
    );
    let digits = "9".repeat(5_000);
    assert_fast("5k-digit number", &digits);
    assert_fast(
        "5k-digit boxed",
        &format!("The answer is \\boxed{{{digits}}}."),
    );
    assert!(math::equivalent(&digits, &digits));
    assert!(!math::equivalent(&digits, &format!("{}8", &digits[1..])));
    let deep_frac = format!("{}1{}", "\\frac{".repeat(1_000), "}{2}".repeat(1_000));
    assert_fast(
        "\\frac nested 1000 deep",
        &format!("$\\boxed{{{deep_frac}}}$"),
    );
    assert_fast(
        "\\sqrt nested 1000 deep",
        &format!("${}2{}$", "\\sqrt{".repeat(1_000), "}".repeat(1_000)),
    );
    assert_fast(
        "parentheses 5000 deep",
        &format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000)),
    );
    assert_fast("unary minus 5000 deep", &format!("{}1", "-".repeat(5_000)));
    assert_fast("long sum", &vec!["1"; 3_000].join("+"));
    assert_fast("many dollars", &"$1$ and ".repeat(20_000));
    assert_fast(
        "many text groups",
        &format!("\\boxed{{{}", "\\text{a}".repeat(20_000)),
    );
    assert_fast("many boxes", &"\\boxed{1} and ".repeat(20_000));
    assert_fast("many answers", &"The answer is 5. ".repeat(50_000));
    assert_fast("huge power", "$2^{2^{2^{2^{2^{100}}}}}$");
    assert_fast("huge factorial", "$100000!$");
    assert_fast("huge sum", "$\\sum_{k=1}^{1000000000} k$");
    assert_fast("exponent overflow", "1e99999999999");
    assert_fast("template-token openers", &"<|".repeat(50_000));
    assert_fast("listed options", &"(A) 1 ".repeat(20_000));
    let exercise_choice = |name: &str, text: &str| {
        let start = Instant::now();
        let _ = math::verify("A", text);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "{name} (multiple choice) took {took:?}"
        );
    };
    exercise_choice("template-token openers", &"<|".repeat(50_000));
    exercise_choice("listed options", &"(A) 1 (B) 2 ".repeat(10_000));
    assert_fast("decimal commas", &"2,74 ".repeat(20_000));
    assert_fast("sentences", &"a. ".repeat(40_000));
    assert_fast("unclosed think", &format!("<think>{}", "x ".repeat(50_000)));
    assert_fast(
        "1 MB of prose",
        &"lorem ipsum dolor 12 sit amet ".repeat(35_000),
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn latex_like_strings_never_panic(text in r"[-0-9a-zA-Z{}()\[\]\\$^_.,/ =+*<>%!|&;:\n]{0,120}") {
        exercise(&text);
    }

    #[test]
    fn latex_commands_never_panic(parts in proptest::collection::vec(
        prop::sample::select(vec![
            "\\frac", "\\sqrt", "\\boxed{", "}", "{", "\\left(", "\\right)", "\\text{", "\\pm", "\\cup",
            "\\le", "=", "(", ")", "[", "]", ",", "1", "2.5", "x", "^", "_", "\\pi", "\\infty", "%",
            "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\\\", "$", " and ", "\\sum_{k=0}^{n}", "!",
        ]),
        0..40,
    )) {
        exercise(&parts.concat());
    }

    #[test]
    fn integers_match_their_boxed_and_grouped_forms(n in -1_000_000_000i64..1_000_000_000) {
        let verdict = math::verify(&n.to_string(), &format!("So the answer is $\\boxed{{{n}}}$."));
        prop_assert!(verdict.is_pass(), "{}", verdict);
        let decimal = format!("{n}.0");
        prop_assert!(math::equivalent(&n.to_string(), &decimal));
    }

    #[test]
    fn different_integers_never_match(a in -100_000i64..100_000, b in -100_000i64..100_000) {
        prop_assume!(a != b);
        prop_assert!(!math::equivalent(&a.to_string(), &b.to_string()));
        let output = format!("The answer is {b}.");
        prop_assert!(!math::verify(&a.to_string(), &output).is_pass());
    }

    #[test]
    fn fractions_match_their_latex_and_decimal_forms(num in -500i64..500, den in 1i64..64) {
        let plain = format!("{num}/{den}");
        let latex = format!("\\frac{{{num}}}{{{den}}}");
        prop_assert!(math::equivalent(&plain, &latex));
        // Dyadic fractions have exact decimal forms.
        if den.count_ones() == 1 {
            let decimal = format!("{}", num as f64 / den as f64);
            prop_assert!(math::equivalent(&plain, &decimal), "{} vs {}", plain, decimal);
        }
    }
}

//! Math-Verify's own test suite (`tests/data/mathverify_suite.jsonl`), each case graded under the
//! configuration its test uses, mapped to our [`VerifyConfig`].
//!
//! Cases whose configuration we deliberately do not support, and cases where we deliberately
//! give another verdict, are listed below with the reason (and in `DIFFERENCES.md`); they are
//! counted, and the test fails if one of them starts to agree, so the lists stay true. Every
//! other case must agree, and agreement over all supported cases must stay at or above 99%.

use distillery_verify::math::{self, Precision, VerifyConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    source: String,
    gold: String,
    prediction: String,
    expected: bool,
    intended_correct: Option<bool>,
    config: MathVerifyConfig,
}

/// The arguments of Math-Verify's test helper `compare_strings` (or of plain `verify`).
#[derive(Deserialize)]
struct MathVerifyConfig {
    extraction: Vec<String>,
    float_rounding: u32,
    strict: bool,
    allow_set_relation_comp: bool,
}

impl MathVerifyConfig {
    fn to_ours(&self) -> VerifyConfig {
        VerifyConfig {
            // 6 is the helper's default, not a choice of the test: our default precision rule
            // applies (DIFFERENCES.md). A test that sets another rounding gets it.
            precision: if self.float_rounding == 6 {
                VerifyConfig::default().precision
            } else {
                Precision::DecimalPlaces(self.float_rounding)
            },
            strict: self.strict,
            allow_set_relation_comp: self.allow_set_relation_comp,
        }
    }
}

/// Cases run under a configuration we do not support: Math-Verify's extraction targets. We
/// always extract with all our rules; Math-Verify with `LatexExtractionConfig` alone ignores a
/// bare number in prose.
const UNSUPPORTED: &[(&str, &str)] = &[(
    "test_all.py:132",
    "extraction target latex only: `$ \\n 9 \\n $` is no formula to Math-Verify, but 9 is still the answer in prose to us",
)];

/// Cases where our verdict differs on purpose.
const DIFFERENT: &[(&str, &str)] = &[
    (
        "test_all.py:458",
        "`1 = \\zzz = x = 0`: an unknown LaTeX command makes the gold unreadable; we do not guess it is a symbol",
    ),
    (
        "test_strict.py:8",
        "f(x) and f(y) name the same function for us in strict mode too",
    ),
];

#[test]
fn mathverify_suite_agrees() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/mathverify_suite.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}: {l}")))
        .collect();
    assert!(cases.len() >= 280, "{path}: only {} cases", cases.len());

    let listed = |list: &[(&str, &str)], source: &str| list.iter().any(|(s, _)| *s == source);
    let (mut supported, mut agree) = (0usize, 0usize);
    let mut unexpected = Vec::new();
    for case in &cases {
        let label = case.intended_correct.unwrap_or(case.expected);
        let graded = math::grade_with(&case.gold, &case.prediction, &case.config.to_ours());
        let agrees = graded.verdict.is_pass() == label;
        let excused = listed(UNSUPPORTED, &case.source) || listed(DIFFERENT, &case.source);
        if excused == agrees {
            unexpected.push(format!(
                "{} ({:?}): label {label}, verdict {}, extracted {:?}{}",
                case.source,
                case.config.extraction,
                graded.verdict,
                graded.answer.map(|a| a.text),
                if excused {
                    " — listed as a difference but agrees now: remove it from the list"
                } else {
                    ""
                },
            ));
        }
        if !listed(UNSUPPORTED, &case.source) {
            supported += 1;
            agree += usize::from(agrees);
        }
    }
    let share = agree as f64 / supported as f64;
    println!(
        "Math-Verify suite: {agree}/{supported} supported cases agree ({:.1}%), {} under unsupported configurations",
        100.0 * share,
        UNSUPPORTED.len()
    );
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    assert!(share >= 0.99, "agreement {share:.3} below 0.99");
}

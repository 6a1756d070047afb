//! Math answers: extract the final answer from a model output and decide whether it is
//! equivalent to the reference.
//!
//! Everything here is pure and bounded: inputs are capped in size, the parser in depth, exact
//! arithmetic is overflow-checked with an `f64` fallback, and no function panics on any input.

mod equiv;
mod eval;
mod extract;
mod lex;
mod number;
mod parse;
mod text;
mod words;

use serde::{Deserialize, Serialize};

use crate::{Check, Reason, Verdict};
pub use extract::{Extracted, Rule, extract_answer, reference_answer};
use parse::Node;

/// How answers are compared: the settings of Math-Verify's `verify()` that matter for rejection
/// sampling. The defaults are Math-Verify's, except where its verdict is not the intended one
/// (see `crates/verify/DIFFERENCES.md`): decimals are judged by the digits they give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// When a decimal equals an exact value.
    pub precision: Precision,
    /// Math-Verify's `strict`: when true, a tuple is never equal to a set (`(3, 1)` is not
    /// `{1, 3}`).
    pub strict: bool,
    /// Math-Verify's `allow_set_relation_comp`: whether an inequality (`-2 \le x \le 7`)
    /// answers an interval gold (`[-2, 7]`). An interval always answers an inequality gold.
    pub allow_set_relation_comp: bool,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            precision: Precision::SignificantDigits(4),
            strict: true,
            allow_set_relation_comp: true,
        }
    }
}

/// When a decimal stands for an exact value (`0.3333` for `1/3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Correctly rounded to at least this many significant digits; a gold decimal is compared at
    /// its own number of decimal places.
    SignificantDigits(u32),
    /// Math-Verify's `float_rounding`: when either side is a decimal, both are rounded to this
    /// many decimal places and compared.
    DecimalPlaces(u32),
}

/// Why an answer did not parse. Internal: an unparseable answer is still compared as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("answer too long to parse")]
    TooLong,
    #[error("answer nested too deeply")]
    TooDeep,
    #[error("empty answer")]
    Empty,
    #[error("unexpected token")]
    Unexpected,
    #[error("unknown LaTeX command")]
    UnknownCommand,
    #[error("unsupported construct")]
    Unsupported,
    #[error("invalid number")]
    InvalidNumber,
}

/// An answer parsed once, for comparing against many candidates (a reference answer) or for
/// inspecting how a string was read.
#[derive(Debug, Clone)]
pub struct Answer {
    text: String,
    fingerprint: String,
    /// How the answer reads as mathematics: usually one way, two for "1,2" (a list, or 1.2
    /// written with a decimal comma), none when it is not mathematics.
    readings: Vec<Node>,
    choice: Option<char>,
}

impl Answer {
    /// Reads a bare answer (`"3/8"`, `"$\frac{1}{3}$"`, `"x \in [0, 1)"`), not a whole output.
    pub fn parse(answer: &str) -> Answer {
        let cleaned = text::clean_answer(answer);
        let number = text::strip_unit(&cleaned);
        let bare = number.as_deref().unwrap_or(&cleaned);
        Answer {
            fingerprint: text::text_fingerprint(&cleaned),
            readings: parse_answer(bare)
                .ok()
                .into_iter()
                .chain(text::decimal_comma(bare).and_then(|d| parse_answer(&d).ok()))
                .collect(),
            choice: extract::choice_letter(&cleaned),
            text: cleaned,
        }
    }

    /// The answer as cleaned for comparison.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the answer was understood as mathematics (otherwise only text comparison applies).
    pub fn is_parsed(&self) -> bool {
        !self.readings.is_empty()
    }

    pub fn is_equivalent(&self, other: &Answer) -> bool {
        self.is_equivalent_with(other, &VerifyConfig::default())
    }

    /// Whether `other` (a candidate) means the same as `self` (the gold answer) under `config`.
    pub fn is_equivalent_with(&self, other: &Answer, config: &VerifyConfig) -> bool {
        // Symbols are case-sensitive (x ≠ X); words are not ("Yes", "\text{yes}").
        let same_text = if self.is_parsed() && other.is_parsed() {
            self.fingerprint == other.fingerprint
        } else {
            self.fingerprint.eq_ignore_ascii_case(&other.fingerprint)
        };
        if same_text && !self.fingerprint.is_empty() {
            return true;
        }
        if let (Some(a), Some(b)) = (self.choice, other.choice) {
            return a == b;
        }
        self.readings.iter().any(|a| {
            other
                .readings
                .iter()
                .any(|b| equiv::answers_equal(a, b, config))
        })
    }
}

fn parse_answer(cleaned: &str) -> Result<Node, ParseError> {
    let number_words = |err| {
        let mut words = cleaned.to_string();
        for wrapper in ["\\text", "\\mathrm", "\\textbf", "\\mbox"] {
            words = words.replace(wrapper, " ");
        }
        let words = words.replace(['{', '}'], " ");
        match words::parse_number_words(&words) {
            Some(n) => Ok(Node::rational(number::Rational::int(n).ok_or(err)?)),
            None => Err(err),
        }
    };
    match parse::parse_tokens(cleaned) {
        // "\text{eighty-three}" is a number written in words.
        Ok(Node::Text(_)) => {
            number_words(ParseError::Unsupported).or_else(|_| parse::parse_tokens(cleaned))
        }
        Ok(node) => Ok(node),
        Err(err) => number_words(err),
    }
}

/// Whether a cleaned span reads as an answer; extraction uses it to skip prose.
fn parses(cleaned: &str) -> bool {
    parse_answer(cleaned).is_ok()
}

/// Whether `candidate` (an extracted answer) means the same as `gold` (a reference answer).
pub fn equivalent(gold: &str, candidate: &str) -> bool {
    Answer::parse(gold).is_equivalent(&Answer::parse(candidate))
}

/// A reference answer prepared once and graded against many outputs.
#[derive(Debug, Clone)]
pub struct Reference {
    answer: Answer,
}

/// The verdict on one output and the answer that was read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Graded {
    pub verdict: Verdict,
    pub answer: Option<Extracted>,
}

impl Reference {
    /// `gold` may be a bare answer or a worked solution ending in `\boxed{…}` / "#### 42".
    pub fn new(gold: &str) -> Reference {
        let text = extract_answer(gold).map_or_else(|| gold.trim().to_string(), |e| e.text);
        Reference {
            answer: Answer::parse(&text),
        }
    }

    pub fn answer(&self) -> &Answer {
        &self.answer
    }

    pub fn grade(&self, output: &str) -> Graded {
        self.grade_with(output, &VerifyConfig::default())
    }

    pub fn grade_with(&self, output: &str, config: &VerifyConfig) -> Graded {
        let mut found = extract_answer(output);
        if self.answer.choice.is_some() {
            found = extract::choice_answer(output, found);
        }
        let verdict = match &found {
            None => Verdict::fail(Check::Math, Reason::MathNoAnswer),
            Some(candidate)
                if self
                    .answer
                    .is_equivalent_with(&Answer::parse(&candidate.text), config) =>
            {
                Verdict::pass(Check::Math)
            }
            Some(candidate) => Verdict::fail(
                Check::Math,
                Reason::MathWrongAnswer {
                    expected: self.answer.text.clone(),
                    got: candidate.text.clone(),
                },
            ),
        };
        Graded {
            verdict,
            answer: found,
        }
    }
}

/// Extracts the final answer of `output` and checks it against `gold`.
pub fn grade(gold: &str, output: &str) -> Graded {
    Reference::new(gold).grade(output)
}

/// [`grade`] under a [`VerifyConfig`].
pub fn grade_with(gold: &str, output: &str, config: &VerifyConfig) -> Graded {
    Reference::new(gold).grade_with(output, config)
}

/// [`grade`] without the extracted answer.
pub fn verify(gold: &str, output: &str) -> Verdict {
    grade(gold, output).verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_reports_reasons() {
        assert!(verify("20", "The answer is twenty.").is_pass());
        let verdict = verify("20", "The answer is 21.");
        assert_eq!(verdict.code(), "math.wrong_answer");
        assert_eq!(
            verdict.reason().map(ToString::to_string).as_deref(),
            Some(r#"expected "20", got "21""#)
        );
        assert_eq!(
            verify("20", "Adding everything up gives").code(),
            "math.no_answer"
        );
    }

    #[test]
    fn multiple_choice() {
        assert!(verify("A", "The answer is A.").is_pass());
        assert!(verify("A", "A. Because B is not valid").is_pass());
        assert!(verify("B", "Because B is valid").is_pass());
        assert!(verify("\\text{C}", "$\\boxed{\\text{(C)}}.$").is_pass());
        assert!(!verify("C", "The answer is D.").is_pass());
    }

    /// Common ways of writing answers beyond the labelled files: (gold, output, correct).
    const FORMS: &[(&str, &str, bool)] = &[
        ("$\\frac{1}{2}$", "0.5", true),
        ("$x^2 + 2x + 1$", "$(x+1)^2$", true),
        ("$\\sqrt{12}$", "$2\\sqrt{3}$", true),
        ("$\\frac{\\sqrt{3}}{2}$", "$\\frac{1}{2}\\sqrt{3}$", true),
        ("$\\{1,2,3\\}$", "$\\{3,2,1\\}$", true),
        ("$(1,2)$", "$(2,1)$", false),
        ("$[1,2]$", "$[1,2)$", false),
        ("$\\infty$", "$\\infty$", true),
        ("$x \\in (-\\infty, 2]$", "$x \\leq 2$", true),
        ("$30^\\circ$", "30", true),
        ("$3.14$", "$\\pi$", false),
        ("$\\log_2 8$", "3", true),
        ("$\\binom{5}{2}$", "10", true),
        ("$2^{10}$", "1024", true),
        ("$\\cos(\\pi/3)$", "$\\frac12$", true),
        ("$10\\%$", "0.1", true),
        ("5 \\text{ cm}", "5", true),
        ("$\\emptyset$", "$\\{\\}$", true),
        ("2, 3", "$x=2$ or $x=3$", true),
        ("1000000", "1,000,000", true),
        ("5.5", "The answer is $5.50.", true),
        ("1250", "The answer is $1,250.", true),
        ("15", "The answer is 15 toys.", true),
        ("0.5", "So in total it comes to 1/2 of the pizza.", true),
        ("-16", "The answer is -16 °C.", true),
        ("6", "The answer is \\(\\boxed{6}\\).", true),
        (
            "6",
            "I think it's \\boxed{5}. Hmm, wait, actually it is \\boxed{6}.",
            true,
        ),
        (
            "6",
            "\\boxed{6}. Hmm, wait, maybe I should re-read... Actually let me reconsider: the question might ask something else, giving \\boxed{7}.",
            false,
        ),
        (
            "7",
            "The answer is 7.\n\nLet me know if you have any questions.",
            true,
        ),
        (
            "72",
            "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
            true,
        ),
        ("\\frac{3}{4}", "\\[ x = \\frac{3}{4} \\]", true),
        ("3/4", "x = 0.75", true),
        ("x^2", "x^{2}", true),
        ("2x", "x2", false),
        ("\\frac{1}{x}", "x^{-1}", true),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", true),
        ("\\frac{\\pi}{4}", "45^\\circ", false),
        ("12", "twelve", true),
        ("100", "one hundred", true),
        ("a", "A", false),
        ("(3, -1)", "\\left(3, -1\\right)", true),
        ("y = 2x + 3", "y=3+2x", true),
        ("5", "x = 5 or x = -5", false),
        ("-5, 5", "\\pm 5", true),
        (
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            true,
        ),
        (
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}",
            false,
        ),
        ("1.5", "3/2", true),
        ("0.1", "10%", true),
        ("50", "50\\%", true),
        ("4", "2+2", true),
        ("\\frac{5}{2}", "2\\frac{1}{2}", true),
        ("\\$18.90", "18.9", true),
        ("18.90", "\\$18.90", true),
        ("3", "The answer is: 3", true),
        ("3", "**Answer: 3**", true),
        ("3", "Answer: **3**", true),
        ("3", "The final answer is $\\boxed{3}$", true),
        (
            "3",
            "The final answer is $\\boxed{4}$. Wait no. The final answer is $\\boxed{3}$.",
            true,
        ),
        ("E", "The correct option is (E).", true),
        ("C", "\\boxed{C}", true),
        ("C", "\\boxed{D}", false),
        ("\\text{Monday}", "Monday", true),
        ("\\text{Evelyn}", "\\text{Evelyn}", true),
        (
            "(-\\infty, -3] \\cup [2, \\infty)",
            "x \\le -3 \\text{ or } x \\ge 2",
            true,
        ),
        ("2\\sqrt{2}", "\\sqrt{8}", true),
        ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", true),
        ("e^{2}", "e^2", true),
        ("3\\pi", "3 \\pi", true),
        ("10^{-3}", "0.001", true),
        ("1.2 \\times 10^{3}", "1200", true),
        ("1.2e3", "1200", true),
        ("6.02 \\times 10^{23}", "6.02e23", true),
        ("x^2-1", "(x-1)(x+1)", true),
        ("\\frac{x^2-1}{x-1}", "x+1", true),
        ("-\\frac{1}{2}", "\\frac{-1}{2}", true),
        ("1/2", "-1/2", false),
        ("0", "-0", true),
        (
            "18",
            "So in total it comes to 18 cards.\nLet me double-check: 27 was an intermediate value.",
            true,
        ),
        ("8", "The total is 5 + 3 = 8.", true),
        ("\\sin^2(x)+\\cos^2(x)", "1", true),
        ("\\ln(e)", "1", true),
        ("\\sqrt[3]{8}", "2", true),
        ("x+y=1", "y+x=1", true),
        ("x = 1", "1 = x", true),
        ("1", "5 = x", false),
        ("\\lfloor 2.5 \\rfloor", "2", true),
        ("\\sin^{-1}(1/2)", "\\frac{\\pi}{6}", true),
        ("\\langle 1, 2 \\rangle", "(1,2)", true),
        ("\\text{Yes}", "yes", true),
        ("\\text{Yes}", "no", false),
        (
            "\\left[\\begin{matrix} 1 & 2 \\\\ 3 & 4 \\end{matrix}\\right]",
            "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
            true,
        ),
        ("5 \\mathrm{~cm}", "5", true),
        ("0.333333", "\\frac{1}{3}", true),
        (
            "189",
            "<think>\nso 189?\n</think>\n\n**Final Answer**\n\\[\n\\boxed{189}\n\\]",
            true,
        ),
        ("5", "Thus, the final answer is \\(\\boxed{5}\\).", true),
        (
            "\\frac{\\sqrt{3}}{2}",
            "So $\\sin 60^\\circ = \\boxed{\\dfrac{\\sqrt3}{2}}$.",
            true,
        ),
        ("\\{1,2,3\\}", "\\{1,2,4\\}", false),
        // Units and currency words after the number; never converted.
        ("43", "The total cost is $\\boxed{43 \\text{ USD}}$.", true),
        ("5", "The side length is **5 cm**.", true),
        // A decimal stands for an exact value when correctly rounded to 4 significant digits.
        (
            "6\\pi",
            "The circumference is $\\boxed{\\approx 18.850}$.",
            true,
        ),
        ("\\frac{1}{3}", "So $x \\approx 0.33$.", false),
        ("3\\sqrt{2}", "$\\boxed{4.2426}$", true),
        ("3\\sqrt{2}", "$\\boxed{4.24}$", false),
        // Options listed: the option's text answers; a hedge does not.
        (
            "B",
            "Options: (A) 12 (B) 14 (C) 16 (D) 18\n\n**Answer:** 14",
            true,
        ),
        (
            "B",
            "Options: (A) 12 (B) 14 (C) 16 (D) 18\n\nThe answer is B or C.",
            false,
        ),
        ("175760000", "There are 175.760.000 possible plates.", true),
        (
            "4.5",
            "Der Preis beträgt 4,5 Euro. Die Antwort ist \\boxed{4,5}.",
            true,
        ),
        ("x \\le 3", "Thus $-x \\geq -3$.", true),
        ("11:21", "Hence $V_1 : V_2 = 11 : 21$.", true),
        // Cut off while thinking: no answer, whatever numbers the reasoning holds.
        (
            "42",
            "<think>\nLet me add: 40 + 2 = 42, so the total is 42 and then",
            false,
        ),
        (
            "42",
            "<think>ok</think>\n\\boxed{42}<|im_end|>\n<|im_start|>user\nNow 43? \\boxed{43}",
            true,
        ),
        ("40/9", "The answer is 4 4/9%.", false),
        ("50", "So the answer is \\boxed{0.5}.", false),
        ("\\{1, 2\\}", "The solutions are $x = 1$ and $x = 2$.", true),
        ("2500", "#### 2.500", false),
        ("2/3", "The answer is 0.\\overline{6}", true),
        ("611/495", "$1.2\\overline{34}$", true),
        ("-3", "The temperature is −3 °C.", true),
        ("[1, 5]", "So $1 \\le x \\le 5$.", true),
        ("2/3", "The answer is 0.6666", false),
        ("B", "(A) 3\n(B) 5\n(C) 7\n(D) 9\n\nThe answer is 7.", false),
        (
            "16",
            "Mary has 18 marbles left. Wait, she gave 2 away, so 16.",
            true,
        ),
    ];

    #[test]
    fn common_answer_forms() {
        let wrong: Vec<String> = FORMS
            .iter()
            .filter(|(gold, output, correct)| verify(gold, output).is_pass() != *correct)
            .map(|(gold, output, correct)| {
                format!(
                    "{gold:?} vs {output:?}: expected {correct}, got {}",
                    grade(gold, output).verdict
                )
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn equivalence_of_bare_answers() {
        assert!(equivalent("1000", "1 000"));
        assert!(equivalent("40/9", "4 4/9"));
        assert!(!equivalent("11", "11 6/6"));
        assert!(equivalent("40/900", "4 4/9 percent"));
        assert!(equivalent("\\text{odd}", "odd"));
        assert!(!equivalent("\text{13}", "13"));
    }
}

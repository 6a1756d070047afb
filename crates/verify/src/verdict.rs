//! The common currency of every check: a [`Verdict`] saying which check ran and whether it passed,
//! and on failure a [`Reason`] with a stable machine-readable code.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which check produced a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Math,
    Code,
    Format,
    Language,
    Length,
    Repetition,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Math => "math",
            Check::Code => "code",
            Check::Format => "format",
            Check::Language => "language",
            Check::Length => "length",
            Check::Repetition => "repetition",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of one check on one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub check: Check,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail(Reason),
}

impl Verdict {
    pub fn pass(check: Check) -> Self {
        Verdict {
            check,
            outcome: Outcome::Pass,
        }
    }

    pub fn fail(check: Check, reason: Reason) -> Self {
        Verdict {
            check,
            outcome: Outcome::Fail(reason),
        }
    }

    pub fn is_pass(&self) -> bool {
        matches!(self.outcome, Outcome::Pass)
    }

    pub fn reason(&self) -> Option<&Reason> {
        match &self.outcome {
            Outcome::Pass => None,
            Outcome::Fail(reason) => Some(reason),
        }
    }

    /// `"pass"` or the reason's code, e.g. `"math.wrong_answer"`.
    pub fn code(&self) -> &'static str {
        self.reason().map_or("pass", Reason::code)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Pass => write!(f, "{}: pass", self.check),
            Outcome::Fail(reason) => {
                write!(f, "{}: fail ({}): {reason}", self.check, reason.code())
            }
        }
    }
}

/// Why a check failed. Serialised with its [`Reason::code`] as the `code` tag, so stored verdicts
/// stay readable by other tools: `{"code":"math.wrong_answer","expected":"3/8","got":"0.625"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code")]
pub enum Reason {
    #[serde(rename = "math.no_answer")]
    #[error("no final answer found in the output")]
    MathNoAnswer,
    #[serde(rename = "math.wrong_answer")]
    #[error("expected {expected:?}, got {got:?}")]
    MathWrongAnswer { expected: String, got: String },

    #[serde(rename = "code.no_code")]
    #[error("no code block found in the output")]
    CodeNoCode,
    #[serde(rename = "code.syntax")]
    #[error("the program does not parse: {detail}")]
    CodeSyntax { detail: String },
    #[serde(rename = "code.failed")]
    #[error("program failed ({status}): {stderr_tail}")]
    CodeFailed { status: String, stderr_tail: String },
    #[serde(rename = "code.timeout")]
    #[error("program exceeded its {limit} time limit of {limit_ms} ms")]
    CodeTimeout { limit: TimeLimit, limit_ms: u64 },
    #[serde(rename = "code.memory")]
    #[error("program exceeded its memory limit of {limit_bytes} bytes")]
    CodeMemory { limit_bytes: u64 },
    #[serde(rename = "code.output_limit")]
    #[error("program wrote more than {limit_bytes} bytes of output")]
    CodeOutputLimit { limit_bytes: u64 },
    #[serde(rename = "code.process_limit")]
    #[error("program tried to start more processes than allowed: {detail}")]
    CodeProcessLimit { detail: String },
    #[serde(rename = "code.forbidden")]
    #[error("program attempted a forbidden operation: {detail}")]
    CodeForbidden { detail: String },
    #[serde(rename = "code.sandbox_error")]
    #[error("the sandbox could not run the program: {detail}")]
    CodeSandboxError { detail: String },

    #[serde(rename = "format.missing_think")]
    #[error("no <think>…</think> block")]
    FormatMissingThink,
    #[serde(rename = "format.multiple_think")]
    #[error("{count} think blocks; exactly one is allowed")]
    FormatMultipleThink { count: usize },
    #[serde(rename = "format.unclosed_think")]
    #[error("<think> is never closed")]
    FormatUnclosedThink,
    #[serde(rename = "format.empty_think")]
    #[error("the think block is empty")]
    FormatEmptyThink,
    #[serde(rename = "format.text_before_think")]
    #[error("text appears before the think block")]
    FormatTextBeforeThink,
    #[serde(rename = "format.missing_answer")]
    #[error("no answer after the think block")]
    FormatMissingAnswer,
    #[serde(rename = "format.answer_tag_missing")]
    #[error("no <answer>…</answer> block after the think block")]
    FormatAnswerTagMissing,
    #[serde(rename = "format.answer_tag_unclosed")]
    #[error("<answer> and </answer> do not pair up")]
    FormatAnswerTagUnclosed,
    #[serde(rename = "format.answer_tag_empty")]
    #[error("the answer block is empty")]
    FormatAnswerTagEmpty,
    #[serde(rename = "format.answer_tag_doubled")]
    #[error("{count} answer blocks; exactly one is allowed")]
    FormatAnswerTagDoubled { count: usize },

    #[serde(rename = "language.mixed")]
    #[error("{share:.3} of letters are {foreign:?} in {dominant:?} text (limit {threshold})")]
    LanguageMixed {
        dominant: crate::language::Script,
        foreign: crate::language::Script,
        share: f64,
        threshold: f64,
    },

    #[serde(rename = "length.too_long")]
    #[error("{actual} {unit} exceeds the maximum of {limit}")]
    LengthTooLong {
        unit: LengthUnit,
        actual: u64,
        limit: u64,
    },
    #[serde(rename = "length.too_short")]
    #[error("{actual} {unit} is below the minimum of {limit}")]
    LengthTooShort {
        unit: LengthUnit,
        actual: u64,
        limit: u64,
    },

    /// The teacher stopped at its token limit (`finish_reason = "length"`): the trace is cut off.
    #[serde(rename = "length.truncated")]
    #[error("the teacher hit its token limit and the answer is cut off")]
    LengthTruncated,

    #[serde(rename = "repetition.ngram")]
    #[error("a {n}-word sequence repeats {count} times (limit {limit}): {sample:?}")]
    RepetitionNgram {
        n: usize,
        count: usize,
        limit: usize,
        sample: String,
    },
    #[serde(rename = "repetition.ratio")]
    #[error("{share:.3} of {n}-word sequences are repeats (limit {limit})")]
    RepetitionRatio { n: usize, share: f64, limit: f64 },
}

impl Reason {
    /// Stable machine-readable code; the same string the serde form carries as `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::MathNoAnswer => "math.no_answer",
            Reason::MathWrongAnswer { .. } => "math.wrong_answer",
            Reason::CodeNoCode => "code.no_code",
            Reason::CodeSyntax { .. } => "code.syntax",
            Reason::CodeFailed { .. } => "code.failed",
            Reason::CodeTimeout { .. } => "code.timeout",
            Reason::CodeMemory { .. } => "code.memory",
            Reason::CodeOutputLimit { .. } => "code.output_limit",
            Reason::CodeProcessLimit { .. } => "code.process_limit",
            Reason::CodeForbidden { .. } => "code.forbidden",
            Reason::CodeSandboxError { .. } => "code.sandbox_error",
            Reason::FormatMissingThink => "format.missing_think",
            Reason::FormatMultipleThink { .. } => "format.multiple_think",
            Reason::FormatUnclosedThink => "format.unclosed_think",
            Reason::FormatEmptyThink => "format.empty_think",
            Reason::FormatTextBeforeThink => "format.text_before_think",
            Reason::FormatMissingAnswer => "format.missing_answer",
            Reason::FormatAnswerTagMissing => "format.answer_tag_missing",
            Reason::FormatAnswerTagUnclosed => "format.answer_tag_unclosed",
            Reason::FormatAnswerTagEmpty => "format.answer_tag_empty",
            Reason::FormatAnswerTagDoubled { .. } => "format.answer_tag_doubled",
            Reason::LanguageMixed { .. } => "language.mixed",
            Reason::LengthTooLong { .. } => "length.too_long",
            Reason::LengthTooShort { .. } => "length.too_short",
            Reason::LengthTruncated => "length.truncated",
            Reason::RepetitionNgram { .. } => "repetition.ngram",
            Reason::RepetitionRatio { .. } => "repetition.ratio",
        }
    }
}

/// Which clock a code timeout refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeLimit {
    Wall,
    Cpu,
}

impl fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeLimit::Wall => "wall-clock",
            TimeLimit::Cpu => "CPU",
        })
    }
}

/// What a length limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    Chars,
    Tokens,
}

impl fmt::Display for LengthUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LengthUnit::Chars => "characters",
            LengthUnit::Tokens => "tokens",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_form_carries_the_code() {
        let verdict = Verdict::fail(
            Check::Math,
            Reason::MathWrongAnswer {
                expected: "3/8".into(),
                got: "0.625".into(),
            },
        );
        let json = serde_json::to_string(&verdict).expect("serialise");
        assert!(json.contains(r#""code":"math.wrong_answer""#), "{json}");
        let back: Verdict = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, verdict);
        assert_eq!(back.code(), "math.wrong_answer");
        assert_eq!(
            serde_json::to_string(&Verdict::pass(Check::Code)).expect("ser"),
            r#"{"check":"code","outcome":"pass"}"#
        );
    }

    #[test]
    fn display_names_expected_and_got() {
        let reason = Reason::MathWrongAnswer {
            expected: "20".into(),
            got: "21".into(),
        };
        assert_eq!(reason.to_string(), r#"expected "20", got "21""#);
    }
}

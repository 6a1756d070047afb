//! Scoring one sample with the project's verifiers: the same math extraction and equivalence,
//! and the same code sandbox, that decide which traces a pipeline keeps.
//!
//! Eval asks one question of a sample: is its answer right? So only the answer checks run;
//! format, language, length and repetition shape training data, not correctness. A sample cut
//! off at the token limit is still graded (an answer may come before the cut), and when it
//! fails its reason is `length.truncated`, the cause worth knowing.

use distillery_teacher::{FinishReason, Sample};
use distillery_verify::code::{Sandbox, SandboxLimits, extract_code_block};
use serde::{Deserialize, Serialize};

use crate::benchmark::{Check, Problem};

/// A sample's verdict code when it passes.
pub const PASS: &str = "pass";
/// A sample that never came back: the request failed after its retries.
pub const REQUEST_FAILED: &str = "request.failed";
/// The server refused the prompt (e.g. longer than its context).
pub const REQUEST_REJECTED: &str = "request.rejected";
/// The server answered with fewer samples than asked for.
pub const SAMPLE_MISSING: &str = "request.missing_sample";
/// Cut off at the token limit without a right answer.
pub const TRUNCATED: &str = "length.truncated";

/// The verdict on one sample, with what it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleScore {
    pub index: u32,
    pub correct: bool,
    /// `pass`, or why not: a verifier reason code (`math.wrong_answer`, `code.failed`, …),
    /// `length.truncated`, or a `request.*` code when the sample never arrived.
    pub verdict: String,
    /// The reason in words (expected and got, the test's stderr, …).
    pub detail: Option<String>,
    /// The final answer read from the output (math), or the code that was run.
    pub extracted: Option<String>,
    pub finish_reason: String,
    pub content: String,
    pub reasoning: Option<String>,
}

impl SampleScore {
    /// A sample that has no output to grade.
    pub fn failed(index: u32, verdict: &str, detail: impl Into<String>) -> Self {
        Self {
            index,
            correct: false,
            verdict: verdict.into(),
            detail: Some(detail.into()),
            extracted: None,
            finish_reason: "error".into(),
            content: String::new(),
            reasoning: None,
        }
    }
}

/// Grades samples; cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Scorer {
    sandbox: Sandbox,
}

impl Default for Scorer {
    fn default() -> Self {
        Self::new(SandboxLimits::default())
    }
}

impl Scorer {
    pub fn new(limits: SandboxLimits) -> Self {
        Self {
            sandbox: Sandbox::new(limits),
        }
    }

    /// The sandbox that runs code answers (to check it found a Python before a long run).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Grades the answer of `sample` (its content, after any reasoning) against `problem`.
    /// Code answers run in the sandbox: call it off the async threads.
    pub fn score(&self, problem: &Problem, sample: &Sample) -> SampleScore {
        let (verdict, extracted) = match &problem.check {
            Check::Math(reference) => {
                let graded = reference.grade(&sample.content);
                (graded.verdict, graded.answer.map(|answer| answer.text))
            }
            Check::Code(task) => {
                // As the pipeline's code check: the last fenced block, else the whole answer.
                let code = extract_code_block(&sample.content).unwrap_or(&sample.content);
                let extracted = (!code.trim().is_empty()).then(|| code.to_owned());
                let verdict = self.sandbox.check_humaneval_answer(task, &sample.content);
                (verdict, extracted)
            }
        };
        let truncated = sample.finish_reason == FinishReason::Length;
        let (code, detail) = match verdict.reason() {
            None => (PASS, None),
            Some(reason) if truncated => (
                TRUNCATED,
                Some(format!(
                    "hit the token limit; then {}: {reason}",
                    reason.code()
                )),
            ),
            Some(reason) => (reason.code(), Some(reason.to_string())),
        };
        SampleScore {
            index: sample.index,
            correct: verdict.is_pass(),
            verdict: code.into(),
            detail,
            extracted,
            finish_reason: sample.finish_reason.to_string(),
            content: sample.content.clone(),
            reasoning: sample.reasoning.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use distillery_teacher::ReasoningSource;
    use distillery_verify::code::HumanEvalTask;
    use distillery_verify::math;

    use super::*;

    fn problem(check: Check) -> Problem {
        Problem {
            id: "p".into(),
            row: 1,
            prompt: "q".into(),
            system: None,
            reference: None,
            check,
        }
    }

    fn sample(content: &str, finish: FinishReason) -> Sample {
        Sample {
            logprobs: None,
            index: 3,
            reasoning: Some("thinking".into()),
            content: content.into(),
            reasoning_source: ReasoningSource::Field,
            finish_reason: finish,
        }
    }

    #[test]
    fn math_answers() {
        let scorer = Scorer::default();
        let p = problem(Check::Math(math::Reference::new("Work.\n#### 1,200")));
        let right = scorer.score(&p, &sample("So \\boxed{1200}.", FinishReason::Stop));
        assert!(right.correct);
        assert_eq!(right.verdict, PASS);
        assert_eq!(right.extracted.as_deref(), Some("1200"));
        assert_eq!(right.index, 3);
        assert_eq!(right.reasoning.as_deref(), Some("thinking"));

        let wrong = scorer.score(&p, &sample("The answer is 12.", FinishReason::Stop));
        assert!(!wrong.correct);
        assert_eq!(wrong.verdict, "math.wrong_answer");
        let detail = wrong.detail.unwrap();
        assert_eq!(detail, "expected \"1,200\", got \"12\"");

        let none = scorer.score(&p, &sample("", FinishReason::Stop));
        assert_eq!(none.verdict, "math.no_answer");

        let cut = scorer.score(&p, &sample("", FinishReason::Length));
        assert_eq!(cut.verdict, TRUNCATED);
        assert!(cut.detail.unwrap().contains("math.no_answer"));
        assert_eq!(cut.finish_reason, "length");

        // An answer given before the cut still counts.
        let early = scorer.score(&p, &sample("\\boxed{1200} and then", FinishReason::Length));
        assert!(early.correct);
    }

    #[test]
    fn code_answers_run_in_the_sandbox() {
        let scorer = Scorer::default();
        if scorer.sandbox().python().is_none() {
            eprintln!("no python3: skipping");
            return;
        }
        let p = problem(Check::Code(HumanEvalTask {
            task_id: "t".into(),
            prompt: "def add(a, b):\n    \"\"\"Add.\"\"\"\n".into(),
            canonical_solution: String::new(),
            test: "def check(f):\n    assert f(2, 3) == 5\n".into(),
            entry_point: "add".into(),
        }));
        let whole = "Here:\n```python\ndef add(a, b):\n    return a + b\n```";
        let right = scorer.score(&p, &sample(whole, FinishReason::Stop));
        assert!(right.correct, "{right:?}");
        assert_eq!(
            right.extracted.as_deref(),
            Some("def add(a, b):\n    return a + b\n")
        );
        let body = scorer.score(&p, &sample("    return a + b\n", FinishReason::Stop));
        assert!(body.correct, "a bare body completes the prompt: {body:?}");
        let wrong = scorer.score(
            &p,
            &sample(
                "```python\ndef add(a, b):\n    return a - b\n```",
                FinishReason::Stop,
            ),
        );
        assert_eq!(wrong.verdict, "code.failed");
        let empty = scorer.score(&p, &sample("  ", FinishReason::Stop));
        assert_eq!(empty.verdict, "code.no_code");
    }
}

//! Settings of the built-in mock teacher, a simulator of an R1-style reasoning model.
//!
//! Shared by `[teacher.mock]` in a pipeline definition and by `distillery mock-teacher`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the simulated teacher hands back its reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningStyle {
    /// DeepSeek API style: `message.reasoning_content` / `delta.reasoning_content`.
    #[default]
    ReasoningContent,
    /// vLLM / SGLang newer style: `message.reasoning` / `delta.reasoning`.
    Reasoning,
    /// Raw R1 output: `<think>…</think>` at the start of `content`.
    ThinkTags,
}

/// What the simulated teacher writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MockTask {
    /// Worked solutions ending in `\boxed{answer}` (GSM8K, MATH): the reference is replayed as
    /// reasoning steps.
    Math,
    /// Python in a fenced block after the reasoning (HumanEval, MBPP): the reference solution
    /// is the code; wrong samples carry a bug (off-by-one, wrong operator, missing edge case,
    /// syntax error, infinite loop).
    Code,
}

/// Probabilities of each fault, drawn independently per request attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultRates {
    /// 429 with a `Retry-After` header.
    pub rate_limit: f64,
    /// Seconds announced in `Retry-After`.
    pub retry_after_secs: u64,
    /// 500 with an error body.
    pub server_error: f64,
    /// The connection is dropped part-way through the response.
    pub reset: f64,
    /// A stream (or body) that stops sending for `stall_secs`.
    pub stall: f64,
    pub stall_secs: f64,
    /// A 200 whose body is not valid JSON.
    pub malformed: f64,
    /// Attempts per prompt after which no fault is injected, so every prompt completes.
    pub max_faults_per_prompt: u32,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            rate_limit: 0.0,
            retry_after_secs: 1,
            server_error: 0.0,
            reset: 0.0,
            stall: 0.0,
            stall_secs: 30.0,
            malformed: 0.0,
            max_faults_per_prompt: 3,
        }
    }
}

impl FaultRates {
    pub fn total(&self) -> f64 {
        self.rate_limit + self.server_error + self.reset + self.stall + self.malformed
    }
}

/// The simulator's behaviour. Every random choice is seeded: the same settings and the same
/// requests give the same answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockSettings {
    /// JSONL/JSON file whose reference solutions are replayed. In a pipeline it defaults to
    /// the source file.
    pub dataset: Option<PathBuf>,
    /// Field holding the problem text, matched against the prompt.
    pub question_field: String,
    /// Field holding the reference solution (GSM8K style: steps, then `#### answer`; for
    /// code, the solution's Python).
    pub answer_field: String,
    /// Math or code. Unset, a pipeline with `[verify.code]` gets code and any other math; the
    /// stand-alone server looks at the data set (rows with `entry_point`, `test` or
    /// `test_list` are code).
    pub task: Option<MockTask>,
    /// Share of samples that end with the right answer; the rest get a wrong one.
    pub accuracy: f64,
    /// Mean latency of a whole response, in milliseconds.
    pub latency_ms: f64,
    /// Spread of the latency (standard deviation of a log-normal), in milliseconds.
    pub latency_jitter_ms: f64,
    /// Share of samples whose reasoning drifts into another script (Chinese).
    pub language_mix_rate: f64,
    /// Share of samples cut off with `finish_reason = "length"`.
    pub truncation_rate: f64,
    pub reasoning_style: ReasoningStyle,
    /// `r1` or `tagged` (the answer in `<answer>…</answer>`). In a pipeline it defaults to
    /// `[prompt] assistant_format`, else to `r1`.
    pub assistant_format: Option<crate::AssistantFormat>,
    pub seed: u64,
    pub faults: FaultRates,
    /// A `tokenizer.json` the simulator splits its text with when asked for log-probabilities
    /// (`top_logprobs`), so its tokens are a real vocabulary's (a student's, in the demo).
    /// Without one it splits text into words, digits and single characters.
    pub tokenizer: Option<PathBuf>,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            dataset: None,
            question_field: "question".into(),
            answer_field: "answer".into(),
            task: None,
            accuracy: 0.8,
            latency_ms: 0.0,
            latency_jitter_ms: 0.0,
            language_mix_rate: 0.0,
            truncation_rate: 0.0,
            reasoning_style: ReasoningStyle::default(),
            assistant_format: None,
            seed: 0,
            faults: FaultRates::default(),
            tokenizer: None,
        }
    }
}

impl MockSettings {
    /// Problems with these settings, as (field path, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let rates = [
            ("accuracy", self.accuracy),
            ("language_mix_rate", self.language_mix_rate),
            ("truncation_rate", self.truncation_rate),
            ("faults.rate_limit", self.faults.rate_limit),
            ("faults.server_error", self.faults.server_error),
            ("faults.reset", self.faults.reset),
            ("faults.stall", self.faults.stall),
            ("faults.malformed", self.faults.malformed),
        ];
        for (field, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                problems.push((field, format!("must be between 0 and 1, got {rate}")));
            }
        }
        if self.faults.total() > 1.0 {
            problems.push((
                "faults",
                format!(
                    "fault rates add up to {:.3}; their sum must be at most 1",
                    self.faults.total()
                ),
            ));
        }
        for (field, value) in [
            ("latency_ms", self.latency_ms),
            ("latency_jitter_ms", self.latency_jitter_ms),
            ("faults.stall_secs", self.faults.stall_secs),
        ] {
            if !value.is_finite() || value < 0.0 {
                problems.push((field, format!("must be a non-negative number, got {value}")));
            }
        }
        problems
    }
}

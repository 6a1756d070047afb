//! The records a run produces. One [`Generation`] is one sample of the teacher for one prompt,
//! verified; it is what the write-ahead log holds and what a shard row is.

use serde::{Deserialize, Serialize};

use crate::logprobs::TeacherLogprobs;

pub use distillery_spec::ChatMessage;

/// The outcome of one check on one sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// `math`, `code`, `format`, `language`, `length`, `repetition`, or `keep` for the keep
    /// policy.
    pub check: String,
    pub passed: bool,
    /// Machine-readable code, e.g. `math.wrong_answer`; `None` when the check passed.
    pub reason: Option<String>,
    /// Human-readable detail, e.g. the two answers compared.
    pub detail: Option<String>,
}

/// Where a row came from, so a dataset can be traced back to its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub run_id: String,
    pub pipeline: String,
    /// Hash of the frozen definition the row was produced under.
    pub config_hash: String,
    pub source_path: String,
    /// 1-based line (JSONL), array index (JSON) or row number (Parquet) of the source row.
    pub source_row: u64,
    /// Unix time in milliseconds when the generation was verified.
    pub created_at_ms: i64,
}

/// What the source row says about the problem besides the prompt, copied as given (the
/// `[source]` fields `prompt_field`, `solution_field`, `problem_type_field`, `level_field` and
/// `origin_field`). Every sample of a prompt carries the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceFields {
    /// The problem as the source gives it, before the prompt template wraps it.
    pub problem: Option<String>,
    /// The source's worked solution.
    pub solution: Option<String>,
    pub problem_type: Option<String>,
    /// The source's difficulty (MATH's `Level 3`).
    pub level: Option<String>,
    /// The data set the row comes from (NuminaMath's `source`).
    pub origin: Option<String>,
}

/// One verified sample of the teacher for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Stable prompt id: the source's id field, else a hash of the source row.
    pub id: String,
    /// 0-based sample index within the prompt; (id, sample_index) is unique in a run.
    pub sample_index: u32,
    /// The user turn as sent to the teacher (template applied).
    pub problem: String,
    pub system_prompt: Option<String>,
    pub reference_answer: Option<String>,
    /// The source row's own fields; WAL records written before they existed read as empty.
    #[serde(default)]
    pub source: SourceFields,
    pub reasoning: Option<String>,
    /// The final answer text after the reasoning.
    pub content: String,
    /// The answer the math check extracted from `content`, if any.
    pub extracted_answer: Option<String>,
    /// SFT-ready conversation: optional system, user, then the assistant turn
    /// `<think>\n{reasoning}\n</think>\n\n{content}`.
    pub messages: Vec<ChatMessage>,
    /// Every check's verdict, in the order they ran.
    pub checks: Vec<CheckResult>,
    /// Passed every check and was kept by the keep policy.
    pub accepted: bool,
    /// The first failing check's reason code, when rejected.
    pub reject_reason: Option<String>,
    pub teacher_model: String,
    pub endpoint: String,
    /// `stop`, `length`, …
    pub finish_reason: String,
    /// `field`, `think_tags` or `absent`.
    pub reasoning_source: String,
    /// Prompt tokens of the request (shared by all samples of the prompt).
    pub prompt_tokens: u64,
    /// This sample's share of the request's completion tokens.
    pub completion_tokens: u64,
    /// This sample's share of the request's reasoning tokens.
    pub reasoning_tokens: u64,
    /// The server reported no usage: the token counts were estimated from the text.
    #[serde(default)]
    pub tokens_estimated: bool,
    pub latency_ms: u64,
    /// HTTP attempts the request took, retries included.
    pub attempts: u32,
    pub provenance: Provenance,
    /// How the length limit treated this sample; WAL records written before it existed read as
    /// never cut.
    #[serde(default)]
    pub length: LengthHandling,
    /// The teacher's top-k log-probabilities of every generated token, when the definition
    /// asked for them (`[teacher] top_logprobs`) and the row was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_logprobs: Option<TeacherLogprobs>,
}

/// How the length limit treated one sample (`[verify] on_truncated`): how often it cut the
/// sample off, and the requests that followed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LengthHandling {
    /// Times the length limit cut this sample off (`finish_reason = "length"`), the attempts
    /// a re-ask threw away included.
    pub truncations: u32,
    /// Requests that continued the partial answer (`on_truncated = "continue"`).
    pub continuations: u32,
    /// Requests that asked the problem again with more tokens (`on_truncated = "reask"`).
    pub reasks: u32,
}

/// Why a row with these checks is rejected: the first failing check's reason code.
pub fn first_failure(checks: &[CheckResult]) -> String {
    checks
        .iter()
        .find(|c| !c.passed)
        .and_then(|c| c.reason.clone())
        .unwrap_or_else(|| "unknown".into())
}

/// The assistant turn of the SFT-ready conversation, in the DeepSeek-R1 layout.
pub fn assistant_turn(reasoning: Option<&str>, content: &str) -> String {
    assistant_turn_as(distillery_spec::AssistantFormat::R1, reasoning, content)
}

/// The assistant turn in `format`: R1's `<think>\n…\n</think>\n\n` then the answer, or the
/// tagged layout's `<think>\n…\n</think>\n` then the answer (its `<answer>` block as the teacher
/// wrote it), the layout open-r1's format reward expects.
pub fn assistant_turn_as(
    format: distillery_spec::AssistantFormat,
    reasoning: Option<&str>,
    content: &str,
) -> String {
    match (reasoning, format) {
        (Some(reasoning), distillery_spec::AssistantFormat::R1) => {
            format!("<think>\n{reasoning}\n</think>\n\n{content}")
        }
        (Some(reasoning), distillery_spec::AssistantFormat::Tagged) => {
            format!("<think>\n{reasoning}\n</think>\n{}", content.trim())
        }
        (None, _) => content.to_owned(),
    }
}

/// A prompt the teacher did not answer in a session (out of retries, or the session stopped
/// on a fatal error while it was in flight): not done, so a resume asks it again. One line of
/// `failures.jsonl` each; the file holds the failures not yet made good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureEntry {
    pub id: String,
    pub source_path: String,
    pub source_row: u64,
    /// Machine-readable code, e.g. `teacher.exhausted`, `teacher.generation`.
    pub reason: String,
    /// The error, as the teacher client reported it.
    pub detail: String,
    pub at_ms: i64,
}

/// A source row that could not be used, with its reason. Quarantined prompts count as done:
/// resume does not retry them (fix the row and start a new run instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// Prompt id when one could be derived.
    pub id: Option<String>,
    pub source_path: String,
    pub source_row: u64,
    /// Machine-readable code, e.g. `source.invalid_json`, `source.missing_field`,
    /// `teacher.rejected`.
    pub reason: String,
    pub detail: String,
    /// The raw row (or its first few KiB) so nothing is lost.
    pub raw: Option<String>,
}

//! The pipeline definition: what a user writes in `pipelines/*.toml`.
//!
//! [`Pipeline::from_file`] parses and validates a definition and reports every problem it
//! finds with file, line, column and field path. The typed result leaves no room for the
//! states validation rules out: an OpenAI teacher always has at least one endpoint, rates are
//! in range, counts are non-zero.

#![forbid(unsafe_code)]

mod chat;
mod locate;
mod meaning;
pub mod mock;
mod placement;
mod raw;
mod shard;
mod template;
mod validate;

use std::fmt;
use std::num::{NonZeroU8, NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use chat::ChatMessage;
pub use locate::{FieldPath, Position};
pub use mock::{FaultRates, MockSettings, MockTask, ReasoningStyle};
pub use placement::{DeviceSpec, Precision};
pub use shard::{Shard, ShardError, ShardRequest};
pub use template::{MissingField, Template};

/// The R1 recipe's instruction for math problems (DeepSeek-R1 usage recommendations).
pub const R1_MATH_INSTRUCTION: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";
/// The instruction of the `tagged` assistant format: R1-Zero's template asks for the reasoning
/// and the answer in their own tags.
pub const R1_TAGGED_INSTRUCTION: &str = "Please reason step by step inside <think> </think> tags, then give your final answer inside <answer> </answer> tags, within \\boxed{}.";
/// DeepSeek-R1's recommended sampling temperature.
pub const R1_TEMPERATURE: f64 = 0.6;
/// DeepSeek-R1's recommended nucleus sampling.
pub const R1_TOP_P: f64 = 0.95;

/// A validated pipeline definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pipeline {
    pub name: String,
    pub source: Source,
    pub prompt: Prompt,
    pub teacher: Teacher,
    pub verify: Verify,
    pub output: Output,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// Resolved against the directory of the definition file.
    pub path: PathBuf,
    pub format: SourceFormat,
    /// Field holding a stable id; without one, the id is a hash of the row.
    pub id_field: Option<String>,
    pub prompt_field: String,
    pub answer_field: Option<String>,
    pub answer_extract: AnswerExtract,
    /// Fields that describe the problem without being sent: they travel with every sample to
    /// the rows and the export (the open-r1 layout's `solution`, `problem_type`, `source`).
    pub metadata: SourceMetadata,
    pub limit: Option<u64>,
}

/// Source fields copied to the rows as they are. Each is optional, in the definition and in
/// each row: a row without the field has a null there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceMetadata {
    /// A worked solution (MATH's `solution`), distinct from the answer the check compares.
    pub solution_field: Option<String>,
    /// The kind of problem (open-r1's `problem_type`, MATH's `type`).
    pub problem_type_field: Option<String>,
    /// The difficulty (MATH's `level`): `status` and the card report acceptance by it.
    pub level_field: Option<String>,
    /// The data set a row comes from (NuminaMath's `source`); without it the export's `source`
    /// column is the source file's name.
    pub origin_field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of objects.
    Json,
    Parquet,
}

impl SourceFormat {
    pub fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "json" => Some(Self::Json),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// How the reference answer is read out of the answer field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerExtract {
    /// The field is the answer.
    #[default]
    Verbatim,
    /// GSM8K: the worked solution ends with `#### <answer>`.
    Gsm8k,
    /// MATH: the answer is the last `\boxed{…}` of the solution.
    Boxed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prompt {
    /// DeepSeek advise against a system prompt for R1; leave it unset unless the teacher needs it.
    pub system: Option<String>,
    pub template: Template,
    /// The shape of the assistant's answer: asked for by the default prompt, required by the
    /// format check, and the shape of the training conversation.
    pub assistant_format: AssistantFormat,
}

/// How an assistant turn lays out its reasoning and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssistantFormat {
    /// DeepSeek-R1: `<think>…</think>`, then the answer as free text.
    #[default]
    R1,
    /// R1-Zero and open-r1's GRPO recipes: `<think>…</think>` then `<answer>…</answer>`, one
    /// non-empty answer block.
    Tagged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherKind {
    Openai,
    Local,
    Mock,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Teacher {
    pub backend: Backend,
    pub sampling: Sampling,
    /// Samples per prompt (`n`).
    pub samples_per_prompt: NonZeroU32,
    /// Limit on a whole request, and on silence within a stream.
    pub timeout: Duration,
    /// Retries after the first attempt on 429, 5xx, timeouts and dropped connections.
    pub retries: u32,
    pub stream: bool,
    /// Ask for the top-k log-probabilities of every generated token (`top_logprobs = k`), to
    /// store beside accepted rows for logit distillation later.
    pub top_logprobs: Option<NonZeroU8>,
    /// `until_correct = k`: a problem is sampled again (in requests of `n`) until `k` of its
    /// samples pass every check or `max_samples` samples were drawn.
    pub until_correct: Option<UntilCorrect>,
    pub pricing: Option<Pricing>,
}

/// `[teacher] until_correct` and `max_samples`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UntilCorrect {
    /// Verified samples wanted per problem.
    pub verified: NonZeroU32,
    /// Samples drawn per problem at most, whatever their verdicts.
    pub max_samples: NonZeroU32,
}

/// The most samples `max_samples` may allow per problem.
pub const MAX_SAMPLES_PER_PROBLEM: u32 = 1024;

/// The most alternatives per token `top_logprobs` may ask for (vLLM's default limit, and
/// OpenAI's).
pub const MAX_TOP_LOGPROBS: u8 = 20;

impl Teacher {
    pub fn kind(&self) -> TeacherKind {
        match self.backend {
            Backend::Openai { .. } => TeacherKind::Openai,
            Backend::Local(_) => TeacherKind::Local,
            Backend::Mock { .. } => TeacherKind::Mock,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Backend {
    Openai {
        endpoints: Vec<Endpoint>,
    },
    Local(LocalModel),
    /// The built-in simulator, started in-process and spoken to over HTTP like any endpoint.
    Mock {
        model: String,
        limits: Limits,
        settings: MockSettings,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the key (never the key itself).
    pub api_key_env: Option<String>,
    pub limits: Limits,
}

/// Per-endpoint admission limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Requests in flight at once.
    pub concurrency: NonZeroU32,
    pub requests_per_minute: Option<NonZeroU32>,
    pub tokens_per_minute: Option<NonZeroU64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalModel {
    /// A Hugging Face checkpoint directory or a `.gguf` file, resolved against the directory of
    /// the definition file.
    pub checkpoint: PathBuf,
    /// Sequences generated together (a prompt's `n` samples count as `n`).
    pub batch_size: NonZeroU32,
    /// Base seed of the samplers: the same seed, prompt and sample index give the same sample.
    pub seed: u64,
    /// Where the model runs (`cuda` needs a binary built with `--features cuda`).
    pub device: DeviceSpec,
    /// Weights and activations in f32 or bf16.
    pub dtype: Precision,
    /// A GGUF checkpoint runs in its quantized blocks instead of dequantized.
    pub quantized: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sampling {
    pub max_tokens: NonZeroU32,
    pub temperature: f64,
    pub top_p: f64,
}

/// US dollars per million tokens, for the cost estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pricing {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verify {
    /// Compare the extracted final answer with the reference.
    pub math: bool,
    /// Require `<think>…</think>` reasoning followed by an answer.
    pub format: bool,
    /// Reject when more than this share of letters is in a script other than the main one.
    pub max_mixed_script_ratio: Option<f64>,
    pub max_completion_tokens: Option<NonZeroU32>,
    /// Reject when more than this share of the text is repeated n-grams.
    pub max_repetition_ratio: Option<f64>,
    pub code: Option<CodeCheck>,
    pub keep: KeepPolicy,
    /// What a sample cut off by the length limit (`finish_reason = "length"`) becomes.
    pub on_truncated: OnTruncated,
    /// Completion tokens one sample may spend in all, its first request, continuations and
    /// re-asks included (`on_truncated = "continue"` or `"reask"`; default four times
    /// `teacher.max_tokens`).
    pub truncation_budget_tokens: NonZeroU32,
}

/// `[verify] on_truncated`: what happens to a sample the length limit cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTruncated {
    /// Rejected as `length.truncated` (the tokens are paid and thrown away).
    #[default]
    Reject,
    /// A second request continues the partial assistant message (vLLM/SGLang
    /// `continue_final_message`, DeepSeek's assistant `prefix`), until the answer ends or the
    /// budget is spent; the pieces are one sample.
    Continue,
    /// The problem is asked again for that sample with twice the `max_tokens`, up to the
    /// budget.
    Reask,
}

impl OnTruncated {
    pub fn name(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Continue => "continue",
            Self::Reask => "reask",
        }
    }
}

/// `[verify.code]`: candidates run against each row's tests in the sandbox. The layout is
/// chosen by the fields given: with `entry_point_field` it is HumanEval's (the prompt, the
/// candidate, the `check(candidate)` test function), without it MBPP's (the candidate, the
/// optional `setup_field` code, then the `assert` lines of `tests_field`, a list or text).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeCheck {
    pub tests_field: String,
    pub entry_point_field: Option<String>,
    /// MBPP's `test_setup_code`: run between the candidate and its asserts.
    pub setup_field: Option<String>,
    pub timeout: Duration,
    pub memory_mb: NonZeroU32,
    /// Sandboxes running at once, at most; `None` is one per core.
    pub parallel: Option<NonZeroU32>,
}

impl CodeCheck {
    pub fn layout(&self) -> CodeLayout {
        match self.entry_point_field {
            Some(_) => CodeLayout::HumanEval,
            None => CodeLayout::Mbpp,
        }
    }
}

/// How a code row's tests are put together with a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeLayout {
    /// `prompt + candidate + test + check(entry_point)`.
    HumanEval,
    /// `candidate + setup + one assert per line`.
    Mbpp,
}

/// Which verified samples of a prompt are accepted into the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepPolicy {
    /// The first sample (by index) that passes every check.
    FirstCorrect,
    /// Every sample that passes every check.
    #[default]
    AllCorrect,
    /// Every sample, each with its verdicts (rejected ones are marked so).
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    /// Runs go to `<dir>/<name>`.
    pub dir: PathBuf,
    pub shard_rows: NonZeroU32,
    pub shard_interval: Duration,
}

/// A definition that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read pipeline definition {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", Diagnostics(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Diagnostic>,
    },
}

/// One problem in a definition, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: FieldPath,
    pub position: Option<Position>,
    pub message: String,
}

struct Diagnostics<'a>(&'a Path, &'a [Diagnostic]);

impl fmt::Display for Diagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Diagnostics(file, problems) = self;
        let plural = if problems.len() == 1 { "" } else { "s" };
        write!(
            f,
            "{} has {} error{plural}:",
            file.display(),
            problems.len()
        )?;
        for problem in problems.iter() {
            write!(f, "\n  {}", file.display())?;
            if let Some(Position { line, column }) = problem.position {
                write!(f, ":{line}:{column}")?;
            }
            write!(f, ": {}: {}", problem.path, problem.message)?;
        }
        Ok(())
    }
}

impl Pipeline {
    /// Reads and validates a definition; relative paths in it resolve against its directory,
    /// and the files it names must exist.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
        validate::parse(&text, base_dir, validate::FileCheck::Exist).map_err(|problems| {
            SpecError::Invalid {
                file: path.to_owned(),
                problems,
            }
        })
    }

    /// Validates definition `text`; `file` only names it in errors. Pure: it does not look at
    /// the files the definition names ([`Self::from_file`] does).
    pub fn parse(text: &str, file: &Path, base_dir: &Path) -> Result<Self, SpecError> {
        validate::parse(text, base_dir, validate::FileCheck::Skip).map_err(|problems| {
            SpecError::Invalid {
                file: file.to_owned(),
                problems,
            }
        })
    }
}

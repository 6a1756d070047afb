//! `distillery eval`: measure a model on a benchmark with the verifiers that build the data.
//!
//! - [`benchmark`]: which problems (GSM8K, MATH-500, HumanEval, or any JSONL/JSON/Parquet
//!   file), their prompts, and how each is checked.
//! - [`score`]: one sample's verdict, from the same math equivalence and code sandbox as the
//!   pipeline's rejection sampling.
//! - [`run`]: ask any [`distillery_teacher::Teacher`] (an OpenAI-compatible endpoint or a
//!   local model) every problem, several at once, and score the answers.
//! - [`passk`]: the unbiased pass@k estimator.
//! - [`report`]: `report.json`, `problems.parquet` and the printed summary.

#![forbid(unsafe_code)]

pub mod benchmark;
mod error;
pub mod passk;
pub mod report;
pub mod run;
pub mod score;

pub use benchmark::{Benchmark, BenchmarkConfig, Check, Overrides, Problem, TaskKind};
/// The code sandbox's limits, for [`Scorer::new`].
pub use distillery_verify::code::SandboxLimits;
pub use error::EvalError;
pub use passk::{mean_pass_at_k, pass_at_k, reported_ks};
pub use report::{EvalSettings, PROBLEMS_FILE, REPORT_FILE, Report, read_problems, write_problems};
pub use run::{EvalOptions, ProblemResult, evaluate};
pub use score::{SampleScore, Scorer};

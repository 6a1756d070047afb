//! `distillery-mock` is a **simulator**: an OpenAI-compatible server that plays an R1-style
//! reasoning teacher without any model behind it. It exists for tests, demos and benchmarks of
//! the distillation pipeline, and it says so: `GET /v1/models` reports
//! `owned_by: "distillery-mock (simulator)"`, and injected errors mention it.
//!
//! # What it answers
//!
//! Each prompt is matched to a row of a data set (GSM8K style: a question and a reference
//! solution whose last line is `#### answer`). The reply replays that solution as an R1 trace:
//! an opening such as "Okay, let me work through this.", the reference steps with GSM8K
//! calculator annotations (`<<9*2=18>>`) removed, sometimes a "Wait, let me double-check" line,
//! and a short answer ending in `**Final Answer**\n\boxed{…}`. Settings
//! ([`MockSettings`](distillery_spec::mock::MockSettings)) make a share of samples wrong (a
//! nearby or doubled number, in the last step and the box), mixed with a Chinese sentence, or
//! cut off with `finish_reason: "length"`. The reasoning arrives as `reasoning_content`, as
//! `reasoning`, or inside `<think>…</think>` at the start of `content`, streamed or not. A
//! prompt that matches no row still gets an answer (a made-up number) and is counted as
//! unmatched.
//!
//! # Code problems
//!
//! With `task = "code"` (a pipeline with `[verify.code]` sets it; the stand-alone server takes
//! any row with an `entry_point`, `test` or `test_list` field for code) the reference is Python:
//! a whole program (MBPP's `code`), or the body that completes the question (HumanEval's
//! `canonical_solution` after its `prompt`). A sample reasons about the task, then gives the
//! whole solution in a ```` ```python ```` block, sometimes with a sentence after it. A wrong
//! sample carries one [`Bug`]: an off-by-one, a wrong operator, a missing edge case, a syntax
//! error or an infinite loop.
//!
//! # Determinism
//!
//! What a sample says is a pure function of (settings seed, matched question, choice index, and
//! the request's `seed` when it sends one), so a retried request gets the same samples. Whether
//! an attempt fails is a pure function of (settings seed, question, attempt number), where the
//! server counts attempts per question; once a question has had
//! `faults.max_faults_per_prompt` faults it gets no more, so a client that retries enough always
//! completes. Hashes are FNV-1a and SplitMix64, fixed algorithms, so the answers stay the same
//! across runs, machines and Rust releases.
//!
//! # Tokens
//!
//! Usage counts are estimates: one token per 4 characters (Unicode scalar values, rounded up)
//! of each message, of the reasoning and of the answer; `<think>` tags are not counted.
//! `max_tokens` / `max_completion_tokens` cut the completion by the same measure.
//!
//! # Endpoints
//!
//! - `POST /v1/chat/completions`: streaming (SSE) and not, `n` up to 16, `max_tokens`,
//!   `stream_options.include_usage`; `temperature` and `top_p` are accepted and ignored.
//! - `GET /v1/models`, `GET /v1/models/{model}`.
//! - `GET /v1/mock/stats`: [`MockStats`] as JSON (no API key needed: it is the simulator's own
//!   endpoint, for tests and benchmarks).
//!
//! With [`MockServerBuilder::require_api_key`], the OpenAI endpoints answer 401 to a request
//! without `Authorization: Bearer <key>`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), distillery_mock::MockError> {
//! use distillery_mock::{MockDataset, MockServer};
//! use distillery_spec::mock::MockSettings;
//!
//! let dataset = MockDataset::from_rows([("What is 2+2?", "2+2=<<2+2=4>>4\n#### 4")]);
//! let server = MockServer::builder(MockSettings::default(), "deepseek-reasoner")
//!     .dataset(dataset)
//!     .require_api_key("sk-test")
//!     .start("127.0.0.1:0".parse().expect("an address"))
//!     .await?;
//! println!("simulated teacher at {}", server.base_url());
//! server.serve_forever().await
//! # }
//! ```

#![forbid(unsafe_code)]

mod code;
mod dataset;
mod error;
mod faults;
mod hash;
mod logprobs;
mod pacing;
mod server;
mod stats;
mod trace;
mod wire;

pub use code::{Bug, KNOWN_TO_PASS, code_with_bug, reference_key, solution_code};
pub use dataset::MockDataset;
pub use error::MockError;
pub use server::{MockServer, MockServerBuilder};
pub use stats::{BugCounts, FaultCounts, MockStats};
pub use trace::{final_answer, strip_calculator_annotations};

//! Teachers: the models that write the reasoning traces.
//!
//! [`OpenAiTeacher`] speaks the chat-completions API of DeepSeek, OpenAI, vLLM, SGLang and
//! llama.cpp, over one or several endpoints, with retries, backoff and rate limits.
//! [`LocalTeacher`] runs a Qwen2/Llama checkpoint (Hugging Face directory or GGUF) in this
//! process with candle, batching concurrent requests on one generation thread. A
//! [`Completion`] is only returned whole: every requested sample, or an error — so a caller
//! that records completions never records half of one.

#![forbid(unsafe_code)]

mod backend;
mod backoff;
mod http;
mod limits;
#[cfg(feature = "local")]
mod local;
mod openai;
pub mod reasoning;
mod wire;

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use backend::AnyTeacher;
pub use backoff::{Backoff, parse_retry_after};
#[cfg(feature = "local")]
pub use local::{LocalOptions, LocalTeacher};
pub use openai::{EndpointLimit, OpenAiTeacher, TeacherOptions, TeacherStats};
pub use reasoning::ReasoningSource;

/// Installs the TLS crypto provider reqwest uses (ring). Idempotent; call once at start-up.
pub fn install_tls_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// One prompt to send, asking for `samples` independent answers.
#[derive(Debug, Clone)]
pub struct TeacherRequest {
    pub messages: Vec<Message>,
    pub samples: NonZeroU32,
    /// `max_tokens` of this request, instead of the definition's (a re-ask after a truncation
    /// asks with more, a continuation with what the budget leaves).
    pub max_tokens: Option<NonZeroU32>,
    /// Sent as the request's `seed`, so that asking the same prompt again (`until_correct`'s
    /// later rounds) draws new samples from a server that seeds its sampling.
    pub seed: Option<i64>,
    /// Continue this partial assistant message instead of starting a new one: it goes last in
    /// `messages` as an assistant turn marked for continuation (see [`continuation_wire`]).
    pub prefill: Option<String>,
}

impl TeacherRequest {
    pub fn new(messages: Vec<Message>, samples: NonZeroU32) -> Self {
        Self {
            messages,
            samples,
            max_tokens: None,
            seed: None,
            prefill: None,
        }
    }
}

/// How a continuation is asked for on the wire, for the documentation and the mock: the
/// partial answer is the last message, `{"role": "assistant", "content": <partial>,
/// "prefix": true}` (DeepSeek's prefix completion), and the body carries
/// `"continue_final_message": true, "add_generation_prompt": false` (vLLM and SGLang);
/// llama.cpp continues a trailing assistant message as it is. The partial message is the
/// reasoning so far as `<think>\n…` (still open), or `<think>\n…\n</think>\n\n` and the
/// answer so far; the server's reply is only the new text.
pub mod continuation_wire {
    /// The body flag vLLM and SGLang read.
    pub const CONTINUE_FINAL_MESSAGE: &str = "continue_final_message";
    /// The flag on the last (assistant) message DeepSeek reads.
    pub const PREFIX: &str = "prefix";
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum FinishReason {
    Stop,
    /// Hit `max_tokens`: the answer is cut off.
    Length,
    ContentFilter,
    Other(String),
}

impl From<String> for FinishReason {
    fn from(value: String) -> Self {
        match value.as_str() {
            "stop" | "eos" => Self::Stop,
            "length" => Self::Length,
            "content_filter" => Self::ContentFilter,
            _ => Self::Other(value),
        }
    }
}

impl From<FinishReason> for String {
    fn from(value: FinishReason) -> Self {
        value.to_string()
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ContentFilter => "content_filter",
            Self::Other(other) => other,
        })
    }
}

/// One answer of the teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// 0-based, unique within a completion.
    pub index: u32,
    pub reasoning: Option<String>,
    pub content: String,
    pub reasoning_source: ReasoningSource,
    pub finish_reason: FinishReason,
    /// Every generated token (reasoning and content, in order) with its log-probability and
    /// the most likely alternatives, when `top_logprobs` was asked for and the server sent
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// One generated token, its log-probability, and the teacher's most likely tokens at its
/// position (most likely first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's bytes (a byte-level token may be part of a UTF-8 character).
    pub token: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<(Vec<u8>, f32)>,
}

/// Token accounting as reported by the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Part of `completion_tokens` spent reasoning, where the server says.
    pub reasoning_tokens: u64,
    /// The server sent no usage, so the counts were estimated from the text
    /// ([`Usage::estimate`]).
    #[serde(default)]
    pub estimated: bool,
}

impl Usage {
    /// Characters per token of the estimate: the usual rule of thumb for English and LaTeX with
    /// BPE vocabularies of 32k–150k tokens.
    pub const CHARS_PER_TOKEN: u64 = 4;

    /// Counts estimated from the text, for a server that reports none: the prompt's messages
    /// once, and each sample's reasoning and content.
    pub fn estimate<'a>(
        prompt: impl IntoIterator<Item = &'a str>,
        samples: impl IntoIterator<Item = (Option<&'a str>, &'a str)>,
    ) -> Usage {
        let tokens = |text: &str| (text.chars().count() as u64).div_ceil(Self::CHARS_PER_TOKEN);
        let mut usage = Usage {
            prompt_tokens: prompt.into_iter().map(tokens).sum(),
            estimated: true,
            ..Usage::default()
        };
        for (reasoning, content) in samples {
            let reasoning = reasoning.map_or(0, tokens);
            usage.reasoning_tokens += reasoning;
            usage.completion_tokens += reasoning + tokens(content);
        }
        usage
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.estimated |= other.estimated;
    }
}

/// Every sample asked for, with where and how they were obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub samples: Vec<Sample>,
    pub usage: Usage,
    pub model: String,
    /// The base URL of the endpoint that answered.
    pub endpoint: String,
    /// HTTP attempts made, including failed ones.
    pub attempts: u32,
    /// From the first attempt to the last byte.
    pub latency: Duration,
    /// From the first attempt to the first generated token (reasoning or answer) of the
    /// attempt that answered, as the client saw it: known when the answer was streamed or
    /// generated in-process, None when it arrived in one piece.
    pub first_token: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    #[error(
        "environment variable {variable} is not set; it should hold the API key for {endpoint}"
    )]
    MissingApiKey { variable: String, endpoint: String },
    /// A refusal that every later request would get too (bad key, unknown model): stop.
    #[error(
        "{endpoint} refused the request with HTTP {status}, and would refuse every other: {message}{hint}"
    )]
    Fatal {
        endpoint: String,
        status: u16,
        message: String,
        hint: &'static str,
    },
    /// The server refuses this prompt (e.g. longer than the context): skip it, go on.
    #[error("{endpoint} rejected this prompt with HTTP {status}: {message}")]
    Rejected {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("gave up after {attempts} attempts; last error: {last_error}")]
    Exhausted { attempts: u32, last_error: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The local model could not be loaded: nothing will work.
    #[error("cannot load the local teacher from {}: {message}", path.display())]
    Load {
        path: std::path::PathBuf,
        message: String,
    },
    /// The local model cannot take this prompt (longer than its context, or its chat template
    /// refuses the conversation): skip it, go on.
    #[error("{teacher} cannot take this prompt: {message}")]
    PromptRejected { teacher: String, message: String },
    /// Generation failed for this prompt; asking again later may work.
    #[error("{teacher} failed to generate: {message}")]
    Generation { teacher: String, message: String },
    /// The local model's generation thread is gone (it panicked or was shut down).
    #[error("{teacher}: the generation thread has stopped")]
    Stopped { teacher: String },
    /// The definition names a local model, but this build has no local backend.
    #[error(
        "cannot run the local teacher {}: this build has no local backend (build with the `local` feature of distillery-teacher, as the `distillery` binary does)",
        path.display()
    )]
    LocalNotBuilt { path: std::path::PathBuf },
    /// The definition asks for the built-in mock teacher, but nothing started it.
    #[error(
        "the definition asks for the built-in mock teacher, but it was not started: only the `distillery` command line starts it"
    )]
    NotServed,
}

impl TeacherError {
    /// Whether the whole run should stop rather than skip this prompt.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::MissingApiKey { .. }
                | Self::Fatal { .. }
                | Self::Client(_)
                | Self::Load { .. }
                | Self::Stopped { .. }
                | Self::LocalNotBuilt { .. }
                | Self::NotServed
        )
    }

    /// Whether the teacher will never answer this prompt (too long, refused): skip it for
    /// good rather than retry it.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Rejected { .. } | Self::PromptRejected { .. })
    }
}

/// A source of teacher completions.
pub trait Teacher: Send + Sync {
    fn complete(
        &self,
        request: &TeacherRequest,
    ) -> impl Future<Output = Result<Completion, TeacherError>> + Send;
}

//! `distillery-train`: supervised fine-tuning and logit distillation of a candle student on
//! verified teacher traces.
//!
//! - [`data`]: conversations from run shards / exported datasets / JSONL, the assistant-only
//!   loss mask, truncation and packing;
//! - [`template`]: Hugging Face chat templates rendered with minijinja;
//! - [`loss`]: masked cross-entropy and the distillation loss;
//! - [`backward`]: a micro-batch's gradients in bounded memory (chunked loss, activation
//!   checkpointing);
//! - [`optim`]: AdamW with savable state, clipping, warmup + cosine;
//! - [`trainer`]: the loop, evaluation, checkpoints and exact resume.

#![forbid(unsafe_code)]

pub mod align;
pub mod backward;
pub mod data;
pub mod error;
pub mod loss;
pub mod optim;
pub mod template;

pub use error::{Result, TrainError};
pub mod trainer;

pub use data::{Conversation, Message, load_conversations};
pub use template::ChatTemplate;
pub use trainer::{
    Duration, KdConfig, KdSource, LogprobKd, TrainConfig, TrainSummary, Trainer, TrainerInit,
    read_metrics,
};

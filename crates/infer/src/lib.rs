//! `distillery-infer`: generation on the CPU at llama.cpp's speed, for the local teacher and
//! `eval`.
//!
//! The candle [`Model`](distillery_model::Model) is built for training (every op records a
//! backward pass) and spends most of a decoding step on per-op overhead, and candle has no
//! SIMD kernel for `Q4_1`. [`Engine`] is the same Qwen2/Llama decoder for inference only:
//! plain f32 buffers, each weight matrix kept in its GGUF blocks (`Q4_1`, `Q8_0`; other
//! block formats become `Q8_0`) or in f32, multiplied against activations quantized to 8 bits
//! as llama.cpp does, with an AVX2 kernel per format. q/k/v and gate/up are stacked so a
//! layer reads its activations four times, not seven.
//!
//! [`Batcher`] schedules requests over it with continuous batching: every step feeds each
//! running sequence its next token (or a chunk of its prompt), and a finished sequence's
//! slot is refilled at the next step.
//!
//! ```no_run
//! use std::sync::Arc;
//! use candle_core::{DType, Device};
//! use distillery_infer::{BatchLimits, Batcher, Engine, Request};
//! use distillery_model::{Checkpoint, GenerateOptions, RowOptions};
//! let checkpoint = Checkpoint::load_quantized("model.gguf", &Device::Cpu, DType::F32)?;
//! let engine = Arc::new(Engine::from_checkpoint(&checkpoint)?);
//! let mut batcher = Batcher::new(engine, GenerateOptions::greedy(64), BatchLimits::new(8))?;
//! let prompt = checkpoint.tokenizer.encode("Hello", false).unwrap().get_ids().to_vec();
//! batcher.submit(Request { tag: 0, prompt, row: RowOptions { seed: 0, max_new_tokens: 64 } })?;
//! while !batcher.is_idle() {
//!     for done in batcher.step(|_| {})? {
//!         println!("{:?}", done.generated.tokens);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batcher;
mod engine;
mod error;
mod matrix;
mod quant;
#[cfg(test)]
mod testing;

pub use batcher::{BatchLimits, Batcher, Finished, Request, TokenEvent};
pub use engine::{Engine, Sequence};
pub use error::{Error, Result};

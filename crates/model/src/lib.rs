//! `distillery-model`: a trainable Qwen2/Llama decoder in candle, batched generation with a KV
//! cache, and Hugging Face / GGUF checkpoint I/O.
//!
//! candle-transformers' models are inference-only (fused rope/softmax/rms_norm record no
//! backward pass), so [`Model`] re-implements the architecture out of differentiable ops with
//! the same Hugging Face weight names; a [`candle_nn::VarMap`] holds the trainable weights.
//!
//! ```no_run
//! use candle_core::{DType, Device};
//! use distillery_model::{Checkpoint, GenerateOptions};
//! let ckpt = Checkpoint::load("models/tiny", &Device::Cpu, DType::F32)?;
//! let model = ckpt.model()?;
//! let prompt = ckpt.tokenizer.encode("Hello", false).unwrap().get_ids().to_vec();
//! let out = model.generate(&[prompt], &GenerateOptions::greedy(32))?;
//! # Ok::<(), distillery_model::Error>(())
//! ```

mod chat_template;
mod checkpoint;
mod config;
mod device;
mod error;
mod fused;
mod generate;
mod gguf;
mod memory;
mod model;
mod tiny;
mod token_bytes;
pub mod vector_math;

pub use chat_template::{CHATML_FALLBACK_TEMPLATE, ChatTemplate, ChatTurn, TemplateError};
pub use checkpoint::{Checkpoint, QuantizedWeights, save_checkpoint};
pub use config::{Arch, Config, RopeScaling};
pub use device::{CUDA_BUILD, OpenDevice, PrecisionDType};
pub use distillery_spec::{DeviceSpec, Precision};
pub use error::{Error, Result};
pub use fused::{cpu_f32, cpu_f32_mut};
pub use generate::{
    FinishReason, GenerateOptions, Generated, RowOptions, TokenEvent, TokenLogprobs, sample_token,
};
pub use memory::keep_freed_tensor_memory;
pub use model::{BatchContext, Model, Param, TensorSpec, random_varmap};
pub use tiny::{
    CHATML_TEMPLATE, TINY_EOT_ID, TINY_IM_END_ID, TINY_IM_START_ID, TINY_INIT_STD,
    TINY_SPECIAL_TOKENS, TINY_VOCAB_SIZE, chatml_tokenizer_config, init_tiny, init_tiny_with,
    learn_merges, tiny_tokenizer,
};
pub use token_bytes::TokenBytes;

/// Where `make model` puts SmolLM2-135M-Instruct's GGUF (`$DISTILLERY_SMOLLM2` when set): the
/// real model of the tests and benches that need one. They fail, not skip, without it.
pub fn smollm2_gguf() -> std::path::PathBuf {
    let path = std::env::var_os("DISTILLERY_SMOLLM2")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "{} not found (run `make model` or set DISTILLERY_SMOLLM2)",
        path.display()
    );
    path
}

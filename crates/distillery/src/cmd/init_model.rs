//! `distillery init-model`: write a tiny random model and tokenizer (tests and the demo).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use distillery_model::{Arch, Config, TINY_INIT_STD};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Architecture of the model: qwen2 or llama.
    #[arg(long, default_value = "qwen2")]
    pub arch: Arch,
    /// Output directory (a Hugging Face checkpoint: config.json, model.safetensors,
    /// tokenizer.json, tokenizer_config.json).
    #[arg(long, value_name = "OUT")]
    pub tiny: PathBuf,
    /// Seed of the random weights (the same seed writes the same model).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Transformer layers [default: 4].
    #[arg(long, value_name = "N")]
    pub layers: Option<usize>,
    /// Hidden size [default: 128].
    #[arg(long, value_name = "N")]
    pub hidden: Option<usize>,
    /// MLP size [default: 3 × hidden].
    #[arg(long, value_name = "N")]
    pub intermediate: Option<usize>,
    /// Attention heads; the hidden size must divide by it [default: 4].
    #[arg(long, value_name = "N")]
    pub heads: Option<usize>,
    /// Key/value heads (grouped-query attention); the heads must divide by it [default: half
    /// the heads].
    #[arg(long, value_name = "N")]
    pub kv_heads: Option<usize>,
    /// Standard deviation of the random weights (norms start at one, biases at zero).
    #[arg(long, value_name = "STD", default_value_t = TINY_INIT_STD)]
    pub init_std: f64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::tiny(args.arch);
    let hidden = args.hidden.unwrap_or(cfg.hidden_size);
    let heads = args.heads.unwrap_or(cfg.num_attention_heads);
    cfg.num_hidden_layers = args.layers.unwrap_or(cfg.num_hidden_layers);
    cfg.intermediate_size = args.intermediate.unwrap_or(if args.hidden.is_some() {
        3 * hidden
    } else {
        cfg.intermediate_size
    });
    cfg.num_key_value_heads = args.kv_heads.unwrap_or(if args.heads.is_some() {
        (heads / 2).max(1)
    } else {
        cfg.num_key_value_heads
    });
    cfg.hidden_size = hidden;
    cfg.num_attention_heads = heads;
    distillery_model::init_tiny_with(&cfg, &args.tiny, args.seed, args.init_std).with_context(
        || {
            format!(
                "writing a tiny {} model to {}",
                args.arch,
                args.tiny.display()
            )
        },
    )?;
    let params: usize = distillery_model::Model::tensor_specs(&cfg)
        .iter()
        .map(|s| s.shape.iter().product::<usize>())
        .sum();
    crate::outln!(
        "wrote a tiny {} model to {} ({} layers, hidden {}, {} heads ({} key/value), mlp {}, vocab {}, {:.2}M parameters, init std {}, seed {})",
        args.arch,
        args.tiny.display(),
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.intermediate_size,
        cfg.vocab_size,
        params as f64 / 1e6,
        args.init_std,
        args.seed
    )?;
    Ok(ExitCode::SUCCESS)
}

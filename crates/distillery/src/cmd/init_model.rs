//! `distillery init-model`: write a tiny random model and tokenizer (tests and the demo).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use distillery_model::Arch;

#[derive(Debug, clap::Args)]
pub struct Args {
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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = distillery_model::init_tiny(args.arch, &args.tiny, args.seed).with_context(|| {
        format!(
            "writing a tiny {} model to {}",
            args.arch,
            args.tiny.display()
        )
    })?;
    let params: usize = distillery_model::Model::tensor_specs(&cfg)
        .iter()
        .map(|s| s.shape.iter().product::<usize>())
        .sum();
    println!(
        "wrote a tiny {} model to {} ({} layers, hidden {}, vocab {}, {:.2}M parameters, seed {})",
        args.arch,
        args.tiny.display(),
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.vocab_size,
        params as f64 / 1e6,
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}

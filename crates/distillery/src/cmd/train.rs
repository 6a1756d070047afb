//! `distillery train`: fine-tune a student on accepted traces (SFT, optionally with logit
//! distillation from a local teacher). The loss curve goes to `<out>/metrics.jsonl`, the final
//! model (Hugging Face format) to `<out>`, checkpoints to `<out>/checkpoints/`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use distillery_train::{
    Duration, KdConfig, KdSource, LogprobKd, TrainConfig, Trainer, TrainerInit,
};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The student: a Hugging Face checkpoint directory or a .gguf file.
    #[arg(long, value_name = "DIR_OR_GGUF")]
    pub model: PathBuf,
    /// Training data: run directories (shards/accepted-*.parquet), exported datasets
    /// (data/train-*.parquet|jsonl) or .parquet/.jsonl files with a `messages` column.
    #[arg(long, value_name = "RUN_OR_DATASET", num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    /// Output directory: final model, metrics.jsonl, summary.json, checkpoints/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Optimiser steps to train for.
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Passes over the training split (default 1 when --steps is not given).
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// The cosine schedule decays to lr × this.
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_ratio: f64,
    /// Rows (packed sequences) per micro-batch.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Tokens per row; longer conversations are truncated (and counted).
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Seed of the data order and the eval split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Save a resumable checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (0: all).
    #[arg(long, default_value_t = 3)]
    pub keep_checkpoints: usize,
    /// Continue from the latest checkpoint in --out, exactly where it stopped.
    #[arg(long)]
    pub resume: bool,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Decoupled weight decay (AdamW).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Fraction of conversations held out for the eval loss.
    #[arg(long, default_value_t = 0.05)]
    pub eval_fraction: f64,
    /// Evaluate every N steps (0: at checkpoints and at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: u64,
    /// One example per row (padding) instead of packing several per row.
    #[arg(long)]
    pub no_pack: bool,
    /// Log a progress line every N steps.
    #[arg(long, default_value_t = 1)]
    pub log_every: u64,
    /// Logit distillation: a local teacher checkpoint sharing the student's tokenizer.
    #[arg(long, value_name = "DIR_OR_GGUF", group = "kd")]
    pub kd_teacher: Option<PathBuf>,
    /// Logit distillation from the teacher's top-k log-probabilities stored with the data
    /// (`[teacher] top_logprobs` in the run): sparse KL over the top-k and a tail bucket, no
    /// teacher pass.
    #[arg(long, group = "kd")]
    pub kd_from_logprobs: bool,
    /// With --kd-from-logprobs: where the student's vocabulary lacks a teacher token, train on
    /// cross-entropy alone instead of refusing the data.
    #[arg(long, requires = "kd_from_logprobs")]
    pub kd_aligned_only: bool,
    /// Weight of the KL term (the CE term gets 1 − alpha).
    #[arg(long, default_value_t = 0.5, requires = "kd")]
    pub kd_alpha: f64,
    /// Temperature schedule START:END (linear over training), or one constant value.
    #[arg(long, default_value = "5:1", requires = "kd", value_parser = parse_temperature)]
    pub kd_temperature: (f64, f64),
    /// Keep only each decoder layer's input during the forward pass and recompute the layer
    /// during the backward pass: activation memory of one layer instead of all, about a third
    /// more compute.
    #[arg(long)]
    pub checkpoint_activations: bool,
    #[command(flatten)]
    pub placement: super::Placement,
}

fn parse_temperature(s: &str) -> Result<(f64, f64), String> {
    let parse = |x: &str| {
        x.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| *v > 0.0 && v.is_finite())
            .ok_or_else(|| format!("`{x}` is not a positive number"))
    };
    match s.split_once(':') {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => {
            let t = parse(s)?;
            Ok((t, t))
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.placement.apply_threads();
    let duration = match (args.steps, args.epochs) {
        (Some(s), _) => Duration::Steps(s),
        (None, Some(e)) => Duration::Epochs(e),
        (None, None) => Duration::Epochs(1.0),
    };
    let config = TrainConfig {
        lr: args.lr,
        min_lr_ratio: args.min_lr_ratio,
        warmup_steps: args.warmup,
        duration,
        batch_size: args.batch_size,
        grad_accum: args.grad_accum,
        max_len: args.max_len,
        pack: !args.no_pack,
        clip: args.clip,
        weight_decay: args.weight_decay,
        seed: args.seed,
        eval_fraction: args.eval_fraction,
        eval_every: args.eval_every,
        checkpoint_every: args.checkpoint_every,
        keep_checkpoints: args.keep_checkpoints,
        log_every: args.log_every,
        kd: match (args.kd_teacher, args.kd_from_logprobs) {
            (Some(teacher_checkpoint), _) => Some(KdSource::Checkpoint { teacher_checkpoint }),
            (None, true) => Some(KdSource::Logprobs {
                from_logprobs: LogprobKd {
                    aligned_only: args.kd_aligned_only,
                },
            }),
            (None, false) => None,
        }
        .map(|source| KdConfig {
            source,
            alpha: args.kd_alpha,
            temperature_start: args.kd_temperature.0,
            temperature_end: args.kd_temperature.1,
        }),
        precision: args.placement.dtype,
        checkpoint_activations: args.checkpoint_activations,
        ..TrainConfig::default()
    };
    config.validate()?;
    let data = distillery_train::load_conversations(&args.data).context("reading training data")?;
    tracing::info!(
        conversations = data.conversations.len(),
        files = data.files.len(),
        skipped_rejected = data.skipped_rejected,
        skipped_no_assistant = data.skipped_no_assistant,
        "training data"
    );
    let mut trainer = Trainer::new(TrainerInit {
        model: args.model.clone(),
        conversations: data.conversations,
        config,
        out_dir: args.out.clone(),
        resume: args.resume,
        device: args.placement.device,
    })
    .with_context(|| format!("preparing to train {}", args.model.display()))?;
    let stats = trainer.train_stats().clone();
    tracing::info!(
        examples = stats.examples,
        eval_examples = trainer.eval_stats().examples,
        tokens = stats.tokens,
        loss_tokens = stats.loss_tokens,
        truncated = stats.truncated,
        dropped = stats.dropped_empty,
        total_steps = trainer.total_steps(),
        "starting"
    );
    let summary = trainer.run().context("training")?;
    let fmt = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    crate::outln!(
        "trained {} steps{} on {} examples ({} truncated to {} tokens, {} dropped): loss {} -> {}, eval loss {}, {:.0} tokens/s",
        summary.steps,
        summary
            .resumed_from
            .map(|s| format!(" (resumed at step {s})"))
            .unwrap_or_default(),
        summary.train.examples,
        summary.train.truncated,
        args.max_len,
        summary.train.dropped_empty,
        fmt(summary.first_loss),
        fmt(summary.last_loss),
        fmt(summary.eval_loss),
        summary.tokens_per_s
    )?;
    crate::outln!(
        "model: {}  loss curve: {}",
        args.out.display(),
        args.out.join("metrics.jsonl").display()
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_temperature;

    #[test]
    fn temperature_schedule_argument() {
        assert_eq!(parse_temperature("5:1"), Ok((5.0, 1.0)));
        assert_eq!(parse_temperature("2"), Ok((2.0, 2.0)));
        assert!(parse_temperature("0:1").is_err());
        assert!(parse_temperature("a:1").is_err());
    }
}

//! The training loop: shuffled packed batches, gradient accumulation, clipping, AdamW with
//! warmup + cosine, optional logit distillation, held-out eval loss, checkpoints and exact
//! resume.
//!
//! Output directory layout:
//!
//! ```text
//! <out>/config.json, model.safetensors, tokenizer*.json   the final model (HF format)
//! <out>/metrics.jsonl                                     one JSON object per step / eval
//! <out>/summary.json                                      data counts and the final numbers
//! <out>/checkpoints/step-00000050/                        HF model + optimizer.safetensors
//!                                                         + trainer_state.json
//! ```
//!
//! Exactness: the data order of epoch `e` is a permutation drawn from an RNG seeded with
//! `(seed, e)`, so the RNG state is fully described by the seed and the data position
//! `(epoch, batch)` that `trainer_state.json` records. Weights (f32) and AdamW moments are saved
//! bit-exactly, parameters are always visited in name order, and the host-side reductions are
//! sequential, so a resumed run reproduces the uninterrupted loss curve bit for bit.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use distillery_model::{
    Checkpoint, DeviceSpec, Model, OpenDevice, Precision, PrecisionDType, TokenBytes,
    save_checkpoint,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::align::{Aligner, LogprobStats};
use crate::backward::{
    CHUNK_LOGITS, Distill, KdTeacher, MicroBatch, Staging, accumulate_gradients,
    summed_cross_entropy,
};
use crate::data::{Batch, Conversation, EncodeStats, Encoder, Example, pack};
use crate::error::{Result, TrainError, io_err};
use crate::loss::temperature_at;
use crate::optim::{AdamW, AdamWConfig, LrSchedule, clip_grad_norm, sorted_vars};

/// Where a distillation teacher's distribution comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KdSource {
    /// A local teacher checkpoint sharing the student's tokenizer, run beside the student.
    Checkpoint { teacher_checkpoint: PathBuf },
    /// The teacher's top-k log-probabilities stored with the data while it generated
    /// (`[teacher] top_logprobs`): no teacher in memory, no second teacher pass.
    Logprobs { from_logprobs: LogprobKd },
}

/// Distillation from stored log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogprobKd {
    /// Train on the positions whose teacher tokens the student's vocabulary covers, and on
    /// cross-entropy alone elsewhere, instead of refusing data the student cannot represent.
    pub aligned_only: bool,
}

/// Logit distillation: `alpha·T²·KL + (1−alpha)·CE`, T following a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KdConfig {
    #[serde(flatten)]
    pub source: KdSource,
    /// Weight of the KL term (the CE term gets `1 − alpha`).
    pub alpha: f64,
    pub temperature_start: f64,
    pub temperature_end: f64,
}

/// How long to train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Duration {
    /// Optimiser steps.
    Steps(u64),
    /// Passes over the training split (rounded up to whole optimiser steps).
    Epochs(f64),
}

/// Everything that shapes a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// The cosine decays to `lr·min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub warmup_steps: u64,
    pub duration: Duration,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Positions per row; longer conversations are truncated (and counted).
    pub max_len: usize,
    /// Pack several conversations per row (segment ids keep them apart); else pad.
    pub pack: bool,
    /// Global gradient-norm clip; 0 disables.
    pub clip: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub seed: u64,
    /// Fraction of conversations held out for the eval loss (0 disables).
    pub eval_fraction: f64,
    /// Evaluate every N steps (0: only at checkpoints and the end).
    pub eval_every: u64,
    /// Checkpoint every N steps (0: only the final model).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (oldest deleted first); 0 keeps all.
    pub keep_checkpoints: usize,
    /// Log a line every N steps.
    pub log_every: u64,
    pub kd: Option<KdConfig>,
    /// Weights and activations in f32, or bf16 with f32 master weights and AdamW state.
    #[serde(default)]
    pub precision: Precision,
    /// Keep only each layer's input in the forward pass and recompute the layer in the
    /// backward pass: less memory, about a third more compute, the same gradients.
    #[serde(default)]
    pub checkpoint_activations: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lr: 1e-4,
            min_lr_ratio: 0.1,
            warmup_steps: 0,
            duration: Duration::Epochs(1.0),
            batch_size: 4,
            grad_accum: 1,
            max_len: 1024,
            pack: true,
            clip: 1.0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            seed: 0,
            eval_fraction: 0.0,
            eval_every: 0,
            checkpoint_every: 0,
            keep_checkpoints: 3,
            log_every: 1,
            kd: None,
            precision: Precision::F32,
            checkpoint_activations: false,
        }
    }
}

impl TrainConfig {
    /// Checks values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: &str| {
            Err(TrainError::Config {
                field: field.into(),
                message: message.into(),
            })
        };
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio", "must be in [0, 1]");
        }
        match self.duration {
            Duration::Steps(0) => return bad("steps", "must be at least 1"),
            Duration::Epochs(e) if !(e > 0.0 && e.is_finite()) => {
                return bad("epochs", "must be a positive number");
            }
            _ => {}
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.grad_accum == 0 {
            return bad("grad_accum", "must be at least 1");
        }
        if self.max_len < 2 {
            return bad("max_len", "must be at least 2");
        }
        if self.clip.is_nan() || self.clip < 0.0 {
            return bad("clip", "must be >= 0");
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad("weight_decay", "must be >= 0");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("beta1/beta2", "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.eval_fraction) {
            return bad("eval_fraction", "must be in [0, 1)");
        }
        if let Some(kd) = &self.kd {
            if !(0.0..=1.0).contains(&kd.alpha) {
                return bad("kd.alpha", "must be in [0, 1]");
            }
            if !(kd.temperature_start > 0.0 && kd.temperature_end > 0.0) {
                return bad("kd.temperature", "must be positive");
            }
        }
        Ok(())
    }

    /// Fields that may change between an interrupted run and its resume without changing
    /// the loss curve.
    fn curve_relevant(&self) -> TrainConfig {
        TrainConfig {
            eval_every: 0,
            checkpoint_every: 0,
            keep_checkpoints: 0,
            log_every: 0,
            ..self.clone()
        }
    }
}

/// `field: old -> new` for every top-level field that differs.
fn config_diff(old: &TrainConfig, new: &TrainConfig) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Vec::new();
    };
    a.iter()
        .filter_map(|(k, va)| {
            let vb = b.get(k).cloned().unwrap_or_default();
            (*va != vb).then(|| format!("{k}: {va} -> {vb}"))
        })
        .collect()
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: u64,
    /// Mean loss over the step's loss tokens (the KD total with distillation).
    pub loss: f64,
    /// Mean CE (equal to `loss` without distillation).
    pub ce: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kl: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub temperature: Option<f64>,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub loss_tokens: usize,
    pub tokens_per_s: f64,
}

/// An eval line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub step: u64,
    pub eval_loss: f64,
    pub eval_tokens: usize,
}

/// What [`Trainer::run`] returns (and writes to `summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub total_steps: u64,
    pub resumed_from: Option<u64>,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub eval_loss: Option<f64>,
    pub train: EncodeStats,
    pub eval: EncodeStats,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub out_dir: PathBuf,
}

/// `trainer_state.json` in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub format: u32,
    /// Optimiser steps done.
    pub step: u64,
    /// Data position: the next micro-batch is batch `batch` of epoch `epoch`.
    pub epoch: u64,
    pub batch: usize,
    /// The data-order RNG: epoch `e` is shuffled by `StdRng::seed_from_u64(epoch_seed(seed, e))`.
    pub rng_seed: u64,
    pub rng_epoch: u64,
    pub tokens_seen: usize,
    /// FNV-1a of the tokenised training split, to refuse resuming on different data.
    pub data_fingerprint: String,
    pub total_steps: u64,
    pub config: TrainConfig,
}

const STATE_FORMAT: u32 = 1;
const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Seed of the data-order RNG for `epoch`.
pub fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    splitmix64(seed ^ splitmix64(epoch.wrapping_add(1)))
}

fn fingerprint(examples: &[Example]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u32| {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for ex in examples {
        eat(ex.inputs.len() as u32);
        for (i, t) in ex.inputs.iter().enumerate() {
            eat(*t);
            eat(ex.targets[i]);
            eat(u32::from(ex.mask[i]));
        }
    }
    format!("{h:016x}")
}

/// Refuses to distil from stored log-probabilities the student cannot use: rows that carry
/// none at all, or teacher tokens the student's vocabulary lacks (unless `aligned_only`).
fn check_logprob_coverage(stats: Option<&LogprobStats>, options: LogprobKd) -> Result<()> {
    let field = "kd.from_logprobs".to_string();
    let Some(stats) = stats.filter(|s| s.rows > 0) else {
        return Err(TrainError::Config {
            field,
            message: "no training row carries the teacher's log-probabilities (the \
                      `teacher_logprobs` column); run the pipeline with `[teacher] top_logprobs \
                      = k` to capture them"
                .into(),
        });
    };
    if stats.unmapped_positions > 0 && !options.aligned_only {
        return Err(TrainError::Config {
            field,
            message: format!(
                "the student's tokenizer does not cover the teacher's tokens: {} of {} teacher \
                 positions ({:.1}%) list a token the student's vocabulary lacks, first {}; \
                 use a student that shares the teacher's tokenizer, or --kd-aligned-only to \
                 distil on the other positions and train the rest on cross-entropy alone",
                stats.unmapped_positions,
                stats.teacher_positions,
                100.0 * stats.unmapped_share(),
                stats
                    .first_unmapped
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if stats.aligned_positions == 0 {
        return Err(TrainError::Config {
            field,
            message: format!(
                "none of the {} teacher positions lines up with a student token (tokenizers \
                 that split the text differently); nothing to distil",
                stats.teacher_positions
            ),
        });
    }
    tracing::info!(
        rows = stats.rows,
        rows_without = stats.rows_without,
        teacher_positions = stats.teacher_positions,
        aligned = stats.aligned_positions,
        unmapped = stats.unmapped_positions,
        "distilling from stored top-k log-probabilities"
    );
    if stats.rows_without > 0 {
        tracing::warn!(
            rows_without = stats.rows_without,
            "rows without the teacher's log-probabilities are trained on cross-entropy alone"
        );
    }
    Ok(())
}

/// Splits conversations into (train, eval) with a seeded shuffle; eval keeps the source
/// order among its members.
pub fn split_eval(
    convs: Vec<Conversation>,
    fraction: f64,
    seed: u64,
) -> (Vec<Conversation>, Vec<Conversation>) {
    let n = convs.len();
    let n_eval = if fraction <= 0.0 || n < 2 {
        0
    } else {
        ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
    };
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(splitmix64(seed ^ 0x00E7_A15E)));
    let mut is_eval = vec![false; n];
    for &i in &idx[..n_eval] {
        is_eval[i] = true;
    }
    let mut train = Vec::with_capacity(n - n_eval);
    let mut eval = Vec::with_capacity(n_eval);
    for (i, c) in convs.into_iter().enumerate() {
        if is_eval[i] {
            eval.push(c);
        } else {
            train.push(c);
        }
    }
    (train, eval)
}

/// Where a trainer starts from.
#[derive(Debug, Clone)]
pub struct TrainerInit {
    /// The student: an HF directory or a `.gguf` file (ignored when resuming from a
    /// checkpoint, whose weights are used).
    pub model: PathBuf,
    pub conversations: Vec<Conversation>,
    pub config: TrainConfig,
    pub out_dir: PathBuf,
    /// Continue from the latest checkpoint in `out_dir/checkpoints` (a fresh start when there
    /// is none).
    pub resume: bool,
    /// Where the student (and a distillation teacher) run.
    pub device: DeviceSpec,
}

/// The latest checkpoint directory under `out_dir/checkpoints` that has a trainer state.
pub fn latest_checkpoint(out_dir: &Path) -> Result<Option<PathBuf>> {
    let dir = out_dir.join("checkpoints");
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if entry.path().join(STATE_FILE).is_file() && best.as_ref().is_none_or(|(b, _)| step > *b) {
            best = Some((step, entry.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

fn model_err(e: distillery_model::Error) -> TrainError {
    TrainError::Model(e.to_string())
}

/// The trainer. Build with [`Trainer::new`], then [`run`](Trainer::run).
pub struct Trainer {
    cfg: TrainConfig,
    out_dir: PathBuf,
    student: Checkpoint,
    model: Model,
    teacher: Option<Model>,
    opt: AdamW,
    schedule: LrSchedule,
    train: Vec<Example>,
    eval_batches: Vec<Batch>,
    train_stats: EncodeStats,
    eval_stats: EncodeStats,
    total_steps: u64,
    step: u64,
    epoch: u64,
    batch: usize,
    tokens_seen: usize,
    data_fingerprint: String,
    epoch_batches: Option<(u64, Vec<Batch>)>,
    resumed_from: Option<u64>,
    device: Device,
}

impl Trainer {
    /// Loads the student (or the latest checkpoint when resuming), the teacher, and the
    /// data; splits, encodes and fingerprints it; restores the optimiser and data position
    /// when resuming.
    pub fn new(init: TrainerInit) -> Result<Trainer> {
        let cfg = init.config;
        cfg.validate()?;
        let device = init.device.open().map_err(model_err)?;
        let out_dir = init.out_dir;
        std::fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
        let resume_dir = if init.resume {
            let found = latest_checkpoint(&out_dir)?;
            if found.is_none() {
                tracing::warn!(
                    out = %out_dir.display(),
                    "--resume: no checkpoint found; starting from the beginning"
                );
            }
            found
        } else {
            None
        };
        let state: Option<TrainerState> = match &resume_dir {
            Some(dir) => {
                let p = dir.join(STATE_FILE);
                let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
                let st: TrainerState =
                    serde_json::from_str(&text).map_err(|e| TrainError::Json {
                        path: p.clone(),
                        message: e.to_string(),
                    })?;
                if st.format != STATE_FORMAT {
                    return Err(TrainError::Checkpoint {
                        path: dir.clone(),
                        message: format!(
                            "trainer state format {} (expected {STATE_FORMAT})",
                            st.format
                        ),
                    });
                }
                let changed = config_diff(&st.config.curve_relevant(), &cfg.curve_relevant());
                if !changed.is_empty() {
                    return Err(TrainError::Checkpoint {
                        path: dir.clone(),
                        message: format!(
                            "the training configuration changed since this checkpoint ({}); \
                             resume with the same settings",
                            changed.join(", ")
                        ),
                    });
                }
                Some(st)
            }
            None => None,
        };
        let model_path = resume_dir.clone().unwrap_or_else(|| init.model.clone());
        let mut student =
            Checkpoint::load(&model_path, &device, cfg.precision.dtype()).map_err(model_err)?;
        let model = student.model().map_err(model_err)?;
        let template = student.compile_chat_template()?;
        if template.is_fallback {
            tracing::warn!(model = %model_path.display(), "no chat template; using ChatML");
            // The trained model was taught ChatML: its checkpoints say so, with the
            // `{% generation %}` markers TRL and transformers read the assistant tokens from.
            if let Some(config) = student.tokenizer_config.as_object_mut() {
                config.insert(
                    "chat_template".into(),
                    crate::template::CHATML_TEMPLATE.into(),
                );
            }
        }
        if cfg.max_len > student.config.max_position_embeddings {
            tracing::warn!(
                max_len = cfg.max_len,
                max_position_embeddings = student.config.max_position_embeddings,
                "max_len exceeds the model's max_position_embeddings"
            );
        }

        let (train_convs, eval_convs) = split_eval(init.conversations, cfg.eval_fraction, cfg.seed);
        let logprob_kd = match cfg.kd.as_ref().map(|kd| &kd.source) {
            Some(KdSource::Logprobs { from_logprobs }) => Some(*from_logprobs),
            _ => None,
        };
        let aligner = logprob_kd.map(|_| Aligner::new(TokenBytes::new(&student.tokenizer)));
        let encoder = Encoder {
            tokenizer: &student.tokenizer,
            template: &template,
            aligner: aligner.as_ref(),
        };
        let (train, train_stats) = encoder.encode_all(&train_convs, cfg.max_len)?;
        if let Some(options) = logprob_kd {
            check_logprob_coverage(train_stats.logprobs.as_ref(), options)?;
        }
        // The held-out loss is cross-entropy: it needs no teacher.
        let eval_encoder = Encoder {
            aligner: None,
            ..encoder
        };
        let (eval, eval_stats) = eval_encoder.encode_all(&eval_convs, cfg.max_len)?;
        if train.is_empty() {
            return Err(TrainError::NoData {
                paths: format!(
                    "the training split ({} conversations, {} dropped: no assistant token within max_len {})",
                    train_stats.conversations, train_stats.dropped_empty, cfg.max_len
                ),
            });
        }
        if train_stats.truncated > 0 {
            tracing::warn!(
                truncated = train_stats.truncated,
                of = train_stats.conversations,
                max_len = cfg.max_len,
                "conversations truncated to max_len"
            );
        }
        let eval_refs: Vec<&Example> = eval.iter().collect();
        let eval_batches = pack(&eval_refs, cfg.max_len, cfg.pack)
            .chunks(cfg.batch_size)
            .map(Batch::from_rows)
            .collect();

        let teacher = match cfg.kd.as_ref().map(|kd| &kd.source) {
            None | Some(KdSource::Logprobs { .. }) => None,
            Some(KdSource::Checkpoint { teacher_checkpoint }) => {
                let t = Checkpoint::load(teacher_checkpoint, &device, cfg.precision.dtype())
                    .map_err(model_err)?;
                if student.tokenizer.get_vocab(true) != t.tokenizer.get_vocab(true) {
                    return Err(TrainError::Config {
                        field: "kd.teacher_checkpoint".into(),
                        message: format!(
                            "{}: the teacher's tokenizer differs from the student's ({} vs {} \
                             tokens); logit distillation needs a shared tokenizer",
                            teacher_checkpoint.display(),
                            t.tokenizer.get_vocab_size(true),
                            student.tokenizer.get_vocab_size(true)
                        ),
                    });
                }
                Some(t.model().map_err(model_err)?)
            }
        };

        let opt = AdamW::new(
            sorted_vars(&student.varmap),
            AdamWConfig {
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                eps: 1e-8,
                weight_decay: cfg.weight_decay,
            },
        )?;
        let data_fingerprint = fingerprint(&train);
        let mut trainer = Trainer {
            schedule: LrSchedule {
                base_lr: cfg.lr,
                warmup_steps: cfg.warmup_steps,
                total_steps: 0,
                min_lr_ratio: cfg.min_lr_ratio,
            },
            cfg,
            out_dir,
            student,
            model,
            teacher,
            opt,
            train,
            eval_batches,
            train_stats,
            eval_stats,
            total_steps: 0,
            step: 0,
            epoch: 0,
            batch: 0,
            tokens_seen: 0,
            data_fingerprint,
            epoch_batches: None,
            resumed_from: None,
            device,
        };
        trainer.total_steps = match trainer.cfg.duration {
            Duration::Steps(n) => n,
            Duration::Epochs(e) => {
                let per_epoch = trainer.batches_for_epoch(0).len() as f64;
                ((e * per_epoch / trainer.cfg.grad_accum as f64).ceil() as u64).max(1)
            }
        };
        trainer.schedule.total_steps = trainer.total_steps;

        if let (Some(st), Some(dir)) = (state, resume_dir) {
            if st.data_fingerprint != trainer.data_fingerprint {
                return Err(TrainError::Checkpoint {
                    path: dir,
                    message: "the training data differs from the data this checkpoint was \
                              trained on (fingerprint mismatch)"
                        .into(),
                });
            }
            trainer.opt.load(&dir.join(OPTIMIZER_FILE))?;
            if trainer.opt.step_count() != st.step {
                return Err(TrainError::Checkpoint {
                    path: dir,
                    message: format!(
                        "optimizer step {} disagrees with trainer step {}",
                        trainer.opt.step_count(),
                        st.step
                    ),
                });
            }
            trainer.step = st.step;
            trainer.epoch = st.epoch;
            trainer.batch = st.batch;
            trainer.tokens_seen = st.tokens_seen;
            trainer.resumed_from = Some(st.step);
            trainer.truncate_metrics(st.step)?;
            tracing::info!(step = st.step, checkpoint = %dir.display(), "resuming");
        } else {
            // A fresh run starts a fresh loss curve.
            let m = trainer.metrics_path();
            if m.exists() {
                std::fs::remove_file(&m).map_err(io_err(&m))?;
            }
        }
        Ok(trainer)
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// Optimiser steps done.
    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn train_stats(&self) -> &EncodeStats {
        &self.train_stats
    }

    pub fn eval_stats(&self) -> &EncodeStats {
        &self.eval_stats
    }

    /// The student being trained (shares the trained weights).
    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.student
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.out_dir.join("metrics.jsonl")
    }

    /// The micro-batches of `epoch`: the training examples shuffled by the epoch's RNG,
    /// packed, and grouped `batch_size` rows at a time.
    fn batches_for_epoch(&self, epoch: u64) -> Vec<Batch> {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        let mut rng = StdRng::seed_from_u64(epoch_seed(self.cfg.seed, epoch));
        order.shuffle(&mut rng);
        let refs: Vec<&Example> = order.iter().map(|&i| &self.train[i]).collect();
        pack(&refs, self.cfg.max_len, self.cfg.pack)
            .chunks(self.cfg.batch_size)
            .map(Batch::from_rows)
            .collect()
    }

    fn next_batch(&mut self) -> Batch {
        loop {
            if self
                .epoch_batches
                .as_ref()
                .is_none_or(|(e, _)| *e != self.epoch)
            {
                self.epoch_batches = Some((self.epoch, self.batches_for_epoch(self.epoch)));
            }
            let (_, batches) = self.epoch_batches.as_ref().expect("just set");
            if self.batch < batches.len() {
                let b = batches[self.batch].clone();
                self.batch += 1;
                return b;
            }
            self.epoch += 1;
            self.batch = 0;
        }
    }

    /// The micro-batches of the next `steps` optimiser steps (`grad_accum` each), in the order
    /// [`train_step`](Self::train_step) will take them, without taking them: what a reference
    /// implementation needs to train on exactly the same rows (the training bench's PyTorch loop).
    pub fn upcoming_batches(&self, steps: u64) -> Vec<Vec<Batch>> {
        let (mut epoch, mut index) = (self.epoch, self.batch);
        let mut batches = match &self.epoch_batches {
            Some((e, b)) if *e == epoch => b.clone(),
            _ => self.batches_for_epoch(epoch),
        };
        let mut next = || loop {
            if index < batches.len() {
                index += 1;
                return batches[index - 1].clone();
            }
            epoch += 1;
            index = 0;
            batches = self.batches_for_epoch(epoch);
        };
        (0..steps)
            .map(|_| (0..self.cfg.grad_accum).map(|_| next()).collect())
            .collect()
    }

    /// The learning rate of optimiser step `step` (0-based) under this run's schedule.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.schedule.lr_at(step)
    }

    fn micro_batch(&self, b: &Batch) -> Result<MicroBatch> {
        let shape = (b.rows, b.len);
        Ok(MicroBatch {
            inputs: Tensor::from_vec(b.inputs.clone(), shape, &self.device)?,
            targets: Tensor::from_vec(b.targets.clone(), shape, &self.device)?,
            mask: Tensor::from_vec(b.mask.clone(), shape, &self.device)?,
            segments: Tensor::from_vec(b.segments.clone(), shape, &self.device)?,
            sparse: b.sparse.clone(),
        })
    }

    /// One optimiser step over `grad_accum` micro-batches.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        let started = Instant::now();
        let batches: Vec<Batch> = (0..self.cfg.grad_accum)
            .map(|_| self.next_batch())
            .collect();
        let loss_tokens: usize = batches.iter().map(|b| b.loss_tokens).sum();
        let tokens: usize = batches.iter().map(|b| b.tokens).sum();
        let denom = loss_tokens.max(1) as f64;
        let temperature = self.cfg.kd.as_ref().map(|kd| {
            temperature_at(
                kd.temperature_start,
                kd.temperature_end,
                self.step,
                self.total_steps,
            )
        });
        let mut acc: Vec<Option<Tensor>> = vec![None; self.opt.vars().len()];
        let (mut loss_sum, mut ce_sum, mut kl_sum) = (0f64, 0f64, 0f64);
        let distill = match (&self.cfg.kd, temperature) {
            (Some(kd), Some(t)) => {
                let teacher = match (&kd.source, &self.teacher) {
                    (KdSource::Checkpoint { .. }, Some(teacher)) => KdTeacher::Model(teacher),
                    (KdSource::Logprobs { .. }, _) => KdTeacher::Logprobs,
                    (KdSource::Checkpoint { teacher_checkpoint }, None) => {
                        return Err(TrainError::Config {
                            field: "kd.teacher_checkpoint".into(),
                            message: format!("{} was not loaded", teacher_checkpoint.display()),
                        });
                    }
                };
                Some(Distill {
                    teacher,
                    alpha: kd.alpha,
                    temperature: t,
                })
            }
            _ => None,
        };
        let staging = Staging {
            checkpoint_activations: self.cfg.checkpoint_activations,
            chunk_logits: CHUNK_LOGITS,
        };
        for b in &batches {
            let sums = accumulate_gradients(
                &self.model,
                &self.micro_batch(b)?,
                distill.as_ref(),
                staging,
                1.0 / denom,
                self.opt.vars(),
                &mut acc,
            )?;
            loss_sum += sums.total;
            ce_sum += sums.ce;
            kl_sum += sums.kl;
        }
        let grad_norm = clip_grad_norm(&mut acc, self.cfg.clip)?;
        let lr = self.schedule.lr_at(self.step);
        self.opt.step(&acc, lr)?;
        self.step += 1;
        self.tokens_seen += tokens;
        let secs = started.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step: self.step,
            epoch: self.epoch,
            loss: loss_sum / denom,
            ce: ce_sum / denom,
            kl: temperature.map(|_| kl_sum / denom),
            temperature,
            lr,
            grad_norm,
            tokens,
            loss_tokens,
            tokens_per_s: tokens as f64 / secs.max(1e-9),
        })
    }

    /// Mean cross-entropy over the held-out split's assistant tokens (None without one).
    pub fn eval_loss(&self) -> Result<Option<(f64, usize)>> {
        if self.eval_batches.is_empty() {
            return Ok(None);
        }
        let (mut sum, mut n) = (0f64, 0usize);
        for b in &self.eval_batches {
            sum += self.summed_loss(b)?;
            n += b.loss_tokens;
        }
        Ok(Some((sum / n.max(1) as f64, n)))
    }

    /// Mean cross-entropy of the current model over the whole training split (for tests and
    /// reports).
    pub fn train_loss(&self) -> Result<f64> {
        let refs: Vec<&Example> = self.train.iter().collect();
        let (mut sum, mut n) = (0f64, 0usize);
        for rows in pack(&refs, self.cfg.max_len, self.cfg.pack).chunks(self.cfg.batch_size) {
            let b = Batch::from_rows(rows);
            sum += self.summed_loss(&b)?;
            n += b.loss_tokens;
        }
        Ok(sum / n.max(1) as f64)
    }

    /// Cross-entropy summed over `b`'s loss tokens, without gradients.
    fn summed_loss(&self, b: &Batch) -> Result<f64> {
        summed_cross_entropy(&self.model, &self.micro_batch(b)?, CHUNK_LOGITS)
    }

    fn append_metrics<T: Serialize>(&self, line: &T) -> Result<()> {
        let path = self.metrics_path();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut s = serde_json::to_string(line).expect("metrics serialise");
        s.push('\n');
        f.write_all(s.as_bytes()).map_err(io_err(&path))
    }

    /// Drops metric lines after `step` (written by the interrupted run after its last
    /// checkpoint), so the file is the curve of one uninterrupted run.
    fn truncate_metrics(&self, step: u64) -> Result<()> {
        let path = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_some_and(|s| s <= step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    fn state(&self) -> TrainerState {
        TrainerState {
            format: STATE_FORMAT,
            step: self.step,
            epoch: self.epoch,
            batch: self.batch,
            rng_seed: self.cfg.seed,
            rng_epoch: self.epoch,
            tokens_seen: self.tokens_seen,
            data_fingerprint: self.data_fingerprint.clone(),
            total_steps: self.total_steps,
            config: self.cfg.clone(),
        }
    }

    /// Writes `out/checkpoints/step-NNNNNNNN/` (HF model, optimizer state, trainer state)
    /// under a temporary name, then renames it; prunes old checkpoints.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let root = self.out_dir.join("checkpoints");
        let dir = root.join(format!("step-{:08}", self.step));
        let tmp = root.join(format!(".step-{:08}.tmp", self.step));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        self.save_model(&tmp)?;
        self.opt.save(&tmp.join(OPTIMIZER_FILE))?;
        let state = serde_json::to_string_pretty(&self.state()).expect("state serialises");
        let sp = tmp.join(STATE_FILE);
        std::fs::write(&sp, state).map_err(io_err(&sp))?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
        self.prune_checkpoints(&root)?;
        Ok(dir)
    }

    fn prune_checkpoints(&self, root: &Path) -> Result<()> {
        if self.cfg.keep_checkpoints == 0 {
            return Ok(());
        }
        let mut steps: Vec<(u64, PathBuf)> = std::fs::read_dir(root)
            .map_err(io_err(root))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e
                    .file_name()
                    .to_str()?
                    .strip_prefix("step-")?
                    .parse()
                    .ok()?;
                Some((n, e.path()))
            })
            .collect();
        steps.sort();
        let excess = steps.len().saturating_sub(self.cfg.keep_checkpoints);
        for (_, p) in steps.into_iter().take(excess) {
            std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// Writes the current student as an HF directory.
    pub fn save_model(&self, dir: &Path) -> Result<()> {
        save_checkpoint(
            dir,
            &self.student.config,
            &self.student.varmap,
            &self.student.tokenizer,
            &self.student.tokenizer_config,
        )
        .map_err(model_err)
    }

    fn evaluate_and_log(&self) -> Result<Option<f64>> {
        match self.eval_loss()? {
            Some((loss, n)) => {
                tracing::info!(step = self.step, eval_loss = format!("{loss:.4}"), "eval");
                self.append_metrics(&EvalMetrics {
                    step: self.step,
                    eval_loss: loss,
                    eval_tokens: n,
                })?;
                Ok(Some(loss))
            }
            None => Ok(None),
        }
    }

    /// Trains until `min(stop_at, total_steps)` steps are done, checkpointing and
    /// evaluating on schedule; returns this call's step metrics. Does not write the final
    /// model (see [`run`](Self::run)).
    pub fn run_until(&mut self, stop_at: u64) -> Result<Vec<StepMetrics>> {
        let stop = stop_at.min(self.total_steps);
        let mut out = Vec::new();
        let mut window_tokens = 0usize;
        let mut window_start = Instant::now();
        while self.step < stop {
            // On the CPU, on one of rayon's threads: the step's many parallel loops then run as
            // local jobs instead of each waking a worker and sleeping until it is done (a GPU
            // step stays on the thread that holds its context).
            let m = if self.student.device.is_cpu() {
                rayon::scope(|_| self.train_step())?
            } else {
                self.train_step()?
            };
            self.append_metrics(&m)?;
            window_tokens += m.tokens;
            let log_every = self.cfg.log_every.max(1);
            if self.step.is_multiple_of(log_every) || self.step == self.total_steps {
                let secs = window_start.elapsed().as_secs_f64().max(1e-9);
                tracing::info!(
                    "step {}/{} loss {:.4} lr {:.3e} grad_norm {:.3} tok/s {:.0}{}",
                    self.step,
                    self.total_steps,
                    m.loss,
                    m.lr,
                    m.grad_norm,
                    window_tokens as f64 / secs,
                    m.temperature
                        .map(|t| format!(" T {t:.2} kl {:.4}", m.kl.unwrap_or(0.0)))
                        .unwrap_or_default()
                );
                window_tokens = 0;
                window_start = Instant::now();
            }
            let ckpt = self.cfg.checkpoint_every > 0
                && self.step.is_multiple_of(self.cfg.checkpoint_every);
            let eval_due = if self.cfg.eval_every > 0 {
                self.step.is_multiple_of(self.cfg.eval_every)
            } else {
                ckpt
            };
            if eval_due && self.step < self.total_steps {
                self.evaluate_and_log()?;
            }
            if ckpt && self.step < self.total_steps {
                let dir = self.save_checkpoint()?;
                tracing::info!(step = self.step, dir = %dir.display(), "checkpoint");
            }
            out.push(m);
        }
        Ok(out)
    }

    /// Trains to the end, evaluates, writes the final model (HF format) into the output
    /// directory and `summary.json`, and returns the summary.
    pub fn run(&mut self) -> Result<TrainSummary> {
        let started = Instant::now();
        let start_step = self.step;
        let tokens_before = self.tokens_seen;
        let metrics = self.run_until(self.total_steps)?;
        let eval_loss = self.evaluate_and_log()?;
        if self.cfg.checkpoint_every > 0 {
            self.save_checkpoint()?;
        }
        self.save_model(&self.out_dir)?;
        let seconds = started.elapsed().as_secs_f64();
        let tokens = self.tokens_seen - tokens_before;
        let curve = read_metrics(&self.metrics_path())?;
        let summary = TrainSummary {
            steps: self.step - start_step,
            total_steps: self.total_steps,
            resumed_from: self.resumed_from,
            first_loss: curve.first().map(|m| m.loss),
            last_loss: metrics
                .last()
                .map(|m| m.loss)
                .or(curve.last().map(|m| m.loss)),
            eval_loss,
            train: self.train_stats.clone(),
            eval: self.eval_stats.clone(),
            tokens,
            seconds,
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
            out_dir: self.out_dir.clone(),
        };
        let p = self.out_dir.join("summary.json");
        std::fs::write(
            &p,
            serde_json::to_string_pretty(&summary).expect("summary serialises"),
        )
        .map_err(io_err(&p))?;
        Ok(summary)
    }
}

/// The training-step lines of a `metrics.jsonl` (eval lines are skipped).
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| TrainError::JsonLine {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })?;
        if v.get("loss").is_some() {
            out.push(serde_json::from_value(v).map_err(|e| TrainError::JsonLine {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })?);
        }
    }
    Ok(out)
}

/// The eval lines of a `metrics.jsonl`.
pub fn read_eval_metrics(path: &Path) -> Result<Vec<EvalMetrics>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<EvalMetrics>(l).ok())
        .collect())
}

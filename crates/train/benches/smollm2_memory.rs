//! Peak memory and speed of one training step of a SmolLM2-135M-shaped student on the CPU
//! (Llama, 30 layers, hidden 576, 9 heads / 3 KV heads, vocabulary 49,152, tied embeddings;
//! random weights, so no download), at 4 rows × 256 tokens in f32, with the loss on the second
//! half of each row: once keeping every layer's activations and once with activation
//! checkpointing. The first figure's baseline is the peak `distillery train` had before the
//! loss was chunked (issue 17 measured 7.1–8.5 GB; the midpoint is used); the checkpointed
//! run's baseline is the full-activation run of the same bench. Each runs in its own process.
//!
//! Run with `cargo bench -p distillery-train --bench smollm2_memory` (about 2 minutes on 2
//! cores). Peak RSS is the VmHWM of the process that ran the configuration.

#[path = "../../../benches/report.rs"]
mod report;

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use distillery_model::{Arch, Config, Model, keep_freed_tensor_memory, random_varmap};
use distillery_train::backward::{CHUNK_LOGITS, MicroBatch, Staging, accumulate_gradients};
use distillery_train::optim::{AdamW, AdamWConfig, sorted_vars};
use report::{Better, Figure};

/// Issue 17's measurement of `distillery train` on SmolLM2-135M at 4 × 256 tokens before the
/// loss was chunked: 7.1–8.5 GB.
const BASELINE_PEAK_RSS_MIB: f64 = 7.8e9 / 1048576.0;
const ROWS: usize = 4;
const LEN: usize = 256;

fn smollm2_shape() -> Config {
    Config {
        vocab_size: 49_152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 30,
        num_attention_heads: 9,
        num_key_value_heads: 3,
        rope_theta: 100_000.0,
        tie_word_embeddings: true,
        attention_bias: false,
        ..Config::tiny(Arch::Llama)
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn batch(cfg: &Config) -> MicroBatch {
    let n = ROWS * LEN;
    let ids: Vec<u32> = (0..n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761) % cfg.vocab_size as u32)
        .collect();
    let targets: Vec<u32> = ids[1..].iter().copied().chain([0]).collect();
    let mask: Vec<f32> = (0..n)
        .map(|i| f32::from(u8::from(i % LEN >= LEN / 2)))
        .collect();
    let t = |v: Vec<u32>| Tensor::from_vec(v, (ROWS, LEN), &Device::Cpu).unwrap();
    MicroBatch {
        inputs: t(ids),
        targets: t(targets),
        mask: Tensor::from_vec(mask, (ROWS, LEN), &Device::Cpu).unwrap(),
        segments: t(vec![1; n]),
        sparse: Vec::new(),
    }
}

/// One optimiser step; returns (seconds, loss per token).
fn step(model: &Model, opt: &mut AdamW, b: &MicroBatch, checkpoint: bool) -> (f64, f64) {
    let started = Instant::now();
    let vars: Vec<Var> = opt.vars().to_vec();
    let mut acc = vec![None; vars.len()];
    let tokens = (ROWS * LEN / 2) as f64;
    let staging = Staging {
        checkpoint_activations: checkpoint,
        chunk_logits: CHUNK_LOGITS,
    };
    let sums = accumulate_gradients(model, b, None, staging, 1.0 / tokens, &vars, &mut acc)
        .expect("backward");
    opt.step(&acc, 1e-4).expect("adamw");
    (started.elapsed().as_secs_f64(), sums.total / tokens)
}

/// Each mode runs in a process of its own, so that one's freed memory (which the allocator
/// keeps) does not count in the other's peak.
const MODE_VAR: &str = "DISTILLERY_BENCH_SMOLLM2_MODE";

/// Runs one mode: a warm-up step, then a timed one; prints `peak_mib tokens_per_s loss`.
fn run_mode(checkpoint: bool) {
    keep_freed_tensor_memory();
    let cfg = smollm2_shape();
    let b = batch(&cfg);
    let varmap = random_varmap(&cfg, 0, 0.02, &Device::Cpu, DType::F32).expect("weights");
    let model = Model::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .expect("model");
    let mut opt = AdamW::new(sorted_vars(&varmap), AdamWConfig::default()).expect("adamw");
    step(&model, &mut opt, &b, checkpoint);
    let (secs, loss) = step(&model, &mut opt, &b, checkpoint);
    println!("{} {} {loss}", peak_rss_mib(), (ROWS * LEN) as f64 / secs);
}

fn main() {
    if let Ok(mode) = std::env::var(MODE_VAR) {
        run_mode(mode == "checkpoint");
        return;
    }
    let setup = "SmolLM2-135M shape, random weights, 4x256 tokens, f32 CPU, 2 steps";
    let mut figures = Vec::new();
    let mut full_peak = None;
    for checkpoint in [false, true] {
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .env(MODE_VAR, if checkpoint { "checkpoint" } else { "full" })
            .output()
            .expect("run a mode");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "mode failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fields: Vec<f64> = text
            .split_whitespace()
            .map(|f| f.parse().expect("a number"))
            .collect();
        let (peak, tokens_per_s, loss) = (fields[0], fields[1], fields[2]);
        let name = if checkpoint {
            "smollm2_peak_rss_checkpointed"
        } else {
            "smollm2_peak_rss"
        };
        let figure = Figure::new("train", name, peak, "MiB", Better::Lower).note(format!(
            "{setup}{}; second step {tokens_per_s:.0} tokens/s, loss {loss:.3}",
            if checkpoint {
                ", --checkpoint-activations"
            } else {
                ""
            },
        ));
        figures.push(match full_peak {
            None => figure.baseline(BASELINE_PEAK_RSS_MIB),
            Some(full) => figure.baseline(full),
        });
        full_peak.get_or_insert(peak);
    }
    report::report(&figures);
}

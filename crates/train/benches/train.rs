//! Training throughput and peak memory of a fixed tiny configuration on CPU.
//!
//! The student is `distillery_model::Config::tiny(Qwen2)` (4 layers, hidden 128, vocab 768,
//! ~0.9M parameters) written by `init_tiny` with seed 0; the data are 64 synthetic R1-style
//! traces; rows of 256 tokens are packed, 4 rows per micro-batch, 2 micro-batches per step,
//! f32 on CPU. Two warm-up steps are not timed, then `STEPS` steps are.
//!
//! Run with `cargo bench -p distillery-train --bench train`. When `DISTILLERY_BENCH_JSON` names
//! a file, one JSON object per figure is appended to it (see `benches/report.rs` at the
//! workspace root).

#[path = "../../../benches/report.rs"]
mod report;

use std::time::Instant;

use distillery_model::{Arch, DeviceSpec, init_tiny, keep_freed_tensor_memory};
use distillery_train::{Conversation, Duration, Message, TrainConfig, Trainer, TrainerInit};
use report::{Better, Figure};

/// Training tokens per second measured with this bench on the development machine: a 2-vCPU
/// x86-64 cloud VM, candle 0.11 CPU backend (no MKL), `cargo bench` profile; two runs gave
/// 4314 and 4546 tokens/s at ~162 MiB peak RSS.
const BASELINE_TOKENS_PER_S: f64 = 4300.0;
const BASELINE_PEAK_RSS_MIB: f64 = 162.0;
const WARMUP_STEPS: u64 = 2;
const STEPS: u64 = 12;

fn traces(n: usize) -> Vec<Conversation> {
    (0..n)
        .map(|i| {
            let (a, b) = (17 + 31 * i, 250 + 7 * i);
            let steps: String = (0..4)
                .map(|k| format!("Step {k}: {a} + {} = {}.\n", b + k, a + b + k))
                .collect();
            Conversation {
                teacher_logprobs: None,
                messages: vec![
                    Message {
                        role: "user".into(),
                        content: format!("Compute {a} + {b} and explain each step."),
                    },
                    Message {
                        role: "assistant".into(),
                        content: format!("<think>\n{steps}</think>\n\nThe answer is {}.", a + b),
                    },
                ],
                origin: format!("bench {i}"),
            }
        })
        .collect()
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    // As `distillery train` does.
    keep_freed_tensor_memory();
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("tiny");
    init_tiny(Arch::Qwen2, &model, 0).expect("init tiny model");
    let config = TrainConfig {
        lr: 1e-3,
        warmup_steps: 2,
        duration: Duration::Steps(WARMUP_STEPS + STEPS),
        batch_size: 4,
        grad_accum: 2,
        max_len: 256,
        pack: true,
        clip: 1.0,
        weight_decay: 0.01,
        seed: 0,
        log_every: 1000,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(TrainerInit {
        model,
        conversations: traces(64),
        config,
        out_dir: dir.path().join("out"),
        resume: false,
        device: DeviceSpec::Cpu,
    })
    .expect("trainer");
    let warm = trainer.run_until(WARMUP_STEPS).expect("warm-up steps");
    let started = Instant::now();
    let timed = trainer
        .run_until(WARMUP_STEPS + STEPS)
        .expect("timed steps");
    let secs = started.elapsed().as_secs_f64();
    let tokens: usize = timed.iter().map(|m| m.tokens).sum();
    let tokens_per_s = tokens as f64 / secs;
    let rss = peak_rss_mib().unwrap_or(f64::NAN);
    let (first, last) = (
        warm[0].loss,
        timed.last().map(|m| m.loss).unwrap_or(f64::NAN),
    );
    let setup = "tiny qwen2, 4x256 packed rows, grad_accum 2, f32 CPU";
    report::report(&[
        Figure::new(
            "train",
            "tokens_per_s",
            tokens_per_s,
            "tokens/s",
            Better::Higher,
        )
        .baseline(BASELINE_TOKENS_PER_S)
        .note(format!(
            "{setup}; {STEPS} steps, {tokens} tokens in {secs:.2} s; loss {first:.3} -> {last:.3}"
        )),
        Figure::new("train", "peak_rss", rss, "MiB", Better::Lower)
            .baseline(BASELINE_PEAK_RSS_MIB)
            .note(format!("{setup}; whole bench process")),
    ]);
}

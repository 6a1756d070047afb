//! Training throughput and peak memory of a fixed tiny configuration on CPU, beside a PyTorch
//! loop training the same model on the same rows.
//!
//! The student is `distillery_model::Config::tiny(Qwen2)` (4 layers, hidden 128, vocab 768,
//! ~0.9M parameters) written by `init_tiny` with seed 0; the data are 64 synthetic R1-style
//! traces; rows of 256 tokens are packed, 4 rows per micro-batch, 2 micro-batches per step,
//! f32 on CPU. Two warm-up steps are not timed, then `STEPS` steps are.
//!
//! The PyTorch reference (`scripts/torch_train_ref.py --batches`) loads the same safetensors
//! and replays the Rust trainer's own micro-batches (`Trainer::upcoming_batches`): the same
//! packed rows and segments, the same assistant-only loss positions, learning rates, AdamW
//! hyperparameters, clipping and accumulation, at the same thread count. Its per-step losses
//! are compared with the Rust trainer's, so a figure is only put beside one that trained the
//! same thing. Each side runs in a process of its own (`RAYON_NUM_THREADS` is read when the
//! thread pool starts, and each peak RSS is then that side's own).
//!
//! The Python is `$DISTILLERY_TORCH_PYTHON`, else `.venv-bench/bin/python` at the workspace
//! root (`make bench-deps` creates it); without one that imports torch and transformers, the
//! comparison is skipped and the bench says why. Threads: `DISTILLERY_BENCH_THREADS` (a
//! comma-separated list, default `1,2`; see `DEFAULT_THREADS`). Each side runs
//! `DISTILLERY_BENCH_REPEATS` times (default 3), alternately, and its fastest run counts.
//!
//! Run with `cargo bench -p distillery-train --bench train`. When `DISTILLERY_BENCH_JSON` names
//! a file, one JSON object per figure is appended to it (see `benches/report.rs` at the
//! workspace root).

#[path = "../../../benches/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use distillery_model::{Arch, DeviceSpec, init_tiny, keep_freed_tensor_memory};
use distillery_train::{Conversation, Duration, Message, TrainConfig, Trainer, TrainerInit};
use report::{Better, Figure};
use serde_json::{Value, json};

/// Training tokens per second measured with this bench on the development machine: a 2-vCPU
/// x86-64 cloud VM, candle 0.11 CPU backend (no MKL), `cargo bench` profile; two runs gave
/// 4314 and 4546 tokens/s at ~162 MiB peak RSS (with the default thread count, 2).
const BASELINE_TOKENS_PER_S: f64 = 4300.0;
const BASELINE_PEAK_RSS_MIB: f64 = 162.0;
const WARMUP_STEPS: u64 = 2;
const STEPS: u64 = 12;
/// One thread, the count at which neither side is disturbed by other work on a 2-core machine,
/// and two, where both sides gain a little on this small model (hidden 128).
const DEFAULT_THREADS: &str = "1,2";
/// Runs of each side per thread count; the fastest counts.
const DEFAULT_REPEATS: usize = 3;
const SETUP: &str = "tiny qwen2, 4x256 packed rows, grad_accum 2, f32 CPU";
/// Set in the child process that trains with the Rust trainer: the directory of the model.
const CHILD_VAR: &str = "DISTILLERY_BENCH_TRAIN_DIR";

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

fn train_config() -> TrainConfig {
    TrainConfig {
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
    }
}

fn trainer(model: &Path, out_dir: PathBuf) -> Trainer {
    Trainer::new(TrainerInit {
        model: model.to_path_buf(),
        conversations: traces(64),
        config: train_config(),
        out_dir,
        resume: false,
        device: DeviceSpec::Cpu,
    })
    .expect("trainer")
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The child: trains with the Rust trainer and prints one JSON line.
fn run_rust(dir: &Path) {
    // As `distillery train` does.
    keep_freed_tensor_memory();
    let mut trainer = trainer(
        &dir.join("tiny"),
        dir.join(format!("out-{}", std::process::id())),
    );
    let warm = trainer.run_until(WARMUP_STEPS).expect("warm-up steps");
    let started = Instant::now();
    let timed = trainer
        .run_until(WARMUP_STEPS + STEPS)
        .expect("timed steps");
    let secs = started.elapsed().as_secs_f64();
    let tokens: usize = timed.iter().map(|m| m.tokens).sum();
    let losses: Vec<f64> = warm.iter().chain(&timed).map(|m| m.loss).collect();
    println!(
        "{}",
        json!({
            "tokens": tokens,
            "secs": secs,
            "tokens_per_s": tokens as f64 / secs,
            "peak_rss_mib": peak_rss_mib(),
            "losses": losses,
        })
    );
}

/// Writes what the PyTorch loop replays: every step's micro-batches, learning rates and the
/// optimiser's hyperparameters.
fn write_batches(dir: &Path) -> PathBuf {
    let cfg = train_config();
    let trainer = trainer(&dir.join("tiny"), dir.join("out-plan"));
    let steps = trainer.upcoming_batches(WARMUP_STEPS + STEPS);
    let lrs: Vec<f64> = (0..WARMUP_STEPS + STEPS)
        .map(|s| trainer.lr_at(s))
        .collect();
    let steps: Vec<Vec<Value>> = steps
        .iter()
        .map(|micro| {
            micro
                .iter()
                .map(|b| {
                    json!({
                        "rows": b.rows, "len": b.len, "inputs": b.inputs, "targets": b.targets,
                        "mask": b.mask, "segments": b.segments, "tokens": b.tokens,
                        "loss_tokens": b.loss_tokens,
                    })
                })
                .collect()
        })
        .collect();
    let spec = json!({
        "warmup_steps": WARMUP_STEPS,
        "steps": steps,
        "lrs": lrs,
        "weight_decay": cfg.weight_decay,
        "clip": cfg.clip,
        "beta1": cfg.beta1,
        "beta2": cfg.beta2,
        // As the trainer builds its AdamW.
        "eps": 1e-8,
    });
    let path = dir.join("batches.json");
    std::fs::write(&path, spec.to_string()).expect("write batches");
    path
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python to run the reference with, or why there is none.
fn torch_python() -> Result<PathBuf, String> {
    let python = match std::env::var_os("DISTILLERY_TORCH_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let venv = workspace_root().join(".venv-bench/bin/python");
            if !venv.exists() {
                return Err(
                    "no DISTILLERY_TORCH_PYTHON and no .venv-bench (run `make bench-deps`)".into(),
                );
            }
            venv
        }
    };
    let out = Command::new(&python)
        .args(["-c", "import torch, transformers"])
        .output()
        .map_err(|e| format!("{} does not run: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").trim();
        return Err(format!(
            "{} cannot import torch and transformers: {last}",
            python.display()
        ));
    }
    Ok(python)
}

/// The last line of `out`'s stdout as JSON, or the reason it failed.
fn json_result(what: &str, out: std::io::Result<std::process::Output>) -> Result<Value, String> {
    let out = out.map_err(|e| format!("{what} did not start: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("{what} printed no JSON line ({e}): {line}"))
}

/// One run of the PyTorch reference at `t` threads.
fn torch_run(python: &Path, dir: &Path, batches: &Path, t: usize) -> Result<Value, String> {
    json_result(
        "the PyTorch reference",
        Command::new(python)
            .arg(workspace_root().join("scripts/torch_train_ref.py"))
            .arg("--model")
            .arg(dir.join("tiny"))
            .arg("--batches")
            .arg(batches)
            .args(["--device", "cpu", "--threads", &t.to_string()])
            .env("OMP_NUM_THREADS", t.to_string())
            .env("MKL_NUM_THREADS", t.to_string())
            .output(),
    )
}

/// The run with more tokens/s.
fn faster(best: Option<Value>, run: Value) -> Value {
    match best {
        Some(best) if number(&best, "tokens_per_s") >= number(&run, "tokens_per_s") => best,
        _ => run,
    }
}

fn losses(v: &Value) -> Vec<f64> {
    v["losses"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn number(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_VAR) {
        run_rust(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    init_tiny(Arch::Qwen2, &dir.path().join("tiny"), 0).expect("init tiny model");
    let threads: Vec<usize> = std::env::var("DISTILLERY_BENCH_THREADS")
        .unwrap_or_else(|_| DEFAULT_THREADS.into())
        .split(',')
        .map(|t| {
            t.trim()
                .parse()
                .expect("DISTILLERY_BENCH_THREADS: thread counts")
        })
        .collect();
    let repeats: usize = std::env::var("DISTILLERY_BENCH_REPEATS")
        .map_or(DEFAULT_REPEATS, |r| {
            r.parse().expect("DISTILLERY_BENCH_REPEATS: a count")
        })
        .max(1);
    let python = torch_python();
    let batches = python.as_ref().ok().map(|_| write_batches(dir.path()));
    let mut figures = Vec::new();
    for (i, &t) in threads.iter().enumerate() {
        // The first count keeps the historic figure names; others are suffixed.
        let suffix = if i == 0 {
            String::new()
        } else {
            format!("_{t}t")
        };
        // Each side runs `repeats` times, alternately, and its fastest run counts: on a shared
        // machine other work slows a run down, never speeds it up.
        let (mut rust, mut torch) = (None::<Value>, None::<Result<Value, String>>);
        for _ in 0..repeats {
            let run = json_result(
                "the Rust trainer",
                Command::new(std::env::current_exe().expect("own path"))
                    .env(CHILD_VAR, dir.path())
                    .env("RAYON_NUM_THREADS", t.to_string())
                    // As `distillery train` sets it: the model's kernels use rayon's threads
                    // alone, not candle's element-wise pool beside them.
                    .env("CANDLE_NUM_THREADS", "1")
                    .output(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            rust = Some(faster(rust, run));
            if let (Ok(python), Some(batches)) = (&python, &batches) {
                if matches!(torch, Some(Err(_))) {
                    continue;
                }
                torch = Some(
                    torch_run(python, dir.path(), batches, t)
                        .map(|run| faster(torch.and_then(Result::ok), run)),
                );
            }
        }
        let rust = rust.expect("at least one run");
        let rust_tps = number(&rust, "tokens_per_s");
        let rust_losses = losses(&rust);
        let setup = format!("{SETUP}, {t} thread{}", if t == 1 { "" } else { "s" });
        figures.push(
            Figure::new(
                "train",
                leak(format!("tokens_per_s{suffix}")),
                rust_tps,
                "tokens/s",
                Better::Higher,
            )
            .baseline(BASELINE_TOKENS_PER_S)
            .note(format!(
                "{setup}; {STEPS} steps, {} tokens in {:.2} s (fastest of {repeats}); \
                 loss {:.3} -> {:.3}",
                rust["tokens"],
                number(&rust, "secs"),
                rust_losses.first().copied().unwrap_or(f64::NAN),
                rust_losses.last().copied().unwrap_or(f64::NAN),
            )),
        );
        figures.push(
            Figure::new(
                "train",
                leak(format!("peak_rss{suffix}")),
                number(&rust, "peak_rss_mib"),
                "MiB",
                Better::Lower,
            )
            .baseline(BASELINE_PEAK_RSS_MIB)
            .note(format!("{setup}; the training process")),
        );
        let torch = match (torch, &python) {
            (Some(run), _) => run,
            (None, Err(why)) => Err(why.clone()),
            (None, Ok(_)) => unreachable!("the reference runs when there is a python"),
        };
        let torch = match torch {
            Ok(v) => v,
            Err(why) => {
                println!("train: the PyTorch comparison at {t} thread(s) was skipped: {why}");
                continue;
            }
        };
        let torch_losses = losses(&torch);
        // Both trained on the same rows from the same weights: the losses agree step for step
        // up to f32 rounding (which grows a little with every update).
        let max_diff = rust_losses
            .iter()
            .zip(&torch_losses)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let same = rust_losses.len() == torch_losses.len() && max_diff < 1e-2;
        if !same {
            println!(
                "train: the PyTorch reference at {t} thread(s) did not train the same thing \
                 (losses {rust_losses:?} vs {torch_losses:?}); no ratio is reported"
            );
            continue;
        }
        figures.push(
            Figure::new(
                "train",
                leak(format!("tokens_per_s_vs_pytorch{suffix}")),
                rust_tps,
                "tokens/s",
                Better::Higher,
            )
            .baseline(number(&torch, "tokens_per_s"))
            .note(format!(
                "{setup}; baseline: PyTorch {} ({} attention) on the same rows and weights \
                 ({} s, fastest of {repeats}), losses equal to {max_diff:.1e}",
                torch["torch"].as_str().unwrap_or("?"),
                torch["attn"].as_str().unwrap_or("?"),
                torch["secs"]
                    .as_f64()
                    .map_or("?".into(), |s| format!("{s:.2}")),
            )),
        );
    }
    report::report(&figures);
}

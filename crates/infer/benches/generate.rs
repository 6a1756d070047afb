//! Generation speed of SmolLM2-135M-Instruct (`make model`, its Q4_1 GGUF) on the CPU, beside
//! llama.cpp on the same file, prompt and thread count:
//!
//! - one sequence: decode tokens/s after a 64-token prompt (the prompt's time apart);
//! - 8 sequences stepped together, and 24 requests of mixed lengths through the continuous
//!   batcher with 8 slots: aggregate tokens/s, against llama.cpp's one-sequence rate;
//! - llama.cpp (llama-cpp-python, `make bench-deps`): its one-sequence decode tokens/s, the
//!   baseline of the figures above. Without it the figures have no baseline and say why.
//!
//! Threads: `DISTILLERY_BENCH_THREADS`, else one per core, for both. Run with
//! `cargo bench -p distillery-infer --bench generate`.

#[path = "../../../benches/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use distillery_infer::{BatchLimits, Batcher, Engine, Request};
use distillery_model::{Checkpoint, GenerateOptions, RowOptions};
use report::{Better, Figure};

const PROMPT_LEN: usize = 64;
const NEW_TOKENS: usize = 128;
const BATCH: usize = 8;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn prompt(seed: usize) -> Vec<u32> {
    (0..PROMPT_LEN)
        .map(|i| (100 + (i + seed * 7) * 37 % 5000) as u32)
        .collect()
}

/// Decode tokens/s of `rows` sequences stepped together, each after its prompt.
fn decode_rate(engine: &Engine, rows: usize) -> (f64, f64) {
    let prompts: Vec<Vec<u32>> = (0..rows).map(prompt).collect();
    let mut seqs: Vec<_> = (0..rows).map(|_| engine.new_sequence()).collect();
    let started = Instant::now();
    let mut batch: Vec<_> = seqs
        .iter_mut()
        .zip(&prompts)
        .map(|(s, p)| (s, &p[..]))
        .collect();
    let mut logits = engine.forward(&mut batch).expect("prefill");
    let prefill = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 1..NEW_TOKENS {
        let next: Vec<[u32; 1]> = logits.iter().map(|l| [argmax(l)]).collect();
        let mut batch: Vec<_> = seqs
            .iter_mut()
            .zip(&next)
            .map(|(s, t)| (s, &t[..]))
            .collect();
        logits = engine.forward(&mut batch).expect("decode");
    }
    let secs = started.elapsed().as_secs_f64();
    ((rows * (NEW_TOKENS - 1)) as f64 / secs, prefill)
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Aggregate tokens/s of 24 requests of 32 to 224 new tokens through the batcher, 8 at a time.
fn continuous_rate(engine: Arc<Engine>) -> (f64, usize) {
    let options = GenerateOptions {
        temperature: 0.6,
        top_p: 0.95,
        ..GenerateOptions::greedy(0)
    };
    let mut batcher = Batcher::new(engine, options, BatchLimits::new(BATCH)).expect("batcher");
    for i in 0..24 {
        let row = RowOptions {
            seed: i as u64,
            max_new_tokens: 32 + (i * 53) % 193,
        };
        batcher
            .submit(Request {
                tag: i,
                prompt: prompt(i),
                row,
            })
            .expect("submit");
    }
    let started = Instant::now();
    let mut tokens = 0;
    while !batcher.is_idle() {
        batcher.step(|_| tokens += 1).expect("step");
    }
    (tokens as f64 / started.elapsed().as_secs_f64(), tokens)
}

/// llama.cpp's one-sequence decode tokens/s, or why there is none.
fn llama_cpp(model: &Path, threads: usize) -> Result<f64, String> {
    let python = std::env::var_os("DISTILLERY_LLAMA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-llama/bin/python"));
    if !python.exists() {
        return Err(format!(
            "no llama-cpp-python at {} (make bench-deps)",
            python.display()
        ));
    }
    let ids: Vec<String> = prompt(0).iter().map(u32::to_string).collect();
    let out = Command::new(&python)
        .arg(root().join("scripts/bench/llama_cpp_generate.py"))
        .args(["--model".as_ref(), model.as_os_str()])
        .args(["--threads", &threads.to_string()])
        .args(["--prompt", &ids.join(",")])
        .args(["--tokens", &NEW_TOKENS.to_string()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "llama.cpp failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("unreadable llama.cpp output: {e}"))?;
    json["decode_tokens_per_s"]
        .as_f64()
        .ok_or_else(|| format!("no decode_tokens_per_s in {json}"))
}

fn main() {
    let model = std::env::var_os("DISTILLERY_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
    if !model.is_file() {
        eprintln!(
            "generate bench: {} is missing: run `make model`",
            model.display()
        );
        std::process::exit(1);
    }
    let threads = std::env::var("DISTILLERY_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("thread pool");
    let checkpoint =
        Checkpoint::load_quantized(&model, &Device::Cpu, DType::F32).expect("load the GGUF");
    let engine = Arc::new(Engine::from_checkpoint(&checkpoint).expect("engine"));
    drop(checkpoint);

    decode_rate(&engine, 1); // warm-up: page the weights in
    let (single, prefill) = decode_rate(&engine, 1);
    let (batched, _) = decode_rate(&engine, BATCH);
    let (continuous, tokens) = continuous_rate(Arc::clone(&engine));
    let baseline = llama_cpp(&model, threads);

    let setup = format!("SmolLM2-135M Q4_1, {threads} threads, prompt {PROMPT_LEN}");
    let against = |figure: Figure| match &baseline {
        Ok(rate) => figure.baseline(*rate),
        Err(_) => figure,
    };
    let mut figures = vec![
        against(Figure::new("generate", "decode_1", single, "tokens/s", Better::Higher))
            .note(format!("{setup}, {NEW_TOKENS} greedy tokens, prefill {prefill:.3} s; baseline llama.cpp, 1 sequence")),
        against(Figure::new("generate", "decode_8", batched, "tokens/s", Better::Higher))
            .note(format!("{setup}, {BATCH} sequences stepped together, aggregate; baseline llama.cpp, 1 sequence")),
        against(Figure::new("generate", "continuous_8", continuous, "tokens/s", Better::Higher))
            .note(format!("{setup}, 24 sampled requests of 32-224 tokens ({tokens} in all), {BATCH} slots refilled as they free; baseline llama.cpp, 1 sequence")),
    ];
    match &baseline {
        Ok(rate) => figures.push(
            Figure::new(
                "generate",
                "llama_cpp_decode_1",
                *rate,
                "tokens/s",
                Better::Higher,
            )
            .note(format!(
                "{setup}, llama-cpp-python, same GGUF and prompt, best of 3"
            )),
        ),
        Err(why) => println!("generate: no llama.cpp baseline: {why}"),
    }
    report::report(&figures);
}

//! Generation speed of a GGUF checkpoint on the CPU, dequantized (f32) and in its quantized
//! blocks: prefill time and decode tokens/s for one sequence and for a batch.
//! `cargo run --release -p distillery-model --example gguf_speed -- FILE.gguf [batch] [tokens]`

use std::time::Instant;

use candle_core::{DType, Device};
use distillery_model::{Checkpoint, GenerateOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: gguf_speed FILE.gguf [batch] [tokens]")?;
    let batch: usize = args.get(2).map_or(Ok(8), |s| s.parse())?;
    let tokens: usize = args.get(3).map_or(Ok(32), |s| s.parse())?;
    let prompt: Vec<u32> = (0..64).map(|i| 100 + i * 37 % 5000).collect();
    for quantized in [false, true] {
        let ck = if quantized {
            Checkpoint::load_quantized(path, &Device::Cpu, DType::F32)?
        } else {
            Checkpoint::load(path, &Device::Cpu, DType::F32)?
        };
        let model = ck.model()?;
        let name = if quantized { "quantized" } else { "f32" };
        for rows in [1, batch] {
            let prompts = vec![prompt.clone(); rows];
            let t = Instant::now();
            model.generate(&prompts, &GenerateOptions::greedy(1))?;
            let prefill = t.elapsed().as_secs_f64();
            let t = Instant::now();
            model.generate(&prompts, &GenerateOptions::greedy(tokens))?;
            let total = t.elapsed().as_secs_f64();
            let decode = (rows * (tokens - 1)) as f64 / (total - prefill).max(1e-9);
            println!(
                "{name:9} batch {rows:2}: prefill of 64 tokens {:.2} s, decode {decode:.1} tokens/s",
                prefill
            );
        }
    }
    Ok(())
}

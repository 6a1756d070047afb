//! Rough CPU throughput of the tiny model: training forward+backward and cached generation.
//! `cargo run -p distillery-model --example tiny_speed [qwen2|llama] [batch] [seq]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use distillery_model::{Arch, Config, GenerateOptions, Model, random_varmap};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arch: Arch = args.get(1).map_or("qwen2", String::as_str).parse()?;
    let batch: usize = args.get(2).map_or(Ok(8), |s| s.parse())?;
    let seq: usize = args.get(3).map_or(Ok(256), |s| s.parse())?;
    let cfg = Config::tiny(arch);
    let dev = Device::Cpu;
    let vm = random_varmap(&cfg, 0, 0.02, &dev, DType::F32)?;
    let model = Model::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    let ids: Vec<u32> = (0..batch * seq).map(|i| (i * 7 % 700) as u32).collect();
    let input = Tensor::from_vec(ids, (batch, seq), &dev)?;
    let targets = input.flatten_all()?;
    let steps = 3;
    let t0 = Instant::now();
    for _ in 0..steps {
        let logits = model.forward(&input, None)?;
        let loss = candle_nn::loss::cross_entropy(&logits.flatten_to(1)?, &targets)?;
        let _grads = loss.backward()?;
    }
    let dt = t0.elapsed().as_secs_f64() / steps as f64;
    let t1 = Instant::now();
    let _ = model.forward(&input, None)?;
    println!("forward alone: {:.3}s", t1.elapsed().as_secs_f64());
    println!(
        "{arch} train fwd+bwd: batch {batch} x seq {seq}: {:.3}s/step, {:.0} tokens/s",
        dt,
        (batch * seq) as f64 / dt
    );
    let prompts: Vec<Vec<u32>> = (0..batch).map(|i| vec![1 + i as u32; 32]).collect();
    let t0 = Instant::now();
    let out = model.generate(&prompts, &GenerateOptions::greedy(64))?;
    let n: usize = out.iter().map(|g| g.tokens.len()).sum();
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "{arch} generate: {n} tokens in {dt:.2}s, {:.0} tokens/s",
        n as f64 / dt
    );
    Ok(())
}

//! The engine on the real SmolLM2-135M-Instruct GGUF (`make model`; run by `make test-real`):
//! in its Q4_1 blocks it answers a sum as the candle model on the dequantized weights does,
//! and its logits stay within 8-bit activation rounding of candle's quantized model.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use distillery_infer::{BatchLimits, Batcher, Engine, Request};
use distillery_model::{Checkpoint, GenerateOptions, RowOptions};

#[test]
#[ignore = "needs SmolLM2-135M-Instruct from `make model`; run by `make test-real`"]
fn smollm2_in_its_blocks_answers_like_the_dequantized_model() {
    let path = distillery_model::smollm2_gguf();
    let checkpoint = Checkpoint::load_quantized(&path, &Device::Cpu, DType::F32).unwrap();
    let template = checkpoint.compile_chat_template().unwrap();
    let messages = [("user", "What is 2+3?")];
    let prompt = template.render(&messages, true, "prompt").unwrap();
    let ids = checkpoint
        .tokenizer
        .encode(prompt.as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();

    // Logits after the prompt, against candle's quantized model on the same blocks.
    let engine = Arc::new(Engine::from_checkpoint(&checkpoint).unwrap());
    let mut seq = engine.new_sequence();
    let ours = engine
        .forward(&mut [(&mut seq, &ids[..])])
        .unwrap()
        .remove(0);
    let input = Tensor::new(&ids[..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let candle: Vec<f32> = checkpoint
        .model()
        .unwrap()
        .forward(&input, None)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
        .pop()
        .unwrap();
    let rms = |v: &mut dyn Iterator<Item = f32>| {
        let (sum, n) = v.fold((0f64, 0usize), |(s, n), x| (s + (x as f64).powi(2), n + 1));
        (sum / n as f64).sqrt()
    };
    let apart = rms(&mut ours.iter().zip(&candle).map(|(a, b)| a - b));
    let scale = rms(&mut candle.iter().copied());
    assert!(
        apart < 0.03 * scale,
        "logits {apart} apart at scale {scale}"
    );

    // Greedy answers, through the batcher and candle's dequantized model.
    let options = GenerateOptions {
        stop_token_ids: checkpoint.eos_token_ids(),
        ..GenerateOptions::greedy(24)
    };
    let mut batcher = Batcher::new(engine, options.clone(), BatchLimits::new(2)).unwrap();
    let row = RowOptions {
        seed: 0,
        max_new_tokens: 24,
    };
    batcher
        .submit(Request {
            tag: (),
            prompt: ids.clone(),
            row,
        })
        .unwrap();
    let mut answer = None;
    while !batcher.is_idle() {
        answer = batcher.step(|_| {}).unwrap().pop().or(answer);
    }
    let ours = answer.unwrap().generated;
    let dense = Checkpoint::load(&path, &Device::Cpu, DType::F32).unwrap();
    let theirs = dense
        .model()
        .unwrap()
        .generate(&[ids], &options)
        .unwrap()
        .remove(0);
    let text = |tokens: &[u32]| checkpoint.tokenizer.decode(tokens, true).unwrap();
    eprintln!(
        "engine: {:?}\ncandle: {:?}",
        text(&ours.tokens),
        text(&theirs.tokens)
    );
    assert!(text(&ours.tokens).contains('5'), "{:?}", text(&ours.tokens));
    // 4-bit weights with 8-bit activations, or f32 throughout: the first tokens agree.
    assert_eq!(ours.tokens[..6], theirs.tokens[..6]);
}

//! Tiny random checkpoints for the tests: dense, or with their matrices in GGUF blocks.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use distillery_model::{
    Arch, Checkpoint, Config, Model, Param, QuantizedWeights, random_varmap, tiny_tokenizer,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// The tiny config of `arch` with grouped-query attention (4 heads over 2).
pub(crate) fn config(arch: Arch) -> Config {
    Config::tiny(arch)
}

/// Random weights, with norms and biases away from their 1 and 0 so that they are tested.
pub(crate) fn varmap(cfg: &Config, seed: u64) -> VarMap {
    let varmap = random_varmap(cfg, seed, 0.08, &Device::Cpu, DType::F32).unwrap();
    let mut rng = StdRng::seed_from_u64(seed + 1);
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        if name.ends_with("norm.weight") || name.ends_with(".bias") {
            let base = if name.ends_with(".bias") { 0.0 } else { 1.0 };
            let values: Vec<f32> = (0..var.elem_count())
                .map(|_| base + rng.random_range(-0.3..0.3))
                .collect();
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    drop(data);
    varmap
}

fn checkpoint_around(
    cfg: &Config,
    varmap: VarMap,
    quantized: Option<QuantizedWeights>,
) -> Checkpoint {
    Checkpoint {
        config: cfg.clone(),
        varmap,
        tokenizer: tiny_tokenizer().unwrap(),
        tokenizer_config: serde_json::json!({}),
        chat_template: None,
        source: "tiny-test".into(),
        device: Device::Cpu,
        dtype: DType::F32,
        quantized,
    }
}

/// A dense f32 checkpoint.
pub(crate) fn dense(cfg: &Config, seed: u64) -> Checkpoint {
    checkpoint_around(cfg, varmap(cfg, seed), None)
}

/// The same weights with every matrix in `dtype` blocks, as `Checkpoint::load_quantized`
/// gives a GGUF file.
pub(crate) fn quantized(cfg: &Config, seed: u64, dtype: GgmlDType) -> Checkpoint {
    let dense = varmap(cfg, seed);
    let tensors = dense.data().lock().unwrap().clone();
    let mut params = HashMap::new();
    let model = Model::from_params(cfg, &Device::Cpu, DType::F32, |spec| {
        let t = tensors[&spec.name].as_tensor();
        let q = if t.rank() == 2 { dtype } else { GgmlDType::F32 };
        let param = Param::Quantized(Arc::new(QTensor::quantize(t, q)?));
        params.insert(spec.name.clone(), param.clone());
        Ok(param)
    })
    .unwrap();
    let weights = QuantizedWeights {
        model,
        params: Arc::new(params),
    };
    checkpoint_around(cfg, VarMap::new(), Some(weights))
}

/// The candle model of a dense checkpoint, for reference logits.
pub(crate) fn candle_model(checkpoint: &Checkpoint) -> Model {
    match &checkpoint.quantized {
        Some(q) => q.model.clone(),
        None => Model::new(
            &checkpoint.config,
            VarBuilder::from_varmap(&checkpoint.varmap, DType::F32, &Device::Cpu),
        )
        .unwrap(),
    }
}

/// The reference logits of `tokens` at every position, from the candle model.
pub(crate) fn reference_logits(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    let input = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&input, None)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

pub(crate) fn prompt(seed: u64, len: usize, vocab: usize) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect()
}

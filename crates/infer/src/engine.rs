//! The decoder: Qwen2/Llama on plain f32 buffers and [`Matrix`] weights, one forward pass
//! over the new tokens of any number of sequences at once.
//!
//! Every row of every sequence goes through the same projections together (one pass over
//! each weight matrix per step, which is what bounds decoding on a CPU); attention is per
//! sequence, over that sequence's own KV cache. A sequence can join or leave between any two
//! steps, which is what continuous batching needs.

use std::sync::Arc;

use distillery_model::{Checkpoint, Config, vector_math};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::matrix::{Matrix, dense_f32};
use crate::quant::{F32DotFn, f32_kernel};

#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    /// q, k and v stacked: `[q_dim + 2 kv_dim, hidden]`.
    qkv: Matrix,
    qkv_bias: Option<Vec<f32>>,
    o: Matrix,
    ffn_norm: Vec<f32>,
    /// gate and up stacked: `[2 intermediate, hidden]`.
    gate_up: Matrix,
    down: Matrix,
}

/// A model ready to decode on the CPU (see the crate docs). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    embed: Arc<Matrix>,
    lm_head: Arc<Matrix>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    inv_freq: Vec<f32>,
}

/// One sequence's KV cache: per layer, its keys and values `[position][kv_heads × head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct Sequence {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl Sequence {
    /// Tokens seen so far (prompt and generated).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Work above which attention is spread across threads (multiply-adds).
const PARALLEL_ATTENTION: usize = 1 << 16;

impl Engine {
    /// The engine over a checkpoint's weights: a GGUF loaded with
    /// [`Checkpoint::load_quantized`] keeps its blocks, anything else computes in f32.
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Engine> {
        let cfg = checkpoint.config.clone();
        let param = |name: &str| {
            checkpoint.param(name).map_err(|e| Error::Weight {
                name: name.to_string(),
                message: e.to_string(),
            })
        };
        let matrix = |name: &str| Matrix::from_param(name, &param(name)?);
        let vector = |name: &str| -> Result<Vec<f32>> {
            match param(name)? {
                distillery_model::Param::Dense(t) => dense_f32(name, &t),
                distillery_model::Param::Quantized(q) => {
                    let t = q
                        .dequantize(&candle_core::Device::Cpu)
                        .map_err(|e| Error::Weight {
                            name: name.to_string(),
                            message: e.to_string(),
                        })?;
                    dense_f32(name, &t)
                }
            }
        };
        let embed = Arc::new(matrix("model.embed_tokens.weight")?);
        let lm_head = if cfg.tie_word_embeddings {
            Arc::clone(&embed)
        } else {
            Arc::new(matrix("lm_head.weight")?)
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let proj = |n: &str| matrix(&format!("{p}.self_attn.{n}_proj.weight"));
            let qkv_bias = if cfg.attention_bias {
                let mut bias = Vec::new();
                for n in ["q", "k", "v"] {
                    bias.extend(vector(&format!("{p}.self_attn.{n}_proj.bias"))?);
                }
                Some(bias)
            } else {
                None
            };
            let mlp = |n: &str| matrix(&format!("{p}.mlp.{n}_proj.weight"));
            layers.push(Layer {
                attn_norm: vector(&format!("{p}.input_layernorm.weight"))?,
                qkv: Matrix::stack(vec![proj("q")?, proj("k")?, proj("v")?]),
                qkv_bias,
                o: proj("o")?,
                ffn_norm: vector(&format!("{p}.post_attention_layernorm.weight"))?,
                gate_up: Matrix::stack(vec![mlp("gate")?, mlp("up")?]),
                down: mlp("down")?,
            });
        }
        let engine = Engine {
            norm: vector("model.norm.weight")?,
            inv_freq: cfg.rope_inv_freq().iter().map(|&f| f as f32).collect(),
            embed,
            lm_head,
            layers,
            cfg,
        };
        engine.check_shapes()?;
        Ok(engine)
    }

    fn check_shapes(&self) -> Result<()> {
        let cfg = &self.cfg;
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let qkv = (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * hd;
        let bad = |what: String| {
            Err(Error::Weight {
                name: what,
                message: "its shape does not match the config".into(),
            })
        };
        if self.embed.rows() != cfg.vocab_size || self.embed.cols() != h {
            return bad("model.embed_tokens.weight".into());
        }
        if self.lm_head.rows() != cfg.vocab_size || self.lm_head.cols() != h {
            return bad("lm_head.weight".into());
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let ok = layer.qkv.rows() == qkv
                && layer.qkv.cols() == h
                && layer.o.rows() == h
                && layer.o.cols() == cfg.num_attention_heads * hd
                && layer.gate_up.rows() == 2 * cfg.intermediate_size
                && layer.gate_up.cols() == h
                && layer.down.rows() == h
                && layer.down.cols() == cfg.intermediate_size
                && layer.attn_norm.len() == h
                && layer.ffn_norm.len() == h
                && layer.qkv_bias.as_ref().is_none_or(|b| b.len() == qkv);
            if !ok {
                return bad(format!("model.layers.{l}"));
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// An empty sequence, ready for its prompt.
    pub fn new_sequence(&self) -> Sequence {
        let layers = self.cfg.num_hidden_layers;
        Sequence {
            keys: vec![Vec::new(); layers],
            values: vec![Vec::new(); layers],
            len: 0,
        }
    }

    /// Feeds every sequence its new tokens (a prompt, or the last sampled token) and returns,
    /// for each, the logits after its last new token. Each sequence's cache grows by its
    /// tokens. Nothing changes when it fails.
    pub fn forward(&self, batch: &mut [(&mut Sequence, &[u32])]) -> Result<Vec<Vec<f32>>> {
        // On one of rayon's threads: the step's hundred-odd parallel loops then split as
        // worker-local jobs, with this thread taking its share, where from any other thread
        // each loop would be handed to the pool and waited for, two context switches apiece.
        if rayon::current_thread_index().is_none() {
            return rayon::scope(|_| self.forward(batch));
        }
        let cfg = &self.cfg;
        for (seq, tokens) in batch.iter() {
            if tokens.is_empty() {
                return Err(Error::InvalidInput("a sequence was given no tokens".into()));
            }
            if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                return Err(Error::InvalidInput(format!(
                    "token id {bad} is outside the vocabulary ({})",
                    cfg.vocab_size
                )));
            }
            if seq.len + tokens.len() > cfg.max_position_embeddings {
                return Err(Error::InvalidInput(format!(
                    "{} tokens exceed the model's context of {}",
                    seq.len + tokens.len(),
                    cfg.max_position_embeddings
                )));
            }
        }
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (q_dim, kv_dim) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        // Row r of this step is token i of sequence s, at position `start + i`.
        let mut rows: Vec<(usize, usize)> = Vec::new();
        for (s, (seq, tokens)) in batch.iter().enumerate() {
            rows.extend((0..tokens.len()).map(|i| (s, seq.len + i)));
        }
        let m = rows.len();
        let mut x = vec![0f32; m * h];
        let tokens = batch.iter().flat_map(|(_, tokens)| tokens.iter());
        for (&token, out) in tokens.zip(x.chunks_exact_mut(h)) {
            self.embed.row_into(token as usize, out);
        }
        let (cos, sin) = self.rope_tables(rows.iter().map(|&(_, p)| p));
        let eps = cfg.rms_norm_eps as f32;

        for (l, layer) in self.layers.iter().enumerate() {
            let normed = rms_norm(&x, &layer.attn_norm, eps);
            let mut qkv = layer.qkv.matmul(&normed, m);
            let width = q_dim + 2 * kv_dim;
            for (r, row) in qkv.chunks_exact_mut(width).enumerate() {
                if let Some(bias) = &layer.qkv_bias {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
                let (cos, sin) = (
                    &cos[r * hd / 2..(r + 1) * hd / 2],
                    &sin[r * hd / 2..(r + 1) * hd / 2],
                );
                for head in row[..q_dim + kv_dim].chunks_exact_mut(hd) {
                    rope(head, cos, sin);
                }
            }
            for (row, &(s, _)) in qkv.chunks_exact(width).zip(&rows) {
                let seq = &mut *batch[s].0;
                seq.keys[l].extend_from_slice(&row[q_dim..q_dim + kv_dim]);
                seq.values[l].extend_from_slice(&row[q_dim + kv_dim..]);
            }
            let caches: Vec<(&[f32], &[f32])> = batch
                .iter()
                .map(|(seq, _)| (seq.keys[l].as_slice(), seq.values[l].as_slice()))
                .collect();
            // One task per (row, query head): a single sequence's heads spread too.
            let mut attended = vec![0f32; m * q_dim];
            let heads = cfg.num_attention_heads;
            let attend_head = |(i, out): (usize, &mut [f32])| {
                let (r, head) = (i / heads, i % heads);
                let (s, pos) = rows[r];
                let (keys, values) = caches[s];
                let seen = (pos + 1) * kv_dim;
                let q = &qkv[r * width + head * hd..r * width + (head + 1) * hd];
                self.attend_head(head, q, &keys[..seen], &values[..seen], out);
            };
            let work: usize = rows.iter().map(|&(_, pos)| pos + 1).sum::<usize>() * q_dim;
            if work >= PARALLEL_ATTENTION {
                attended
                    .par_chunks_mut(hd)
                    .enumerate()
                    .for_each(attend_head);
            } else {
                attended.chunks_mut(hd).enumerate().for_each(attend_head);
            }
            let projected = layer.o.matmul(&attended, m);
            x.iter_mut().zip(&projected).for_each(|(a, b)| *a += b);

            let normed = rms_norm(&x, &layer.ffn_norm, eps);
            let gate_up = layer.gate_up.matmul(&normed, m);
            let inter = cfg.intermediate_size;
            let mut act = vec![0f32; m * inter];
            for (out, gu) in act
                .chunks_exact_mut(inter)
                .zip(gate_up.chunks_exact(2 * inter))
            {
                let (gate, up) = gu.split_at(inter);
                for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                    *o = g / (1.0 + vector_math::exp(-g)) * u;
                }
            }
            let down = layer.down.matmul(&act, m);
            x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
        }

        // Logits only where a sequence's new tokens end.
        let mut last = Vec::with_capacity(batch.len() * h);
        let mut end = 0;
        for (seq, tokens) in batch.iter_mut() {
            end += tokens.len();
            last.extend_from_slice(&x[(end - 1) * h..end * h]);
            seq.len += tokens.len();
        }
        let normed = rms_norm(&last, &self.norm, eps);
        let logits = self.lm_head.matmul(&normed, batch.len());
        Ok(logits
            .chunks_exact(cfg.vocab_size)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Causal attention of one query head over a sequence's keys and values up to its own
    /// position (GQA: query head `j` reads kv head `j / (heads / kv_heads)`).
    fn attend_head(&self, head: usize, q: &[f32], keys: &[f32], values: &[f32], out: &mut [f32]) {
        let cfg = &self.cfg;
        let hd = cfg.head_dim();
        let kv_dim = cfg.num_key_value_heads * hd;
        let kv = head / (cfg.num_attention_heads / cfg.num_key_value_heads) * hd;
        let scale = 1.0 / (hd as f32).sqrt();
        let positions = keys.len() / kv_dim;
        let dot: F32DotFn = f32_kernel();
        let mut scores: Vec<f32> = (0..positions)
            .map(|t| dot(q, &keys[t * kv_dim + kv..t * kv_dim + kv + hd]) * scale)
            .collect();
        vector_math::softmax_in_place(&mut scores);
        out.fill(0.0);
        for (t, &p) in scores.iter().enumerate() {
            let v = &values[t * kv_dim + kv..t * kv_dim + kv + hd];
            out.iter_mut().zip(v).for_each(|(o, &v)| *o += p * v);
        }
    }

    /// cos and sin of every rope frequency at each position, `[rows, head_dim / 2]`.
    fn rope_tables(&self, positions: impl Iterator<Item = usize>) -> (Vec<f32>, Vec<f32>) {
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for pos in positions {
            for &f in &self.inv_freq {
                // As the candle model does: the angle in f32.
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        (cos, sin)
    }
}

/// Hugging Face's "rotate half" rope on one head.
fn rope(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = head.len() / 2;
    let (a, b) = head.split_at_mut(half);
    for i in 0..half {
        let (x1, x2) = (a[i], b[i]);
        a[i] = x1 * cos[i] - x2 * sin[i];
        b[i] = x2 * cos[i] + x1 * sin[i];
    }
}

/// Root-mean-square norm of every row of `x`, times `weight`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (row, out) in x
        .chunks_exact(weight.len())
        .zip(out.chunks_exact_mut(weight.len()))
    {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
        let inv = 1.0 / (mean_square + eps).sqrt();
        for ((o, &v), &w) in out.iter_mut().zip(row).zip(weight) {
            *o = v * inv * w;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, candle_model, prompt, reference_logits};
    use candle_core::quantized::GgmlDType;
    use distillery_model::Arch;

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn rms(a: &[f32]) -> f32 {
        (a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32).sqrt()
    }

    #[test]
    fn f32_logits_match_the_candle_model_at_every_step() {
        for arch in [Arch::Qwen2, Arch::Llama] {
            let cfg = testing::config(arch);
            let checkpoint = testing::dense(&cfg, 11);
            let engine = Engine::from_checkpoint(&checkpoint).unwrap();
            let tokens = prompt(1, 12, cfg.vocab_size);
            let want = reference_logits(&candle_model(&checkpoint), &tokens);
            // A prompt of 7, then one token at a time.
            let mut seq = engine.new_sequence();
            let got = engine.forward(&mut [(&mut seq, &tokens[..7])]).unwrap();
            assert!(max_abs_diff(&got[0], &want[6]) < 1e-4, "{arch:?} prefill");
            for i in 7..tokens.len() {
                let got = engine.forward(&mut [(&mut seq, &tokens[i..=i])]).unwrap();
                let diff = max_abs_diff(&got[0], &want[i]);
                assert!(diff < 1e-4, "{arch:?} position {i}: {diff}");
            }
            assert_eq!(seq.len(), tokens.len());
        }
    }

    #[test]
    fn block_weights_give_the_candle_quantized_models_logits() {
        for (arch, dtype) in [
            (Arch::Qwen2, GgmlDType::Q4_1),
            (Arch::Llama, GgmlDType::Q8_0),
            (Arch::Llama, GgmlDType::Q4_0),
        ] {
            let cfg = testing::config(arch);
            let checkpoint = testing::quantized(&cfg, 12, dtype);
            let engine = Engine::from_checkpoint(&checkpoint).unwrap();
            let tokens = prompt(2, 10, cfg.vocab_size);
            let want = reference_logits(&candle_model(&checkpoint), &tokens);
            let mut seq = engine.new_sequence();
            let got = engine.forward(&mut [(&mut seq, &tokens)]).unwrap();
            // Both quantize the activations to 8 bits, each in its own way (f32 or f16
            // scales), which a random model amplifies layer after layer: the engine must be as
            // close to the unquantized model as candle is, and close to candle.
            let diff = |a: &[f32], b: &[f32]| {
                rms(&a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>())
            };
            let dense = reference_logits(&candle_model(&testing::dense(&cfg, 12)), &tokens);
            let (ours, candle) = (diff(&got[0], &dense[9]), diff(&want[9], &dense[9]));
            assert!(
                ours <= 1.1 * candle + 0.01,
                "{arch:?} {dtype:?}: {ours} vs {candle}"
            );
            let apart = diff(&got[0], &want[9]);
            assert!(apart < 0.05 * rms(&want[9]), "{arch:?} {dtype:?}: {apart}");
        }
    }

    #[test]
    fn a_sequence_computes_the_same_alone_or_batched() {
        let cfg = testing::config(Arch::Llama);
        let checkpoint = testing::quantized(&cfg, 13, GgmlDType::Q4_1);
        let engine = Engine::from_checkpoint(&checkpoint).unwrap();
        let (a, b, c) = (
            prompt(3, 9, cfg.vocab_size),
            prompt(4, 4, cfg.vocab_size),
            prompt(5, 1, cfg.vocab_size),
        );
        let alone: Vec<Vec<f32>> = [&a, &b, &c]
            .iter()
            .map(|p| {
                let mut seq = engine.new_sequence();
                engine.forward(&mut [(&mut seq, &p[..])]).unwrap().remove(0)
            })
            .collect();
        let (mut sa, mut sb, mut sc) = (
            engine.new_sequence(),
            engine.new_sequence(),
            engine.new_sequence(),
        );
        let together = engine
            .forward(&mut [(&mut sa, &a[..]), (&mut sb, &b[..]), (&mut sc, &c[..])])
            .unwrap();
        assert_eq!(together, alone);
        // And a decode step of one beside the prefill of another.
        let next = [7u32];
        let mut fresh = engine.new_sequence();
        let mixed = engine
            .forward(&mut [(&mut sa, &next[..]), (&mut fresh, &b[..])])
            .unwrap();
        assert_eq!(mixed[1], alone[1]);
        let mut solo = engine.new_sequence();
        engine.forward(&mut [(&mut solo, &a[..])]).unwrap();
        let solo_next = engine.forward(&mut [(&mut solo, &next[..])]).unwrap();
        assert_eq!(mixed[0], solo_next[0]);
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let cfg = testing::config(Arch::Qwen2);
        let engine = Engine::from_checkpoint(&testing::dense(&cfg, 14)).unwrap();
        let mut seq = engine.new_sequence();
        let outside = [cfg.vocab_size as u32];
        let err = engine.forward(&mut [(&mut seq, &outside[..])]).unwrap_err();
        assert!(err.to_string().contains("outside the vocabulary"), "{err}");
        assert!(engine.forward(&mut [(&mut seq, &[][..])]).is_err());
        let long = vec![1u32; cfg.max_position_embeddings + 1];
        let err = engine.forward(&mut [(&mut seq, &long[..])]).unwrap_err();
        assert!(err.to_string().contains("context"), "{err}");
        assert!(seq.is_empty());
    }

    #[test]
    fn a_missing_weight_is_an_error_naming_it() {
        let cfg = testing::config(Arch::Llama);
        let checkpoint = testing::dense(&cfg, 15);
        checkpoint
            .varmap
            .data()
            .lock()
            .unwrap()
            .remove("model.layers.2.mlp.up_proj.weight");
        let err = Engine::from_checkpoint(&checkpoint).unwrap_err();
        assert!(
            err.to_string()
                .contains("model.layers.2.mlp.up_proj.weight"),
            "{err}"
        );
    }
}

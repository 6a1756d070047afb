//! The differentiable Qwen2/Llama decoder.
//!
//! Everything on the training path (rope, softmax, rms_norm, attention) is written with ops
//! that record a backward pass; candle's fused kernels silently cut gradients.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{Embedding, Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fused;

/// One named weight the model expects, with its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    pub shape: Vec<usize>,
}

/// How a weight is initialised when a `VarMap` creates it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum InitKind {
    Normal,
    Ones,
    Zeros,
}

fn specs_with_init(cfg: &Config) -> Vec<(TensorSpec, InitKind)> {
    let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
    let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, init| {
        out.push((TensorSpec { name, shape }, init));
    };
    push(
        "model.embed_tokens.weight".into(),
        vec![cfg.vocab_size, h],
        InitKind::Normal,
    );
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (n, out_dim) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            push(
                format!("{p}.self_attn.{n}.weight"),
                vec![out_dim, h],
                InitKind::Normal,
            );
            if cfg.attention_bias {
                push(
                    format!("{p}.self_attn.{n}.bias"),
                    vec![out_dim],
                    InitKind::Zeros,
                );
            }
        }
        push(
            format!("{p}.self_attn.o_proj.weight"),
            vec![h, q],
            InitKind::Normal,
        );
        push(
            format!("{p}.mlp.gate_proj.weight"),
            vec![i, h],
            InitKind::Normal,
        );
        push(
            format!("{p}.mlp.up_proj.weight"),
            vec![i, h],
            InitKind::Normal,
        );
        push(
            format!("{p}.mlp.down_proj.weight"),
            vec![h, i],
            InitKind::Normal,
        );
        push(
            format!("{p}.input_layernorm.weight"),
            vec![h],
            InitKind::Ones,
        );
        push(
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            InitKind::Ones,
        );
    }
    push("model.norm.weight".into(), vec![h], InitKind::Ones);
    if !cfg.tie_word_embeddings {
        push(
            "lm_head.weight".into(),
            vec![cfg.vocab_size, h],
            InitKind::Normal,
        );
    }
    out
}

/// HF's `initializer_range` default: weights the VarBuilder has to create get N(0, 0.02²).
const INIT_STD: f64 = 0.02;

fn get(vb: &VarBuilder, spec: &(TensorSpec, InitKind)) -> Result<Tensor> {
    let init = match spec.1 {
        InitKind::Normal => Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        },
        InitKind::Ones => Init::Const(1.0),
        InitKind::Zeros => Init::Const(0.0),
    };
    Ok(vb.get_with_hints(spec.0.shape.as_slice(), &spec.0.name, init)?)
}

/// A weight as a checkpoint holds it: a (trainable) tensor, or a llama.cpp-quantized block
/// tensor that only inference reads (GGUF).
#[derive(Debug, Clone)]
pub enum Param {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

impl Param {
    /// The weight as a plain tensor (a quantized one is dequantized).
    fn dense(&self, device: &Device, dtype: DType) -> Result<Tensor> {
        Ok(match self {
            Param::Dense(t) => t.clone(),
            Param::Quantized(q) => q.dequantize(device)?.to_dtype(dtype)?,
        })
    }
}

#[derive(Debug, Clone)]
enum Weight {
    Dense(Tensor),
    /// Multiplied in its blocks (candle's quantized matmul), never dequantized as a whole.
    Quantized(QMatMul),
}

/// `x @ w.T + b` on the flattened tokens: one large matmul (and one in the backward pass)
/// instead of candle_nn's batch-broadcast weight, which the backward pass reduces per batch.
#[derive(Debug, Clone)]
struct Linear {
    weight: Weight,
    out_features: usize,
    bias: Option<Tensor>,
}

impl Linear {
    fn new(weight: Param, bias: Option<Tensor>) -> Result<Self> {
        let (weight, out_features) = match weight {
            Param::Dense(t) => {
                let out = t.dim(0)?;
                (Weight::Dense(t), out)
            }
            Param::Quantized(q) => {
                let out = q.shape().dims()[0];
                (Weight::Quantized(QMatMul::from_arc(q)?), out)
            }
        };
        Ok(Linear {
            weight,
            out_features,
            bias,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 2 {
            // Already flat: no reshape nodes (each costs a gradient buffer in the backward).
            return self.forward_flat(x);
        }
        let dims = x.dims().to_vec();
        let (last, lead) = dims
            .split_last()
            .expect("linear input has a feature dimension");
        let rows: usize = lead.iter().product();
        let y = self.forward_flat(&x.reshape((rows, *last))?)?;
        let mut out = lead.to_vec();
        out.push(self.out_features);
        Ok(y.reshape(out)?)
    }

    /// `x` is `[rows, in]`.
    fn forward_flat(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Dense(w) if fused::applies(x) && fused::linear_fits(w, self.bias.as_ref()) => {
                return Ok(fused::linear(x, w, self.bias.as_ref())?);
            }
            Weight::Dense(w) => x.matmul(&w.t()?)?,
            Weight::Quantized(q) => q.forward(x)?,
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// Root-mean-square layer norm from basic ops (computed in f32 for stability).
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused::applies(x) && self.weight.dtype() == DType::F32 {
            return Ok(fused::rms_norm(x, &self.weight, self.eps)?);
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let denom = (ms + self.eps)?.sqrt()?;
        let normed = x.broadcast_div(&denom)?.to_dtype(dtype)?;
        Ok(normed.broadcast_mul(&self.weight)?)
    }
}

/// Softmax over the last dimension from basic ops. The max is detached: softmax is
/// shift-invariant, so this is exact and avoids the max's backward.
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?.to_dtype(dtype)?)
}

/// HF "rotate half" rope: `x * cos + rotate_half(x) * sin`, with `cos`/`sin` `[b, 1, t, hd]`.
pub(crate) fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

/// Per-layer key/value cache for generation: `[b, kv_heads, seen, head_dim]`.
pub(crate) type LayerCache = Option<(Tensor, Tensor)>;

impl Attention {
    /// `x` is `[b·t, hidden]` (flat tokens); so is the result.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        (b, t): (usize, usize),
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        cache: Option<&mut LayerCache>,
    ) -> Result<Tensor> {
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        // On the CPU in f32: rope fused with the split into heads, and the scaled, masked
        // softmax in one op, each with its own backward pass (see `fused`).
        let fused = fused::applies(x) && fused::rope_fits(cos, b, t, self.head_dim);
        let (q, mut k) = if fused {
            (
                fused::rope_heads(&self.q_proj.forward(x)?, (b, t), cos, sin, self.n_heads)?,
                fused::rope_heads(&self.k_proj.forward(x)?, (b, t), cos, sin, self.n_kv_heads)?,
            )
        } else {
            let q = split(self.q_proj.forward(x)?, self.n_heads)?;
            let k = split(self.k_proj.forward(x)?, self.n_kv_heads)?;
            (apply_rope(&q, cos, sin)?, apply_rope(&k, cos, sin)?)
        };
        let mut v = if fused {
            fused::split_heads(&self.v_proj.forward(x)?, (b, t), self.n_kv_heads)?
        } else {
            split(self.v_proj.forward(x)?, self.n_kv_heads)?
        };
        if let Some(cache) = cache {
            if let Some((pk, pv)) = cache.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            // Detached: the cache only serves generation, and a cache that kept its autograd
            // history (the weights are variables) would hold every earlier step's tensors
            // alive, so memory would grow with the square of the generated length.
            *cache = Some((k.detach(), v.detach()));
        }
        let n_rep = self.n_heads / self.n_kv_heads;
        let s = k.dim(2)?;
        if fused && fused::mask_fits(mask, b, t, s) {
            // Grouped-query attention without repeating k and v: the query heads that share a
            // kv head are consecutive, so `[b, heads, t, hd]` is `[b, kv_heads, n_rep·t, hd]`.
            let q = q.reshape((b, self.n_kv_heads, n_rep * t, self.head_dim))?;
            let scale = 1.0 / (self.head_dim as f64).sqrt();
            let out = fused::attention(&q, &k, &v, mask, scale)?;
            return self.o_proj.forward(&out);
        }
        let k = repeat_kv(k, n_rep)?;
        let v = repeat_kv(v, n_rep)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(mask)?;
        let probs = softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b * t, self.n_heads * self.head_dim))?;
        self.o_proj.forward(&out)
    }
}

/// GQA: kv head `j` serves query heads `j * n_rep .. (j + 1) * n_rep` (HF's `repeat_kv`).
pub(crate) fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, kvh, s, hd) = x.dims4()?;
    Ok(Tensor::cat(&vec![&x; n_rep], 2)?.reshape((b, kvh * n_rep, s, hd))?)
}

#[derive(Debug, Clone)]
struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused::applies(x) {
            let gate = self.gate.forward(x)?;
            return self
                .down
                .forward(&fused::silu_mul(&gate, &self.up.forward(x)?)?);
        }
        let gate = self.gate.forward(x)?.silu()?;
        self.down.forward(&(gate * self.up.forward(x)?)?)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    attn: Attention,
    mlp: Mlp,
    input_norm: RmsNorm,
    post_norm: RmsNorm,
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        cache: Option<&mut LayerCache>,
    ) -> Result<Tensor> {
        // Flat tokens inside the layer: the projections need no reshapes.
        let (b, t, hidden) = x.dims3()?;
        let x = x.reshape((b * t, hidden))?;
        let h = self
            .attn
            .forward(&self.input_norm.forward(&x)?, (b, t), cos, sin, mask, cache)?;
        let x = (x + h)?;
        let h = self.mlp.forward(&self.post_norm.forward(&x)?)?;
        Ok((x + h)?.reshape((b, t, hidden))?)
    }
}

/// The per-batch tensors of a training forward that every layer shares
/// ([`Model::batch_context`]).
#[derive(Debug, Clone)]
pub struct BatchContext {
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
}

/// A Qwen2/Llama decoder built only from ops that record a backward pass.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Linear,
    /// Rope inverse frequencies `[1, 1, head_dim / 2]`, f32.
    inv_freq: Tensor,
    device: Device,
    dtype: DType,
}

impl Model {
    /// Build the model from weights under Hugging Face names. With a `VarBuilder` over a
    /// `VarMap`, missing weights are created (randomly initialised) and become trainable;
    /// with any other backend a missing weight is an error naming it.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Model> {
        let (device, dtype) = (vb.device().clone(), vb.dtype());
        Self::build(cfg, &device, dtype, |spec, init| {
            Ok(Param::Dense(get(&vb, &(spec.clone(), init))?))
        })
    }

    /// Build the model for inference from weights that may be quantized (GGUF blocks):
    /// `weights` gives each weight of [`Model::tensor_specs`] by name. Projections and the
    /// output head keep their blocks and multiply in them; embeddings and norms are dequantized
    /// to `dtype`.
    pub fn from_params(
        cfg: &Config,
        device: &Device,
        dtype: DType,
        mut weights: impl FnMut(&TensorSpec) -> Result<Param>,
    ) -> Result<Model> {
        Self::build(cfg, device, dtype, |spec, _| weights(spec))
    }

    fn build(
        cfg: &Config,
        device: &Device,
        dtype: DType,
        mut fetch: impl FnMut(&TensorSpec, InitKind) -> Result<Param>,
    ) -> Result<Model> {
        cfg.validate().map_err(|message| Error::InvalidConfig {
            path: None,
            message,
        })?;
        let specs = specs_with_init(cfg);
        let mut it = specs.iter();
        let mut next = || -> Result<Param> {
            let (spec, init) = it.next().expect("spec list matches construction order");
            fetch(spec, *init)
        };
        let dense = |p: Param| p.dense(device, dtype);
        let embed_w = next()?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for _ in 0..cfg.num_hidden_layers {
            let mut proj = |bias: bool| -> Result<Linear> {
                let w = next()?;
                let b = if bias { Some(dense(next()?)?) } else { None };
                Linear::new(w, b)
            };
            let q_proj = proj(cfg.attention_bias)?;
            let k_proj = proj(cfg.attention_bias)?;
            let v_proj = proj(cfg.attention_bias)?;
            let o_proj = proj(false)?;
            let gate = proj(false)?;
            let up = proj(false)?;
            let down = proj(false)?;
            let input_norm = RmsNorm {
                weight: dense(next()?)?,
                eps: cfg.rms_norm_eps,
            };
            let post_norm = RmsNorm {
                weight: dense(next()?)?,
                eps: cfg.rms_norm_eps,
            };
            layers.push(Layer {
                attn: Attention {
                    q_proj,
                    k_proj,
                    v_proj,
                    o_proj,
                    n_heads: cfg.num_attention_heads,
                    n_kv_heads: cfg.num_key_value_heads,
                    head_dim: cfg.head_dim(),
                },
                mlp: Mlp { gate, up, down },
                input_norm,
                post_norm,
            });
        }
        let norm = RmsNorm {
            weight: dense(next()?)?,
            eps: cfg.rms_norm_eps,
        };
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_w.clone(), None)?
        } else {
            Linear::new(next()?, None)?
        };
        let inv_freq: Vec<f32> = cfg.rope_inv_freq().iter().map(|&f| f as f32).collect();
        let n = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, 1, n), device)?;
        Ok(Model {
            cfg: cfg.clone(),
            embed: Embedding::new(dense(embed_w)?, cfg.hidden_size),
            layers,
            norm,
            lm_head,
            inv_freq,
            device: device.clone(),
            dtype,
        })
    }

    /// The names and shapes of every weight for `cfg` (no `lm_head.weight` when tied).
    pub fn tensor_specs(cfg: &Config) -> Vec<TensorSpec> {
        specs_with_init(cfg).into_iter().map(|(s, _)| s).collect()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Training forward: logits `[b, t, vocab]` (model dtype) for every position.
    ///
    /// `input_ids` is `[b, t]` u32. `segment_ids` (`[b, t]`, u32 or i64) packs several
    /// sequences into one row: attention stays within a segment and is causal, positions
    /// restart at 0 where each segment starts, and 0 marks padding (its logits are finite but
    /// meaningless). Without `segment_ids` each row is one causal sequence.
    pub fn forward(&self, input_ids: &Tensor, segment_ids: Option<&Tensor>) -> Result<Tensor> {
        self.lm_head(&self.forward_hidden(input_ids, segment_ids)?)
    }

    /// [`forward`](Self::forward) up to the final norm: hidden states `[b, t, hidden]`, so the
    /// caller can project them to logits a chunk of positions at a time.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        segment_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let context = self.batch_context(input_ids, segment_ids)?;
        let mut x = self.embed(input_ids)?;
        for l in 0..self.layers.len() {
            x = self.layer(l, &x, &context)?;
        }
        self.final_norm(&x)
    }

    /// What every layer of a training forward needs for this batch: rope tables and the
    /// attention mask (see [`forward`](Self::forward) for `segment_ids`).
    pub fn batch_context(
        &self,
        input_ids: &Tensor,
        segment_ids: Option<&Tensor>,
    ) -> Result<BatchContext> {
        let (b, t) = input_ids.dims2()?;
        let (positions, mask) = match segment_ids {
            None => {
                let pos: Vec<u32> = (0..b).flat_map(|_| 0..t as u32).collect();
                let mask: Vec<f32> = (0..t)
                    .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
                    .collect();
                let mask = Tensor::from_vec(mask, (1, 1, t, t), &self.device)?;
                (pos, mask)
            }
            Some(seg) => {
                if seg.dims() != [b, t] {
                    return Err(Error::InvalidInput(format!(
                        "segment_ids shape {:?} does not match input_ids {:?}",
                        seg.dims(),
                        [b, t]
                    )));
                }
                let seg = seg.to_dtype(DType::U32)?.to_vec2::<u32>()?;
                let (pos, mask) = segment_mask(&seg);
                (pos, Tensor::from_vec(mask, (b, 1, t, t), &self.device)?)
            }
        };
        let positions = Tensor::from_vec(positions, (b, t), &self.device)?;
        let (cos, sin) = self.rope_tables(&positions)?;
        Ok(BatchContext {
            cos,
            sin,
            mask: mask.to_dtype(self.dtype)?,
        })
    }

    /// Token embeddings `[b, t, hidden]`.
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        Ok(self.embed.forward(input_ids)?)
    }

    /// Decoder layer `l` of a training forward.
    pub fn layer(&self, l: usize, x: &Tensor, context: &BatchContext) -> Result<Tensor> {
        self.layers[l].forward(x, &context.cos, &context.sin, &context.mask, None)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The norm after the last layer.
    pub fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(x)
    }

    /// Embedding → layers → final norm. `positions` `[b, t]` u32; `mask` additive, broadcast
    /// to `[b, 1, t, kv_len]`; `caches` one per layer when generating.
    pub(crate) fn run_layers(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        mut caches: Option<&mut [LayerCache]>,
    ) -> Result<Tensor> {
        let (cos, sin) = self.rope_tables(positions)?;
        let mask = mask.to_dtype(self.dtype)?;
        let mut x = self.embed(input_ids)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[l]);
            x = layer.forward(&x, &cos, &sin, &mask, cache)?;
        }
        self.norm.forward(&x)
    }

    /// Project hidden states to logits (any leading shape).
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }

    /// cos/sin `[b, 1, t, head_dim]` for per-token positions.
    fn rope_tables(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let freqs = positions
            .to_dtype(DType::F32)?
            .unsqueeze(D::Minus1)?
            .broadcast_mul(&self.inv_freq)?;
        let emb = Tensor::cat(&[&freqs, &freqs], D::Minus1)?.unsqueeze(1)?;
        Ok((
            emb.cos()?.to_dtype(self.dtype)?,
            emb.sin()?.to_dtype(self.dtype)?,
        ))
    }
}

/// Positions (restarting at each segment start) and the additive `[b, t, t]` mask for packed
/// rows. A padding query (segment 0) attends only to itself so its softmax stays finite.
fn segment_mask(seg: &[Vec<u32>]) -> (Vec<u32>, Vec<f32>) {
    let t = seg.first().map_or(0, Vec::len);
    let mut pos = Vec::with_capacity(seg.len() * t);
    let mut mask = vec![f32::NEG_INFINITY; seg.len() * t * t];
    for (r, row) in seg.iter().enumerate() {
        let mut start = 0;
        for i in 0..t {
            if i == 0 || row[i] != row[i - 1] {
                start = i;
            }
            let base = (r * t + i) * t;
            if row[i] == 0 {
                pos.push(0);
                mask[base + i] = 0.0;
                continue;
            }
            pos.push((i - start) as u32);
            for j in start..=i {
                mask[base + j] = 0.0;
            }
        }
    }
    (pos, mask)
}

/// A `VarMap` holding every weight of `cfg`, initialised deterministically from `seed`:
/// linear and embedding weights ~ N(0, std²), norm weights 1, biases 0.
pub fn random_varmap(
    cfg: &Config,
    seed: u64,
    std: f64,
    device: &Device,
    dtype: DType,
) -> Result<VarMap> {
    // candle's CPU RNG cannot be seeded, so draw the numbers here.
    let mut rng = StdRng::seed_from_u64(seed);
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("VarMap lock poisoned");
        for (spec, init) in specs_with_init(cfg) {
            let n: usize = spec.shape.iter().product();
            let values: Vec<f32> = match init {
                InitKind::Ones => vec![1.0; n],
                InitKind::Zeros => vec![0.0; n],
                InitKind::Normal => (0..n).map(|_| (normal(&mut rng) * std) as f32).collect(),
            };
            let t = Tensor::from_vec(values, spec.shape.as_slice(), device)?.to_dtype(dtype)?;
            data.insert(spec.name, Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// Standard normal by Box-Muller (keeps us off rand_distr).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Arch, RopeScaling};
    use candle_core::IndexOp;

    /// Small enough for debug-build tests, big enough for GQA (4 heads, 2 kv heads).
    pub(crate) fn test_config(arch: Arch) -> Config {
        Config {
            vocab_size: 97,
            hidden_size: 64,
            intermediate_size: 96,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            rope_theta: 10_000.0,
            ..Config::tiny(arch)
        }
    }

    /// A model over random weights large enough (std 0.1) for clearly distinct logits.
    pub(crate) fn test_model(cfg: &Config, seed: u64) -> (Model, VarMap) {
        let vm = random_varmap(cfg, seed, 0.1, &Device::Cpu, DType::F32).unwrap();
        // Random biases and norm weights too, so a wrong layout cannot hide behind 0s and 1s.
        {
            let data = vm.data().lock().unwrap();
            let mut rng = StdRng::seed_from_u64(seed + 1);
            for (name, var) in data.iter() {
                if name.ends_with("bias") || name.contains("norm") {
                    let n = var.elem_count();
                    let base = if name.contains("norm") { 1.0 } else { 0.0 };
                    let v: Vec<f32> = (0..n)
                        .map(|_| (base + 0.1 * normal(&mut rng)) as f32)
                        .collect();
                    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                        .unwrap();
                }
            }
        }
        let m = Model::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        (m, vm)
    }

    fn ids(v: &[u32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
    }

    /// The largest absolute difference of two tensors' elements.
    pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// The KV cache must not keep the autograd graph of the steps that filled it (the weights
    /// are variables): it would hold every earlier step's tensors alive, and generation memory
    /// would grow with the square of its length.
    #[test]
    fn the_kv_cache_holds_no_autograd_history() {
        let cfg = test_config(Arch::Qwen2);
        let (model, _vm) = test_model(&cfg, 3);
        let mut caches: Vec<LayerCache> = vec![None; cfg.num_hidden_layers];
        for t in [3usize, 1, 1] {
            let input = Tensor::from_vec(vec![5u32; t], (1, t), &Device::Cpu).unwrap();
            let kv_len = caches[0].as_ref().map_or(0, |(k, _)| k.dim(2).unwrap()) + t;
            let first = (kv_len - t) as u32;
            let positions =
                Tensor::from_vec((first..kv_len as u32).collect(), (1, t), &Device::Cpu).unwrap();
            let mask = Tensor::zeros((1, 1, t, kv_len), DType::F32, &Device::Cpu).unwrap();
            let hidden = model
                .run_layers(&input, &positions, &mask, Some(&mut caches))
                .unwrap();
            assert!(hidden.track_op(), "the step itself stays differentiable");
            for (k, v) in caches.iter().flatten() {
                assert!(!k.track_op() && !v.track_op());
                assert_eq!(k.dim(2).unwrap(), kv_len);
            }
        }
    }

    #[test]
    fn every_parameter_gets_a_gradient() {
        for arch in [Arch::Qwen2, Arch::Llama] {
            let cfg = test_config(arch);
            let (model, vm) = test_model(&cfg, 7);
            let input =
                Tensor::new(&[[5u32, 9, 3, 44, 2, 8], [1, 2, 3, 4, 5, 6]], &Device::Cpu).unwrap();
            let seg =
                Tensor::new(&[[1u32, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]], &Device::Cpu).unwrap();
            let logits = model.forward(&input, Some(&seg)).unwrap();
            assert_eq!(logits.dims(), &[2, 6, cfg.vocab_size]);
            let targets =
                Tensor::new(&[7u32, 1, 2, 3, 9, 0, 3, 3, 1, 8, 0, 5], &Device::Cpu).unwrap();
            let loss = candle_nn::loss::cross_entropy(
                &logits.reshape((12, cfg.vocab_size)).unwrap(),
                &targets,
            )
            .unwrap();
            let grads = loss.backward().unwrap();
            let data = vm.data().lock().unwrap();
            assert_eq!(data.len(), Model::tensor_specs(&cfg).len());
            for (name, var) in data.iter() {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{arch}: no gradient for {name}"));
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    norm > 0.0 && norm.is_finite(),
                    "{arch}: gradient of {name} is {norm}"
                );
            }
        }
    }

    #[test]
    fn logits_match_candle_transformers_qwen2() {
        use candle_transformers::models::qwen2 as reference;
        let cfg = test_config(Arch::Qwen2);
        let (model, vm) = test_model(&cfg, 11);
        let rcfg = reference::Config {
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            intermediate_size: cfg.intermediate_size,
            num_hidden_layers: cfg.num_hidden_layers,
            num_attention_heads: cfg.num_attention_heads,
            num_key_value_heads: cfg.num_key_value_heads,
            max_position_embeddings: cfg.max_position_embeddings,
            sliding_window: 4096,
            max_window_layers: 0,
            tie_word_embeddings: true,
            rope_theta: cfg.rope_theta,
            rms_norm_eps: cfg.rms_norm_eps,
            use_sliding_window: false,
            hidden_act: candle_nn::Activation::Silu,
        };
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let mut r = reference::Model::new(&rcfg, vb).unwrap();
        let input = ids(&[3, 17, 42, 5, 96, 0, 33, 12, 7]);
        let hidden = r.forward(&input, 0, None).unwrap();
        let embed = vm.data().lock().unwrap()["model.embed_tokens.weight"]
            .as_tensor()
            .clone();
        let expected = hidden.broadcast_matmul(&embed.t().unwrap()).unwrap();
        let ours = model.forward(&input, None).unwrap();
        let diff = max_abs_diff(&ours, &expected);
        let scale = max_abs_diff(&expected, &expected.zeros_like().unwrap());
        assert!(scale > 0.5, "logits too flat to compare: {scale}");
        assert!(diff < 1e-4, "qwen2 logits differ by {diff} (scale {scale})");
    }

    #[test]
    fn logits_match_candle_transformers_llama_with_gqa_and_llama3_rope() {
        use candle_transformers::models::llama as reference;
        let mut cfg = test_config(Arch::Llama);
        cfg.rope_theta = 500_000.0;
        cfg.rope_scaling = Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        });
        let (model, vm) = test_model(&cfg, 13);
        let rcfg = reference::Config {
            hidden_size: cfg.hidden_size,
            intermediate_size: cfg.intermediate_size,
            vocab_size: cfg.vocab_size,
            num_hidden_layers: cfg.num_hidden_layers,
            num_attention_heads: cfg.num_attention_heads,
            num_key_value_heads: cfg.num_key_value_heads,
            use_flash_attn: false,
            rms_norm_eps: cfg.rms_norm_eps,
            rope_theta: cfg.rope_theta as f32,
            bos_token_id: None,
            eos_token_id: None,
            rope_scaling: Some(reference::Llama3RopeConfig {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64,
                rope_type: reference::Llama3RopeType::Llama3,
            }),
            max_position_embeddings: 256,
            tie_word_embeddings: false,
        };
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let r = reference::Llama::load(vb, &rcfg).unwrap();
        let seq = [3u32, 17, 42, 5, 96, 0, 33, 12, 7, 60, 61, 2];
        let ours = model.forward(&ids(&seq), None).unwrap();
        // The reference only returns the last position: compare every prefix length.
        for len in 1..=seq.len() {
            let mut cache = reference::Cache::new(false, DType::F32, &rcfg, &Device::Cpu).unwrap();
            let expected = r.forward(&ids(&seq[..len]), 0, &mut cache).unwrap();
            let got = ours.i((.., len - 1, ..)).unwrap();
            let diff = max_abs_diff(&got, &expected);
            assert!(
                diff < 1e-4,
                "llama logits at position {len} differ by {diff}"
            );
        }
    }

    #[test]
    fn packed_segments_match_separate_sequences() {
        for arch in [Arch::Qwen2, Arch::Llama] {
            let cfg = test_config(arch);
            let (model, _) = test_model(&cfg, 5);
            let a = [4u32, 8, 15, 16, 23];
            let b = [42u32, 1, 2, 3, 5, 8, 13];
            let packed: Vec<u32> = a.iter().chain(&b).copied().chain([0, 0]).collect();
            let seg: Vec<u32> = [1u32; 5].into_iter().chain([2; 7]).chain([0, 0]).collect();
            let out = model.forward(&ids(&packed), Some(&ids(&seg))).unwrap();
            let alone_a = model.forward(&ids(&a), None).unwrap();
            let alone_b = model.forward(&ids(&b), None).unwrap();
            let da = max_abs_diff(&out.narrow(1, 0, 5).unwrap(), &alone_a);
            let db = max_abs_diff(&out.narrow(1, 5, 7).unwrap(), &alone_b);
            assert!(
                da < 1e-4 && db < 1e-4,
                "{arch}: packed vs alone differ by {da}, {db}"
            );
            let pad = out.narrow(1, 12, 2).unwrap().flatten_all().unwrap();
            let pad = pad.to_vec1::<f32>().unwrap();
            assert!(
                pad.iter().all(|x| x.is_finite()),
                "{arch}: padding logits not finite"
            );
        }
    }

    #[test]
    fn missing_weight_is_an_error_naming_it() {
        let cfg = test_config(Arch::Qwen2);
        let (_, vm) = test_model(&cfg, 1);
        let mut tensors: std::collections::HashMap<String, Tensor> = vm
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        tensors.remove("model.layers.1.self_attn.k_proj.bias");
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let err = Model::new(&cfg, vb).unwrap_err().to_string();
        assert!(
            err.contains("model.layers.1.self_attn.k_proj.bias"),
            "{err}"
        );
    }
}

//! Batched sampling with a KV cache.

use std::ops::ControlFlow;

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{LayerCache, Model};

/// How to sample. `temperature == 0` is greedy (argmax), which ignores `top_p` and `seed`.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f64,
    /// Seed of the sampler; the same prompts, options and weights give the same tokens.
    pub seed: u64,
    /// Generation of a sequence stops after it emits one of these (the stop token is kept in
    /// `Generated::tokens`). Usually the tokenizer's EOS ids.
    pub stop_token_ids: Vec<u32>,
    /// Record, for every generated token, its log-probability and the `top_logprobs` most
    /// likely tokens with theirs (in [`Generated::logprobs`]); 0 records nothing. They are
    /// the model's own distribution, the log-softmax of the raw logits, whatever the sampling
    /// temperature and top-p: what vLLM and llama.cpp's server return for `top_logprobs`.
    pub top_logprobs: usize,
}

impl GenerateOptions {
    /// Greedy decoding of up to `max_new_tokens` tokens, no stop tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        GenerateOptions {
            max_new_tokens,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_token_ids: vec![],
            top_logprobs: 0,
        }
    }
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_token_ids: vec![],
            top_logprobs: 0,
        }
    }
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It emitted a stop token.
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// One prompt's continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// New tokens only (not the prompt), including the stop token if there was one.
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
    /// One entry per token of `tokens` when [`GenerateOptions::top_logprobs`] is set, else
    /// empty.
    pub logprobs: Vec<TokenLogprobs>,
}

/// A generated token's log-probability under the model, and the most likely tokens at its
/// position, most likely first (ties by id).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprobs {
    /// The log-softmax of `logits` at `token`, and its `k` largest entries.
    pub fn of(logits: &[f32], token: u32, k: usize) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        let norm = max + sum.ln();
        let lp = |l: f32| (l as f64 - norm) as f32;
        let order = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        let k = k.min(ids.len());
        if k > 0 && k < ids.len() {
            ids.select_nth_unstable_by(k - 1, order);
        }
        ids.truncate(k);
        ids.sort_by(order);
        Self {
            logprob: logits
                .get(token as usize)
                .map_or(f32::NEG_INFINITY, |&l| lp(l)),
            top: ids
                .into_iter()
                .map(|id| (id, lp(logits[id as usize])))
                .collect(),
        }
    }
}

/// Per-sequence settings for [`Model::generate_rows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowOptions {
    /// Seed of this sequence's own sampler.
    pub seed: u64,
    pub max_new_tokens: usize,
}

/// One streamed token: `index` is the prompt's position in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEvent {
    pub index: usize,
    pub token: u32,
    /// Set on the last token of that sequence.
    pub finish: Option<FinishReason>,
}

impl Model {
    /// Continue every prompt (batched, left-padded, KV-cached). Prompts may differ in length.
    pub fn generate(&self, prompts: &[Vec<u32>], opts: &GenerateOptions) -> Result<Vec<Generated>> {
        self.generate_stream(prompts, opts, |_| {})
    }

    /// Like [`Model::generate`], calling `on_token` for every new token as soon as it is
    /// sampled (in batch order within a step).
    pub fn generate_stream(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        mut on_token: impl FnMut(TokenEvent),
    ) -> Result<Vec<Generated>> {
        let limits = vec![opts.max_new_tokens; prompts.len()];
        let rng = Samplers::shared(StdRng::seed_from_u64(opts.seed));
        self.generate_core(prompts, &limits, rng, opts, |event| {
            on_token(event);
            ControlFlow::Continue(())
        })
    }

    /// Batched generation where every sequence has its own sampler and length limit, so a
    /// sequence's tokens depend only on its prompt, seed and the options, never on which other
    /// sequences share its batch (up to floating-point differences between batch shapes).
    /// `opts.seed` and `opts.max_new_tokens` are ignored in favour of `rows`.
    ///
    /// `on_token` may return `ControlFlow::Break` to stop early: every sequence then ends where
    /// it is, marked [`FinishReason::Length`].
    pub fn generate_rows(
        &self,
        prompts: &[Vec<u32>],
        rows: &[RowOptions],
        opts: &GenerateOptions,
        on_token: impl FnMut(TokenEvent) -> ControlFlow<()>,
    ) -> Result<Vec<Generated>> {
        if rows.len() != prompts.len() {
            return Err(Error::InvalidInput(format!(
                "{} row options for {} prompts",
                rows.len(),
                prompts.len()
            )));
        }
        let limits: Vec<usize> = rows.iter().map(|r| r.max_new_tokens).collect();
        let rngs = rows.iter().map(|r| StdRng::seed_from_u64(r.seed)).collect();
        self.generate_core(prompts, &limits, Samplers::per_row(rngs), opts, on_token)
    }

    fn generate_core(
        &self,
        prompts: &[Vec<u32>],
        limits: &[usize],
        mut samplers: Samplers,
        opts: &GenerateOptions,
        mut on_token: impl FnMut(TokenEvent) -> ControlFlow<()>,
    ) -> Result<Vec<Generated>> {
        if let Some(i) = prompts.iter().position(Vec::is_empty) {
            return Err(Error::InvalidInput(format!("prompt {i} is empty")));
        }
        if let Some(&bad) = prompts
            .iter()
            .flatten()
            .find(|&&t| t as usize >= self.config().vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.config().vocab_size
            )));
        }
        if !(opts.temperature >= 0.0 && opts.top_p > 0.0) {
            return Err(Error::InvalidInput(format!(
                "temperature must be >= 0 and top_p > 0 (got {} and {})",
                opts.temperature, opts.top_p
            )));
        }
        let mut results: Vec<Generated> = prompts
            .iter()
            .map(|_| Generated {
                tokens: Vec::new(),
                finish: FinishReason::Length,
                logprobs: Vec::new(),
            })
            .collect();
        if limits.iter().all(|&l| l == 0) {
            return Ok(results);
        }
        let dev = self.device().clone();

        // Prefill: left-pad so every row's last prompt token sits in the last column.
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        // `active[r]` is the prompt index of batch row r; `pads[r]` its left padding.
        let mut active: Vec<usize> = (0..prompts.len()).collect();
        let mut pads: Vec<usize> = prompts.iter().map(|p| width - p.len()).collect();
        let mut ids = Vec::with_capacity(prompts.len() * width);
        let mut pos = Vec::with_capacity(prompts.len() * width);
        let mut mask = vec![f32::NEG_INFINITY; prompts.len() * width * width];
        for (r, p) in prompts.iter().enumerate() {
            let pad = pads[r];
            for i in 0..width {
                ids.push(if i < pad { 0 } else { p[i - pad] });
                pos.push(i.saturating_sub(pad) as u32);
                let base = (r * width + i) * width;
                if i < pad {
                    // A padding query sees only itself, so its softmax stays finite.
                    mask[base + i] = 0.0;
                } else {
                    mask[base + pad..=base + i].fill(0.0);
                }
            }
        }
        let b = prompts.len();
        let input = Tensor::from_vec(ids, (b, width), &dev)?;
        let positions = Tensor::from_vec(pos, (b, width), &dev)?;
        let mask = Tensor::from_vec(mask, (b, 1, width, width), &dev)?;
        let mut caches: Vec<LayerCache> = vec![None; self.config().num_hidden_layers];
        let hidden = self.run_layers(&input, &positions, &mask, Some(&mut caches))?;
        let mut logits = self.lm_head(&hidden.narrow(1, width - 1, 1)?)?.squeeze(1)?;
        let mut seen = width; // columns in the KV cache

        loop {
            let tokens = samplers.next_tokens(&logits, &active, limits, opts)?;
            let mut next_tokens = Vec::with_capacity(active.len());
            let mut keep = Vec::with_capacity(active.len());
            let mut stopped = false;
            for (r, (token, logprobs)) in tokens.into_iter().enumerate() {
                let idx = active[r];
                if limits[idx] == 0 {
                    // Prefilled with the others, but allowed no tokens.
                    continue;
                }
                let out = &mut results[idx];
                out.tokens.push(token);
                out.logprobs.extend(logprobs);
                let finish = if opts.stop_token_ids.contains(&token) {
                    Some(FinishReason::Stop)
                } else if out.tokens.len() >= limits[idx] {
                    Some(FinishReason::Length)
                } else {
                    None
                };
                if let Some(f) = finish {
                    out.finish = f;
                } else {
                    keep.push(r);
                    next_tokens.push(token);
                }
                stopped |= on_token(TokenEvent {
                    index: idx,
                    token,
                    finish,
                })
                .is_break();
            }
            if keep.is_empty() || stopped {
                break;
            }
            // Drop finished rows from the batch (and their KV cache) so they cost nothing.
            if keep.len() < active.len() {
                let keep_t = Tensor::from_vec(
                    keep.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                    keep.len(),
                    &dev,
                )?;
                for c in caches.iter_mut() {
                    if let Some((k, v)) = c.take() {
                        *c = Some((k.index_select(&keep_t, 0)?, v.index_select(&keep_t, 0)?));
                    }
                }
                active = keep.iter().map(|&r| active[r]).collect();
                pads = keep.iter().map(|&r| pads[r]).collect();
            }
            let b = active.len();
            let input = Tensor::from_vec(next_tokens, (b, 1), &dev)?;
            let positions = Tensor::from_vec(
                pads.iter().map(|&p| (seen - p) as u32).collect::<Vec<_>>(),
                (b, 1),
                &dev,
            )?;
            let mut mask = vec![0f32; b * (seen + 1)];
            for (r, &p) in pads.iter().enumerate() {
                mask[r * (seen + 1)..r * (seen + 1) + p].fill(f32::NEG_INFINITY);
            }
            let mask = Tensor::from_vec(mask, (b, 1, 1, seen + 1), &dev)?;
            let hidden = self.run_layers(&input, &positions, &mask, Some(&mut caches))?;
            logits = self.lm_head(&hidden)?.squeeze(1)?;
            seen += 1;
        }
        Ok(results)
    }
}

/// The sampler of each sequence: one for the whole batch, or one per sequence.
struct Samplers {
    rngs: Vec<StdRng>,
    shared: bool,
}

impl Samplers {
    fn shared(rng: StdRng) -> Self {
        Self {
            rngs: vec![rng],
            shared: true,
        }
    }

    fn per_row(rngs: Vec<StdRng>) -> Self {
        Self {
            rngs,
            shared: false,
        }
    }

    /// The next token of every batch row (`active[r]` is row r's prompt). A row allowed no
    /// tokens gets a placeholder and leaves a shared sampler untouched.
    ///
    /// Greedy decoding on a GPU without log-probabilities takes the argmax there and copies
    /// one id per row; otherwise the logits come to the host, where rows with their own
    /// samplers are sampled in parallel (a row's result depends only on its logits and its
    /// sampler). With `opts.top_logprobs`, each token comes with its log-probabilities.
    fn next_tokens(
        &mut self,
        logits: &Tensor,
        active: &[usize],
        limits: &[usize],
        opts: &GenerateOptions,
    ) -> Result<Vec<(u32, Option<TokenLogprobs>)>> {
        if opts.temperature <= 0.0 && opts.top_logprobs == 0 && !logits.device().is_cpu() {
            let ids = logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
            return Ok(ids.into_iter().map(|id| (id, None)).collect());
        }
        let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let with_logprobs = |row: &[f32], token: u32| {
            let logprobs =
                (opts.top_logprobs > 0).then(|| TokenLogprobs::of(row, token, opts.top_logprobs));
            (token, logprobs)
        };
        if self.shared {
            let rng = &mut self.rngs[0];
            return Ok(rows
                .iter()
                .zip(active)
                .map(|(row, &idx)| {
                    if limits[idx] == 0 {
                        (0, None)
                    } else {
                        with_logprobs(row, sample_token(row, opts, rng))
                    }
                })
                .collect());
        }
        let mut rngs: Vec<Option<&mut StdRng>> = self.rngs.iter_mut().map(Some).collect();
        let jobs: Vec<(&[f32], &mut StdRng)> = rows
            .iter()
            .zip(active)
            .map(|(row, &idx)| {
                (
                    row.as_slice(),
                    rngs[idx].take().expect("one row per prompt"),
                )
            })
            .collect();
        Ok(jobs
            .into_par_iter()
            .map(|(row, rng)| with_logprobs(row, sample_token(row, opts, rng)))
            .collect())
    }
}

/// The next token from one position's logits: the argmax at temperature 0, else temperature
/// plus nucleus (top-p) sampling with `rng`. Every generator in the workspace samples through
/// this, so that the same logits and seed give the same token whichever engine produced them.
pub fn sample_token(logits: &[f32], opts: &GenerateOptions, rng: &mut StdRng) -> u32 {
    if opts.temperature <= 0.0 {
        return argmax(logits);
    }
    let inv_t = 1.0 / opts.temperature;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l as f64 - max) * inv_t).exp()))
        .collect();
    // Descending probability, ties by id, so sampling is reproducible. The nucleus almost
    // always lies among the few most likely tokens, so those are selected and sorted first
    // (the same prefix a full sort gives); the whole vocabulary is sorted only when they do not
    // reach `top_p`. A full sort per row per token was most of the time of sampled decoding.
    let order = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let total: f64 = probs.iter().map(|p| p.1).sum();
    const HEAD: usize = 64;
    if probs.len() > HEAD {
        probs.select_nth_unstable_by(HEAD - 1, order);
        probs[..HEAD].sort_by(order);
        let head_mass: f64 = probs[..HEAD].iter().map(|p| p.1).sum();
        if head_mass / total < opts.top_p {
            probs.sort_by(order);
        }
    } else {
        probs.sort_by(order);
    }
    let mut kept = 0.0;
    let mut cut = probs.len();
    for (i, p) in probs.iter().enumerate() {
        kept += p.1 / total;
        if kept >= opts.top_p {
            cut = i + 1;
            break;
        }
    }
    let probs = &probs[..cut];
    let mass: f64 = probs.iter().map(|p| p.1).sum();
    let mut x = rng.random::<f64>() * mass;
    for &(id, p) in probs {
        x -= p;
        if x <= 0.0 {
            return id;
        }
    }
    probs.last().map_or(0, |p| p.0)
}

/// Index of the largest logit (the first one on ties); NaN never wins.
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;
    use crate::model::tests::{test_config, test_model};
    use candle_core::{Device, IndexOp};

    /// Greedy decoding by re-running the full forward over the whole sequence each step.
    fn greedy_by_full_forward(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
        let mut seq = prompt.to_vec();
        for _ in 0..n {
            let input = Tensor::new(seq.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = model.forward(&input, None).unwrap();
            let last = logits
                .i((0, seq.len() - 1))
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            seq.push(argmax(&last));
        }
        seq[prompt.len()..].to_vec()
    }

    #[test]
    fn cached_batched_greedy_matches_full_forward() {
        for arch in [Arch::Qwen2, Arch::Llama] {
            let cfg = test_config(arch);
            let (model, _) = test_model(&cfg, 21);
            let prompts = vec![
                vec![5u32, 6, 7, 8, 9, 10, 11],
                vec![40u32],
                vec![1u32, 90, 3],
            ];
            let out = model
                .generate(&prompts, &GenerateOptions::greedy(10))
                .unwrap();
            for (p, g) in prompts.iter().zip(&out) {
                assert_eq!(g.finish, FinishReason::Length);
                assert_eq!(
                    g.tokens,
                    greedy_by_full_forward(&model, p, 10),
                    "{arch} {p:?}"
                );
            }
        }
    }

    #[test]
    fn stop_tokens_end_a_sequence_and_the_rest_continue() {
        let cfg = test_config(Arch::Llama);
        let (model, _) = test_model(&cfg, 3);
        let prompts = vec![vec![5u32, 6, 7], vec![60u32, 2]];
        let free = model
            .generate(&prompts, &GenerateOptions::greedy(6))
            .unwrap();
        // Stop on prompt 0's third token: prompt 0 ends there, prompt 1 is unaffected unless it
        // emits that token too.
        let stop = free[0].tokens[2];
        let opts = GenerateOptions {
            stop_token_ids: vec![stop],
            ..GenerateOptions::greedy(6)
        };
        let mut streamed: Vec<Vec<u32>> = vec![vec![]; 2];
        let mut finishes = 0;
        let out = model
            .generate_stream(&prompts, &opts, |ev| {
                streamed[ev.index].push(ev.token);
                finishes += ev.finish.is_some() as usize;
            })
            .unwrap();
        let first_stop = free[0].tokens.iter().position(|&t| t == stop).unwrap();
        assert_eq!(out[0].tokens, free[0].tokens[..=first_stop]);
        assert_eq!(out[0].finish, FinishReason::Stop);
        let cut = free[1].tokens.iter().position(|&t| t == stop);
        match cut {
            Some(i) => assert_eq!(out[1].tokens, free[1].tokens[..=i]),
            None => assert_eq!(out[1], free[1]),
        }
        assert_eq!(streamed, vec![out[0].tokens.clone(), out[1].tokens.clone()]);
        assert_eq!(finishes, 2);
    }

    #[test]
    fn sampling_is_seeded_and_top_p_tiny_is_greedy() {
        let cfg = test_config(Arch::Qwen2);
        let (model, _) = test_model(&cfg, 9);
        let prompts = vec![vec![1u32, 2, 3], vec![4u32]];
        let opts = GenerateOptions {
            temperature: 1.0,
            seed: 42,
            ..GenerateOptions::greedy(12)
        };
        let a = model.generate(&prompts, &opts).unwrap();
        let b = model.generate(&prompts, &opts).unwrap();
        assert_eq!(a, b);
        let other = model
            .generate(
                &prompts,
                &GenerateOptions {
                    seed: 43,
                    ..opts.clone()
                },
            )
            .unwrap();
        assert_ne!(a, other, "a different seed should sample differently");
        // top_p so small that only the most likely token survives = greedy.
        let nucleus = model
            .generate(
                &prompts,
                &GenerateOptions {
                    top_p: 1e-9,
                    ..opts
                },
            )
            .unwrap();
        assert_eq!(
            nucleus,
            model
                .generate(&prompts, &GenerateOptions::greedy(12))
                .unwrap()
        );
    }

    #[test]
    fn per_row_seeds_do_not_depend_on_the_batch() {
        let cfg = test_config(Arch::Llama);
        let (model, _) = test_model(&cfg, 5);
        let opts = GenerateOptions {
            temperature: 1.0,
            ..GenerateOptions::greedy(0)
        };
        let row = |seed, max_new_tokens| RowOptions {
            seed,
            max_new_tokens,
        };
        let go = |prompts: &[Vec<u32>], rows: &[RowOptions]| {
            model
                .generate_rows(prompts, rows, &opts, |_| ControlFlow::Continue(()))
                .unwrap()
        };
        let prompts = vec![vec![1u32, 2, 3], vec![7u32], vec![1u32, 2, 3]];
        let rows = [row(11, 9), row(12, 5), row(13, 7)];
        let together = go(&prompts, &rows);
        for i in 0..prompts.len() {
            let alone = go(std::slice::from_ref(&prompts[i]), &rows[i..=i]);
            assert_eq!(alone[0], together[i], "row {i}");
            assert_eq!(together[i].tokens.len(), rows[i].max_new_tokens);
        }
        assert_ne!(
            together[0], together[2],
            "same prompt, different seeds should sample differently"
        );
        // A row allowed no tokens gets none and costs the others nothing.
        let none = go(&prompts[..2], &[row(11, 0), row(12, 5)]);
        assert!(none[0].tokens.is_empty());
        assert_eq!(none[1], together[1]);
    }

    #[test]
    fn generate_rows_stops_when_asked() {
        let cfg = test_config(Arch::Qwen2);
        let (model, _) = test_model(&cfg, 2);
        let rows = [RowOptions {
            seed: 0,
            max_new_tokens: 50,
        }; 2];
        let mut seen = 0;
        let out = model
            .generate_rows(
                &[vec![1u32, 2], vec![3u32]],
                &rows,
                &GenerateOptions::greedy(0),
                |_| {
                    seen += 1;
                    if seen >= 6 {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )
            .unwrap();
        assert_eq!(seen, 6, "stops after the step that asked");
        assert!(out.iter().all(|g| g.tokens.len() == 3));
        assert!(out.iter().all(|g| g.finish == FinishReason::Length));
    }

    /// The log-softmax of the logits a full forward pass gives at the position before each
    /// generated token: what `top_logprobs` must record, whatever the sampling temperature.
    #[test]
    fn logprobs_are_the_raw_distribution_at_each_generated_token() {
        let cfg = test_config(Arch::Llama);
        let (model, _) = test_model(&cfg, 7);
        let prompts = vec![vec![1u32, 2, 3, 4], vec![9u32]];
        let rows = [
            RowOptions {
                seed: 3,
                max_new_tokens: 6,
            },
            RowOptions {
                seed: 4,
                max_new_tokens: 4,
            },
        ];
        let opts = GenerateOptions {
            temperature: 0.7,
            top_p: 0.9,
            top_logprobs: 5,
            ..GenerateOptions::greedy(0)
        };
        let out = model
            .generate_rows(&prompts, &rows, &opts, |_| ControlFlow::Continue(()))
            .unwrap();
        // Asking for log-probabilities changes no token.
        let plain = model
            .generate_rows(
                &prompts,
                &rows,
                &GenerateOptions {
                    top_logprobs: 0,
                    ..opts.clone()
                },
                |_| ControlFlow::Continue(()),
            )
            .unwrap();
        for (p, (g, plain)) in prompts.iter().zip(out.iter().zip(&plain)) {
            assert_eq!(g.tokens, plain.tokens);
            assert!(plain.logprobs.is_empty());
            assert_eq!(g.logprobs.len(), g.tokens.len());
            let mut seq = p.clone();
            seq.extend(&g.tokens);
            let input = Tensor::new(seq.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = model.forward(&input, None).unwrap();
            let log_probs = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).unwrap();
            for (i, (token, lp)) in g.tokens.iter().zip(&g.logprobs).enumerate() {
                let expected = log_probs
                    .i((0, p.len() - 1 + i))
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                assert!(
                    (lp.logprob - expected[*token as usize]).abs() < 1e-4,
                    "position {i}: {} vs {}",
                    lp.logprob,
                    expected[*token as usize]
                );
                assert_eq!(lp.top.len(), 5);
                let mut best: Vec<u32> = (0..expected.len() as u32).collect();
                best.sort_by(|a, b| expected[*b as usize].total_cmp(&expected[*a as usize]));
                for (rank, &(id, value)) in lp.top.iter().enumerate() {
                    assert!((value - expected[id as usize]).abs() < 1e-4);
                    assert!(
                        (value - expected[best[rank] as usize]).abs() < 1e-4,
                        "rank {rank} at position {i}"
                    );
                    assert!(value <= 0.0);
                }
                assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
            }
        }
    }

    #[test]
    fn token_logprobs_of_a_small_row() {
        let lp = TokenLogprobs::of(&[0.0, 2.0, 1.0, 2.0], 2, 3);
        let norm = (1.0f64 + 2.0f64.exp() * 2.0 + 1.0f64.exp()).ln();
        assert!((f64::from(lp.logprob) - (1.0 - norm)).abs() < 1e-6);
        // Ties by id: 1 before 3.
        assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 3, 2]);
        assert!((f64::from(lp.top[0].1) - (2.0 - norm)).abs() < 1e-6);
        // k beyond the vocabulary keeps the whole vocabulary.
        assert_eq!(TokenLogprobs::of(&[0.0, 1.0], 0, 8).top.len(), 2);
    }

    #[test]
    fn bad_prompts_are_errors() {
        let cfg = test_config(Arch::Qwen2);
        let (model, _) = test_model(&cfg, 1);
        let e = model
            .generate(&[vec![]], &GenerateOptions::greedy(2))
            .unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = model
            .generate(&[vec![5000]], &GenerateOptions::greedy(2))
            .unwrap_err();
        assert!(e.to_string().contains("5000"), "{e}");
        assert!(
            model
                .generate(&[], &GenerateOptions::greedy(2))
                .unwrap()
                .is_empty()
        );
    }
}

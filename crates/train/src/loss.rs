//! Masked cross-entropy and logit distillation, from ops that record a backward pass.
//!
//! Losses are returned as *sums* over the masked positions; the trainer divides by the
//! number of loss tokens in the whole optimiser step, so gradient accumulation gives exactly
//! the gradient of the step's mean loss.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, D, DType, Layout, Result, Shape, Tensor};
use distillery_model::{cpu_f32, vector_math};
use rayon::prelude::*;

/// log-softmax over the last dimension: `x - max - log(sum(exp(x - max)))`. The max is a
/// constant shift (detached); every op used has a backward pass.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Per-position cross-entropy `[b, t]` of `logits` `[b, t, v]` against `targets` `[b, t]`
/// (u32).
pub fn token_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    if logits.device().is_cpu() {
        // One pass forward and one backward (`softmax − onehot`) instead of a chain of ops.
        let v = logits.dim(D::Minus1)?;
        let flat = if logits.rank() == 2 {
            logits.contiguous()?
        } else {
            logits.reshape(((), v))?.contiguous()?
        };
        let t = targets.to_dtype(DType::U32)?.flatten_all()?.contiguous()?;
        let ce = flat.apply_op2(&t, CrossEntropy)?;
        return if targets.rank() == 1 {
            Ok(ce)
        } else {
            ce.reshape(targets.shape())
        };
    }
    token_cross_entropy_basic(&logits, targets)
}

/// [`token_cross_entropy`] from basic ops (other devices; the fused kernel's reference).
fn token_cross_entropy_basic(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let lp = log_softmax(logits)?;
    let idx = targets.to_dtype(DType::U32)?.unsqueeze(D::Minus1)?;
    lp.gather(&idx, D::Minus1)?.squeeze(D::Minus1)?.neg()
}

/// Per-row `logsumexp(x) − x[target]` of `[n, v]` f32 logits and `[n]` u32 targets.
struct CrossEntropy;

fn cpu_u32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [u32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::U32(d), Some((a, b))) => Ok(&d[a..b]),
        _ => candle_core::bail!("cross-entropy: contiguous u32 targets expected"),
    }
}

/// `max` and `ln Σ exp(x − max)` of one row.
fn log_sum_exp(x: &[f32]) -> (f32, f32) {
    let max = vector_math::max(x);
    (max, vector_math::sum_exp(x, max).ln())
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, t) = (cpu_f32(s1, l1, self.name())?, cpu_u32(s2, l2)?);
        let (n, v) = l1.shape().dims2()?;
        if t.len() != n || t.iter().any(|&t| t as usize >= v) {
            candle_core::bail!("cross-entropy: {} targets (< {v}) for {n} rows", t.len())
        }
        let out: Vec<f32> = x
            .par_chunks(v)
            .zip(t.par_iter())
            .map(|(row, &t)| {
                let (max, lse) = log_sum_exp(row);
                -((row[t as usize] - max) - lse)
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        Ok((
            Some(logits.apply_op3_no_bwd(targets, &grad, &CrossEntropyGrad)?),
            None,
        ))
    }
}

/// `g · (softmax(x) − onehot(target))` per row: the gradient of [`CrossEntropy`].
struct CrossEntropyGrad;

impl CustomOp3 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (cpu_f32(s1, l1, self.name())?, cpu_f32(s3, l3, self.name())?);
        let t = cpu_u32(s2, l2)?;
        let (_, v) = l1.shape().dims2()?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(v)
            .zip(x.par_chunks(v))
            .zip(t.par_iter().zip(g.par_iter()))
            .for_each(|((d, row), (&t, &g))| {
                let (max, lse) = log_sum_exp(row);
                let shift = max + lse;
                for (d, &x) in d.iter_mut().zip(row) {
                    *d = g * vector_math::exp(x - shift);
                }
                d[t as usize] -= g;
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Sum of the cross-entropy over positions where `mask` (`[b, t]`, f32 0/1) is 1.
pub fn masked_cross_entropy_sum(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    (token_cross_entropy(logits, targets)? * mask)?.sum_all()
}

/// Mean cross-entropy over the masked positions.
pub fn masked_cross_entropy(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let n = mask.sum_all()?.to_scalar::<f32>()?.max(1.0);
    masked_cross_entropy_sum(logits, targets, mask)? / f64::from(n)
}

/// The parts of a distillation loss, each summed over the masked positions.
#[derive(Debug, Clone)]
pub struct KdLoss {
    /// `alpha·T²·kl + (1−alpha)·ce`: what is differentiated.
    pub total: Tensor,
    /// `Σ KL(softmax(t/T) ‖ softmax(s/T))`.
    pub kl: Tensor,
    /// `Σ CE(s, targets)` at temperature 1.
    pub ce: Tensor,
}

/// Logit distillation: `alpha·T²·KL(softmax(teacher/T) ‖ softmax(student/T)) +
/// (1−alpha)·CE(student, targets)`, summed over masked positions. The teacher is detached.
/// When the vocabularies differ (padded embeddings), both are cut to the smaller one.
pub fn kd_loss_sum(
    student: &Tensor,
    teacher: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    alpha: f64,
    temperature: f64,
) -> Result<KdLoss> {
    let student = student.to_dtype(DType::F32)?;
    let teacher = teacher.to_dtype(DType::F32)?.detach();
    let v = student.dim(D::Minus1)?.min(teacher.dim(D::Minus1)?);
    let s = student.narrow(D::Minus1, 0, v)?;
    let t = teacher.narrow(D::Minus1, 0, v)?;
    let s_lp = log_softmax(&(s / temperature)?)?;
    let t_lp = log_softmax(&(t / temperature)?)?;
    let kl_tok = (t_lp.exp()? * (t_lp - s_lp)?)?.sum(D::Minus1)?;
    let kl = (kl_tok * mask)?.sum_all()?;
    let ce = masked_cross_entropy_sum(&student, targets, mask)?;
    let total = ((&kl * (alpha * temperature * temperature))? + (&ce * (1.0 - alpha))?)?;
    Ok(KdLoss { total, kl, ce })
}

/// The teacher's distribution at one position, as stored while it generated: its top-k tokens
/// (mapped to student ids, distinct) and their log-probabilities at temperature 1. The mass
/// they leave, `1 − Σ exp(logprob)`, is the tail: every other token, as one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseTarget {
    pub ids: Vec<u32>,
    pub logprobs: Vec<f32>,
}

/// A tail below this is rounding (of the server's numbers or of their quantisation in the
/// shards), not mass: tempering would blow it up (`1e-7` is `0.04` at T = 5), so it is dropped.
pub const MIN_TAIL: f64 = 1e-6;

/// Keeps the gradient of an empty bucket finite: the student's log-mass of a bucket with no
/// token in it (`−1e30`, not −∞, whose products with 0 are NaN).
const EMPTY: f32 = -1e30;

/// Teacher probabilities of the `k + 1` buckets of `target` at temperature `t`, with `k` the
/// width (pads and a dropped tail are 0); and `Σ p·log p` for the KL's constant part.
fn teacher_buckets(target: &SparseTarget, width: usize, t: f64) -> (Vec<f32>, f64) {
    let lps: Vec<f64> = target.logprobs.iter().map(|&lp| f64::from(lp)).collect();
    let listed: f64 = lps.iter().map(|lp| lp.exp()).sum();
    let tail = 1.0 - listed;
    let mut logits: Vec<Option<f64>> = lps.iter().map(|lp| Some(lp / t)).collect();
    logits.resize(width, None);
    logits.push((tail > MIN_TAIL).then(|| tail.ln() / t));
    let max = logits
        .iter()
        .flatten()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let z: f64 = logits.iter().flatten().map(|l| (l - max).exp()).sum();
    let mut entropy_part = 0.0;
    let probs = logits
        .iter()
        .map(|l| match l {
            Some(l) => {
                let lp = l - max - z.ln();
                entropy_part += lp.exp() * lp;
                lp.exp() as f32
            }
            None => 0.0,
        })
        .collect();
    (probs, entropy_part)
}

/// Distillation on the teacher's stored top-k: `alpha·T²·KL(p ‖ q) + (1−alpha)·CE` summed over
/// the rows that have a target, and plain CE on the rows that have none. `p` and `q` are the
/// teacher's and the student's distributions over `k + 1` buckets (the top-k tokens and the
/// tail of every other token), each taken at temperature 1 and then tempered by `T`, so that
/// with `k` = the vocabulary (no tail) this is exactly [`kd_loss_sum`].
///
/// `student` is `[n, v]`, `targets` `[n]` and `sparse` has `n` entries.
pub fn sparse_kd_loss_sum(
    student: &Tensor,
    targets: &Tensor,
    sparse: &[Option<&SparseTarget>],
    alpha: f64,
    temperature: f64,
) -> Result<KdLoss> {
    let student = student.to_dtype(DType::F32)?;
    let (n, v) = student.dims2()?;
    let device = student.device();
    let ce_weights: Vec<f32> = sparse
        .iter()
        .map(|s| {
            if s.is_some() {
                (1.0 - alpha) as f32
            } else {
                1.0
            }
        })
        .collect();
    let ce_weights = Tensor::from_vec(ce_weights, n, device)?;
    let ce_tok = token_cross_entropy(&student, targets)?;
    let ce = ce_tok.sum_all()?;
    let weighted_ce = (ce_tok * ce_weights)?.sum_all()?;
    let width = sparse
        .iter()
        .flatten()
        .map(|s| s.ids.len())
        .max()
        .unwrap_or(0);
    if width == 0 {
        let kl = Tensor::zeros((), DType::F32, device)?;
        return Ok(KdLoss {
            total: weighted_ce,
            kl,
            ce,
        });
    }
    // Host side: the teacher's bucket probabilities, the ids to gather, and the masks that
    // keep pads and listed tokens out of the student's buckets.
    let mut ids = vec![0u32; n * width];
    let mut p = vec![0f32; n * (width + 1)];
    let mut pad = vec![0f32; n * (width + 1)];
    let mut listed = vec![0f32; n * v];
    let mut constant = 0f64;
    for (r, target) in sparse.iter().enumerate() {
        let Some(target) = target else {
            continue;
        };
        let (probs, entropy_part) = teacher_buckets(target, width, temperature);
        constant += entropy_part;
        p[r * (width + 1)..(r + 1) * (width + 1)].copy_from_slice(&probs);
        for (j, &id) in target.ids.iter().enumerate() {
            ids[r * width + j] = id;
            listed[r * v + id as usize] = EMPTY;
        }
        for j in target.ids.len()..width {
            pad[r * (width + 1) + j] = EMPTY;
        }
    }
    let ids = Tensor::from_vec(ids, (n, width), device)?;
    let p = Tensor::from_vec(p, (n, width + 1), device)?;
    let pad = Tensor::from_vec(pad, (n, width + 1), device)?;
    let listed = Tensor::from_vec(listed, (n, v), device)?;
    // The student's log-mass of each listed token and of the tail (everything else).
    let lp = log_softmax(&student)?;
    let top = lp.gather(&ids, D::Minus1)?;
    let rest = (&lp + listed)?;
    let max = rest.max_keepdim(D::Minus1)?.detach();
    let tail = (rest
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + max)?;
    let buckets = ((Tensor::cat(&[top, tail], D::Minus1)? / temperature)? + pad)?;
    let log_q = log_softmax(&buckets)?;
    // KL = Σ p·log p − Σ p·log q; rows without a target have p = 0.
    let cross = (p * log_q)?.sum_all()?;
    let kl = (cross.neg()? + constant)?;
    let total = ((&kl * (alpha * temperature * temperature))? + weighted_ce)?;
    Ok(KdLoss { total, kl, ce })
}

/// A linear temperature schedule from `start` at step 0 to `end` at the last step
/// (`total_steps − 1`).
pub fn temperature_at(start: f64, end: f64, step: u64, total_steps: u64) -> f64 {
    if total_steps <= 1 {
        return end;
    }
    let frac = (step.min(total_steps - 1)) as f64 / (total_steps - 1) as f64;
    start + (end - start) * frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t3(rows: &[[f32; 3]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (1, rows.len(), 3), &Device::Cpu).unwrap()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }

    #[test]
    fn cross_entropy_matches_hand_computed_and_respects_mask() {
        let logits = t3(&[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]);
        let targets = Tensor::new(&[[2u32, 0]], &Device::Cpu).unwrap();
        let both = Tensor::new(&[[1f32, 1.0]], &Device::Cpu).unwrap();
        let first = Tensor::new(&[[1f32, 0.0]], &Device::Cpu).unwrap();
        // -log softmax([1,2,3])[2] = log(1 + e^-1 + e^-2); -log(1/3) = ln 3.
        let s = masked_cross_entropy_sum(&logits, &targets, &both).unwrap();
        close(
            s.to_scalar::<f32>().unwrap() as f64,
            0.40760596444438046 + 1.0986122886681098,
        );
        let s = masked_cross_entropy_sum(&logits, &targets, &first).unwrap();
        close(s.to_scalar::<f32>().unwrap() as f64, 0.40760596444438046);
        let m = masked_cross_entropy(&logits, &targets, &both).unwrap();
        close(
            m.to_scalar::<f32>().unwrap() as f64,
            (0.40760596444438046 + 1.0986122886681098) / 2.0,
        );
    }

    /// The fused kernel against the basic-op version: values and gradients, on random logits
    /// with a large spread.
    #[test]
    fn fused_cross_entropy_matches_basic_ops() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(5);
        let (n, v) = (37, 301);
        let x: Vec<f32> = (0..n * v)
            .map(|_| rng.random::<f32>() * 30.0 - 15.0)
            .collect();
        let var = Var::from_tensor(&Tensor::from_vec(x, (n, v), &Device::Cpu).unwrap()).unwrap();
        let t: Vec<u32> = (0..n).map(|_| rng.random_range(0..v as u32)).collect();
        let targets = Tensor::from_vec(t, n, &Device::Cpu).unwrap();
        let w: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
        let w = Tensor::from_vec(w, n, &Device::Cpu).unwrap();
        let fused = token_cross_entropy(var.as_tensor(), &targets).unwrap();
        let basic = token_cross_entropy_basic(var.as_tensor(), &targets).unwrap();
        let diff = (&fused - &basic).unwrap().abs().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        let gf = (&fused * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (&basic * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (gf, gb) = (
            gf.get(var.as_tensor()).unwrap(),
            gb.get(var.as_tensor()).unwrap(),
        );
        let diff = (gf - gb)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }

    #[test]
    fn cross_entropy_gradient_is_softmax_minus_onehot() {
        let var = Var::from_tensor(&t3(&[[1.0, 2.0, 3.0]])).unwrap();
        let targets = Tensor::new(&[[0u32]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1f32]], &Device::Cpu).unwrap();
        let loss = masked_cross_entropy_sum(var.as_tensor(), &targets, &mask).unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<f32> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let z = 1f64.exp() + 2f64.exp() + 3f64.exp();
        let want = [1f64.exp() / z - 1.0, 2f64.exp() / z, 3f64.exp() / z];
        for (g, w) in g.iter().zip(want) {
            close(*g as f64, w);
        }
    }

    #[test]
    fn kd_loss_matches_hand_computed_values() {
        let student = t3(&[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]);
        let teacher = t3(&[[3.0, 2.0, 1.0], [0.0, 3f32.ln(), 0.0]]);
        let targets = Tensor::new(&[[2u32, 0]], &Device::Cpu).unwrap();
        let both = Tensor::new(&[[1f32, 1.0]], &Device::Cpu).unwrap();
        // T = 2: p = softmax([1.5, 1, .5]), q = softmax([.5, 1, 1.5]):
        // KL = Σ p log(p/q) = p0 - p2 (log-ratios are ±1, 0) = 0.32015666782980645.
        // Second position: p = softmax([0, ln3/2, 0]), q uniform: KL = 0.03658826053382039.
        let kd = kd_loss_sum(&student, &teacher, &targets, &both, 0.5, 2.0).unwrap();
        close(
            kd.kl.to_scalar::<f32>().unwrap() as f64,
            0.32015666782980645 + 0.03658826053382039,
        );
        close(
            kd.ce.to_scalar::<f32>().unwrap() as f64,
            0.40760596444438046 + 1.0986122886681098,
        );
        close(
            kd.total.to_scalar::<f32>().unwrap() as f64,
            1.4665989832834987,
        );
        let first = Tensor::new(&[[1f32, 0.0]], &Device::Cpu).unwrap();
        let kd = kd_loss_sum(&student, &teacher, &targets, &first, 0.5, 2.0).unwrap();
        close(
            kd.total.to_scalar::<f32>().unwrap() as f64,
            0.8441163178818032,
        );
        // alpha = 0 is plain CE; identical logits have zero KL.
        let kd = kd_loss_sum(&student, &student, &targets, &both, 0.0, 3.0).unwrap();
        close(kd.kl.to_scalar::<f32>().unwrap() as f64, 0.0);
        close(
            kd.total.to_scalar::<f32>().unwrap() as f64,
            0.40760596444438046 + 1.0986122886681098,
        );
    }

    #[test]
    fn kd_gradient_flows_to_student_only() {
        let s = Var::from_tensor(&t3(&[[1.0, 2.0, 3.0]])).unwrap();
        let t = Var::from_tensor(&t3(&[[3.0, 2.0, 1.0]])).unwrap();
        let targets = Tensor::new(&[[2u32]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1f32]], &Device::Cpu).unwrap();
        let kd = kd_loss_sum(s.as_tensor(), t.as_tensor(), &targets, &mask, 1.0, 1.0).unwrap();
        let grads = kd.total.backward().unwrap();
        assert!(grads.get(t.as_tensor()).is_none());
        // alpha = 1, T = 1: d KL / d s = softmax(s) - softmax(t).
        let g: Vec<f32> = grads
            .get(s.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let z = 1f64.exp() + 2f64.exp() + 3f64.exp();
        let want = [
            1f64.exp() / z - 3f64.exp() / z,
            0.0,
            3f64.exp() / z - 1f64.exp() / z,
        ];
        for (g, w) in g.iter().zip(want) {
            close(*g as f64, w);
        }
    }

    fn t2(rows: &[&[f32]]) -> Tensor {
        let v = rows[0].len();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (rows.len(), v), &Device::Cpu).unwrap()
    }

    #[test]
    fn sparse_kd_matches_hand_computed_values() {
        // Vocabulary of 3; the teacher lists token 0 at p = 0.5 and token 2 at 0.25, leaving
        // 0.25 to the tail (token 1). Student logits [0, 0, 0]: q = 1/3 each, so at T = 1 the
        // buckets are p = (.5, .25, .25) and q = (1/3, 1/3, 1/3):
        // KL = .5 ln 1.5 + .25 ln .75 + .25 ln .75 = 0.05889151782819172.
        let student = t2(&[&[0.0, 0.0, 0.0]]);
        let targets = Tensor::new(&[2u32], &Device::Cpu).unwrap();
        let target = SparseTarget {
            ids: vec![0, 2],
            logprobs: vec![0.5f32.ln(), 0.25f32.ln()],
        };
        let kd = sparse_kd_loss_sum(&student, &targets, &[Some(&target)], 0.5, 1.0).unwrap();
        close(
            kd.kl.to_scalar::<f32>().unwrap() as f64,
            0.05889151782819172,
        );
        close(kd.ce.to_scalar::<f32>().unwrap() as f64, 3f64.ln());
        close(
            kd.total.to_scalar::<f32>().unwrap() as f64,
            0.5 * 0.05889151782819172 + 0.5 * 3f64.ln(),
        );
        // T = 2: p ∝ (.5^.5, .25^.5, .25^.5) = (.7071, .5, .5) / 1.7071; q stays uniform.
        // KL = Σ p ln(3p) = 0.014220592822894965; the total carries T² = 4.
        let kd = sparse_kd_loss_sum(&student, &targets, &[Some(&target)], 1.0, 2.0).unwrap();
        close(
            kd.kl.to_scalar::<f32>().unwrap() as f64,
            0.014220592822894965,
        );
        close(
            kd.total.to_scalar::<f32>().unwrap() as f64,
            4.0 * 0.014220592822894965,
        );
        // A row without a target is plain CE (weight 1), whatever alpha.
        let kd = sparse_kd_loss_sum(&student, &targets, &[None], 0.7, 2.0).unwrap();
        close(kd.kl.to_scalar::<f32>().unwrap() as f64, 0.0);
        close(kd.total.to_scalar::<f32>().unwrap() as f64, 3f64.ln());
    }

    /// With k = the vocabulary (no tail) the sparse loss is the dense one, value and gradient.
    #[test]
    fn sparse_kd_equals_dense_kd_when_k_is_the_vocabulary() {
        let s_rows: [&[f32]; 2] = [&[1.0, 2.0, 3.0, -1.0, 0.5], &[0.3, -0.2, 0.0, 2.0, 1.0]];
        let t_rows: [&[f32]; 2] = [&[3.0, 2.0, 1.0, 0.0, -2.0], &[0.0, 1.5, -1.0, 0.2, 0.9]];
        let targets = Tensor::new(&[2u32, 3], &Device::Cpu).unwrap();
        let teacher = t2(&t_rows);
        let t_lp: Vec<Vec<f32>> = log_softmax(&teacher).unwrap().to_vec2().unwrap();
        // Listed in a shuffled order: the buckets need not follow the vocabulary.
        let order = [3u32, 0, 4, 1, 2];
        let sparse: Vec<SparseTarget> = t_lp
            .iter()
            .map(|row| SparseTarget {
                ids: order.to_vec(),
                logprobs: order.iter().map(|&i| row[i as usize]).collect(),
            })
            .collect();
        let refs: Vec<Option<&SparseTarget>> = sparse.iter().map(Some).collect();
        for (alpha, t) in [(0.5, 2.0), (1.0, 5.0), (0.3, 1.0)] {
            let sv = Var::from_tensor(&t2(&s_rows)).unwrap();
            let sparse_kd = sparse_kd_loss_sum(sv.as_tensor(), &targets, &refs, alpha, t).unwrap();
            let dv = Var::from_tensor(&t2(&s_rows)).unwrap();
            let ones = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
            let dense = kd_loss_sum(dv.as_tensor(), &teacher, &targets, &ones, alpha, t).unwrap();
            for (a, b) in [
                (&sparse_kd.kl, &dense.kl),
                (&sparse_kd.ce, &dense.ce),
                (&sparse_kd.total, &dense.total),
            ] {
                close(
                    a.to_scalar::<f32>().unwrap() as f64,
                    b.to_scalar::<f32>().unwrap() as f64,
                );
            }
            let gs: Vec<f32> = sparse_kd
                .total
                .backward()
                .unwrap()
                .get(sv.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let gd: Vec<f32> = dense
                .total
                .backward()
                .unwrap()
                .get(dv.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (a, b) in gs.iter().zip(&gd) {
                close(f64::from(*a), f64::from(*b));
            }
        }
    }

    #[test]
    fn temperature_schedule_is_linear_from_start_to_end() {
        close(temperature_at(5.0, 1.0, 0, 5), 5.0);
        close(temperature_at(5.0, 1.0, 1, 5), 4.0);
        close(temperature_at(5.0, 1.0, 4, 5), 1.0);
        close(temperature_at(5.0, 1.0, 9, 5), 1.0);
        close(temperature_at(5.0, 1.0, 0, 1), 1.0);
    }
}

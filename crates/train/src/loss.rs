//! Masked cross-entropy and logit distillation, from ops that record a backward pass.
//!
//! Losses are returned as *sums* over the masked positions; the trainer divides by the
//! number of loss tokens in the whole optimiser step, so gradient accumulation gives exactly
//! the gradient of the step's mean loss.

use candle_core::{D, DType, Result, Tensor};

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
    let lp = log_softmax(&logits)?;
    let idx = targets.to_dtype(DType::U32)?.unsqueeze(D::Minus1)?;
    lp.gather(&idx, D::Minus1)?.squeeze(D::Minus1)?.neg()
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

    #[test]
    fn temperature_schedule_is_linear_from_start_to_end() {
        close(temperature_at(5.0, 1.0, 0, 5), 5.0);
        close(temperature_at(5.0, 1.0, 1, 5), 4.0);
        close(temperature_at(5.0, 1.0, 4, 5), 1.0);
        close(temperature_at(5.0, 1.0, 9, 5), 1.0);
        close(temperature_at(5.0, 1.0, 0, 1), 1.0);
    }
}

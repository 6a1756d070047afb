//! One micro-batch's loss and gradients in bounded memory.
//!
//! The logits of a batch (`[tokens, vocab]`, 200 MB in f32 for SmolLM2 at 4 × 256 tokens) and
//! the temporaries of the loss over them were most of a training step's memory. So the
//! backward pass runs in stages, each ending in its own `backward()`:
//!
//! 1. the trunk (embedding, layers, final norm) runs forward to hidden states `h`;
//! 2. `h` is cut from the graph, and only the positions that carry loss are projected to logits,
//!    a chunk at a time; each chunk's loss is differentiated at once, giving the head's
//!    gradient and `∂L/∂h` for those positions, and its logits are freed;
//! 3. the trunk is differentiated against `∂L/∂h` (`backward` of `Σ h ⊙ ∂L/∂h`).
//!
//! With activation checkpointing, step 1 keeps only each layer's input and step 3 recomputes
//! one layer at a time, from the last to the first, so at most one layer's activations exist.
//!
//! Every stage adds `scale × ∂loss/∂θ` into the caller's accumulators, so a step's gradient
//! is the same as that of one `backward()` over the whole loss, up to rounding.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use distillery_model::Model;

use crate::error::{Result, TrainError};
use crate::loss::{SparseTarget, kd_loss_sum, masked_cross_entropy_sum, sparse_kd_loss_sum};
use crate::optim::add_into;

/// Logit elements (rows × vocabulary) per chunk of the loss: 16 MiB of f32 logits, under
/// the size glibc serves from the heap (see `keep_freed_tensor_memory`), so chunks reuse memory.
pub const CHUNK_LOGITS: usize = 4 << 20;

/// One packed micro-batch on the model's device.
pub struct MicroBatch {
    pub inputs: Tensor,
    pub targets: Tensor,
    /// f32 0/1: 1 where the position's target counts (assistant tokens).
    pub mask: Tensor,
    pub segments: Tensor,
    /// With distillation from stored log-probabilities: the teacher's distribution predicting
    /// each position's target (flat, `[b·t]`; `None` where there is none). Empty otherwise.
    pub sparse: Vec<Option<SparseTarget>>,
}

/// Where the teacher's distribution comes from.
pub enum KdTeacher<'a> {
    /// A local model sharing the student's tokenizer, run beside it.
    Model(&'a Model),
    /// The top-k log-probabilities stored with the data ([`MicroBatch::sparse`]): no teacher
    /// pass at all.
    Logprobs,
}

/// Logit distillation at one temperature.
pub struct Distill<'a> {
    pub teacher: KdTeacher<'a>,
    pub alpha: f64,
    pub temperature: f64,
}

/// The micro-batch's losses, summed over its loss positions (unscaled).
#[derive(Debug, Default, Clone, Copy)]
pub struct LossSums {
    /// What is differentiated: CE, or `alpha·T²·KL + (1−alpha)·CE`.
    pub total: f64,
    pub ce: f64,
    pub kl: f64,
}

fn model_err(e: distillery_model::Error) -> TrainError {
    TrainError::Model(e.to_string())
}

/// The loss positions of `batch`: their flat indices into `[b·t]` (as a tensor and on the
/// host) and their targets.
fn loss_rows(batch: &MicroBatch) -> Result<Option<(Tensor, Vec<u32>, Tensor)>> {
    let mask = batch.mask.flatten_all()?.to_vec1::<f32>()?;
    let host: Vec<u32> = (0..mask.len() as u32)
        .filter(|&i| mask[i as usize] > 0.0)
        .collect();
    if host.is_empty() {
        return Ok(None);
    }
    let rows = Tensor::from_vec(host.clone(), host.len(), batch.inputs.device())?;
    let targets = batch.targets.flatten_all()?.index_select(&rows, 0)?;
    Ok(Some((rows, host, targets)))
}

/// The stored teacher distributions of the loss rows, in their order.
fn sparse_rows<'b>(batch: &'b MicroBatch, rows: &[u32]) -> Result<Vec<Option<&'b SparseTarget>>> {
    if batch.sparse.len() != batch.mask.elem_count() {
        return Err(TrainError::Model(format!(
            "distillation from stored log-probabilities needs one entry per position: {} for {}",
            batch.sparse.len(),
            batch.mask.elem_count()
        )));
    }
    Ok(rows
        .iter()
        .map(|&r| batch.sparse[r as usize].as_ref())
        .collect())
}

/// Hidden states `[b, t, h]` at the loss rows: `[n, h]`.
fn select_rows(hidden: &Tensor, rows: &Tensor) -> Result<Tensor> {
    let (b, t, h) = hidden.dims3()?;
    Ok(hidden.reshape((b * t, h))?.index_select(rows, 0)?)
}

/// Rows per chunk so that a chunk's logits hold at most `chunk_logits` elements.
fn chunk_rows(model: &Model, chunk_logits: usize) -> usize {
    (chunk_logits / model.config().vocab_size.max(1)).max(1)
}

/// Loss of the logits of `hidden_rows` (`[n, h]`, the student's) against `targets`, chunk by
/// chunk. `on_chunk` gets each chunk's differentiable total and may run its backward.
#[allow(clippy::too_many_arguments)]
fn chunked_loss(
    student: &Model,
    hidden_rows: &Tensor,
    teacher_rows: Option<&Tensor>,
    sparse: &[Option<&SparseTarget>],
    targets: &Tensor,
    distill: Option<&Distill>,
    chunk_logits: usize,
    mut on_chunk: impl FnMut(&Tensor) -> Result<()>,
) -> Result<LossSums> {
    let n = hidden_rows.dim(0)?;
    let step = chunk_rows(student, chunk_logits);
    let mut sums = LossSums::default();
    for start in (0..n).step_by(step) {
        let len = step.min(n - start);
        let logits = student
            .lm_head(&hidden_rows.narrow(0, start, len)?)
            .map_err(model_err)?;
        let chunk_targets = targets.narrow(0, start, len)?;
        let ones = Tensor::ones(len, DType::F32, logits.device())?;
        let kd = match distill.map(|d| (d, &d.teacher)) {
            Some((d, KdTeacher::Model(teacher))) => {
                let t_rows = teacher_rows.ok_or_else(|| {
                    TrainError::Model("distillation without the teacher's hidden states".into())
                })?;
                let t_logits = teacher
                    .lm_head(&t_rows.narrow(0, start, len)?)
                    .map_err(model_err)?;
                Some(kd_loss_sum(
                    &logits,
                    &t_logits,
                    &chunk_targets,
                    &ones,
                    d.alpha,
                    d.temperature,
                )?)
            }
            Some((d, KdTeacher::Logprobs)) => Some(sparse_kd_loss_sum(
                &logits,
                &chunk_targets,
                &sparse[start..start + len],
                d.alpha,
                d.temperature,
            )?),
            None => None,
        };
        let total = match kd {
            Some(kd) => {
                sums.ce += f64::from(kd.ce.to_scalar::<f32>()?);
                sums.kl += f64::from(kd.kl.to_scalar::<f32>()?);
                kd.total
            }
            None => {
                let ce = masked_cross_entropy_sum(&logits, &chunk_targets, &ones)?;
                sums.ce += f64::from(ce.to_scalar::<f32>()?);
                ce
            }
        };
        sums.total += f64::from(total.to_scalar::<f32>()?);
        on_chunk(&total)?;
    }
    Ok(sums)
}

/// Adds `grads` of `vars` into `acc` (one slot per variable).
fn accumulate(acc: &mut [Option<Tensor>], vars: &[Var], grads: &GradStore) -> Result<()> {
    for (slot, var) in acc.iter_mut().zip(vars) {
        if let Some(g) = grads.get(var.as_tensor()) {
            match slot {
                None => *slot = Some(g.clone()),
                Some(prev) => add_into(prev, g)?,
            }
        }
    }
    Ok(())
}

/// `Σ out ⊙ upstream`, whose gradient is the vector-Jacobian product of `out` with
/// `upstream`: what carries `∂L/∂out` back through a stage.
fn pull_back(out: &Tensor, upstream: &Tensor) -> Result<GradStore> {
    Ok((out * upstream.to_dtype(out.dtype())?)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .backward()?)
}

/// A leaf copy of `t` whose gradient a backward pass records.
fn leaf(t: &Tensor) -> Result<Var> {
    Ok(Var::from_tensor(&t.detach())?)
}

fn grad_of(grads: &GradStore, var: &Var, what: &str) -> Result<Tensor> {
    grads.get(var.as_tensor()).cloned().ok_or_else(|| {
        TrainError::Model(format!(
            "no gradient reached {what} (a stage of the backward pass)"
        ))
    })
}

/// How the backward pass trades memory for time.
#[derive(Debug, Clone, Copy)]
pub struct Staging {
    /// Recompute each layer's activations in the backward pass instead of keeping them.
    pub checkpoint_activations: bool,
    /// Logit elements per chunk of the loss ([`CHUNK_LOGITS`]).
    pub chunk_logits: usize,
}

/// Forward and backward of one micro-batch: adds `scale × ∂total/∂θ` for every variable of
/// `vars` into `acc` and returns the unscaled loss sums.
pub fn accumulate_gradients(
    student: &Model,
    batch: &MicroBatch,
    distill: Option<&Distill>,
    staging: Staging,
    scale: f64,
    vars: &[Var],
    acc: &mut [Option<Tensor>],
) -> Result<LossSums> {
    let Some((rows, host_rows, targets)) = loss_rows(batch)? else {
        return Ok(LossSums::default());
    };
    let sparse = match distill.map(|d| &d.teacher) {
        Some(KdTeacher::Logprobs) => sparse_rows(batch, &host_rows)?,
        _ => Vec::new(),
    };
    let context = student
        .batch_context(&batch.inputs, Some(&batch.segments))
        .map_err(model_err)?;

    let checkpoint_activations = staging.checkpoint_activations;
    // Stage 1: the trunk. With checkpointing, only each layer's input is kept (detached).
    let (trunk_out, layer_inputs) = if checkpoint_activations {
        let mut inputs = Vec::with_capacity(student.num_layers());
        let mut x = student.embed(&batch.inputs).map_err(model_err)?.detach();
        for l in 0..student.num_layers() {
            inputs.push(x.clone());
            x = student.layer(l, &x, &context).map_err(model_err)?.detach();
        }
        (x, inputs)
    } else {
        let mut x = student.embed(&batch.inputs).map_err(model_err)?;
        for l in 0..student.num_layers() {
            x = student.layer(l, &x, &context).map_err(model_err)?;
        }
        (x, Vec::new())
    };
    // With checkpointing the final norm's input is a leaf, so its backward stops there.
    let last = checkpoint_activations
        .then(|| leaf(&trunk_out))
        .transpose()?;
    let hidden = student
        .final_norm(last.as_ref().map_or(&trunk_out, |v| v.as_tensor()))
        .map_err(model_err)?;

    // Stage 2: the head and the loss, chunk by chunk, from a leaf copy of the hidden states.
    let hidden_leaf = leaf(&hidden)?;
    let student_rows = select_rows(hidden_leaf.as_tensor(), &rows)?;
    let teacher_rows = match distill.map(|d| &d.teacher) {
        Some(KdTeacher::Model(teacher)) => Some(select_rows(
            &teacher
                .forward_hidden(&batch.inputs, Some(&batch.segments))
                .map_err(model_err)?
                .detach(),
            &rows,
        )?),
        _ => None,
    };
    let mut upstream: Option<Tensor> = None;
    let sums = chunked_loss(
        student,
        &student_rows,
        teacher_rows.as_ref(),
        &sparse,
        &targets,
        distill,
        staging.chunk_logits,
        |total| {
            let grads = (total * scale)?.backward()?;
            accumulate(acc, vars, &grads)?;
            let g = grad_of(&grads, &hidden_leaf, "the hidden states")?;
            match &mut upstream {
                None => upstream = Some(g),
                Some(prev) => add_into(prev, &g)?,
            }
            Ok(())
        },
    )?;
    let Some(upstream) = upstream else {
        return Ok(sums);
    };

    // Stage 3: the trunk against ∂L/∂h.
    let grads = pull_back(&hidden, &upstream)?;
    accumulate(acc, vars, &grads)?;
    if let Some(last) = last {
        let mut upstream = grad_of(&grads, &last, "the last layer's output")?;
        for l in (0..student.num_layers()).rev() {
            let input = leaf(&layer_inputs[l])?;
            let out = student
                .layer(l, input.as_tensor(), &context)
                .map_err(model_err)?;
            let grads = pull_back(&out, &upstream)?;
            accumulate(acc, vars, &grads)?;
            upstream = grad_of(&grads, &input, "a layer's input")?;
        }
        let embedded = student.embed(&batch.inputs).map_err(model_err)?;
        accumulate(acc, vars, &pull_back(&embedded, &upstream)?)?;
    }
    Ok(sums)
}

/// The summed cross-entropy of `batch` without gradients, chunked like training.
pub fn summed_cross_entropy(
    student: &Model,
    batch: &MicroBatch,
    chunk_logits: usize,
) -> Result<f64> {
    let Some((rows, _, targets)) = loss_rows(batch)? else {
        return Ok(0.0);
    };
    let hidden = student
        .forward_hidden(&batch.inputs, Some(&batch.segments))
        .map_err(model_err)?
        .detach();
    let rows = select_rows(&hidden, &rows)?;
    Ok(chunked_loss(
        student,
        &rows,
        None,
        &[],
        &targets,
        None,
        chunk_logits,
        |_| Ok(()),
    )?
    .ce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device};
    use candle_nn::VarBuilder;
    use distillery_model::{Arch, Config, random_varmap};

    use crate::optim::sorted_vars;

    /// A model over random weights (std 0.1) and its variables in the optimiser's order.
    fn tiny_model(cfg: &Config, seed: u64) -> (Model, Vec<Var>) {
        let vm = random_varmap(cfg, seed, 0.1, &Device::Cpu, DType::F32).unwrap();
        let model =
            Model::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let vars = sorted_vars(&vm).into_iter().map(|(_, v)| v).collect();
        (model, vars)
    }

    /// Every variable's accumulated gradient equals the one backward pass's, to 1e-5.
    fn assert_same_gradients(
        reference: &GradStore,
        vars: &[Var],
        acc: &[Option<Tensor>],
        what: &str,
    ) {
        for (var, got) in vars.iter().zip(acc) {
            let want = reference.get(var.as_tensor()).unwrap();
            let got = got.as_ref().expect("every variable gets a gradient");
            let diff = (want - got)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "{what}: gradient differs by {diff}");
        }
    }

    fn batch(device: &Device) -> MicroBatch {
        let inputs =
            Tensor::new(&[[5u32, 9, 3, 44, 2, 8, 7], [1, 2, 3, 4, 5, 6, 0]], device).unwrap();
        let targets =
            Tensor::new(&[[9u32, 3, 44, 2, 8, 7, 1], [2, 3, 4, 5, 6, 0, 0]], device).unwrap();
        let mask = Tensor::new(
            &[
                [0f32, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0],
                [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
            ],
            device,
        )
        .unwrap();
        let segments =
            Tensor::new(&[[1u32, 1, 1, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1, 0]], device).unwrap();
        MicroBatch {
            inputs,
            targets,
            mask,
            segments,
            sparse: Vec::new(),
        }
    }

    /// The loss and every gradient of the staged backward (chunked, with and without
    /// checkpointing, with distillation) equal those of one backward over the whole loss.
    #[test]
    fn staged_backward_matches_one_backward_over_the_whole_loss() {
        let device = Device::Cpu;
        let cfg = Config::tiny(Arch::Llama);
        let (student, vars) = tiny_model(&cfg, 1);
        let (teacher, _) = tiny_model(&cfg, 2);
        let b = batch(&device);
        let distill = Distill {
            teacher: KdTeacher::Model(&teacher),
            alpha: 0.4,
            temperature: 2.0,
        };
        let scale = 0.25;
        for kd in [false, true] {
            let logits = student.forward(&b.inputs, Some(&b.segments)).unwrap();
            let whole = if kd {
                let t = teacher.forward(&b.inputs, Some(&b.segments)).unwrap();
                kd_loss_sum(&logits, &t, &b.targets, &b.mask, 0.4, 2.0)
                    .unwrap()
                    .total
            } else {
                masked_cross_entropy_sum(&logits, &b.targets, &b.mask).unwrap()
            };
            let reference = (&whole * scale).unwrap().backward().unwrap();
            let whole = f64::from(whole.to_scalar::<f32>().unwrap());
            // Two rows per chunk: the loss's 11 rows take six chunks.
            for (checkpoint, chunk_logits) in
                [(false, CHUNK_LOGITS), (true, 2 * 768), (false, 2 * 768)]
            {
                let mut acc = vec![None; vars.len()];
                let staging = Staging {
                    checkpoint_activations: checkpoint,
                    chunk_logits,
                };
                let sums = accumulate_gradients(
                    &student,
                    &b,
                    kd.then_some(&distill),
                    staging,
                    scale,
                    &vars,
                    &mut acc,
                )
                .unwrap();
                assert!(
                    (sums.total - whole).abs() < 1e-4 * whole.abs().max(1.0),
                    "{sums:?} vs {whole}"
                );
                assert_same_gradients(
                    &reference,
                    &vars,
                    &acc,
                    &format!("kd {kd}, checkpoint {checkpoint}"),
                );
            }
        }
        let no_grad = summed_cross_entropy(&student, &b, 3 * 768).unwrap();
        let logits = student.forward(&b.inputs, Some(&b.segments)).unwrap();
        let whole = masked_cross_entropy_sum(&logits, &b.targets, &b.mask)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((no_grad - f64::from(whole)).abs() < 1e-4);
    }

    /// Distillation from stored top-k: the staged, chunked backward gives the loss and the
    /// gradients of one backward over the sparse loss of the whole batch.
    #[test]
    fn staged_sparse_kd_matches_one_backward_over_the_whole_loss() {
        let device = Device::Cpu;
        let cfg = Config::tiny(Arch::Llama);
        let (student, vars) = tiny_model(&cfg, 3);
        let mut b = batch(&device);
        let mask = b.mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Every other loss position carries a top-3 (with a tail); the rest get CE alone.
        b.sparse = (0..mask.len())
            .map(|i| {
                (mask[i] > 0.0 && i % 2 == 0).then(|| SparseTarget {
                    ids: vec![i as u32, 7, 100 + i as u32],
                    logprobs: vec![-0.2, -2.5, -3.0],
                })
            })
            .collect();
        let rows: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] > 0.0).collect();
        let logits = student.forward(&b.inputs, Some(&b.segments)).unwrap();
        let v = logits.dim(D::Minus1).unwrap();
        let idx = Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            rows.len(),
            &device,
        )
        .unwrap();
        let flat = logits
            .reshape(((), v))
            .unwrap()
            .index_select(&idx, 0)
            .unwrap();
        let targets = b
            .targets
            .flatten_all()
            .unwrap()
            .index_select(&idx, 0)
            .unwrap();
        let sparse: Vec<Option<&SparseTarget>> =
            rows.iter().map(|&r| b.sparse[r].as_ref()).collect();
        let whole = sparse_kd_loss_sum(&flat, &targets, &sparse, 0.6, 3.0)
            .unwrap()
            .total;
        let scale = 0.5;
        let reference = (&whole * scale).unwrap().backward().unwrap();
        let whole = f64::from(whole.to_scalar::<f32>().unwrap());
        let distill = Distill {
            teacher: KdTeacher::Logprobs,
            alpha: 0.6,
            temperature: 3.0,
        };
        for (checkpoint, chunk_logits) in [(false, CHUNK_LOGITS), (true, 2 * 768)] {
            let mut acc = vec![None; vars.len()];
            let staging = Staging {
                checkpoint_activations: checkpoint,
                chunk_logits,
            };
            let sums = accumulate_gradients(
                &student,
                &b,
                Some(&distill),
                staging,
                scale,
                &vars,
                &mut acc,
            )
            .unwrap();
            assert!(
                (sums.total - whole).abs() < 1e-4 * whole.abs().max(1.0),
                "{sums:?} vs {whole}"
            );
            assert!(sums.kl > 0.0);
            assert_same_gradients(&reference, &vars, &acc, &format!("checkpoint {checkpoint}"));
        }
    }

    #[test]
    fn cross_entropy_without_gradients_matches() {
        let device = Device::Cpu;
        let cfg = Config::tiny(Arch::Llama);
        let (student, _) = tiny_model(&cfg, 1);
        let b = batch(&device);
        let no_grad = summed_cross_entropy(&student, &b, 3 * 768).unwrap();
        let logits = student.forward(&b.inputs, Some(&b.segments)).unwrap();
        let whole = masked_cross_entropy_sum(&logits, &b.targets, &b.mask)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((no_grad - f64::from(whole)).abs() < 1e-4);
    }
}

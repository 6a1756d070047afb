//! AdamW with savable state, global-norm clipping and the warmup + cosine schedule.
//!
//! candle's `AdamW` keeps its moments private, so a run could not resume exactly; this one
//! stores `m`, `v` and the step count and writes them to safetensors.
//!
//! Mixed precision: a variable held in bf16 (or f16) gets an f32 master copy here. The update
//! is applied to the master and the variable is set to its rounding, so small updates
//! accumulate instead of being rounded away, and the master is saved with the moments.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, InplaceOp3, Layout, Tensor, Var};
use candle_nn::VarMap;
use distillery_model::{cpu_f32, cpu_f32_mut};
use rayon::prelude::*;

use crate::error::{Result, TrainError};

/// AdamW hyper-parameters (the learning rate comes per step from the schedule).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (`θ ← θ·(1 − lr·wd)`), applied to tensors of rank ≥ 2
    /// (projections and embeddings), not to biases and norm weights.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW over named variables, in name order (so every reduction over parameters happens in
/// the same order in every process).
pub struct AdamW {
    names: Vec<String>,
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// f32 copies of the variables that are not f32.
    master: Vec<Option<Tensor>>,
    step: u64,
    pub config: AdamWConfig,
}

impl AdamW {
    /// An optimiser over `named` (sorted by name), with zero moments.
    pub fn new(mut named: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut m = Vec::with_capacity(named.len());
        let mut v = Vec::with_capacity(named.len());
        let mut master = Vec::with_capacity(named.len());
        for (_, var) in &named {
            let z = Tensor::zeros(var.shape(), DType::F32, var.device())?;
            m.push(z.clone());
            v.push(z);
            master.push(if var.dtype() == DType::F32 {
                None
            } else {
                Some(var.as_tensor().to_dtype(DType::F32)?)
            });
        }
        let (names, vars) = named.into_iter().unzip();
        Ok(AdamW {
            names,
            vars,
            m,
            v,
            master,
            step: 0,
            config,
        })
    }

    /// An optimiser over every variable of `varmap`.
    pub fn from_varmap(varmap: &VarMap, config: AdamWConfig) -> Result<Self> {
        let named = sorted_vars(varmap);
        Self::new(named, config)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Optimiser steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr`; `grads[i]` belongs to `vars()[i]` (None: no
    /// gradient, the variable is left alone, though weight decay still counts the step).
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        if grads.len() != self.vars.len() {
            return Err(TrainError::Config {
                field: "grads".into(),
                message: format!(
                    "{} gradients for {} variables",
                    grads.len(),
                    self.vars.len()
                ),
            });
        }
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = lr / bc1;
        for (i, g) in grads.iter().enumerate() {
            let Some(g) = g else { continue };
            let var = &self.vars[i];
            let g = g.to_dtype(DType::F32)?;
            let update = Update {
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                decay: if c.weight_decay != 0.0 && var.rank() >= 2 {
                    1.0 - lr * c.weight_decay
                } else {
                    1.0
                },
                bc2_sqrt,
                step_size,
            };
            if self.master[i].is_none()
                && fused_cpu_update(var.as_tensor(), &g, &self.m[i], &self.v[i], &update)?
            {
                continue;
            }
            let theta = match &self.master[i] {
                Some(master) => master.clone(),
                None => var.as_tensor().to_dtype(DType::F32)?,
            };
            let (theta, m, v) = update.apply(&theta, &g, &self.m[i], &self.v[i])?;
            var.set(&theta.to_dtype(var.dtype())?)?;
            if let Some(master) = &mut self.master[i] {
                *master = theta;
            }
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Writes the moments (`<name>.exp_avg`, `<name>.exp_avg_sq`), the f32 master weights of
    /// variables that are not f32 (`<name>.master`) and the step count (metadata `step`) to a
    /// safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, &Tensor)> = Vec::with_capacity(self.names.len() * 2);
        for (i, name) in self.names.iter().enumerate() {
            tensors.push((format!("{name}.exp_avg"), &self.m[i]));
            tensors.push((format!("{name}.exp_avg_sq"), &self.v[i]));
            if let Some(master) = &self.master[i] {
                tensors.push((format!("{name}.master"), master));
            }
        }
        let mut meta = HashMap::new();
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert(
            "config".to_string(),
            serde_json::to_string(&self.config).expect("config serialises"),
        );
        let tmp = path.with_extension("safetensors.tmp");
        safetensors::tensor::serialize_to_file(tensors, Some(meta), &tmp).map_err(|e| {
            TrainError::OptimizerState {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        std::fs::rename(&tmp, path).map_err(crate::error::io_err(path))?;
        Ok(())
    }

    /// Restores moments and step count written by [`save`](Self::save); every variable must
    /// have its moments with the right shape.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let err = |message: String| TrainError::OptimizerState {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(crate::error::io_err(path))?;
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
        let step = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("step"))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| err("missing metadata `step`".into()))?;
        let device = self
            .vars
            .first()
            .map(|v| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, &device)?;
        for (i, name) in self.names.iter().enumerate() {
            let mut slots = vec![("exp_avg", &mut self.m[i]), ("exp_avg_sq", &mut self.v[i])];
            if let Some(master) = &mut self.master[i] {
                slots.push(("master", master));
            }
            for (suffix, slot) in slots {
                let key = format!("{name}.{suffix}");
                let t = tensors
                    .remove(&key)
                    .ok_or_else(|| err(format!("missing tensor `{key}`")))?;
                if t.dims() != self.vars[i].dims() {
                    return Err(err(format!(
                        "tensor `{key}` has shape {:?}, the model has {:?}",
                        t.dims(),
                        self.vars[i].dims()
                    )));
                }
                *slot = t.to_dtype(DType::F32)?;
            }
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(err(format!("tensor `{extra}` matches no model variable")));
        }
        self.step = step;
        Ok(())
    }
}

/// The constants of one AdamW update of one variable.
struct Update {
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// `1 − lr·wd` for decayed variables, else 1.
    decay: f64,
    bc2_sqrt: f64,
    step_size: f64,
}

impl Update {
    /// `(θ', m', v')` from tensor ops, on any device.
    fn apply(
        &self,
        theta: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let m = ((m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
        let v = ((v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
        let theta = if self.decay != 1.0 {
            (theta * self.decay)?
        } else {
            theta.clone()
        };
        let denom = ((v.sqrt()? / self.bc2_sqrt)? + self.eps)?;
        let theta = (theta - ((&m / denom)? * self.step_size)?)?;
        Ok((theta, m, v))
    }
}

/// [`Update::apply`] for f32 tensors on the CPU, in place: `m` and `v` are updated from `g`,
/// then `θ` from them, each in one pass and without a temporary. Tensor ops allocate about
/// ten temporaries the size of the variable (1.1 GB at once for SmolLM2's embedding), and even
/// a one-pass update that returns new tensors holds three more variables' worth at once.
/// False (nothing done) where it does not apply: another device or dtype, or tensors that
/// share storage.
fn fused_cpu_update(
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &Update,
) -> Result<bool> {
    let all = [theta, g, m, v];
    if all
        .iter()
        .any(|t| !t.device().is_cpu() || t.dtype() != DType::F32 || !t.is_contiguous())
        || shares_storage(theta, m)
        || shares_storage(theta, v)
        || shares_storage(m, v)
        || [theta, m, v].iter().any(|t| shares_storage(t, g))
    {
        return Ok(false);
    }
    let f = |x: f64| x as f32;
    m.inplace_op2(
        g,
        &Moment {
            keep: f(k.beta1),
            take: f(1.0 - k.beta1),
            square: false,
        },
    )?;
    v.inplace_op2(
        g,
        &Moment {
            keep: f(k.beta2),
            take: f(1.0 - k.beta2),
            square: true,
        },
    )?;
    theta.inplace_op3(
        m,
        v,
        &Step {
            decay: f(k.decay),
            inv_bc2: f(1.0 / k.bc2_sqrt),
            eps: f(k.eps),
            step: f(k.step_size),
        },
    )?;
    Ok(true)
}

/// Elements per parallel task of the in-place kernels.
const CHUNK: usize = 1 << 16;

/// `x ← x·keep + g·take` (or `g²·take`): AdamW's moments.
struct Moment {
    keep: f32,
    take: f32,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (x, g) = (
            cpu_f32_mut(s1, l1, self.name())?,
            cpu_f32(s2, l2, self.name())?,
        );
        x.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(x, g)| {
                for (x, &g) in x.iter_mut().zip(g) {
                    *x = *x * self.keep + if self.square { g * g } else { g } * self.take;
                }
            });
        Ok(())
    }
}

/// `θ ← θ·decay − m / (√v / √(1−β₂ᵗ) + ε) · step`.
struct Step {
    decay: f32,
    inv_bc2: f32,
    eps: f32,
    step: f32,
}

impl InplaceOp3 for Step {
    fn name(&self) -> &'static str {
        "adamw-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let theta = cpu_f32_mut(s1, l1, self.name())?;
        let (m, v) = (cpu_f32(s2, l2, self.name())?, cpu_f32(s3, l3, self.name())?);
        theta
            .par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(t, (m, v))| {
                for ((t, &m), &v) in t.iter_mut().zip(m).zip(v) {
                    *t = *t * self.decay - m / (v.sqrt() * self.inv_bc2 + self.eps) * self.step;
                }
            });
        Ok(())
    }
}

/// `x ← x + y`.
struct AddAssign;

impl InplaceOp2 for AddAssign {
    fn name(&self) -> &'static str {
        "add-assign"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (x, y) = (
            cpu_f32_mut(s1, l1, self.name())?,
            cpu_f32(s2, l2, self.name())?,
        );
        x.par_chunks_mut(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, &y)| *x += y));
        Ok(())
    }
}

/// `x ← x · s`.
struct ScaleAssign(f32);

impl InplaceOp1 for ScaleAssign {
    fn name(&self) -> &'static str {
        "scale-assign"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout) -> candle_core::Result<()> {
        cpu_f32_mut(s1, l1, self.name())?
            .par_chunks_mut(CHUNK)
            .for_each(|x| x.iter_mut().for_each(|x| *x *= self.0));
        Ok(())
    }
}

/// Whether `a` and `b` are views of one buffer.
fn shares_storage(a: &Tensor, b: &Tensor) -> bool {
    // One lock at a time: the address of the storage behind it is what is compared.
    let address = |t: &Tensor| {
        let (storage, _) = t.storage_and_layout();
        std::ptr::from_ref(&*storage).addr()
    };
    address(a) == address(b)
}

/// Whether `x` may be written in place: f32, contiguous, on the CPU.
fn writable(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous()
}

/// `acc ← acc + g` (a gradient accumulator that nothing else reads), in place on the CPU in
/// f32, so a step never holds a second copy of a variable's gradient.
pub(crate) fn add_into(acc: &mut Tensor, g: &Tensor) -> Result<()> {
    if writable(acc) && writable(g) && acc.shape() == g.shape() && !shares_storage(acc, g) {
        acc.inplace_op2(g, &AddAssign)?;
    } else {
        *acc = (&*acc + g)?;
    }
    Ok(())
}

/// Every variable of `varmap` with its name, sorted by name.
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut named: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// The global L2 norm of `grads`, accumulated in f64 in order.
pub fn global_norm(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.iter().flatten() {
        let s = g
            .to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()?;
        total += f64::from(s);
    }
    Ok(total.sqrt())
}

/// Scales `grads` so their global norm is at most `max_norm` (like
/// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut().flatten() {
            if writable(g) {
                g.inplace_op1(&ScaleAssign(scale as f32))?;
            } else {
                *g = (&*g * scale)?;
            }
        }
    }
    Ok(norm)
}

/// Linear warmup to `base_lr` over `warmup_steps`, then cosine decay to
/// `base_lr·min_lr_ratio` at `total_steps` (as transformers'
/// `get_cosine_schedule_with_warmup`, except that the first warmup step already has a
/// non-zero rate: step `s < warmup` gets `base·(s+1)/warmup`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// The learning rate of optimiser step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.base_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn var(name: &str, data: &[f32], shape: &[usize]) -> (String, Var) {
        let t = Tensor::from_vec(data.to_vec(), shape, &Device::Cpu).unwrap();
        (name.to_string(), Var::from_tensor(&t).unwrap())
    }

    fn vec1(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn the_fused_cpu_update_equals_the_tensor_ops() {
        let n = 70_001; // more than one parallel chunk, not a multiple of one
        let data = |seed: u32| -> Tensor {
            let v: Vec<f32> = (0..n as u32)
                .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2000) as f32 / 1000.0 - 1.0)
                .collect();
            Tensor::from_vec(v, n, &Device::Cpu).unwrap()
        };
        let (theta, g, m) = (data(1), data(2), data(3));
        let v = data(4).sqr().unwrap();
        let k = Update {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            decay: 1.0 - 1e-3 * 0.1,
            bc2_sqrt: (1.0f64 - 0.95f64.powi(3)).sqrt(),
            step_size: 1e-3 / (1.0 - 0.9f64.powi(3)),
        };
        let fused = (
            theta.copy().unwrap(),
            g.copy().unwrap(),
            m.copy().unwrap(),
            v.copy().unwrap(),
        );
        assert!(fused_cpu_update(&fused.0, &fused.1, &fused.2, &fused.3, &k).unwrap());
        let fused = (fused.0, fused.2, fused.3);
        let ops = k.apply(&theta, &g, &m, &v).unwrap();
        for (a, b) in [(&fused.0, &ops.0), (&fused.1, &ops.1), (&fused.2, &ops.2)] {
            let (a, b) = (vec1(a), vec1(b));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs() / y.abs().max(1e-6))
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "relative difference {worst}");
        }
        let bf16 = theta.to_dtype(DType::BF16).unwrap();
        assert!(!fused_cpu_update(&bf16, &g, &m, &v, &k).unwrap());
        // Shared storage is never written in place.
        assert!(!fused_cpu_update(&theta, &g, &theta, &v, &k).unwrap());
    }

    #[test]
    fn bf16_variables_keep_f32_master_weights_that_survive_save_and_load() {
        // At 1.0 a bf16 step is 2^-7; updates of 1e-4 round away unless an f32 master
        // accumulates them.
        let bf16 = |x: f32| {
            let t = Tensor::new(&[x], &Device::Cpu).unwrap();
            Var::from_tensor(&t.to_dtype(DType::BF16).unwrap()).unwrap()
        };
        let grad = Some(Tensor::new(&[1f32], &Device::Cpu).unwrap());
        let mut opt = AdamW::new(vec![("w".into(), bf16(1.0))], AdamWConfig::default()).unwrap();
        for _ in 0..100 {
            opt.step(std::slice::from_ref(&grad), 1e-4).unwrap();
        }
        let w = opt.vars()[0].to_dtype(DType::F32).unwrap();
        let master = opt.master[0].clone().unwrap();
        close(f64::from(vec1(&master)[0]), 0.99, 1e-4);
        assert_eq!(opt.vars()[0].dtype(), DType::BF16);
        close(f64::from(vec1(&w)[0]), 0.99, 2f64.powi(-8));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt.safetensors");
        opt.save(&path).unwrap();
        let mut resumed = AdamW::new(
            vec![("w".into(), bf16(vec1(&w)[0]))],
            AdamWConfig::default(),
        )
        .unwrap();
        resumed.load(&path).unwrap();
        assert_eq!(vec1(resumed.master[0].as_ref().unwrap()), vec1(&master));
        opt.step(std::slice::from_ref(&grad), 1e-4).unwrap();
        resumed.step(std::slice::from_ref(&grad), 1e-4).unwrap();
        assert_eq!(
            vec1(opt.master[0].as_ref().unwrap()),
            vec1(resumed.master[0].as_ref().unwrap())
        );
    }

    #[test]
    fn adamw_steps_match_hand_computed_updates() {
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(
            vec![
                var("w", &[1.0, -2.0, 0.5, 3.0], &[2, 2]),
                var("b", &[0.5, -0.5], &[2]),
            ],
            cfg,
        )
        .unwrap();
        // Sorted by name: b, w.
        assert_eq!(opt.names(), ["b", "w"]);
        let gw = [0.1f64, -0.2, 0.0, 0.4];
        let gb = [1.0f64, -1.0];
        let g = |d: &[f64], s: &[usize]| {
            Some(
                Tensor::from_vec(
                    d.iter().map(|x| *x as f32).collect::<Vec<_>>(),
                    s,
                    &Device::Cpu,
                )
                .unwrap(),
            )
        };
        let lr = 0.01;
        opt.step(&[g(&gb, &[2]), g(&gw, &[2, 2])], lr).unwrap();
        // Step 1: m̂ = g, v̂ = g², so the Adam update is lr·g/(|g| + eps) = ±lr (0 where g = 0).
        // w (rank 2) also decays: w·(1 − lr·wd).
        let w0 = [1.0f64, -2.0, 0.5, 3.0];
        let want_w: Vec<f64> = w0
            .iter()
            .zip(gw)
            .map(|(w, g)| w * (1.0 - lr * 0.1) - lr * g / (g.abs() + 1e-8))
            .collect();
        for (a, b) in vec1(opt.vars()[1].as_tensor()).iter().zip(&want_w) {
            close(f64::from(*a), *b, 1e-6);
        }
        // Biases do not decay.
        for (a, b) in vec1(opt.vars()[0].as_tensor()).iter().zip([0.49, -0.49]) {
            close(f64::from(*a), b, 1e-6);
        }
        // Step 2 with the same gradient, written out in full.
        opt.step(&[g(&gb, &[2]), g(&gw, &[2, 2])], lr).unwrap();
        let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
        for (i, gi) in gb.iter().enumerate() {
            let m1 = (1.0 - b1) * gi;
            let v1 = (1.0 - b2) * gi * gi;
            let m2 = b1 * m1 + (1.0 - b1) * gi;
            let v2 = b2 * v1 + (1.0 - b2) * gi * gi;
            let mhat = m2 / (1.0 - b1 * b1);
            let vhat = v2 / (1.0 - b2 * b2);
            let p1 = [0.5, -0.5][i] - lr * gi.signum();
            let want = p1 - lr * mhat / (vhat.sqrt() + eps);
            close(f64::from(vec1(opt.vars()[0].as_tensor())[i]), want, 1e-6);
        }
        assert_eq!(opt.step_count(), 2);
    }

    #[test]
    fn optimizer_state_round_trips_through_safetensors() {
        let mk = || {
            AdamW::new(
                vec![
                    var("a.weight", &[1.0, 2.0, 3.0, 4.0], &[2, 2]),
                    var("a.bias", &[0.0, 1.0], &[2]),
                ],
                AdamWConfig::default(),
            )
            .unwrap()
        };
        let mut a = mk();
        let grads = vec![
            Some(Tensor::new(&[0.3f32, -0.1], &Device::Cpu).unwrap()),
            Some(Tensor::new(&[[0.2f32, 0.1], [-0.5, 0.7]], &Device::Cpu).unwrap()),
        ];
        a.step(&grads, 0.1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        a.save(&path).unwrap();
        let mut b = mk();
        // Same weights as `a` before its second step.
        for (vb, va) in b.vars().iter().zip(a.vars()) {
            vb.set(va.as_tensor()).unwrap();
        }
        b.load(&path).unwrap();
        assert_eq!(b.step_count(), 1);
        a.step(&grads, 0.1).unwrap();
        b.step(&grads, 0.1).unwrap();
        for (va, vb) in a.vars().iter().zip(b.vars()) {
            assert_eq!(vec1(va.as_tensor()), vec1(vb.as_tensor()));
        }
        // A state for a different model is refused, naming the file and tensor.
        let mut c = AdamW::new(vec![var("other", &[1.0], &[1])], AdamWConfig::default()).unwrap();
        let err = c.load(&path).unwrap_err().to_string();
        assert!(
            err.contains("optimizer.safetensors") && err.contains("other.exp_avg"),
            "{err}"
        );
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        let mut grads = vec![
            Some(Tensor::new(&[3f32, 0.0], &Device::Cpu).unwrap()),
            None,
            Some(Tensor::new(&[[0f32, 4.0]], &Device::Cpu).unwrap()),
        ];
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        close(norm, 5.0, 1e-9);
        close(global_norm(&grads).unwrap(), 1.0, 1e-5);
        assert!((vec1(grads[0].as_ref().unwrap())[0] - 0.6).abs() < 1e-5);
        let norm = clip_grad_norm(&mut grads, 10.0).unwrap();
        close(norm, 1.0, 1e-5);
        close(global_norm(&grads).unwrap(), 1.0, 1e-5);
    }

    #[test]
    fn warmup_then_cosine_schedule_values() {
        let s = LrSchedule {
            base_lr: 1e-3,
            warmup_steps: 4,
            total_steps: 14,
            min_lr_ratio: 0.1,
        };
        close(s.lr_at(0), 0.25e-3, 1e-15);
        close(s.lr_at(3), 1e-3, 1e-15);
        close(s.lr_at(4), 1e-3, 1e-15);
        // Halfway through the decay: cos(π/2) = 0 → min + (base − min)/2.
        close(s.lr_at(9), 1e-4 + 0.9e-3 * 0.5, 1e-12);
        close(s.lr_at(14), 1e-4, 1e-15);
        close(s.lr_at(100), 1e-4, 1e-15);
        let mut prev = f64::INFINITY;
        for step in 4..14 {
            assert!(s.lr_at(step) <= prev);
            prev = s.lr_at(step);
        }
        let no_warmup = LrSchedule {
            base_lr: 2.0,
            warmup_steps: 0,
            total_steps: 4,
            min_lr_ratio: 0.0,
        };
        close(no_warmup.lr_at(0), 2.0, 1e-12);
        close(no_warmup.lr_at(2), 1.0, 1e-12);
    }
}

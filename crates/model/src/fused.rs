//! Fused CPU kernels, each with its own backward pass, for the f32 training path.
//!
//! Built from basic ops, attention, a linear layer, an RMS norm, rope or SwiGLU is a chain of
//! ops that each allocate their output and read and write the whole tensor, and as many again
//! in the backward pass (plus a zero-filled gradient buffer for each). Here each is one op with
//! its own backward pass ([`attention`] and [`linear`] in their modules). The basic-op versions
//! in `model.rs` remain for other devices and dtypes; [`applies`] says when these are used, and
//! the tests compare both, values and gradients.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;

use crate::vector_math;

/// Rows handed to one rayon task: big enough that scheduling is noise, fixed so that
/// reductions over rows add in the same order whatever the thread count.
const ROWS_PER_TASK: usize = 64;

mod attention;
mod gemm;
mod linear;

pub(crate) use attention::attention;
pub(crate) use linear::{linear, linear_fits};

/// Whether the fused kernels serve `x`: f32 on the CPU.
pub(crate) fn applies(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The f32 data of a contiguous CPU tensor, for the CPU kernels of custom ops (these and
/// `distillery-train`'s); `op` names the op in the error.
pub fn cpu_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: f32 only")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: contiguous input only"),
    }
}

/// [`cpu_f32`] of a tensor updated in place.
pub fn cpu_f32_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: f32 only")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => bail!("{op}: contiguous input only"),
    }
}

/// Whether [`attention`] takes this mask for `t` queries of `b` rows over `s` keys.
pub(crate) fn mask_fits(mask: &Tensor, b: usize, t: usize, s: usize) -> bool {
    matches!(mask.dims(), &[mb, 1, mt, ms] if (mb == 1 || mb == b) && mt == t && ms == s)
        && mask.dtype() == DType::F32
}

// ---------------------------------------------------------------------------------------------
// RMS norm.

/// `x / sqrt(mean(x²) + eps) · weight` over the last dimension; `weight` is `[h]`.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let x = x.contiguous()?;
    x.apply_op2(weight, RmsNorm { eps: eps as f32 })
}

struct RmsNorm {
    eps: f32,
}

fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (ms + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s1, l1, self.name())?;
        let w = cpu_f32(s2, l2, self.name())?;
        let h = w.len();
        if l1.shape().dims().last() != Some(&h) {
            bail!(
                "rms-norm: weight {:?} for input {:?}",
                l2.shape(),
                l1.shape()
            )
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, rows)| {
                for (k, y) in rows.chunks_mut(h).enumerate() {
                    let xr = &x[(task * ROWS_PER_TASK + k) * h..][..h];
                    let r = inv_rms(xr, self.eps);
                    for ((y, &x), &w) in y.iter_mut().zip(xr).zip(w) {
                        *y = x * r * w;
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let both = x.apply_op3_no_bwd(weight, &grad, &RmsNormGrad { eps: self.eps })?;
        let h = weight.elem_count();
        let rows = x.elem_count() / h;
        let dx = both.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = both.narrow(0, rows, 1)?.reshape(weight.shape())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// The gradients of [`RmsNorm`] as one `[rows + 1, h]` tensor: `∂x` row by row, then `∂w`.
struct RmsNormGrad {
    eps: f32,
}

impl CustomOp3 for RmsNormGrad {
    fn name(&self) -> &'static str {
        "rms-norm-grad"
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
        let x = cpu_f32(s1, l1, self.name())?;
        let w = cpu_f32(s2, l2, self.name())?;
        let g = cpu_f32(s3, l3, self.name())?;
        let h = w.len();
        let rows = x.len() / h;
        let mut out = vec![0f32; x.len() + h];
        let (dx, dw) = out.split_at_mut(x.len());
        // Each task returns its rows' share of ∂w; the shares are added in task order.
        let partial: Vec<Vec<f32>> = dx
            .par_chunks_mut(h * ROWS_PER_TASK)
            .enumerate()
            .map(|(task, rows)| {
                let mut dw = vec![0f32; h];
                for (k, d) in rows.chunks_mut(h).enumerate() {
                    let at = (task * ROWS_PER_TASK + k) * h;
                    let (xr, gr) = (&x[at..][..h], &g[at..][..h]);
                    let r = inv_rms(xr, self.eps);
                    let mut dot = 0f32;
                    for ((&x, &g), (&w, dw)) in xr.iter().zip(gr).zip(w.iter().zip(&mut dw)) {
                        dot += g * w * x;
                        *dw += g * x * r;
                    }
                    let c = r * r * r * dot / h as f32;
                    for (((d, &x), &g), &w) in d.iter_mut().zip(xr).zip(gr).zip(w) {
                        *d = r * g * w - x * c;
                    }
                }
                dw
            })
            .collect();
        for p in partial {
            for (a, b) in dw.iter_mut().zip(p) {
                *a += b;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 1, h))))
    }
}

// ---------------------------------------------------------------------------------------------
// Rope, fused with the split into heads.

/// HF "rotate half" rope of the projection `x` (`b·t` tokens of `heads·hd` features), returned
/// as heads `[b, heads, t, hd]` (contiguous): the split, transpose and rope in one pass. `cos`
/// and `sin` are `[1 | b, 1, t, hd]`.
pub(crate) fn rope_heads(
    x: &Tensor,
    (b, t): (usize, usize),
    cos: &Tensor,
    sin: &Tensor,
    heads: usize,
) -> Result<Tensor> {
    let x = x.contiguous()?;
    let (cos, sin) = (cos.contiguous()?, sin.contiguous()?);
    x.apply_op3(&cos, &sin, RopeHeads { b, t, heads })
}

/// `x` (`b·t` tokens of `heads·hd` features) as heads `[b, heads, t, hd]`, in one copy.
pub(crate) fn split_heads(x: &Tensor, (b, t): (usize, usize), heads: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Permute {
        b,
        t,
        heads,
        to_heads: true,
    })
}

/// The copy between token-major `[b, t, heads, hd]` and head-major `[b, heads, t, hd]`.
struct Permute {
    b: usize,
    t: usize,
    heads: usize,
    to_heads: bool,
}

impl Permute {
    fn dims(&self, x: &Layout) -> Result<RopeDims> {
        let n = x.shape().elem_count();
        let per_head = self.b * self.t * self.heads;
        if per_head == 0 || !n.is_multiple_of(per_head) {
            bail!("permute-heads: {:?} for {per_head} head rows", x.shape())
        }
        Ok(RopeDims {
            b: self.b,
            t: self.t,
            heads: self.heads,
            hd: n / per_head,
            cb: 1,
        })
    }
}

impl CustomOp1 for Permute {
    fn name(&self) -> &'static str {
        "permute-heads"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = self.dims(layout)?;
        let x = cpu_f32(storage, layout, self.name())?;
        let out = rope_pass(x, None, &d, false, self.to_heads);
        let shape = if self.to_heads {
            Shape::from((d.b, d.heads, d.t, d.hd))
        } else {
            Shape::from((d.b * d.t, d.heads * d.hd))
        };
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let back = Permute {
            to_heads: !self.to_heads,
            ..*self
        };
        Ok(Some(
            grad.contiguous()?
                .apply_op1_no_bwd(&back)?
                .reshape(arg.shape())?,
        ))
    }
}

/// Whether [`rope_heads`] takes these tables for `x` `[b, t, _]`.
pub(crate) fn rope_fits(cos: &Tensor, b: usize, t: usize, hd: usize) -> bool {
    matches!(cos.dims(), &[cb, 1, ct, chd] if (cb == 1 || cb == b) && ct == t && chd == hd)
        && cos.dtype() == DType::F32
        && hd.is_multiple_of(2)
}

#[derive(Clone, Copy)]
struct RopeHeads {
    b: usize,
    t: usize,
    heads: usize,
}

/// The geometry of a rope op: `[b, t, heads, hd]` positions, tables with `cb` rows.
struct RopeDims {
    b: usize,
    t: usize,
    heads: usize,
    hd: usize,
    cb: usize,
}

impl RopeDims {
    /// The table row of position `i` of batch row `bi`.
    fn table(&self, bi: usize, i: usize) -> usize {
        ((if self.cb == 1 { 0 } else { bi }) * self.t + i) * self.hd
    }
}

/// Rope (or, with `inverse`, its transpose) between the token-major layout `[b, t, heads, hd]`
/// and the head-major `[b, heads, t, hd]`; `to_heads` says which way the data go.
fn rope_pass(
    src: &[f32],
    tables: Option<(&[f32], &[f32])>,
    d: &RopeDims,
    inverse: bool,
    to_heads: bool,
) -> Vec<f32> {
    let (t, heads, hd) = (d.t, d.heads, d.hd);
    let half = hd / 2;
    let mut out = vec![0f32; src.len()];
    // One task per (batch row, head): `hd·t` outputs, contiguous in head-major order.
    let job = |bh: usize, dst: &mut dyn FnMut(usize, &[f32])| {
        let (bi, head) = (bh / heads, bh % heads);
        let mut row = vec![0f32; hd];
        for i in 0..t {
            let at_tokens = ((bi * t + i) * heads + head) * hd;
            let at_heads = ((bi * heads + head) * t + i) * hd;
            let x = &src[if to_heads { at_tokens } else { at_heads }..][..hd];
            let Some((cos, sin)) = tables else {
                dst(if to_heads { at_heads } else { at_tokens }, x);
                continue;
            };
            let c = &cos[d.table(bi, i)..][..hd];
            let s = &sin[d.table(bi, i)..][..hd];
            for j in 0..half {
                let (x1, x2) = (x[j], x[j + half]);
                if inverse {
                    row[j] = x1 * c[j] + x2 * s[j + half];
                    row[j + half] = x2 * c[j + half] - x1 * s[j];
                } else {
                    row[j] = x1 * c[j] - x2 * s[j];
                    row[j + half] = x2 * c[j + half] + x1 * s[j + half];
                }
            }
            dst(if to_heads { at_heads } else { at_tokens }, &row);
        }
    };
    if to_heads {
        out.par_chunks_mut(t * hd).enumerate().for_each(|(bh, o)| {
            let base = bh * t * hd;
            job(bh, &mut |at, row| o[at - base..][..hd].copy_from_slice(row));
        });
    } else {
        // Head-major in, token-major out: a batch row's outputs are one contiguous block.
        out.par_chunks_mut(t * heads * hd)
            .enumerate()
            .for_each(|(bi, o)| {
                let base = bi * t * heads * hd;
                for head in 0..heads {
                    job(bi * heads + head, &mut |at, row| {
                        o[at - base..][..hd].copy_from_slice(row)
                    });
                }
            });
    }
    out
}

fn rope_dims(op: RopeHeads, x: &Layout, cos: &Layout) -> Result<RopeDims> {
    let mut d = Permute {
        b: op.b,
        t: op.t,
        heads: op.heads,
        to_heads: true,
    }
    .dims(x)?;
    d.cb = cos.shape().dims()[0];
    if cos.shape().elem_count() != d.cb * d.t * d.hd || !d.hd.is_multiple_of(2) {
        bail!("rope: tables {:?} for input {:?}", cos.shape(), x.shape())
    }
    Ok(d)
}

impl CustomOp3 for RopeHeads {
    fn name(&self) -> &'static str {
        "rope-heads"
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
        let d = rope_dims(*self, l1, l2)?;
        let x = cpu_f32(s1, l1, self.name())?;
        let (cos, sin) = (cpu_f32(s2, l2, self.name())?, cpu_f32(s3, l3, self.name())?);
        let out = rope_pass(x, Some((cos, sin)), &d, false, true);
        Ok((CpuStorage::F32(out), Shape::from((d.b, d.heads, d.t, d.hd))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad
            .apply_op3_no_bwd(cos, sin, &RopeHeadsGrad(*self))?
            .reshape(x.shape())?;
        Ok((Some(dx), None, None))
    }
}

/// The transpose of [`RopeHeads`]: `[b, heads, t, hd]` gradients back to `[b, t, heads·hd]`.
struct RopeHeadsGrad(RopeHeads);

impl CustomOp3 for RopeHeadsGrad {
    fn name(&self) -> &'static str {
        "rope-heads-grad"
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
        let d = rope_dims(self.0, l1, l2)?;
        let g = cpu_f32(s1, l1, self.name())?;
        let (cos, sin) = (cpu_f32(s2, l2, self.name())?, cpu_f32(s3, l3, self.name())?);
        let out = rope_pass(g, Some((cos, sin)), &d, true, false);
        Ok((
            CpuStorage::F32(out),
            Shape::from((d.b, d.t, d.heads * d.hd)),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU.

/// `silu(gate) ⊙ up`.
pub(crate) fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let (gate, up) = (gate.contiguous()?, up.contiguous()?);
    gate.apply_op2(&up, SiluMul)
}

struct SiluMul;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + vector_math::exp(-x))
}

/// Elements per rayon task of the elementwise ops.
const ELEMS_PER_TASK: usize = 16 * 1024;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = cpu_f32(s1, l1, self.name())?;
        let u = cpu_f32(s2, l2, self.name())?;
        if l1.shape() != l2.shape() {
            bail!("silu-mul: {:?} and {:?}", l1.shape(), l2.shape())
        }
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(ELEMS_PER_TASK)
            .enumerate()
            .for_each(|(task, o)| {
                let at = task * ELEMS_PER_TASK;
                for ((o, &g), &u) in o.iter_mut().zip(&g[at..]).zip(&u[at..]) {
                    *o = g / (1.0 + vector_math::exp(-g)) * u;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let both = gate.apply_op3_no_bwd(up, &grad, &SiluMulGrad)?;
        let n = gate.elem_count();
        let dgate = both.narrow(0, 0, n)?.reshape(gate.shape())?;
        let dup = both.narrow(0, n, n)?.reshape(up.shape())?;
        Ok((Some(dgate), Some(dup)))
    }
}

/// The gradients of [`SiluMul`] as one `[2·n]` tensor: `∂gate`, then `∂up`.
struct SiluMulGrad;

impl CustomOp3 for SiluMulGrad {
    fn name(&self) -> &'static str {
        "silu-mul-grad"
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
        let gate = cpu_f32(s1, l1, self.name())?;
        let up = cpu_f32(s2, l2, self.name())?;
        let grad = cpu_f32(s3, l3, self.name())?;
        let n = gate.len();
        let mut out = vec![0f32; 2 * n];
        let (dgate, dup) = out.split_at_mut(n);
        dgate
            .par_chunks_mut(ELEMS_PER_TASK)
            .zip(dup.par_chunks_mut(ELEMS_PER_TASK))
            .enumerate()
            .for_each(|(task, (dg, du))| {
                let at = task * ELEMS_PER_TASK;
                let it = gate[at..].iter().zip(&up[at..]).zip(&grad[at..]);
                for ((dg, du), ((&x, &u), &g)) in dg.iter_mut().zip(du.iter_mut()).zip(it) {
                    let s = sigmoid(x);
                    *du = g * x * s;
                    *dg = g * u * s * (1.0 + x * (1.0 - s));
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::max_abs_diff;
    use candle_core::{D, Device, Var};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The fused op and the basic-op reference give the same values, and the same gradients
    /// of `Σ out ⊙ r` (r random) for every input in `vars`.
    fn same(
        vars: &[Var],
        fused: impl Fn(&[Tensor]) -> Tensor,
        reference: impl Fn(&[Tensor]) -> Tensor,
        what: &str,
    ) {
        let inputs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (fused(&inputs), reference(&inputs));
        assert_eq!(a.dims(), b.dims(), "{what}");
        let d = max_abs_diff(&a, &b);
        assert!(d < 1e-5, "{what}: values differ by {d}");
        let r = random(a.dims(), 99);
        let ga = (&a * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, v) in vars.iter().enumerate() {
            let (x, y) = (ga.get(v.as_tensor()), gb.get(v.as_tensor()));
            let (x, y) = (x.expect("fused gradient"), y.expect("reference gradient"));
            let d = max_abs_diff(x, y);
            let scale = max_abs_diff(y, &y.zeros_like().unwrap()).max(1.0);
            assert!(
                d < 2e-5 * scale,
                "{what}: gradient of input {i} differs by {d}"
            );
        }
    }

    #[test]
    fn linear_matches_basic_ops() {
        // Sizes that are not multiples of gemm's register blocks, and enough rows that the
        // gemm splits its work.
        let (rows, inp, out) = (259, 37, 71);
        let x = Var::from_tensor(&random(&[rows, inp], 14)).unwrap();
        let w = Var::from_tensor(&random(&[out, inp], 15)).unwrap();
        let b = Var::from_tensor(&random(&[out], 16)).unwrap();
        same(
            &[x.clone(), w.clone(), b],
            |v| linear(&v[0], &v[1], Some(&v[2])).unwrap(),
            |v| {
                v[0].matmul(&v[1].t().unwrap())
                    .unwrap()
                    .broadcast_add(&v[2])
                    .unwrap()
            },
            "linear with bias",
        );
        same(
            &[x, w],
            |v| linear(&v[0], &v[1], None).unwrap(),
            |v| v[0].matmul(&v[1].t().unwrap()).unwrap(),
            "linear",
        );
    }

    /// `[b, g, n·t, hd]` grouped query heads against basic ops: repeated k/v, the full score
    /// matrix, softmax, and the merge back to token rows.
    fn attention_reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Tensor,
        n: usize,
        scale: f64,
    ) -> Tensor {
        let (b, g, nt, hd) = q.dims4().unwrap();
        let t = nt / n;
        let q = q.reshape((b, g * n, t, hd)).unwrap();
        let k = crate::model::repeat_kv(k.clone(), n).unwrap();
        let v = crate::model::repeat_kv(v.clone(), n).unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(mask)
            .unwrap();
        crate::model::softmax_last_dim(&scores)
            .unwrap()
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b * t, g * n * hd))
            .unwrap()
    }

    fn mask_from(
        mb: usize,
        t: usize,
        s: usize,
        open: impl Fn(usize, usize, usize) -> bool,
    ) -> Tensor {
        let mask: Vec<f32> = (0..mb * t * s)
            .map(|k| {
                let (bi, i, j) = (k / (t * s), (k / s) % t, k % s);
                if open(bi, i, j) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        Tensor::from_vec(mask, (mb, 1, t, s), &Device::Cpu).unwrap()
    }

    #[test]
    fn attention_matches_basic_ops() {
        // Rows over more than one block (with a partial last one), grouped heads, and masks:
        // causal over packed segments per batch row, with a hole inside a row's span; shared
        // causal with a prefix of cached keys (s > t); and every key open.
        let (b, g, n, t, hd) = (2, 2, 3, 70, 8);
        let packed = mask_from(b, t, t, |bi, i, j| {
            let seg = |x: usize| if bi == 0 { x / 30 } else { x / 50 };
            j <= i && seg(i) == seg(j) && !(i == 40 && j == 35)
        });
        let prefix = 5;
        let cached = mask_from(1, t, t + prefix, |_, i, j| j <= i + prefix);
        let open = mask_from(1, t, t, |_, _, _| true);
        for (mask, what) in [(packed, "packed"), (cached, "cached keys"), (open, "open")] {
            let s = mask.dim(3).unwrap();
            let q = Var::from_tensor(&random(&[b, g, n * t, hd], 21)).unwrap();
            let k = Var::from_tensor(&random(&[b, g, s, hd], 22)).unwrap();
            let v = Var::from_tensor(&random(&[b, g, s, hd], 23)).unwrap();
            same(
                &[q, k, v],
                |x| attention(&x[0], &x[1], &x[2], &mask, 0.4).unwrap(),
                |x| attention_reference(&x[0], &x[1], &x[2], &mask, n, 0.4),
                &format!("attention, {what} mask"),
            );
        }
    }

    #[test]
    fn attention_of_a_row_that_sees_nothing_is_zero() {
        let (t, hd) = (4, 2);
        let mask = mask_from(1, t, t, |_, i, j| i != 2 && j <= i);
        let q = Var::from_tensor(&random(&[1, 1, t, hd], 31)).unwrap();
        let k = random(&[1, 1, t, hd], 32);
        let out = attention(q.as_tensor(), &k, &k, &mask, 1.0).unwrap();
        let rows = out.to_vec2::<f32>().unwrap();
        assert_eq!(rows[2], vec![0.0; hd]);
        assert!(rows[3].iter().all(|v| v.is_finite() && *v != 0.0));
        let grad = out.sum_all().unwrap().backward().unwrap();
        let dq = grad.get(q.as_tensor()).unwrap().flatten_all().unwrap();
        assert!(dq.to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn split_heads_matches_reshape_and_transpose() {
        let (b, t, heads, hd) = (3, 5, 4, 6);
        let x = Var::from_tensor(&random(&[b * t, heads * hd], 12)).unwrap();
        same(
            std::slice::from_ref(&x),
            |v| split_heads(&v[0], (b, t), heads).unwrap(),
            |v| {
                v[0].reshape((b, t, heads, hd))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap()
            },
            "split heads",
        );
    }

    #[test]
    fn rms_norm_matches_basic_ops() {
        let x = Var::from_tensor(&random(&[3, 130, 48], 2)).unwrap();
        let w = Var::from_tensor(&random(&[48], 3)).unwrap();
        let eps = 1e-6;
        same(
            &[x, w],
            |v| rms_norm(&v[0], &v[1], eps).unwrap(),
            |v| {
                let ms = v[0].sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                let denom = (ms + eps).unwrap().sqrt().unwrap();
                v[0].broadcast_div(&denom)
                    .unwrap()
                    .broadcast_mul(&v[1])
                    .unwrap()
            },
            "rms norm",
        );
    }

    #[test]
    fn rope_heads_matches_basic_ops() {
        let (b, t, heads, hd) = (2, 9, 3, 8);
        let x = Var::from_tensor(&random(&[b, t, heads * hd], 4)).unwrap();
        for cb in [1, b] {
            let cos = random(&[cb, 1, t, hd], 5);
            let sin = random(&[cb, 1, t, hd], 6);
            same(
                std::slice::from_ref(&x),
                |v| rope_heads(&v[0], (b, t), &cos, &sin, heads).unwrap(),
                |v| {
                    let x = v[0]
                        .reshape((b, t, heads, hd))
                        .unwrap()
                        .transpose(1, 2)
                        .unwrap()
                        .contiguous()
                        .unwrap();
                    crate::model::apply_rope(&x, &cos, &sin).unwrap()
                },
                &format!("rope, table batch {cb}"),
            );
        }
    }

    #[test]
    fn silu_mul_matches_basic_ops() {
        let gate = Var::from_tensor(&random(&[5, 40_000], 7)).unwrap();
        let up = Var::from_tensor(&random(&[5, 40_000], 8)).unwrap();
        same(
            &[gate, up],
            |v| silu_mul(&v[0], &v[1]).unwrap(),
            |v| (v[0].silu().unwrap() * &v[1]).unwrap(),
            "silu mul",
        );
    }
}

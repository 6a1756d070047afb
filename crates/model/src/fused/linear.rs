//! Linear layers, `x · wᵀ + b`, as one gemm forward and two backward, calling gemm directly.
//!
//! As basic ops a linear layer is a transposed view of `w`, a matmul into a zero-filled output
//! and a broadcast add; their backward pass copies the transposed gradient, reduces the
//! broadcast and zero-fills a buffer for each. Here the forward pass reads `w` in place and
//! starts the gemm from the bias, and the backward pass writes `∂x`, `∂w` and `∂b` straight
//! into one buffer. Outputs are not zero-filled before gemm overwrites them: that is the unsafe
//! code here, each block with the reason it is sound.

#![allow(unsafe_code)]

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::gemm::{Operand, Threads, filled, gemm_raw};
use super::{applies, cpu_f32};

/// `x · wᵀ + b` for `x` `[rows, in]`, `w` `[out, in]` and `b` `[out]`.
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let x = x.contiguous()?;
    match b {
        Some(b) => x.apply_op3(w, b, Linear),
        None => x.apply_op2(w, Linear),
    }
}

/// Whether [`linear`] serves these weights: dense f32 (so is the bias, if any).
pub(crate) fn linear_fits(w: &Tensor, b: Option<&Tensor>) -> bool {
    applies(w) && w.rank() == 2 && b.is_none_or(|b| applies(b) && b.rank() == 1)
}

struct Linear;

fn linear_dims(x: &Layout, w: &Layout) -> Result<(usize, usize, usize)> {
    let (out, inp) = w.shape().dims2()?;
    match x.shape().dims() {
        &[rows, i] if i == inp => Ok((rows, inp, out)),
        _ => bail!("linear: input {:?} for weight {:?}", x.shape(), w.shape()),
    }
}

impl Linear {
    fn forward(
        &self,
        (x, xl): (&CpuStorage, &Layout),
        (w, wl): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, inp, out) = linear_dims(xl, wl)?;
        let (x, w) = (cpu_f32(x, xl, "linear")?, cpu_f32(w, wl, "linear")?);
        let bias = match bias {
            Some((b, bl)) => Some(cpu_f32(b, bl, "linear")?),
            None => None,
        };
        if bias.is_some_and(|b| b.len() != out) {
            bail!(
                "linear: bias for {out} outputs has {:?}",
                bias.map(<[f32]>::len)
            )
        }
        // SAFETY: with a bias, every row of the `rows × out` output is first set to it, and the
        // gemm adds to them; without one the gemm writes every element.
        let y = unsafe {
            filled(rows * out, |dst| {
                if let Some(b) = bias {
                    for r in 0..rows {
                        std::ptr::copy_nonoverlapping(b.as_ptr(), dst.add(r * out), out);
                    }
                }
                gemm_raw(
                    (dst, out),
                    (rows, out, inp),
                    Operand::rows(x, inp),
                    Operand::transposed(w, inp),
                    bias.is_some(),
                    Threads::Pool,
                )
            })
        };
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    /// `∂x`, `∂w` and (with a bias) `∂b` of `Σ y ⊙ grad`.
    fn backward(
        x: &Tensor,
        w: &Tensor,
        bias: bool,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let all = x.apply_op3_no_bwd(w, &grad, &LinearGrad { bias })?;
        let ((rows, inp), out) = (x.dims2()?, w.dim(0)?);
        let dx = all.narrow(0, 0, rows * inp)?.reshape((rows, inp))?;
        let dw = all.narrow(0, rows * inp, out * inp)?.reshape((out, inp))?;
        let db = match bias {
            true => Some(all.narrow(0, (rows + out) * inp, out)?),
            false => None,
        };
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = Linear::backward(x, w, false, grad)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear-bias"
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
        self.forward((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = Linear::backward(x, w, true, grad)?;
        Ok((Some(dx), Some(dw), db))
    }
}

/// The gradients of [`Linear`] as one flat tensor: `∂x` (`rows × in`), `∂w` (`out × in`), then
/// `∂b` (`out`) when there is a bias.
struct LinearGrad {
    bias: bool,
}

impl CustomOp3 for LinearGrad {
    fn name(&self) -> &'static str {
        "linear-grad"
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
        let (rows, inp, out) = linear_dims(l1, l2)?;
        if l3.shape().dims() != [rows, out] {
            bail!("linear-grad: gradient {:?} for {rows} × {out}", l3.shape())
        }
        let x = cpu_f32(s1, l1, self.name())?;
        let w = cpu_f32(s2, l2, self.name())?;
        let g = cpu_f32(s3, l3, self.name())?;
        let len = (rows + out) * inp + if self.bias { out } else { 0 };
        // SAFETY: the parts lie one after the other inside the `len` elements, and each is
        // written whole: gemms without `accumulate`, then the bias sums from zero.
        let all = unsafe {
            filled(len, |dst| {
                // ∂x = g · w
                gemm_raw(
                    (dst, inp),
                    (rows, inp, out),
                    Operand::rows(g, out),
                    Operand::rows(w, inp),
                    false,
                    Threads::Pool,
                );
                // ∂w = gᵀ · x
                gemm_raw(
                    (dst.add(rows * inp), inp),
                    (out, inp, rows),
                    Operand::transposed(g, out),
                    Operand::rows(x, inp),
                    false,
                    Threads::Pool,
                );
                if self.bias {
                    // ∂b = Σ_rows g, in row order whatever the thread count.
                    let db = dst.add((rows + out) * inp);
                    db.write_bytes(0, out);
                    let db = std::slice::from_raw_parts_mut(db, out);
                    for row in g.chunks_exact(out) {
                        for (d, &g) in db.iter_mut().zip(row) {
                            *d += g;
                        }
                    }
                }
            })
        };
        Ok((CpuStorage::F32(all), Shape::from(len)))
    }
}

//! Scaled dot-product attention as one op: `softmax(q·kᵀ·scale + mask)·v` per head, with the
//! heads merged back into token rows.
//!
//! As basic ops the scores and the probabilities of every head are whole `[t, s]` matrices
//! (computed where the mask rules them out, zero-filled, and each given a gradient buffer in
//! the backward pass). Here each head's query rows go a block at a time: the block's scores
//! are computed only over the keys its rows may see (a causal or packed mask leaves most blocks
//! a fraction of the keys), turned into probabilities in place and multiplied by `v`. The
//! backward pass recomputes each block's probabilities instead of keeping them, as flash
//! attention does, so no `[t, s]` matrix outlives its block.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, bail};
use rayon::prelude::*;

use super::cpu_f32;
use super::gemm::{Operand, Threads, gemm};
use crate::vector_math;

/// Query rows per block: enough to keep gemm efficient, few enough that a causal mask's blocks
/// skip most of the keys the block's last row cannot see.
const BLOCK_ROWS: usize = 64;

/// Attention of query heads `q` `[b, g, n·t, hd]` (the `n` query heads that share key/value
/// head `j` are rows `j·n·t ..` one after the other, as grouped-query attention lays them out)
/// over `k` and `v` `[b, g, s, hd]`, with the additive `mask` `[1 | b, 1, t, s]` (not
/// differentiated). The result is token rows `[b·t, g·n·hd]`.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let op = Attention {
        mask: mask.contiguous()?,
        scale: scale as f32,
    };
    q.apply_op3(&k, &v, op)
}

struct Attention {
    mask: Tensor,
    scale: f32,
}

/// The geometry of one attention op.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    /// Key/value heads.
    g: usize,
    /// Query heads per key/value head.
    n: usize,
    t: usize,
    s: usize,
    hd: usize,
    /// Batch rows of the mask: 1 (shared) or `b`.
    mb: usize,
}

impl Dims {
    fn new(q: &Layout, k: &Layout, v: &Layout, mask: &Layout) -> Result<Dims> {
        let (b, g, nt, hd) = q.shape().dims4()?;
        let (kb, kg, s, khd) = k.shape().dims4()?;
        let (mb, m1, t, ms) = mask.shape().dims4()?;
        let fits = (kb, kg, khd) == (b, g, hd)
            && v.shape() == k.shape()
            && (mb == 1 || mb == b)
            && m1 == 1
            && ms == s
            && t > 0
            && nt.is_multiple_of(t);
        if !fits {
            bail!(
                "attention: q {:?}, k {:?}, v {:?}, mask {:?}",
                q.shape(),
                k.shape(),
                v.shape(),
                mask.shape()
            )
        }
        Ok(Dims {
            b,
            g,
            n: nt / t,
            t,
            s,
            hd,
            mb,
        })
    }

    /// Features of one token row of the result.
    fn width(&self) -> usize {
        self.g * self.n * self.hd
    }

    /// The mask's rows for batch row `bi`.
    fn mask_batch(&self, bi: usize) -> usize {
        if self.mb == 1 { 0 } else { bi }
    }
}

/// The keys each mask row lets through, as `lo..hi`: from its first entry above −∞ to its last
/// (entries of −∞ inside the span still add −∞). An empty span where the row admits nothing.
fn key_spans(mask: &[f32], s: usize) -> Vec<(usize, usize)> {
    mask.chunks_exact(s)
        .map(|row| {
            let open = |m: &f32| *m > f32::NEG_INFINITY;
            match (row.iter().position(open), row.iter().rposition(open)) {
                (Some(lo), Some(last)) => (lo, last + 1),
                _ => (0, 0),
            }
        })
        .collect()
}

/// The keys a block of rows with these spans may see, together: empty when none sees any.
fn block_span(spans: &[(usize, usize)]) -> (usize, usize) {
    spans
        .iter()
        .filter(|(lo, hi)| lo < hi)
        .fold(None, |acc: Option<(usize, usize)>, &(lo, hi)| {
            Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))))
        })
        .unwrap_or((0, 0))
}

/// One head's slices and one block of its query rows.
struct Block<'a> {
    /// The block's query rows, `rows × hd`.
    q: &'a [f32],
    /// The head's keys and values, `s × hd`.
    k: &'a [f32],
    v: &'a [f32],
    /// The block's mask rows (`rows × s`) and their key spans.
    mask: &'a [f32],
    spans: &'a [(usize, usize)],
    /// The keys the block sees: `lo .. lo + w`.
    lo: usize,
    w: usize,
}

impl Block<'_> {
    fn rows(&self) -> usize {
        self.spans.len()
    }

    /// The block's probabilities into `p` (`rows × w`): zero outside each row's span.
    fn probabilities(&self, p: &mut [f32], hd: usize, s: usize, scale: f32) {
        let w = self.w;
        gemm(
            (p, w),
            (self.rows(), w, hd),
            Operand::rows(self.q, hd),
            Operand::transposed(&self.k[self.lo * hd..], hd),
            false,
            Threads::Caller,
        );
        for (r, row) in p.chunks_exact_mut(w).enumerate() {
            let (lo, hi) = self.spans[r];
            if lo >= hi {
                row.fill(0.0);
                continue;
            }
            let (lo, hi) = (lo - self.lo, hi - self.lo);
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            let live = &mut row[lo..hi];
            let mask = &self.mask[r * s + self.lo + lo..][..live.len()];
            for (y, &m) in live.iter_mut().zip(mask) {
                *y = *y * scale + m;
            }
            vector_math::softmax_in_place(live);
        }
    }
}

/// The f32 data of a contiguous CPU tensor behind a storage guard.
fn data<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    cpu_f32(cpu(storage)?, layout, "attention")
}

/// Everything an attention pass reads.
struct Inputs<'a> {
    d: Dims,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    mask: &'a [f32],
    spans: &'a [(usize, usize)],
}

impl<'a> Inputs<'a> {
    /// Head `h` of batch row `bi`, its query rows `i0 .. i0 + rows`; `None` when they see no key.
    fn block(&self, bi: usize, h: usize, i0: usize, rows: usize) -> Option<Block<'a>> {
        let Dims { g, n, t, s, hd, .. } = self.d;
        let (kv, j) = (bi * g + h / n, h % n);
        let m = self.d.mask_batch(bi) * t + i0;
        let spans = &self.spans[m..][..rows];
        let (lo, hi) = block_span(spans);
        (lo < hi).then(|| Block {
            q: &self.q[((kv * n + j) * t + i0) * hd..][..rows * hd],
            k: &self.k[kv * s * hd..][..s * hd],
            v: &self.v[kv * s * hd..][..s * hd],
            mask: &self.mask[m * s..][..rows * s],
            spans,
            lo,
            w: hi - lo,
        })
    }
}

/// Blocks of query rows: `(first row, rows)`.
fn blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t)
        .step_by(BLOCK_ROWS)
        .map(move |i0| (i0, BLOCK_ROWS.min(t - i0)))
}

impl Attention {
    fn forward(&self, x: &Inputs) -> Vec<f32> {
        let Dims { t, s, hd, .. } = x.d;
        let (width, heads) = (x.d.width(), x.d.g * x.d.n);
        let mut out = vec![0f32; x.d.b * t * width];
        // A task per batch row: its token rows of the result are its own.
        out.par_chunks_mut(t * width)
            .enumerate()
            .for_each(|(bi, out)| {
                let mut p = Vec::new();
                for h in 0..heads {
                    for (i0, rows) in blocks(t) {
                        let Some(block) = x.block(bi, h, i0, rows) else {
                            continue;
                        };
                        p.resize(rows * block.w, 0.0);
                        block.probabilities(&mut p, hd, s, self.scale);
                        gemm(
                            (&mut out[i0 * width + h * hd..], width),
                            (rows, hd, block.w),
                            Operand::rows(&p, block.w),
                            Operand::rows(&block.v[block.lo * hd..], hd),
                            false,
                            Threads::Caller,
                        );
                    }
                }
            });
        out
    }

    /// `∂q`, `∂k` and `∂v` of `Σ out ⊙ grad`, given the forward result `out`.
    fn backward(&self, x: &Inputs, out: &[f32], grad: &[f32]) -> [Vec<f32>; 3] {
        let Dims { g, n, t, s, hd, .. } = x.d;
        let width = x.d.width();
        let mut dq = vec![0f32; x.q.len()];
        let mut dk = vec![0f32; x.k.len()];
        let mut dv = vec![0f32; x.v.len()];
        // A task per key/value head: its query heads' rows of `∂q`, and its rows of `∂k` and
        // `∂v`, which those query heads add to one after the other.
        dq.par_chunks_mut(n * t * hd)
            .zip(dk.par_chunks_mut(s * hd))
            .zip(dv.par_chunks_mut(s * hd))
            .enumerate()
            .for_each(|(task, ((dq, dk), dv))| {
                let (bi, kv) = (task / g, task % g);
                let (mut p, mut ds) = (Vec::new(), Vec::new());
                for j in 0..n {
                    let h = kv * n + j;
                    for (i0, rows) in blocks(t) {
                        let Some(block) = x.block(bi, h, i0, rows) else {
                            continue;
                        };
                        let (w, lo) = (block.w, block.lo);
                        p.resize(rows * w, 0.0);
                        ds.resize(rows * w, 0.0);
                        block.probabilities(&mut p, hd, s, self.scale);
                        let at = (bi * t + i0) * width + h * hd;
                        let d_out = Operand::strided(&grad[at..], width);
                        // ∂p = ∂out · vᵀ
                        gemm(
                            (&mut ds, w),
                            (rows, w, hd),
                            d_out,
                            Operand::transposed(&block.v[lo * hd..], hd),
                            false,
                            Threads::Caller,
                        );
                        // ∂scores = p ⊙ (∂p − ∂out·out) · scale
                        for (r, (ds, p)) in
                            ds.chunks_exact_mut(w).zip(p.chunks_exact(w)).enumerate()
                        {
                            let (g_row, o_row) =
                                (&grad[at + r * width..][..hd], &out[at + r * width..][..hd]);
                            let dot = vector_math::dot(g_row, o_row);
                            for (d, &p) in ds.iter_mut().zip(p) {
                                *d = self.scale * p * (*d - dot);
                            }
                        }
                        // ∂q = ∂scores · k
                        gemm(
                            (&mut dq[(j * t + i0) * hd..], hd),
                            (rows, hd, w),
                            Operand::rows(&ds, w),
                            Operand::rows(&block.k[lo * hd..], hd),
                            false,
                            Threads::Caller,
                        );
                        // ∂k += ∂scoresᵀ · q
                        gemm(
                            (&mut dk[lo * hd..], hd),
                            (w, hd, rows),
                            Operand::transposed(&ds, w),
                            Operand::rows(block.q, hd),
                            true,
                            Threads::Caller,
                        );
                        // ∂v += pᵀ · ∂out
                        gemm(
                            (&mut dv[lo * hd..], hd),
                            (w, hd, rows),
                            Operand::transposed(&p, w),
                            d_out,
                            true,
                            Threads::Caller,
                        );
                    }
                }
            });
        [dq, dk, dv]
    }

    /// Runs `f` on the inputs of this op over these storages.
    fn with_inputs<R>(
        &self,
        (q, ql): (&CpuStorage, &Layout),
        (k, kl): (&CpuStorage, &Layout),
        (v, vl): (&CpuStorage, &Layout),
        f: impl FnOnce(&Inputs) -> R,
    ) -> Result<R> {
        let (mask_storage, ml) = self.mask.storage_and_layout();
        let d = Dims::new(ql, kl, vl, ml)?;
        let mask = data(&mask_storage, ml)?;
        let spans = key_spans(mask, d.s);
        let inputs = Inputs {
            d,
            q: cpu_f32(q, ql, "attention")?,
            k: cpu_f32(k, kl, "attention")?,
            v: cpu_f32(v, vl, "attention")?,
            mask,
            spans: &spans,
        };
        Ok(f(&inputs))
    }
}

/// The CPU storage behind a guard, or an error for other devices.
fn cpu(storage: &Storage) -> Result<&CpuStorage> {
    match storage {
        Storage::Cpu(cpu) => Ok(cpu),
        _ => bail!("attention: CPU tensors only"),
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attention"
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
        let (out, d) =
            self.with_inputs((s1, l1), (s2, l2), (s3, l3), |x| (self.forward(x), x.d))?;
        Ok((CpuStorage::F32(out), Shape::from((d.b * d.t, d.width()))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let [dq, dk, dv] = {
            let (qs, ql) = q.storage_and_layout();
            let (ks, kl) = k.storage_and_layout();
            let (vs, vl) = v.storage_and_layout();
            let (os, ol) = res.storage_and_layout();
            let (gs, gl) = grad.storage_and_layout();
            let (out, grad) = (data(&os, ol)?, data(&gs, gl)?);
            self.with_inputs((cpu(&qs)?, ql), (cpu(&ks)?, kl), (cpu(&vs)?, vl), |x| {
                self.backward(x, out, grad)
            })?
        };
        let device = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), device)?),
            Some(Tensor::from_vec(dk, k.shape(), device)?),
            Some(Tensor::from_vec(dv, v.shape(), device)?),
        ))
    }
}

//! Dot products between weight rows in llama.cpp's block formats and activations quantized
//! to 8 bits per block of 32 (llama.cpp's `Q8_1` idea, with f32 scales).
//!
//! A GGUF file stores a row as blocks of 32 weights, each with its scales in front:
//! - `Q4_1`, 20 bytes: `d: f16, m: f16, qs: [u8; 16]`; weight `j` is `d * q + m` where `q` is
//!   the low nibble of `qs[j]` for `j < 16` and the high nibble of `qs[j - 16]` otherwise;
//! - `Q8_0`, 34 bytes: `d: f16, qs: [i8; 32]`; weight `j` is `d * qs[j]`.
//!
//! [`repack_q4_1`] and [`repack_q8_0`] move a row's scales ahead of its quants (same bytes,
//! same size): `Q4_1` rows become `[d; n][m; n][qs; n]`, `Q8_0` rows `[d; n][qs; n]`, so that
//! a kernel converts eight scales with one instruction and its inner loop touches quants
//! only. Each format has a portable kernel and, on x86-64 with AVX2, FMA and F16C, a SIMD one
//! (the arithmetic of llama.cpp's `ggml_vec_dot_q4_1_q8_1` and `ggml_vec_dot_q8_0_q8_0`) that
//! takes a weight row against up to four activation rows at once, so that the weights are
//! unpacked once per step and not once per sequence. The tests hold the two to each other.

use half::f16;

/// Weights (and activations) per block.
pub(crate) const BLOCK: usize = 32;
pub(crate) const Q4_1_BYTES: usize = 20;
pub(crate) const Q8_0_BYTES: usize = 34;

/// Rows of activations quantized block by block: value `j` of block `b` is `d[b] * qs[j]`,
/// and `sum[b] = d[b] * Σ qs` of that block (what a `Q4_1` block's offset `m` multiplies).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QRows {
    blocks: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    sum: Vec<f32>,
}

/// One row of [`QRows`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct QRow<'a> {
    pub(crate) qs: &'a [i8],
    pub(crate) d: &'a [f32],
    pub(crate) sum: &'a [f32],
}

impl QRows {
    /// Quantizes `x`, rows of `cols` values (a multiple of 32), rounding each value to the
    /// nearest of 255 levels spanning its block's largest magnitude.
    pub(crate) fn quantize(x: &[f32], cols: usize) -> QRows {
        debug_assert_eq!(cols % BLOCK, 0);
        let blocks = x.len() / BLOCK;
        let mut out = QRows {
            blocks: cols / BLOCK,
            qs: vec![0; x.len()],
            d: Vec::with_capacity(blocks),
            sum: Vec::with_capacity(blocks),
        };
        for (xs, qs) in x.chunks_exact(BLOCK).zip(out.qs.chunks_exact_mut(BLOCK)) {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut total = 0i32;
            for (q, &v) in qs.iter_mut().zip(xs) {
                // Half away from zero, as `round` (which is a libm call without SSE4.1).
                *q = (v * inv + 0.5f32.copysign(v)) as i8;
                total += i32::from(*q);
            }
            out.d.push(d);
            out.sum.push(d * total as f32);
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn rows(&self) -> usize {
        self.d.len() / self.blocks.max(1)
    }

    pub(crate) fn row(&self, r: usize) -> QRow<'_> {
        let b = self.blocks;
        QRow {
            qs: &self.qs[r * b * BLOCK..(r + 1) * b * BLOCK],
            d: &self.d[r * b..(r + 1) * b],
            sum: &self.sum[r * b..(r + 1) * b],
        }
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// A GGUF `Q4_1` row in the engine's layout: `[d; n][m; n][qs; n]`.
pub(crate) fn repack_q4_1(row: &[u8]) -> Vec<u8> {
    let n = row.len() / Q4_1_BYTES;
    let mut out = vec![0u8; row.len()];
    for (b, block) in row.chunks_exact(Q4_1_BYTES).enumerate() {
        out[2 * b..2 * b + 2].copy_from_slice(&block[0..2]);
        out[2 * n + 2 * b..2 * n + 2 * b + 2].copy_from_slice(&block[2..4]);
        out[4 * n + 16 * b..4 * n + 16 * (b + 1)].copy_from_slice(&block[4..]);
    }
    out
}

/// A GGUF `Q8_0` row in the engine's layout: `[d; n][qs; n]`.
pub(crate) fn repack_q8_0(row: &[u8]) -> Vec<u8> {
    let n = row.len() / Q8_0_BYTES;
    let mut out = vec![0u8; row.len()];
    for (b, block) in row.chunks_exact(Q8_0_BYTES).enumerate() {
        out[2 * b..2 * b + 2].copy_from_slice(&block[0..2]);
        out[2 * n + 32 * b..2 * n + 32 * (b + 1)].copy_from_slice(&block[2..]);
    }
    out
}

/// One engine-layout `Q4_1` row as f32.
pub(crate) fn dequantize_q4_1(w: &[u8], out: &mut [f32]) {
    let n = w.len() / Q4_1_BYTES;
    for (b, out) in out.chunks_exact_mut(BLOCK).enumerate() {
        let (d, m) = (f16_at(w, 2 * b), f16_at(w, 2 * n + 2 * b));
        let qs = &w[4 * n + 16 * b..4 * n + 16 * (b + 1)];
        for (j, &byte) in qs.iter().enumerate() {
            out[j] = d * f32::from(byte & 0x0F) + m;
            out[j + BLOCK / 2] = d * f32::from(byte >> 4) + m;
        }
    }
}

/// One engine-layout `Q8_0` row as f32.
pub(crate) fn dequantize_q8_0(w: &[u8], out: &mut [f32]) {
    let n = w.len() / Q8_0_BYTES;
    for (b, out) in out.chunks_exact_mut(BLOCK).enumerate() {
        let d = f16_at(w, 2 * b);
        let qs = &w[2 * n + 32 * b..2 * n + 32 * (b + 1)];
        for (o, &q) in out.iter_mut().zip(qs) {
            *o = d * f32::from(q as i8);
        }
    }
}

/// Quantizes one row of f32 weights (a multiple of 32) to engine-layout `Q8_0`, rounding as
/// llama.cpp does: for block formats this engine has no kernel for.
pub(crate) fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut gguf = Vec::with_capacity(x.len() / BLOCK * Q8_0_BYTES);
    for xs in x.chunks_exact(BLOCK) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        gguf.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        gguf.extend(xs.iter().map(|&v| (v * inv).round() as i8 as u8));
    }
    repack_q8_0(&gguf)
}

/// `out[j] = Σ w·acts[j]` for one weight row against a few activation rows (portable).
pub(crate) fn dot_q4_1_portable(w: &[u8], acts: &[QRow<'_>], out: &mut [f32]) {
    let n = w.len() / Q4_1_BYTES;
    for (act, out) in acts.iter().zip(out.iter_mut()) {
        let mut total = 0f32;
        for b in 0..n {
            let (d, m) = (f16_at(w, 2 * b), f16_at(w, 2 * n + 2 * b));
            let qs = &w[4 * n + 16 * b..4 * n + 16 * (b + 1)];
            let x = &act.qs[b * BLOCK..(b + 1) * BLOCK];
            let mut dot = 0i32;
            for (j, &byte) in qs.iter().enumerate() {
                dot += i32::from(byte & 0x0F) * i32::from(x[j])
                    + i32::from(byte >> 4) * i32::from(x[j + BLOCK / 2]);
            }
            total += d * act.d[b] * dot as f32 + m * act.sum[b];
        }
        *out = total;
    }
}

/// `out[j] = Σ w·acts[j]` for one weight row against a few activation rows (portable).
pub(crate) fn dot_q8_0_portable(w: &[u8], acts: &[QRow<'_>], out: &mut [f32]) {
    let n = w.len() / Q8_0_BYTES;
    for (act, out) in acts.iter().zip(out.iter_mut()) {
        let mut total = 0f32;
        for b in 0..n {
            let qs = &w[2 * n + 32 * b..2 * n + 32 * (b + 1)];
            let x = &act.qs[b * BLOCK..(b + 1) * BLOCK];
            let dot: i32 = qs
                .iter()
                .zip(x)
                .map(|(&q, &v)| i32::from(q as i8) * i32::from(v))
                .sum();
            total += f16_at(w, 2 * b) * act.d[b] * dot as f32;
        }
        *out = total;
    }
}

/// A weight row against activation rows: `out[j]` is its dot product with `acts[j]`.
pub(crate) type DotFn = fn(&[u8], &[QRow<'_>], &mut [f32]);

/// The fastest `Q4_1` kernel this CPU runs.
pub(crate) fn q4_1_kernel() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        return simd::dot_q4_1;
    }
    dot_q4_1_portable
}

/// The fastest `Q8_0` kernel this CPU runs.
pub(crate) fn q8_0_kernel() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        return simd::dot_q8_0;
    }
    dot_q8_0_portable
}

/// An f32 dot product.
pub(crate) type F32DotFn = fn(&[f32], &[f32]) -> f32;

/// The fastest f32 dot product this CPU runs.
pub(crate) fn f32_kernel() -> F32DotFn {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        return simd::dot_f32;
    }
    distillery_model::vector_math::dot
}

/// AVX2 kernels. The only unsafe code of the crate: intrinsics behind a run-time check of the
/// CPU's features, and unaligned loads from slices whose lengths are checked first.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::*;

    use super::{BLOCK, Q4_1_BYTES, Q8_0_BYTES, QRow};

    /// Activation rows taken together against one weight row.
    const ROWS: usize = 4;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    fn check(w: &[u8], block_bytes: usize, acts: &[QRow<'_>], out: &[f32]) -> usize {
        let n = w.len() / block_bytes;
        assert_eq!(w.len(), n * block_bytes);
        assert!(out.len() >= acts.len());
        for act in acts {
            assert!(act.qs.len() >= n * BLOCK && act.d.len() >= n && act.sum.len() >= n);
        }
        n
    }

    /// Only handed out by `f32_kernel` after `available()`.
    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the CPU has AVX2 and FMA (checked before this function was chosen); every
        // load is from a slice of its exact length.
        unsafe { dot_f32_avx2(a, b) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            even = _mm256_fmadd_ps(f32x8(a, i), f32x8(b, i), even);
            odd = _mm256_fmadd_ps(f32x8(a, i + 8), f32x8(b, i + 8), odd);
            i += 16;
        }
        if i + 8 <= n {
            even = _mm256_fmadd_ps(f32x8(a, i), f32x8(b, i), even);
            i += 8;
        }
        let tail: f32 = a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum();
        hsum(_mm256_add_ps(even, odd)) + tail
    }

    /// Only handed out by `q4_1_kernel` after `available()`.
    pub(super) fn dot_q4_1(w: &[u8], acts: &[QRow<'_>], out: &mut [f32]) {
        let n = check(w, Q4_1_BYTES, acts, out);
        // SAFETY: the CPU has AVX2, FMA and F16C (checked before this function was chosen);
        // every load is from a slice of its exact length.
        unsafe { all_rows::<true>(w, n, acts, &mut out[..acts.len()]) }
    }

    /// Only handed out by `q8_0_kernel` after `available()`.
    pub(super) fn dot_q8_0(w: &[u8], acts: &[QRow<'_>], out: &mut [f32]) {
        let n = check(w, Q8_0_BYTES, acts, out);
        // SAFETY: as for `dot_q4_1`.
        unsafe { all_rows::<false>(w, n, acts, &mut out[..acts.len()]) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Eight f16 at `bytes[2b..2b + 16]` as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn f16x8(bytes: &[u8], b: usize) -> __m256 {
        let bytes = &bytes[2 * b..2 * b + 16];
        // SAFETY: 16 bytes, checked by the slice above; unaligned load.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) })
    }

    /// The f16 at `bytes[2b..2b + 2]` as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn f16x1(bytes: &[u8], b: usize) -> f32 {
        let bits = u16::from_le_bytes([bytes[2 * b], bytes[2 * b + 1]]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(bits as i16)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn f32x8(values: &[f32], b: usize) -> __m256 {
        let values = &values[b..b + 8];
        // SAFETY: eight f32, checked by the slice above; unaligned load.
        unsafe { _mm256_loadu_ps(values.as_ptr()) }
    }

    /// The 32 activations of block `b`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn activations(act: &QRow<'_>, b: usize) -> __m256i {
        let qs = &act.qs[BLOCK * b..BLOCK * (b + 1)];
        // SAFETY: 32 bytes, checked by the slice above; unaligned load.
        unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) }
    }

    /// Σ u·x of 32 unsigned weights and 32 signed activations, as eight partial sums.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_u8_i8(u: __m256i, x: __m256i) -> __m256 {
        let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
        _mm256_cvtepi32_ps(pairs)
    }

    /// Weights of `Q4_1` block `b` as 32 unsigned bytes: low nibbles are weights 0..16, high
    /// nibbles 16..32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q4_1_weights(qs: &[u8], b: usize) -> __m256i {
        let qs = &qs[16 * b..16 * (b + 1)];
        // SAFETY: 16 bytes, checked by the slice above; unaligned load.
        let packed = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    /// The weights of `Q8_0` block `b`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q8_0_weights(qs: &[u8], b: usize) -> __m256i {
        let qs = &qs[32 * b..32 * (b + 1)];
        // SAFETY: 32 bytes, checked by the slice above; unaligned load.
        unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) }
    }

    /// Lane `j` of `v` in every lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn lane(v: __m256, j: usize) -> __m256 {
        _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(j as i32))
    }

    /// Block `b` against every row, scaled by lane `j` of that row's scales, into `acc`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn block<const R: usize, const Q4_1: bool>(
        qs: &[u8],
        acts: &[QRow<'_>; R],
        b: usize,
        scales: &[__m256; R],
        j: usize,
        acc: &mut [__m256; R],
    ) {
        if Q4_1 {
            let q = q4_1_weights(qs, b);
            for r in 0..R {
                let dot = dot_u8_i8(q, activations(&acts[r], b));
                acc[r] = _mm256_fmadd_ps(lane(scales[r], j), dot, acc[r]);
            }
        } else {
            let q = q8_0_weights(qs, b);
            // maddubs multiplies unsigned by signed bytes: move q's sign onto x.
            let magnitude = _mm256_sign_epi8(q, q);
            for r in 0..R {
                let dot = dot_u8_i8(magnitude, _mm256_sign_epi8(activations(&acts[r], b), q));
                acc[r] = _mm256_fmadd_ps(lane(scales[r], j), dot, acc[r]);
            }
        }
    }

    /// Both kernels in one, for `R` activation rows: `Q4_1` (weights unsigned nibbles plus an
    /// offset) or `Q8_0` (signed bytes). The scales of eight blocks are converted and
    /// multiplied at once, each weight block is unpacked once for all rows, and two sets of
    /// sums alternate so that no add waits for the one before it. `R` is a constant so that
    /// the sums live in registers.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn rows<const R: usize, const Q4_1: bool>(
        w: &[u8],
        n: usize,
        acts: &[QRow<'_>; R],
    ) -> [f32; R] {
        let (d, rest) = w.split_at(2 * n);
        let (m, qs) = if Q4_1 {
            rest.split_at(2 * n)
        } else {
            (&[][..], rest)
        };
        let mut even = [_mm256_setzero_ps(); R];
        let mut odd = [_mm256_setzero_ps(); R];
        let mut offsets = [_mm256_setzero_ps(); R];
        let mut offsets_tail = [0f32; R];
        let mut b = 0;
        while b + 8 <= n {
            let dw = f16x8(d, b);
            let mut scales = [_mm256_setzero_ps(); R];
            for r in 0..R {
                scales[r] = _mm256_mul_ps(dw, f32x8(acts[r].d, b));
                if Q4_1 {
                    offsets[r] = _mm256_fmadd_ps(f16x8(m, b), f32x8(acts[r].sum, b), offsets[r]);
                }
            }
            for j in (0..8).step_by(2) {
                block::<R, Q4_1>(qs, acts, b + j, &scales, j, &mut even);
                block::<R, Q4_1>(qs, acts, b + j + 1, &scales, j + 1, &mut odd);
            }
            b += 8;
        }
        for b in b..n {
            let dw = f16x1(d, b);
            let mut scales = [_mm256_setzero_ps(); R];
            for r in 0..R {
                scales[r] = _mm256_set1_ps(dw * acts[r].d[b]);
                if Q4_1 {
                    offsets_tail[r] += f16x1(m, b) * acts[r].sum[b];
                }
            }
            block::<R, Q4_1>(qs, acts, b, &scales, 0, &mut even);
        }
        let mut out = [0f32; R];
        for r in 0..R {
            out[r] = hsum(_mm256_add_ps(even[r], odd[r])) + hsum(offsets[r]) + offsets_tail[r];
        }
        out
    }

    /// [`rows`] over any number of rows, four at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn all_rows<const Q4_1: bool>(w: &[u8], n: usize, acts: &[QRow<'_>], out: &mut [f32]) {
        for (acts, out) in acts.chunks(ROWS).zip(out.chunks_mut(ROWS)) {
            match acts.len() {
                1 => out.copy_from_slice(&rows::<1, Q4_1>(w, n, &[acts[0]])),
                2 => out.copy_from_slice(&rows::<2, Q4_1>(w, n, &[acts[0], acts[1]])),
                3 => out.copy_from_slice(&rows::<3, Q4_1>(w, n, &[acts[0], acts[1], acts[2]])),
                _ => out.copy_from_slice(&rows::<4, Q4_1>(
                    w,
                    n,
                    &[acts[0], acts[1], acts[2], acts[3]],
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// A random GGUF `Q4_1` row of `blocks` blocks, in the engine's layout.
    fn random_q4_1(rng: &mut StdRng, blocks: usize) -> Vec<u8> {
        let mut w = Vec::new();
        for _ in 0..blocks {
            w.extend_from_slice(&f16::from_f32(rng.random_range(0.001..0.1)).to_le_bytes());
            w.extend_from_slice(&f16::from_f32(rng.random_range(-0.5..0.5)).to_le_bytes());
            w.extend((0..16).map(|_| rng.random::<u8>()));
        }
        repack_q4_1(&w)
    }

    fn random_rows(rng: &mut StdRng, rows: usize, cols: usize) -> QRows {
        let x: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-3.0..3.0))
            .collect();
        QRows::quantize(&x, cols)
    }

    /// The activations as the quantized values stand for them.
    fn dequantized(row: QRow<'_>) -> Vec<f32> {
        row.qs
            .iter()
            .enumerate()
            .map(|(j, &q)| row.d[j / BLOCK] * f32::from(q))
            .collect()
    }

    fn exact_dot(w: &[f32], x: &[f32]) -> f64 {
        w.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    /// Both kernels against the f64 dot of the dequantized weights and activations, for 1 to
    /// 6 rows at once (one group of four and a partial one).
    fn check_kernels(w: &[u8], dense: &[f32], portable: DotFn, fast: DotFn, rng: &mut StdRng) {
        let cols = dense.len();
        for rows in [1, 2, 6] {
            let acts = random_rows(rng, rows, cols);
            let views: Vec<QRow<'_>> = (0..rows).map(|r| acts.row(r)).collect();
            let (mut slow, mut quick) = (vec![0f32; rows], vec![0f32; rows]);
            portable(w, &views, &mut slow);
            fast(w, &views, &mut quick);
            for r in 0..rows {
                let x = dequantized(views[r]);
                let want = exact_dot(dense, &x);
                let scale: f64 = dense
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| (a * b).abs() as f64)
                    .sum();
                let tol = 1e-5 * scale + 1e-4;
                assert!(
                    (slow[r] as f64 - want).abs() <= tol,
                    "{} vs {want}",
                    slow[r]
                );
                assert!(
                    (quick[r] as f64 - want).abs() <= tol,
                    "{} vs {want}",
                    quick[r]
                );
            }
        }
    }

    #[test]
    fn quantized_activations_are_within_half_a_step() {
        let mut rng = StdRng::seed_from_u64(1);
        let x: Vec<f32> = (0..256).map(|_| rng.random_range(-3.0..3.0)).collect();
        let q = QRows::quantize(&x, 128);
        assert_eq!(q.rows(), 2);
        for r in 0..2 {
            let row = q.row(r);
            for (b, xs) in x[r * 128..(r + 1) * 128].chunks(BLOCK).enumerate() {
                let qs = &row.qs[b * BLOCK..(b + 1) * BLOCK];
                let total: i32 = qs.iter().map(|&v| i32::from(v)).sum();
                assert!((row.sum[b] - row.d[b] * total as f32).abs() < 1e-4);
                for (&v, &qv) in xs.iter().zip(qs) {
                    assert!((v - row.d[b] * f32::from(qv)).abs() <= row.d[b] * 0.5 + 1e-6);
                }
            }
        }
        let zeros = QRows::quantize(&[0.0; BLOCK], BLOCK);
        assert_eq!((zeros.d[0], zeros.sum[0]), (0.0, 0.0));
    }

    #[test]
    fn q4_1_kernels_give_the_dot_of_the_dequantized_weights() {
        let mut rng = StdRng::seed_from_u64(2);
        // 18 and 48 blocks: SmolLM2's rows; 1, 2 and 9: the scale loop's tail alone and
        // after a full group of eight.
        for blocks in [1, 2, 9, 18, 48] {
            let w = random_q4_1(&mut rng, blocks);
            let mut dense = vec![0f32; blocks * BLOCK];
            dequantize_q4_1(&w, &mut dense);
            check_kernels(&w, &dense, dot_q4_1_portable, q4_1_kernel(), &mut rng);
        }
    }

    #[test]
    fn q8_0_round_trips_and_its_kernels_give_the_dot() {
        let mut rng = StdRng::seed_from_u64(3);
        for blocks in [1, 3, 9, 18] {
            let dense: Vec<f32> = (0..blocks * BLOCK)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let w = quantize_q8_0(&dense);
            assert_eq!(w.len(), blocks * Q8_0_BYTES);
            let mut back = vec![0f32; dense.len()];
            dequantize_q8_0(&w, &mut back);
            for (a, b) in dense.iter().zip(&back) {
                assert!((a - b).abs() <= 1.0 / 127.0, "{a} vs {b}");
            }
            check_kernels(&w, &back, dot_q8_0_portable, q8_0_kernel(), &mut rng);
        }
    }

    #[test]
    fn f32_kernels_agree_at_every_length() {
        let mut rng = StdRng::seed_from_u64(4);
        for n in [0, 1, 7, 8, 15, 16, 17, 64, 100] {
            let a: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let want = exact_dot(&a, &b);
            assert!(
                (distillery_model::vector_math::dot(&a, &b) as f64 - want).abs() < 1e-5,
                "{n}"
            );
            assert!((f32_kernel()(&a, &b) as f64 - want).abs() < 1e-5, "{n}");
        }
    }

    #[test]
    fn extreme_q8_0_weights_do_not_saturate() {
        // -128 is a legal i8 weight; the SIMD kernel's sign trick must not overflow on it.
        let mut gguf = f16::from_f32(1.0).to_le_bytes().to_vec();
        gguf.extend(std::iter::repeat_n(-128i8 as u8, BLOCK));
        let w = repack_q8_0(&gguf);
        let qs = [-127i8; BLOCK];
        let act = QRow {
            qs: &qs,
            d: &[1.0],
            sum: &[0.0],
        };
        let want = (128 * 127 * BLOCK) as f32;
        let mut out = [0f32];
        dot_q8_0_portable(&w, &[act], &mut out);
        assert_eq!(out[0], want);
        q8_0_kernel()(&w, &[act], &mut out);
        assert_eq!(out[0], want);
    }
}

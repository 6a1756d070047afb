//! Dot products between weight rows in llama.cpp's block formats, exactly as a GGUF file
//! stores them, and activations quantized to 8 bits per block of 32 (llama.cpp's `Q8_1`
//! idea, with f32 scales).
//!
//! The formats (little-endian, one block per 32 consecutive weights of a row):
//! - `Q4_1`, 20 bytes: `d: f16, m: f16, qs: [u8; 16]`; weight `j` is `d * q + m` where `q` is
//!   the low nibble of `qs[j]` for `j < 16` and the high nibble of `qs[j - 16]` otherwise.
//! - `Q8_0`, 34 bytes: `d: f16, qs: [i8; 32]`; weight `j` is `d * qs[j]`.
//!
//! Each format has a portable kernel and, on x86-64 with AVX2, FMA and F16C, a SIMD one (the
//! arithmetic of llama.cpp's `ggml_vec_dot_q4_1_q8_1` and `ggml_vec_dot_q8_0_q8_0`); the
//! tests hold the two to each other on random blocks.

use half::f16;

/// Weights (and activations) per block.
pub(crate) const BLOCK: usize = 32;
pub(crate) const Q4_1_BYTES: usize = 20;
pub(crate) const Q8_0_BYTES: usize = 34;

/// 32 activations as `d * qs`, with `sum = d * Σ qs` (what a `Q4_1` block's offset `m`
/// multiplies).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub(crate) struct QBlock {
    pub(crate) qs: [i8; BLOCK],
    pub(crate) d: f32,
    pub(crate) sum: f32,
}

impl QBlock {
    pub(crate) const ZERO: QBlock = QBlock {
        qs: [0; BLOCK],
        d: 0.0,
        sum: 0.0,
    };
}

/// Quantizes `x` (a multiple of 32 long) into `out`, one block per 32 values, rounding each
/// to the nearest of 255 levels spanning its block's largest magnitude.
pub(crate) fn quantize_row(x: &[f32], out: &mut [QBlock]) {
    debug_assert_eq!(x.len(), out.len() * BLOCK);
    for (xs, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut total = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(xs) {
            *q = (v * inv).round() as i8;
            total += i32::from(*q);
        }
        block.d = d;
        block.sum = d * total as f32;
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// `Σ w·a` of a row of `Q4_1` blocks against quantized activations (portable).
pub(crate) fn dot_q4_1_portable(w: &[u8], a: &[QBlock]) -> f32 {
    let mut total = 0f32;
    for (block, act) in w.chunks_exact(Q4_1_BYTES).zip(a) {
        let (d, m) = (f16_at(block, 0), f16_at(block, 2));
        let mut dot = 0i32;
        for j in 0..BLOCK / 2 {
            let byte = block[4 + j];
            dot += i32::from(byte & 0x0F) * i32::from(act.qs[j])
                + i32::from(byte >> 4) * i32::from(act.qs[j + BLOCK / 2]);
        }
        total += d * act.d * dot as f32 + m * act.sum;
    }
    total
}

/// `Σ w·a` of a row of `Q8_0` blocks against quantized activations (portable).
pub(crate) fn dot_q8_0_portable(w: &[u8], a: &[QBlock]) -> f32 {
    let mut total = 0f32;
    for (block, act) in w.chunks_exact(Q8_0_BYTES).zip(a) {
        let d = f16_at(block, 0);
        let dot: i32 = block[2..]
            .iter()
            .zip(&act.qs)
            .map(|(&q, &x)| i32::from(q as i8) * i32::from(x))
            .sum();
        total += d * act.d * dot as f32;
    }
    total
}

/// The weights of one `Q4_1` or `Q8_0` row as f32.
pub(crate) fn dequantize_q4_1(w: &[u8], out: &mut [f32]) {
    for (block, out) in w.chunks_exact(Q4_1_BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let (d, m) = (f16_at(block, 0), f16_at(block, 2));
        for j in 0..BLOCK / 2 {
            let byte = block[4 + j];
            out[j] = d * f32::from(byte & 0x0F) + m;
            out[j + BLOCK / 2] = d * f32::from(byte >> 4) + m;
        }
    }
}

pub(crate) fn dequantize_q8_0(w: &[u8], out: &mut [f32]) {
    for (block, out) in w.chunks_exact(Q8_0_BYTES).zip(out.chunks_exact_mut(BLOCK)) {
        let d = f16_at(block, 0);
        for (o, &q) in out.iter_mut().zip(&block[2..]) {
            *o = d * f32::from(q as i8);
        }
    }
}

/// Quantizes f32 weights (a multiple of 32 per row) to `Q8_0`, as llama.cpp does: for formats
/// this engine has no kernel for.
pub(crate) fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / BLOCK * Q8_0_BYTES);
    for xs in x.chunks_exact(BLOCK) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(xs.iter().map(|&v| (v * inv).round() as i8 as u8));
    }
    out
}

/// A row-against-activations dot product in one format.
pub(crate) type DotFn = fn(&[u8], &[QBlock]) -> f32;

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

/// AVX2 kernels. The only unsafe code of the crate: intrinsics behind a run-time check of the
/// CPU's features, and unaligned loads from slices whose lengths are checked first.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::*;

    use super::{BLOCK, Q4_1_BYTES, Q8_0_BYTES, QBlock};

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// Only handed out by `q4_1_kernel` after `available()`.
    pub(super) fn dot_q4_1(w: &[u8], a: &[QBlock]) -> f32 {
        assert!(w.len() >= a.len() * Q4_1_BYTES);
        // SAFETY: the CPU has AVX2, FMA and F16C (checked before this function was chosen),
        // and every block read lies inside `w` and `a` (asserted above).
        unsafe { dot_q4_1_avx2(w, a) }
    }

    /// Only handed out by `q8_0_kernel` after `available()`.
    pub(super) fn dot_q8_0(w: &[u8], a: &[QBlock]) -> f32 {
        assert!(w.len() >= a.len() * Q8_0_BYTES);
        // SAFETY: as for `dot_q4_1`.
        unsafe { dot_q8_0_avx2(w, a) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn f16_to_f32(bits: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(bits as i16)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_q4_1_avx2(w: &[u8], a: &[QBlock]) -> f32 {
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        let mut offsets = 0f32;
        for (i, act) in a.iter().enumerate() {
            let block = &w[i * Q4_1_BYTES..(i + 1) * Q4_1_BYTES];
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let m = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
            offsets += m * act.sum;
            // SAFETY: `block[4..20]` is 16 bytes and `act.qs` 32; both loads are unaligned.
            let (packed, x) = unsafe {
                (
                    _mm_loadu_si128(block[4..].as_ptr().cast()),
                    _mm256_loadu_si256(act.qs.as_ptr().cast()),
                )
            };
            // Low nibbles are weights 0..16, high nibbles 16..32.
            let q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low);
            let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * act.d), _mm256_cvtepi32_ps(pairs), acc);
        }
        hsum(acc) + offsets
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_q8_0_avx2(w: &[u8], a: &[QBlock]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for (i, act) in a.iter().enumerate() {
            let block = &w[i * Q8_0_BYTES..(i + 1) * Q8_0_BYTES];
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            debug_assert_eq!(block.len() - 2, BLOCK);
            // SAFETY: `block[2..34]` and `act.qs` are 32 bytes each; unaligned loads.
            let (q, x) = unsafe {
                (
                    _mm256_loadu_si256(block[2..].as_ptr().cast()),
                    _mm256_loadu_si256(act.qs.as_ptr().cast()),
                )
            };
            // maddubs multiplies unsigned by signed bytes: move q's sign onto x.
            let pairs = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)),
                ones,
            );
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * act.d), _mm256_cvtepi32_ps(pairs), acc);
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random_q4_1(rng: &mut StdRng, blocks: usize) -> Vec<u8> {
        let mut w = Vec::new();
        for _ in 0..blocks {
            w.extend_from_slice(&f16::from_f32(rng.random_range(0.001..0.1)).to_le_bytes());
            w.extend_from_slice(&f16::from_f32(rng.random_range(-0.5..0.5)).to_le_bytes());
            w.extend((0..16).map(|_| rng.random::<u8>()));
        }
        w
    }

    fn random_activations(rng: &mut StdRng, n: usize) -> (Vec<f32>, Vec<QBlock>) {
        let x: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0..3.0)).collect();
        let mut q = vec![QBlock::ZERO; n / BLOCK];
        quantize_row(&x, &mut q);
        (x, q)
    }

    fn exact_dot(w: &[f32], x: &[f32]) -> f64 {
        w.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    #[test]
    fn quantized_activations_are_within_half_a_step() {
        let mut rng = StdRng::seed_from_u64(1);
        let (x, q) = random_activations(&mut rng, 256);
        for (xs, block) in x.chunks(BLOCK).zip(&q) {
            let total: i32 = block.qs.iter().map(|&v| i32::from(v)).sum();
            assert!((block.sum - block.d * total as f32).abs() < 1e-4);
            for (&v, &qv) in xs.iter().zip(&block.qs) {
                assert!((v - block.d * f32::from(qv)).abs() <= block.d * 0.5 + 1e-6);
            }
        }
        let mut zeros = [QBlock::ZERO];
        quantize_row(&[0.0; BLOCK], &mut zeros);
        assert_eq!(zeros[0], QBlock::ZERO);
    }

    #[test]
    fn q4_1_dot_is_the_dot_of_the_dequantized_weights() {
        let mut rng = StdRng::seed_from_u64(2);
        for blocks in [1, 2, 18, 48] {
            let w = random_q4_1(&mut rng, blocks);
            let (x, q) = random_activations(&mut rng, blocks * BLOCK);
            let mut dense = vec![0f32; blocks * BLOCK];
            dequantize_q4_1(&w, &mut dense);
            let dequantized_x: Vec<f32> = q
                .iter()
                .flat_map(|b| b.qs.iter().map(move |&v| b.d * f32::from(v)))
                .collect();
            let want = exact_dot(&dense, &dequantized_x);
            let portable = dot_q4_1_portable(&w, &q) as f64;
            let fast = q4_1_kernel()(&w, &q) as f64;
            let scale = exact_dot(
                &dense.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                &x.iter().map(|v| v.abs()).collect::<Vec<_>>(),
            );
            assert!(
                (portable - want).abs() <= 1e-4 * scale,
                "{portable} vs {want}"
            );
            assert!(
                (fast - portable).abs() <= 1e-4 * scale,
                "{fast} vs {portable}"
            );
        }
    }

    #[test]
    fn q8_0_round_trips_and_its_kernels_agree() {
        let mut rng = StdRng::seed_from_u64(3);
        for blocks in [1, 3, 18] {
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
            let (_, q) = random_activations(&mut rng, blocks * BLOCK);
            let dequantized_x: Vec<f32> = q
                .iter()
                .flat_map(|b| b.qs.iter().map(move |&v| b.d * f32::from(v)))
                .collect();
            let want = exact_dot(&back, &dequantized_x);
            let portable = dot_q8_0_portable(&w, &q) as f64;
            let fast = q8_0_kernel()(&w, &q) as f64;
            assert!((portable - want).abs() < 1e-3, "{portable} vs {want}");
            assert!((fast - portable).abs() < 1e-3, "{fast} vs {portable}");
        }
    }

    #[test]
    fn extreme_q8_0_weights_do_not_saturate() {
        // -128 is a legal i8 weight; the SIMD kernel's sign trick must not overflow on it.
        let mut w = f16::from_f32(1.0).to_le_bytes().to_vec();
        w.extend(std::iter::repeat_n(-128i8 as u8, BLOCK));
        let act = QBlock {
            qs: [-127; BLOCK],
            d: 1.0,
            sum: 0.0,
        };
        let want = (128 * 127 * BLOCK) as f32;
        assert_eq!(dot_q8_0_portable(&w, &[act]), want);
        assert_eq!(q8_0_kernel()(&w, &[act]), want);
    }
}

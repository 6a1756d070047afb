//! f32 math written so that loops over it vectorise: no calls and no branches per element.
//!
//! `f32::exp` is a call into libm per element, and a `fold` with `f32::max` or `+` is a chain
//! that the compiler may not reorder; in the training kernels (softmax, SwiGLU, cross-entropy)
//! those were most of the time outside the matrix products.

/// Independent accumulators in [`max`] and [`sum`]: enough for a vector register of f32.
const LANES: usize = 8;

/// `eˣ` to within 2 ulp, from Cephes' `expf` polynomial: 0 below −87 (so `e^−∞ = 0`),
/// `e⁸⁸` above 88, NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and removing 1.5·2²³ rounds to the nearest integer (no `round` instruction needed).
    const ROUND: f32 = 12_582_912.0;
    let c = x.clamp(-87.0, 88.0);
    let n = (c * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = (p * r * r + r + 1.0) * f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < -87.0 { 0.0 } else { y }
}

/// The largest element (−∞ for none); NaNs are skipped.
pub fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    tail.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// The sum, in `LANES` interleaved partial sums.
pub fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (s, &x) in lanes.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// `Σ e^(xᵢ − shift)`, in `LANES` interleaved partial sums.
pub fn sum_exp(xs: &[f32], shift: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&x| exp(x - shift)).sum();
    for chunk in chunks {
        for (s, &x) in lanes.iter_mut().zip(chunk) {
            *s += exp(x - shift);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `Σ aᵢ·bᵢ`, in `LANES` interleaved partial sums.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `softmax(x)` in place, in three vectorised passes; an `x` of only −∞ becomes zeros.
pub fn softmax_in_place(x: &mut [f32]) {
    let m = max(x);
    if m == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    for v in x.iter_mut() {
        *v = exp(*v - m);
    }
    let inv = 1.0 / sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let mut worst = 0f64;
        for k in -870_000..=880_000 {
            let x = k as f32 * 1e-4;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2.0 * f32::EPSILON as f64, "relative error {worst}");
    }

    #[test]
    fn exp_of_special_values() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(200.0) > 1e38);
    }

    #[test]
    fn reductions_match_sequential_ones() {
        for n in [0, 1, 7, 8, 9, 100, 1001] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 3.0)
                .collect();
            let seq_max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&a), seq_max, "max of {n}");
            let seq_sum: f64 = a.iter().map(|&x| x as f64).sum();
            assert!((sum(&a) as f64 - seq_sum).abs() < 1e-3, "sum of {n}");
            let seq_sum_exp: f64 = a.iter().map(|&x| (x as f64 - 1.0).exp()).sum();
            let rel = (sum_exp(&a, 1.0) as f64 - seq_sum_exp).abs() / seq_sum_exp.max(1.0);
            assert!(rel < 1e-6, "sum_exp of {n}");
            let seq_dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!((dot(&a, &b) as f64 - seq_dot).abs() < 1e-3, "dot of {n}");
        }
        assert_eq!(max(&[1.0, f32::NAN, 3.0]), 3.0);
    }

    #[test]
    fn softmax_sums_to_one_and_zeroes_what_is_masked() {
        let mut x = vec![1.0, f32::NEG_INFINITY, 3.0, 2.0, -1.0, 0.5, 0.0, 4.0, 2.5];
        softmax_in_place(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[1], 0.0);
        let z: f64 = [1.0f64, 3.0, 2.0, -1.0, 0.5, 0.0, 4.0, 2.5]
            .iter()
            .map(|v| v.exp())
            .sum();
        assert!((x[7] as f64 - 4f64.exp() / z).abs() < 1e-6);
        let mut none = vec![f32::NEG_INFINITY; 3];
        softmax_in_place(&mut none);
        assert_eq!(none, vec![0.0; 3]);
    }
}

//! The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models
//! Trained on Code": with `n` samples of which `c` are correct,
//! pass@k = 1 − C(n−c, k) / C(n, k), averaged over problems.

/// pass@k for one problem, or `None` when `k` is 0 or more than the `n` samples drawn (the
/// estimator is undefined there). `c` above `n` is clamped to `n`.
pub fn pass_at_k(n: u32, c: u32, k: u32) -> Option<f64> {
    if k == 0 || k > n {
        return None;
    }
    let c = c.min(n);
    if n - c < k {
        // Every draw of k samples holds at least one correct one.
        return Some(1.0);
    }
    // C(n−c, k) / C(n, k) = ∏_{i=n−c+1}^{n} (1 − k/i): a product of terms in [0, 1], which
    // neither overflows like the binomials nor loses precision for large n.
    let miss: f64 = (n - c + 1..=n)
        .map(|i| 1.0 - f64::from(k) / f64::from(i))
        .product();
    Some(1.0 - miss)
}

/// The k reported for `samples` samples per problem: 1, 5, 10, then 20, 50, 100, 200, … (the
/// 1-2-5 series the literature reports, 2 left out), every one below `samples`, and `samples`
/// itself (pass@n: solved at least once).
pub fn reported_ks(samples: u32) -> Vec<u32> {
    let mut ks: Vec<u32> = std::iter::successors(Some(1u32), |d| d.checked_mul(10))
        .flat_map(|decade| [1, 2, 5].map(|step| decade.checked_mul(step)))
        .map_while(|k| k.filter(|&k| k < samples))
        .filter(|&k| k != 2)
        .collect();
    if samples > 0 {
        ks.push(samples);
    }
    ks
}

/// The mean pass@k over problems given as `(n, c)` pairs; problems with fewer than `k`
/// samples are left out. `None` when no problem has `k` samples.
pub fn mean_pass_at_k(counts: &[(u32, u32)], k: u32) -> Option<f64> {
    let values: Vec<f64> = counts
        .iter()
        .filter_map(|&(n, c)| pass_at_k(n, c, k))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn matches_hand_computed_values() {
        // pass@1 is the share of correct samples.
        assert!(close(pass_at_k(5, 1, 1).unwrap(), 0.2));
        assert!(close(pass_at_k(10, 7, 1).unwrap(), 0.7));
        // n=4, c=2, k=2: 1 − C(2,2)/C(4,2) = 1 − 1/6.
        assert!(close(pass_at_k(4, 2, 2).unwrap(), 5.0 / 6.0));
        // n=10, c=3, k=5: 1 − C(7,5)/C(10,5) = 1 − 21/252 = 11/12.
        assert!(close(pass_at_k(10, 3, 5).unwrap(), 11.0 / 12.0));
        // n=20, c=5, k=10: 1 − C(15,10)/C(20,10) = 1 − 3003/184756.
        assert!(close(
            pass_at_k(20, 5, 10).unwrap(),
            1.0 - 3003.0 / 184_756.0
        ));
        // n=10, c=1, k=10: the one correct sample is always drawn.
        assert!(close(pass_at_k(10, 1, 10).unwrap(), 1.0));
    }

    #[test]
    fn edges() {
        assert_eq!(pass_at_k(10, 0, 1), Some(0.0));
        assert_eq!(pass_at_k(10, 0, 10), Some(0.0));
        assert_eq!(pass_at_k(10, 10, 1), Some(1.0));
        assert_eq!(pass_at_k(10, 8, 5), Some(1.0), "n − c < k");
        assert_eq!(pass_at_k(10, 12, 1), Some(1.0), "c is clamped to n");
        assert_eq!(pass_at_k(3, 1, 5), None, "k > n");
        assert_eq!(pass_at_k(3, 1, 0), None);
        assert_eq!(pass_at_k(0, 0, 1), None);
    }

    #[test]
    fn agrees_with_the_binomial_form() {
        fn choose(n: u64, k: u64) -> f64 {
            (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
        }
        for n in 1..=30u32 {
            for c in 0..=n {
                for k in 1..=n {
                    let exact = if n - c < k {
                        1.0
                    } else {
                        1.0 - choose(u64::from(n - c), u64::from(k))
                            / choose(u64::from(n), u64::from(k))
                    };
                    let got = pass_at_k(n, c, k).unwrap();
                    assert!(
                        (got - exact).abs() < 1e-9,
                        "n={n} c={c} k={k}: {got} vs {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn ks_follow_1_5_10_then_1_2_5_and_end_at_n() {
        assert_eq!(reported_ks(1), vec![1]);
        assert_eq!(reported_ks(2), vec![1, 2]);
        assert_eq!(reported_ks(4), vec![1, 4]);
        assert_eq!(reported_ks(5), vec![1, 5]);
        assert_eq!(reported_ks(10), vec![1, 5, 10]);
        assert_eq!(reported_ks(16), vec![1, 5, 10, 16]);
        assert_eq!(reported_ks(64), vec![1, 5, 10, 20, 50, 64]);
        assert_eq!(reported_ks(100), vec![1, 5, 10, 20, 50, 100]);
        assert!(reported_ks(0).is_empty());
        let all = reported_ks(u32::MAX);
        assert_eq!(all[all.len() - 2..], [2_000_000_000, u32::MAX]);
    }

    #[test]
    fn mean_over_problems() {
        let counts = [(4, 4), (4, 0), (4, 2)];
        assert!(close(mean_pass_at_k(&counts, 1).unwrap(), 0.5));
        assert!(close(
            mean_pass_at_k(&counts, 2).unwrap(),
            (1.0 + 0.0 + 5.0 / 6.0) / 3.0
        ));
        assert_eq!(mean_pass_at_k(&counts, 5), None);
        assert_eq!(mean_pass_at_k(&[], 1), None);
    }
}

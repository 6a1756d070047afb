//! Degenerate repetition: the same word n-gram over and over, the usual way a sampled reasoning
//! trace loops until it hits the token limit.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Check, Reason, Verdict};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepetitionLimits {
    /// Words per n-gram. CJK characters count as words, since those scripts have no spaces.
    pub n: usize,
    /// Most times any single n-gram may occur.
    pub max_repeats: usize,
    /// Largest share of n-grams that may be repeats of an earlier one, in [0, 1].
    pub max_repeated_share: f64,
    /// Texts with fewer n-grams than this are only checked against `max_repeats`.
    pub min_ngrams_for_share: usize,
}

impl Default for RepetitionLimits {
    fn default() -> Self {
        RepetitionLimits {
            n: 10,
            max_repeats: 8,
            max_repeated_share: 0.5,
            min_ngrams_for_share: 200,
        }
    }
}

pub fn check(text: &str, limits: &RepetitionLimits) -> Verdict {
    let words = words(text);
    let n = limits.n.max(1);
    if words.len() < n {
        return Verdict::pass(Check::Repetition);
    }
    let mut counts: HashMap<&[&str], usize> = HashMap::new();
    let mut repeated = 0usize;
    let mut worst: (&[&str], usize) = (&[], 0);
    for gram in words.windows(n) {
        let count = counts.entry(gram).or_default();
        *count += 1;
        if *count > 1 {
            repeated += 1;
        }
        if *count > worst.1 {
            worst = (gram, *count);
        }
    }
    if worst.1 > limits.max_repeats {
        let sample = worst.0.join(" ");
        return Verdict::fail(
            Check::Repetition,
            Reason::RepetitionNgram {
                n,
                count: worst.1,
                limit: limits.max_repeats,
                sample,
            },
        );
    }
    let total = words.len() - n + 1;
    let share = repeated as f64 / total as f64;
    if total >= limits.min_ngrams_for_share && share > limits.max_repeated_share {
        return Verdict::fail(
            Check::Repetition,
            Reason::RepetitionRatio {
                n,
                share,
                limit: limits.max_repeated_share,
            },
        );
    }
    Verdict::pass(Check::Repetition)
}

/// Whitespace-separated words, with each CJK character a word of its own.
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let mut start = 0;
        for (i, c) in token.char_indices() {
            if is_cjk(c) {
                if start < i {
                    out.push(&token[start..i]);
                }
                out.push(&token[i..i + c.len_utf8()]);
                start = i + c.len_utf8();
            }
        }
        if start < token.len() {
            out.push(&token[start..]);
        }
    }
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_reasoning_passes() {
        let text = "Let me verify: 4 × 15.01 = 60.04. So the total is 60.04 dollars. \
                    Let me verify: 4 × 15.01 = 60.04 again to be sure.";
        assert!(check(text, &RepetitionLimits::default()).is_pass());
    }

    #[test]
    fn loops_are_rejected() {
        let text = "Wait, let me reconsider the problem from the start. ".repeat(12);
        let verdict = check(&text, &RepetitionLimits::default());
        assert_eq!(verdict.code(), "repetition.ngram");
        let cjk = "我们再检查一遍这个答案是否正确。".repeat(12);
        assert_eq!(
            check(&cjk, &RepetitionLimits::default()).code(),
            "repetition.ngram"
        );
    }

    #[test]
    fn share_of_repeats() {
        let unique: String = (0..300).map(|i| format!("w{i} ")).collect();
        let text = format!("{unique}{unique}{unique}");
        let limits = RepetitionLimits {
            max_repeats: 100,
            ..RepetitionLimits::default()
        };
        assert_eq!(check(&text, &limits).code(), "repetition.ratio");
        assert!(check(&unique, &limits).is_pass());
    }
}

//! Which of a prompt's samples to keep once they are verified.

use serde::{Deserialize, Serialize};

use crate::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepPolicy {
    /// The first sample that passes every check; one trace per prompt.
    #[default]
    FirstCorrect,
    /// Every sample that passes every check.
    AllCorrect,
    /// Every sample, with its verdicts, so rejected traces can be studied.
    All,
}

/// A sample passes when all its verdicts pass (no checks configured counts as passing).
pub fn all_pass(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(Verdict::is_pass)
}

impl KeepPolicy {
    /// Streaming form: whether the next sample is kept, given how many passing samples of the same
    /// prompt were kept before it.
    pub fn keeps(self, verdicts: &[Verdict], kept_correct_before: usize) -> bool {
        match self {
            KeepPolicy::FirstCorrect => kept_correct_before == 0 && all_pass(verdicts),
            KeepPolicy::AllCorrect => all_pass(verdicts),
            KeepPolicy::All => true,
        }
    }

    /// Indices of the samples to keep, in order, from the verdict lists of one prompt's samples.
    pub fn select<V: AsRef<[Verdict]>>(self, samples: &[V]) -> Vec<usize> {
        let mut kept_correct = 0;
        let mut kept = Vec::new();
        for (i, verdicts) in samples.iter().enumerate() {
            let verdicts = verdicts.as_ref();
            if self.keeps(verdicts, kept_correct) {
                kept.push(i);
                kept_correct += usize::from(all_pass(verdicts));
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Check, Reason};

    #[test]
    fn policies() {
        let pass = || Verdict::pass(Check::Math);
        let fail = || Verdict::fail(Check::Math, Reason::MathNoAnswer);
        let samples = vec![
            vec![fail()],
            vec![pass(), pass()],
            vec![pass(), fail()],
            vec![pass()],
        ];
        assert_eq!(KeepPolicy::FirstCorrect.select(&samples), vec![1]);
        assert_eq!(KeepPolicy::AllCorrect.select(&samples), vec![1, 3]);
        assert_eq!(KeepPolicy::All.select(&samples), vec![0, 1, 2, 3]);
        assert_eq!(
            KeepPolicy::FirstCorrect.select::<Vec<Verdict>>(&[]),
            Vec::<usize>::new()
        );
        let parsed: KeepPolicy = serde_json::from_str(r#""first_correct""#).expect("snake_case");
        assert_eq!(parsed, KeepPolicy::FirstCorrect);
        assert_eq!(
            serde_json::to_string(&KeepPolicy::AllCorrect).expect("ser"),
            r#""all_correct""#
        );
    }
}

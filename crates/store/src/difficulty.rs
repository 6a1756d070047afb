//! Acceptance by problem difficulty: rejection sampling keeps what the teacher solves, so a
//! data set drifts toward easy problems unless someone looks. A problem's difficulty is the
//! source's own (`[source] level_field`, MATH's `Level 3`) when the row has one, else a bucket
//! of the teacher's pass rate on it (its verified samples over its samples).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the problems of one difficulty came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DifficultyCounts {
    pub problems: u64,
    /// Problems with at least one accepted sample.
    pub problems_accepted: u64,
    pub samples: u64,
    pub accepted: u64,
    /// Samples the length limit cut off at least once (recovered or not).
    pub truncated: u64,
    /// Samples rejected because the length limit cut them off (`length.truncated`).
    pub lost_to_length: u64,
    /// Problems without an accepted sample of which at least one was lost to the length limit.
    pub problems_lost_to_length: u64,
}

impl DifficultyCounts {
    pub fn add(&mut self, other: &Self) {
        self.problems += other.problems;
        self.problems_accepted += other.problems_accepted;
        self.samples += other.samples;
        self.accepted += other.accepted;
        self.truncated += other.truncated;
        self.lost_to_length += other.lost_to_length;
        self.problems_lost_to_length += other.problems_lost_to_length;
    }

    /// Accepted share of the samples, in percent.
    pub fn acceptance(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            100.0 * self.accepted as f64 / self.samples as f64
        }
    }
}

/// The rows of one problem, as they are counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProblemTally {
    pub level: Option<String>,
    pub samples: u64,
    /// Samples that passed every check (accepted, or passed but not kept by the keep policy).
    pub verified: u64,
    pub accepted: u64,
    pub truncated: u64,
    pub lost_to_length: u64,
}

impl ProblemTally {
    /// Counts one row: its level, whether it was accepted, its reject reason and how often the
    /// length limit cut it.
    pub fn add(
        &mut self,
        level: Option<&str>,
        accepted: bool,
        reject_reason: Option<&str>,
        truncations: u32,
    ) {
        if self.level.is_none() {
            self.level = level.filter(|l| !l.trim().is_empty()).map(str::to_owned);
        }
        self.samples += 1;
        if accepted {
            self.accepted += 1;
        }
        if accepted || reject_reason == Some("keep.not_first_correct") {
            self.verified += 1;
        }
        if truncations > 0 || reject_reason == Some("length.truncated") {
            self.truncated += 1;
        }
        if reject_reason == Some("length.truncated") {
            self.lost_to_length += 1;
        }
    }

    /// The problem's difficulty: the source's level, else its pass-rate bucket.
    pub fn difficulty(&self) -> String {
        match &self.level {
            // MATH-500 writes its levels as bare numbers.
            Some(level) if level.trim().parse::<f64>().is_ok() => format!("level {}", level.trim()),
            Some(level) => level.trim().to_owned(),
            None => pass_rate_bucket(self.verified, self.samples).to_owned(),
        }
    }

    /// This problem as counts of its difficulty.
    pub fn counts(&self) -> DifficultyCounts {
        DifficultyCounts {
            problems: 1,
            problems_accepted: u64::from(self.accepted > 0),
            samples: self.samples,
            accepted: self.accepted,
            truncated: self.truncated,
            lost_to_length: self.lost_to_length,
            problems_lost_to_length: u64::from(self.accepted == 0 && self.lost_to_length > 0),
        }
    }

    /// Adds this problem to `by_difficulty`.
    pub fn record(&self, by_difficulty: &mut BTreeMap<String, DifficultyCounts>) {
        if self.samples > 0 {
            by_difficulty
                .entry(self.difficulty())
                .or_default()
                .add(&self.counts());
        }
    }
}

/// The bucket of a problem without a source level: the teacher's pass rate on it.
pub fn pass_rate_bucket(verified: u64, samples: u64) -> &'static str {
    if samples == 0 || verified == 0 {
        return "pass rate 0%";
    }
    if verified >= samples {
        return "pass rate 100%";
    }
    match 100 * verified / samples {
        0..=33 => "pass rate 1-33%",
        34..=66 => "pass rate 34-66%",
        _ => "pass rate 67-99%",
    }
}

/// The difficulties in reading order: by the first number in their name (`Level 2` before
/// `Level 10`, `pass rate 0%` before `pass rate 100%`), then by name.
pub fn ordered(
    by_difficulty: &BTreeMap<String, DifficultyCounts>,
) -> Vec<(&str, &DifficultyCounts)> {
    let mut rows: Vec<(&str, &DifficultyCounts)> =
        by_difficulty.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let number = |key: &str| -> Option<u64> {
        let digits: String = key
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    rows.sort_by(|a, b| {
        (a.0.starts_with("pass rate"), number(a.0), a.0).cmp(&(
            b.0.starts_with("pass rate"),
            number(b.0),
            b.0,
        ))
    });
    rows
}

/// Problems of `rows` (grouped by id, in any order) counted by difficulty.
pub fn tally<'a>(
    rows: impl IntoIterator<Item = (&'a str, Option<&'a str>, bool, Option<&'a str>, u32)>,
) -> BTreeMap<String, DifficultyCounts> {
    let mut problems: std::collections::HashMap<&str, ProblemTally> =
        std::collections::HashMap::new();
    for (id, level, accepted, reason, truncations) in rows {
        problems
            .entry(id)
            .or_default()
            .add(level, accepted, reason, truncations);
    }
    let mut out = BTreeMap::new();
    for problem in problems.values() {
        problem.record(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_wins_else_the_pass_rate_buckets_the_problem() {
        let rows = [
            ("a", Some("Level 1"), true, None, 0),
            ("a", Some("Level 1"), false, Some("math.wrong_answer"), 0),
            ("b", None, false, Some("length.truncated"), 1),
            ("b", None, false, Some("length.truncated"), 2),
            ("c", None, true, None, 1),
            ("c", None, false, Some("keep.not_first_correct"), 0),
            ("c", None, false, Some("math.wrong_answer"), 0),
            ("d", Some("Level 10"), true, None, 0),
            ("e", Some("3"), true, None, 0),
        ];
        let by = tally(rows);
        assert_eq!(
            by["Level 1"],
            DifficultyCounts {
                problems: 1,
                problems_accepted: 1,
                samples: 2,
                accepted: 1,
                ..Default::default()
            }
        );
        assert_eq!(by["pass rate 0%"].problems_lost_to_length, 1);
        assert_eq!(by["pass rate 0%"].lost_to_length, 2);
        assert_eq!(by["pass rate 0%"].truncated, 2);
        // Two of three passed every check, one of them kept.
        let c = by["pass rate 34-66%"];
        assert_eq!((c.samples, c.accepted, c.truncated), (3, 1, 1));
        let order: Vec<&str> = ordered(&by).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            order,
            [
                "Level 1",
                "level 3",
                "Level 10",
                "pass rate 0%",
                "pass rate 34-66%"
            ]
        );
    }

    #[test]
    fn buckets_cover_every_rate() {
        assert_eq!(pass_rate_bucket(0, 4), "pass rate 0%");
        assert_eq!(pass_rate_bucket(1, 4), "pass rate 1-33%");
        assert_eq!(pass_rate_bucket(2, 4), "pass rate 34-66%");
        assert_eq!(pass_rate_bucket(3, 4), "pass rate 67-99%");
        assert_eq!(pass_rate_bucket(4, 4), "pass rate 100%");
        assert_eq!(pass_rate_bucket(0, 0), "pass rate 0%");
    }
}

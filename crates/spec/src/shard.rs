//! Shards of a run's prompt space: `--shard I/N` runs only the prompts whose stable id hashes
//! to shard I of N, so N machines (a Slurm array, a Kubernetes Indexed Job) split one run
//! without talking to each other.
//!
//! The partition is a pure function of the prompt id and N: FNV-1a (64-bit) over the id's
//! UTF-8 bytes, finished with SplitMix64's mixer (FNV-1a alone leaves the low bits of similar
//! ids correlated), modulo N. Both are fixed, fully specified algorithms, so every machine,
//! build and Rust version puts a prompt in the same shard, whatever the order of the rows and
//! whichever other shards run.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Shard `index` of `count` (0-based, `index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawShard")]
pub struct Shard {
    index: u32,
    count: u32,
}

#[derive(Deserialize)]
struct RawShard {
    index: u32,
    count: u32,
}

impl TryFrom<RawShard> for Shard {
    type Error = ShardError;

    fn try_from(raw: RawShard) -> Result<Self, ShardError> {
        Shard::new(raw.index, raw.count)
    }
}

/// A shard that cannot be used, or `--shard auto` without a scheduler to ask.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("invalid shard `{0}`: expected I/N (e.g. 0/4, shards numbered from 0) or `auto`")]
    Syntax(String),
    #[error("there must be at least one shard (got {index}/0)")]
    NoShards { index: u32 },
    #[error("shard {index} of {count} does not exist: shards are numbered 0 to {}", count - 1)]
    OutOfRange { index: u32, count: u32 },
    #[error(
        "--shard auto: neither SLURM_ARRAY_TASK_ID (a Slurm array job) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set; give the shard as --shard I/N"
    )]
    NoScheduler,
    #[error("--shard auto: {variable}={value:?} is not a whole number")]
    NotANumber {
        variable: &'static str,
        value: String,
    },
    #[error(
        "--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MIN/MAX are; give the shard as --shard I/N"
    )]
    SlurmWithoutCount,
    #[error(
        "--shard auto: Slurm array task {task} is not shard {min}+k×{step} of an array of {count} (submit a contiguous range, e.g. --array=0-{})",
        count.saturating_sub(1)
    )]
    SlurmNotARange {
        task: u32,
        min: u32,
        step: u32,
        count: u32,
    },
    #[error(
        "--shard auto: JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but the number of shards is not: give --shards N, N being the Job's `completions`"
    )]
    KubernetesWithoutCount,
    #[error("--shards {given} disagrees with the Slurm array, which has {count} tasks")]
    CountDisagrees { given: u32, count: u32 },
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards { index });
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Self { index, count })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// The shard a prompt id belongs to, of `count` (> 0).
    pub fn of(id: &str, count: u32) -> u32 {
        (splitmix64(fnv1a64(id.as_bytes())) % u64::from(count.max(1))) as u32
    }

    /// Whether the prompt with this stable id is this shard's.
    pub fn contains(self, id: &str) -> bool {
        Self::of(id, self.count) == self.index
    }

    /// The shard's run directory inside the run's: `shard-I-of-N`.
    pub fn dir_name(self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// The shard a directory named by [`Self::dir_name`] holds.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("shard-")?;
        let (index, count) = rest.split_once("-of-")?;
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        Self::new(number(index)?, number(count)?).ok()
    }

    /// This shard's share of `items` (a definition's teacher endpoints): with at least as many
    /// items as shards, every item whose position is this shard's index modulo the count, so
    /// the shards split them without overlap; with fewer, the one item at the index modulo
    /// their number, so shards spread evenly over them.
    pub fn share<T: Clone>(self, items: &[T]) -> Vec<T> {
        if items.is_empty() {
            return Vec::new();
        }
        let (index, count) = (self.index as usize, self.count as usize);
        if items.len() >= count {
            items.iter().skip(index).step_by(count).cloned().collect()
        } else {
            vec![items[index % items.len()].clone()]
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, ShardError> {
        let syntax = || ShardError::Syntax(s.to_owned());
        let (index, count) = s.trim().split_once('/').ok_or_else(syntax)?;
        let index = index.trim().parse().map_err(|_| syntax())?;
        let count = count.trim().parse().map_err(|_| syntax())?;
        Self::new(index, count)
    }
}

/// What `--shard` asks for: a given shard, or the one the scheduler's environment names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardRequest {
    Fixed(Shard),
    Auto,
}

impl FromStr for ShardRequest {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, ShardError> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(Self::Auto)
        } else {
            s.parse().map(Self::Fixed)
        }
    }
}

impl ShardRequest {
    /// The shard, asking the process environment for `auto`; `shards` is `--shards N`.
    pub fn resolve(self, shards: Option<u32>) -> Result<Shard, ShardError> {
        self.resolve_with(|name| std::env::var(name).ok(), shards)
    }

    /// [`Self::resolve`] with the environment given as a lookup.
    ///
    /// Slurm: task `SLURM_ARRAY_TASK_ID` of an array of `SLURM_ARRAY_TASK_COUNT` tasks from
    /// `SLURM_ARRAY_TASK_MIN` in steps of `SLURM_ARRAY_TASK_STEP` (so `--array=1-8` and
    /// `--array=0-14:2` both give shards 0..N-1); without a count, `MAX - MIN + 1` steps.
    /// Kubernetes: `JOB_COMPLETION_INDEX` (0-based already) of `--shards N`, as the pod cannot
    /// see the Job's `completions`.
    pub fn resolve_with(
        self,
        env: impl Fn(&str) -> Option<String>,
        shards: Option<u32>,
    ) -> Result<Shard, ShardError> {
        if let Self::Fixed(shard) = self {
            return Ok(shard);
        }
        let number = |variable: &'static str| -> Result<Option<u32>, ShardError> {
            match env(variable) {
                None => Ok(None),
                Some(value) if value.trim().is_empty() => Ok(None),
                Some(value) => value
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ShardError::NotANumber { variable, value }),
            }
        };
        if let Some(task) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let count = match (
                number("SLURM_ARRAY_TASK_COUNT")?,
                number("SLURM_ARRAY_TASK_MAX")?,
            ) {
                (Some(count), _) => count,
                (None, Some(max)) if max >= min => (max - min) / step + 1,
                _ => return Err(ShardError::SlurmWithoutCount),
            };
            if let Some(given) = shards
                && given != count
            {
                return Err(ShardError::CountDisagrees { given, count });
            }
            let not_a_range = ShardError::SlurmNotARange {
                task,
                min,
                step,
                count,
            };
            let offset = task.checked_sub(min).ok_or(not_a_range.clone())?;
            if offset % step != 0 || offset / step >= count {
                return Err(not_a_range);
            }
            return Shard::new(offset / step, count);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = shards.ok_or(ShardError::KubernetesWithoutCount)?;
            return Shard::new(index, count);
        }
        Err(ShardError::NoScheduler)
    }
}

/// FNV-1a, 64-bit.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finaliser.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_hash_is_pinned() {
        // Changing these moves prompts between shards of runs already under way.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let shards: Vec<u32> = ["0", "1", "2", "gsm8k-17", "d41d8cd98f00b204"]
            .iter()
            .map(|id| Shard::of(id, 4))
            .collect();
        // Computed independently (Python) from the algorithm in the module doc.
        assert_eq!(shards, [0, 1, 1, 3, 1]);
    }

    #[test]
    fn shards_partition_ids_evenly() {
        let ids: Vec<String> = (0..4000).map(|i| format!("row-{i}")).collect();
        let mut sizes = [0usize; 4];
        for id in &ids {
            let owners: Vec<u32> = (0..4)
                .filter(|&i| Shard::new(i, 4).unwrap().contains(id))
                .collect();
            assert_eq!(owners.len(), 1, "{id} belongs to exactly one shard");
            sizes[owners[0] as usize] += 1;
        }
        assert!(sizes.iter().all(|&n| (850..1150).contains(&n)), "{sizes:?}");
    }

    #[test]
    fn parses_and_names_shards() {
        let shard: Shard = "2/4".parse().unwrap();
        assert_eq!((shard.index(), shard.count()), (2, 4));
        assert_eq!(shard.to_string(), "2/4");
        assert_eq!(shard.dir_name(), "shard-2-of-4");
        assert_eq!(Shard::from_dir_name("shard-2-of-4"), Some(shard));
        assert_eq!(Shard::from_dir_name("shard-4-of-4"), None);
        assert_eq!(Shard::from_dir_name("shard--of-4"), None);
        assert_eq!(
            "4/4".parse::<Shard>(),
            Err(ShardError::OutOfRange { index: 4, count: 4 })
        );
        assert!(matches!("1-4".parse::<Shard>(), Err(ShardError::Syntax(_))));
        assert_eq!(
            "0/0".parse::<Shard>(),
            Err(ShardError::NoShards { index: 0 })
        );
        assert_eq!("AUTO".parse::<ShardRequest>(), Ok(ShardRequest::Auto));
        let json = serde_json::to_string(&shard).unwrap();
        assert_eq!(json, r#"{"index":2,"count":4}"#);
        assert_eq!(serde_json::from_str::<Shard>(&json).unwrap(), shard);
        assert!(serde_json::from_str::<Shard>(r#"{"index":4,"count":4}"#).is_err());
    }

    #[test]
    fn auto_reads_slurm_and_kubernetes() {
        let auto = ShardRequest::Auto;
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(auto.resolve_with(env(&slurm), None), Shard::new(3, 4));
        // --array=1-4: MIN/MAX, no COUNT.
        let one_based = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "4"),
        ];
        assert_eq!(auto.resolve_with(env(&one_based), None), Shard::new(0, 4));
        // --array=0-14:2
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "14"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(auto.resolve_with(env(&stepped), None), Shard::new(3, 8));
        // --array=1,3,7: not a range.
        let list = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(matches!(
            auto.resolve_with(env(&list), None),
            Err(ShardError::SlurmNotARange { .. })
        ));
        assert_eq!(
            auto.resolve_with(env(&slurm), Some(5)),
            Err(ShardError::CountDisagrees { given: 5, count: 4 })
        );
        assert_eq!(
            auto.resolve_with(env(&[("SLURM_ARRAY_TASK_ID", "1")]), None),
            Err(ShardError::SlurmWithoutCount)
        );
        let k8s = [("JOB_COMPLETION_INDEX", "5")];
        assert_eq!(auto.resolve_with(env(&k8s), Some(8)), Shard::new(5, 8));
        assert_eq!(
            auto.resolve_with(env(&k8s), None),
            Err(ShardError::KubernetesWithoutCount)
        );
        assert_eq!(
            auto.resolve_with(env(&k8s), Some(4)),
            Err(ShardError::OutOfRange { index: 5, count: 4 })
        );
        assert_eq!(
            auto.resolve_with(env(&[]), Some(4)),
            Err(ShardError::NoScheduler)
        );
        assert!(matches!(
            auto.resolve_with(env(&[("JOB_COMPLETION_INDEX", "x")]), Some(4)),
            Err(ShardError::NotANumber { .. })
        ));
        let fixed = ShardRequest::Fixed(Shard::new(1, 2).unwrap());
        assert_eq!(fixed.resolve_with(env(&slurm), None), Shard::new(1, 2));
    }

    #[test]
    fn endpoints_are_shared_out() {
        let eps: Vec<u32> = (0..8).collect();
        let s = |i, n| Shard::new(i, n).unwrap();
        assert_eq!(s(1, 4).share(&eps), [1, 5]);
        assert_eq!(s(0, 8).share(&eps), [0]);
        // Fewer endpoints than shards: each shard takes one, spread evenly.
        assert_eq!(s(2, 4).share(&eps[..3]), [2]);
        assert_eq!(s(3, 4).share(&eps[..3]), [0]);
        assert_eq!(s(3, 4).share(&eps[..1]), [0]);
    }
}

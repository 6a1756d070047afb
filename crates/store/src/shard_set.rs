//! The shard directories of runs split with `--shard I/N`, taken together by `status` and
//! `export`: they must have run the same definition, cover shards 0..N-1 exactly once, and
//! have completed, or the union of their rows is not the run's dataset.
//!
//! Shards are grouped by pipeline name, so the shards of two different runs can be exported
//! together; a shard of another definition under the same name is a problem of its group.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use distillery_spec::Shard;

use crate::error::Result;
use crate::run_dir::{Manifest, RunDir, RunStatus};

/// One shard's run directory.
#[derive(Debug, Clone)]
pub struct ShardMember {
    pub path: PathBuf,
    pub shard: Shard,
    pub manifest: Manifest,
}

/// The shards of one pipeline among the inputs, by shard index.
#[derive(Debug, Clone)]
pub struct ShardSet {
    pub name: String,
    pub members: Vec<ShardMember>,
    pub problems: Vec<ShardProblem>,
}

/// Why a set of shards is not one complete run.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardProblem {
    /// The shards ran different definitions: each config hash with the shards that ran it.
    Definitions {
        name: String,
        hashes: Vec<(String, Vec<PathBuf>)>,
    },
    /// The shards split the prompts into different numbers of shards.
    Counts {
        name: String,
        counts: Vec<(u32, Vec<PathBuf>)>,
    },
    /// One shard given twice.
    Duplicate { shard: Shard, paths: Vec<PathBuf> },
    /// A shard none of the inputs holds.
    Missing {
        name: String,
        shard: Shard,
        /// Where it would be, beside the others.
        expected: Option<PathBuf>,
        /// Whether a run directory is there (it was left out of the inputs).
        there: bool,
    },
    /// A shard whose run has not completed.
    NotComplete {
        path: PathBuf,
        shard: Shard,
        status: RunStatus,
        done: u64,
        total: Option<u64>,
    },
}

impl ShardProblem {
    /// Problems `--allow-incomplete` lets an export go past: data not there yet, as opposed to
    /// data that does not belong together.
    pub fn is_incompleteness(&self) -> bool {
        matches!(self, Self::Missing { .. } | Self::NotComplete { .. })
    }
}

fn paths(list: &[PathBuf]) -> String {
    list.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for ShardProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Definitions { name, hashes } => {
                write!(
                    f,
                    "the shards of `{name}` ran different definitions (config hash):"
                )?;
                for (hash, list) in hashes {
                    write!(
                        f,
                        "\n      {}… in {}",
                        &hash[..hash.len().min(12)],
                        paths(list)
                    )?;
                }
                Ok(())
            }
            Self::Counts { name, counts } => {
                write!(
                    f,
                    "the shards of `{name}` split the prompts different ways:"
                )?;
                for (count, list) in counts {
                    write!(f, "\n      into {count} in {}", paths(list))?;
                }
                Ok(())
            }
            Self::Duplicate { shard, paths: list } => {
                write!(f, "shard {shard} is given twice: {}", paths(list))
            }
            Self::Missing {
                name,
                shard,
                expected,
                there,
            } => {
                write!(f, "shard {shard} of `{name}` is missing")?;
                match expected {
                    Some(expected) if *there => {
                        write!(f, " ({} is not among the inputs)", expected.display())
                    }
                    Some(expected) => write!(f, " (no run directory {})", expected.display()),
                    None => Ok(()),
                }
            }
            Self::NotComplete {
                path,
                shard,
                status,
                done,
                total,
            } => write!(
                f,
                "shard {shard} ({}) is {status}: {done} of {} prompts done; `distillery resume {}` finishes it",
                path.display(),
                total.map_or_else(|| "?".to_owned(), |t| t.to_string()),
                path.display()
            ),
        }
    }
}

/// The inputs with every directory that is not itself a run but holds shard run directories
/// (`shard-I-of-N`, as `distillery run --shard` makes them) replaced by those, in shard order.
pub fn expand(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if RunDir::is_run_dir(input) || !input.is_dir() {
            out.push(input.clone());
            continue;
        }
        let mut shards = Vec::new();
        let entries =
            std::fs::read_dir(input).map_err(crate::StoreError::io("list", input.as_path()))?;
        for entry in entries {
            let entry = entry.map_err(crate::StoreError::io("list", input.as_path()))?;
            let name = entry.file_name();
            if let Some(shard) = name.to_str().and_then(Shard::from_dir_name)
                && RunDir::is_run_dir(&entry.path())
            {
                shards.push(((shard.count(), shard.index()), entry.path()));
            }
        }
        if shards.is_empty() {
            out.push(input.clone());
        } else {
            shards.sort();
            out.extend(shards.into_iter().map(|(_, path)| path));
        }
    }
    Ok(out)
}

/// The shard sets among `inputs` (run directories started with `--shard`; other inputs are
/// not looked at), each with its problems.
pub fn shard_sets(inputs: &[PathBuf]) -> Result<Vec<ShardSet>> {
    let mut groups: BTreeMap<String, Vec<ShardMember>> = BTreeMap::new();
    for path in inputs {
        if !RunDir::is_run_dir(path) {
            continue;
        }
        let manifest = RunDir::open(path)?.manifest()?;
        if let Some(shard) = manifest.shard {
            groups
                .entry(manifest.name.clone())
                .or_default()
                .push(ShardMember {
                    path: path.clone(),
                    shard,
                    manifest,
                });
        }
    }
    Ok(groups
        .into_iter()
        .map(|(name, mut members)| {
            members.sort_by_key(|m| (m.shard.count(), m.shard.index()));
            let problems = problems(&name, &members);
            ShardSet {
                name,
                members,
                problems,
            }
        })
        .collect())
}

fn problems(name: &str, members: &[ShardMember]) -> Vec<ShardProblem> {
    let mut problems = Vec::new();
    let mut hashes: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    let mut counts: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
    let mut by_shard: BTreeMap<Shard, Vec<PathBuf>> = BTreeMap::new();
    for member in members {
        hashes
            .entry(&member.manifest.config_hash)
            .or_default()
            .push(member.path.clone());
        counts
            .entry(member.shard.count())
            .or_default()
            .push(member.path.clone());
        by_shard
            .entry(member.shard)
            .or_default()
            .push(member.path.clone());
    }
    if hashes.len() > 1 {
        problems.push(ShardProblem::Definitions {
            name: name.to_owned(),
            hashes: hashes
                .into_iter()
                .map(|(hash, list)| (hash.to_owned(), list))
                .collect(),
        });
    }
    if counts.len() > 1 {
        problems.push(ShardProblem::Counts {
            name: name.to_owned(),
            counts: counts.into_iter().collect(),
        });
        // Coverage means nothing across different splits.
        return problems;
    }
    for (shard, list) in &by_shard {
        if list.len() > 1 {
            problems.push(ShardProblem::Duplicate {
                shard: *shard,
                paths: list.clone(),
            });
        }
    }
    if let Some(first) = members.first() {
        let count = first.shard.count();
        let parent = first.path.parent().map(Path::to_owned);
        for index in 0..count {
            let Ok(shard) = Shard::new(index, count) else {
                continue;
            };
            if !by_shard.contains_key(&shard) {
                let expected = parent.as_ref().map(|p| p.join(shard.dir_name()));
                problems.push(ShardProblem::Missing {
                    name: name.to_owned(),
                    shard,
                    there: expected.as_deref().is_some_and(RunDir::is_run_dir),
                    expected,
                });
            }
        }
    }
    for member in members {
        if member.manifest.status != RunStatus::Completed {
            problems.push(ShardProblem::NotComplete {
                path: member.path.clone(),
                shard: member.shard,
                status: member.manifest.status,
                done: member.manifest.counts.prompts_done,
                total: member.manifest.counts.prompts_total,
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(dir: &Path, name: &str, shard: &str, definition: &str, status: RunStatus) {
        let shard: Shard = shard.parse().unwrap();
        let mut manifest = Manifest::new("r", name, definition, "0");
        manifest.shard = Some(shard);
        manifest.status = status;
        RunDir::create(dir.join(shard.dir_name()), definition, &manifest).unwrap();
    }

    fn problems_of(dir: &Path) -> Vec<ShardProblem> {
        let sets = shard_sets(&expand(&[dir.to_owned()]).unwrap()).unwrap();
        sets.into_iter().flat_map(|s| s.problems).collect()
    }

    #[test]
    fn a_complete_set_has_no_problems_and_the_parent_expands_to_its_shards() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            member(
                dir.path(),
                "p",
                &format!("{i}/3"),
                "a",
                RunStatus::Completed,
            );
        }
        std::fs::create_dir(dir.path().join("not-a-shard")).unwrap();
        let expanded = expand(&[dir.path().to_owned()]).unwrap();
        assert_eq!(expanded.len(), 3);
        assert!(expanded[2].ends_with("shard-2-of-3"));
        assert_eq!(problems_of(dir.path()), []);
    }

    #[test]
    fn missing_foreign_duplicate_and_unfinished_shards_are_named() {
        let dir = tempfile::tempdir().unwrap();
        member(dir.path(), "p", "0/4", "a", RunStatus::Completed);
        member(dir.path(), "p", "1/4", "b", RunStatus::Completed);
        member(dir.path(), "p", "3/4", "a", RunStatus::Interrupted);
        let problems = problems_of(dir.path());
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{text:#?}");
        assert!(text[0].contains("different definitions"), "{}", text[0]);
        assert!(text[0].contains("shard-1-of-4"), "{}", text[0]);
        assert!(
            text[1].contains("shard 2/4 of `p` is missing"),
            "{}",
            text[1]
        );
        assert!(text[1].contains("shard-2-of-4"), "{}", text[1]);
        assert!(text[2].contains("shard 3/4") && text[2].contains("interrupted"));
        assert!(!problems[0].is_incompleteness());
        assert!(problems[1].is_incompleteness() && problems[2].is_incompleteness());

        let other = tempfile::tempdir().unwrap();
        member(other.path(), "p", "0/4", "a", RunStatus::Completed);
        let inputs = [
            dir.path().join("shard-0-of-4"),
            other.path().join("shard-0-of-4"),
        ];
        let problems: Vec<_> = shard_sets(&inputs)
            .unwrap()
            .into_iter()
            .flat_map(|s| s.problems)
            .collect();
        assert!(
            matches!(&problems[0], ShardProblem::Duplicate { paths, .. } if paths.len() == 2),
            "{problems:?}"
        );
    }

    #[test]
    fn shards_of_different_splits_are_not_one_run() {
        let dir = tempfile::tempdir().unwrap();
        member(dir.path(), "p", "0/2", "a", RunStatus::Completed);
        member(dir.path(), "p", "1/3", "a", RunStatus::Completed);
        let problems = problems_of(dir.path());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().contains("different ways"));
    }
}

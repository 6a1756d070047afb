//! `distillery fsck`: verify a run directory without changing it.
//!
//! Checks the manifest against the frozen definition, every WAL record against its checksum,
//! every shard the manifest lists against its size, checksum and row counts (decoding every
//! row), that no (prompt, sample) is stored twice, and that quarantine.jsonl and
//! failures.jsonl parse. What a crash normally leaves (a torn WAL tail, segments not yet cut,
//! shards newer than the manifest) is reported as a note, not a problem: `resume` finishes it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::error::Result;
use crate::read::{GenerationReader, Input, Which};
use crate::run_dir::{RunDir, config_hash, file_sha256};

/// What [`fsck`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Damage: each names the file (and line or row) and what is wrong.
    pub problems: Vec<String>,
    /// Normal leftovers of an interrupted run that `resume` deals with.
    pub notes: Vec<String>,
    pub wal_segments: u64,
    pub wal_records: u64,
    pub shard_files: u64,
    pub generations: u64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the run directory at `path` (read-only).
pub fn fsck(path: &Path) -> Result<FsckReport> {
    let run = RunDir::open(path)?;
    let mut report = FsckReport::default();
    let manifest = match run.manifest() {
        Ok(manifest) => Some(manifest),
        Err(error) => {
            report.problems.push(error.to_string());
            None
        }
    };
    match (&manifest, run.frozen_definition()) {
        (Some(manifest), Ok(text)) if config_hash(&text) != manifest.config_hash => {
            report.problems.push(format!(
                "{}: its hash {} is not the manifest's config_hash {}",
                run.path().join(crate::run_dir::PIPELINE_FILE).display(),
                config_hash(&text),
                manifest.config_hash
            ));
        }
        (_, Err(error)) => report.problems.push(error.to_string()),
        _ => {}
    }

    // (id, sample) → where it was first seen, to report duplicates with both places.
    let mut seen: HashSet<(String, u32)> = HashSet::new();
    let mut duplicates: BTreeMap<String, u64> = BTreeMap::new();
    let mut note_row = |id: String, sample: u32, place: &str, report: &mut FsckReport| {
        report.generations += 1;
        if !seen.insert((id, sample)) {
            *duplicates.entry(place.to_owned()).or_default() += 1;
        }
    };

    // WAL segments: every complete record must match its checksum and parse.
    let segments = run.wal_segments()?;
    let segment_set: HashSet<u64> = segments.iter().copied().collect();
    for index in &segments {
        let segment = run.wal_dir().join(format!("{index:05}.jsonl"));
        report.wal_segments += 1;
        let place = segment.display().to_string();
        let mut rows = Vec::new();
        let mut records = 0;
        let scanned = crate::wal::scan_segment(&segment, |line| {
            records += 1;
            rows.extend(line.into_iter().map(|g| (g.id, g.sample_index)));
            Ok(())
        });
        report.wal_records += records;
        match scanned {
            Ok(torn) => {
                if let Some(torn) = torn {
                    report.notes.push(format!(
                        "{}:{}: an incomplete last record ({} bytes) from an interrupted write; resume drops it",
                        torn.path.display(),
                        torn.line,
                        torn.bytes
                    ));
                }
            }
            Err(error) => report.problems.push(error.to_string()),
        }
        for (id, sample) in rows {
            note_row(id, sample, &place, &mut report);
        }
    }
    if !segments.is_empty() {
        report.notes.push(format!(
            "{} WAL segment(s) not yet cut into shards; resume cuts them",
            segments.len()
        ));
    }

    // Shards: listed ones must exist with their checksums and row counts; every file must
    // decode whole.
    let listed: BTreeMap<String, (String, u64)> = manifest
        .iter()
        .flat_map(|m| m.shards.iter())
        .flat_map(|info| {
            info.files.iter().map(move |file| {
                let rows = if file.contains("/accepted-") {
                    info.accepted_rows
                } else {
                    info.rejected_rows
                };
                let sum = info.sha256.get(file).cloned().unwrap_or_default();
                (file.clone(), (sum, rows))
            })
        })
        .collect();
    let mut present = HashSet::new();
    for (kind, index, file) in run.shard_files()? {
        let relative = format!(
            "{}/{}",
            crate::run_dir::SHARDS_DIR,
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        present.insert(relative.clone());
        if segment_set.contains(&index) {
            report.notes.push(format!(
                "{}: a cut not finished (its WAL segment is still there); resume redoes it",
                file.display()
            ));
            continue;
        }
        report.shard_files += 1;
        let expected = listed.get(&relative);
        if let Some((sum, _)) = expected
            && !sum.is_empty()
        {
            let actual = file_sha256(&file)?;
            if actual != *sum {
                report.problems.push(format!(
                    "{}: changed after it was written (sha256 {actual}, written as {sum})",
                    file.display()
                ));
            }
        }
        let which = if kind == "accepted" {
            Which::Accepted
        } else {
            Which::Rejected
        };
        let place = file.display().to_string();
        let mut rows = 0u64;
        let mut reader = GenerationReader::new(vec![Input::Parquet(file.clone())], which);
        let mut failed = false;
        for generation in &mut reader {
            match generation {
                Ok(generation) => {
                    rows += 1;
                    note_row(generation.id, generation.sample_index, &place, &mut report);
                }
                Err(error) => {
                    report.problems.push(error.to_string());
                    failed = true;
                    break;
                }
            }
        }
        if let Some((_, listed_rows)) = expected
            && !failed
            && rows != *listed_rows
        {
            report.problems.push(format!(
                "{}: holds {rows} {kind} row(s) where {listed_rows} were written",
                file.display()
            ));
        }
        if expected.is_none() {
            report.notes.push(format!(
                "{}: not listed in the manifest yet (cut after its last update); resume lists it",
                file.display()
            ));
        }
    }
    for (file, (_, rows)) in &listed {
        if !present.contains(file) {
            report.problems.push(format!(
                "{}: missing; it held {rows} row(s)",
                run.path().join(file).display()
            ));
        }
    }
    for (place, count) in duplicates {
        report.problems.push(format!(
            "{place}: {count} (prompt, sample) pair(s) already stored elsewhere in the run"
        ));
    }
    if let Err(error) = run.quarantined() {
        report.problems.push(error.to_string());
    }
    if let Err(error) = run.failures() {
        report.problems.push(error.to_string());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::{Manifest, WriterOptions};
    use crate::testing::sample;

    #[test]
    fn a_clean_run_passes_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::new("r", "t", "name = \"t\"\n", "0.1.0");
        let run = RunDir::create(dir.path().join("run"), "name = \"t\"\n", &manifest).unwrap();
        let mut writer = run
            .writer(WriterOptions {
                shard_rows: 4,
                ..WriterOptions::default()
            })
            .unwrap();
        for p in 0..4 {
            let id = format!("p{p}");
            writer
                .append(&[sample(&id, 0, true), sample(&id, 1, p % 2 == 0)])
                .unwrap();
            writer.commit().unwrap();
            if let Some(cut) = writer.cut_if_due().unwrap() {
                manifest.shards.push(cut);
            }
        }
        manifest.shards.extend(writer.finish().unwrap());
        run.write_manifest(&manifest).unwrap();
        let clean = fsck(run.path()).unwrap();
        assert!(clean.is_clean(), "{clean:?}");
        assert_eq!(clean.generations, 8);
        assert!(manifest.shards[0].sha256.len() == manifest.shards[0].files.len());

        // A changed shard and a lost one.
        let changed = run.path().join("shards/accepted-00000.parquet");
        let mut bytes = std::fs::read(&changed).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&changed, bytes).unwrap();
        std::fs::remove_file(run.path().join("shards/rejected-00001.parquet")).unwrap();
        let report = fsck(run.path()).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("accepted-00000.parquet: changed after it was written")),
            "{report:?}"
        );
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("rejected-00001.parquet: missing; it held 1 row(s)")),
            "{report:?}"
        );
    }
}

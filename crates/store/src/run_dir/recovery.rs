//! Recovery: what a restart finds in a run directory, and how it makes the WAL and the shards
//! agree again (see the module doc of `run_dir`).

use super::*;

/// What [`RunDir::recover`] found and did.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Prompt ids that must not be asked again: in a shard, or quarantined with an id.
    pub done_ids: HashSet<String>,
    /// Source rows already in quarantine.jsonl, so a resume does not quarantine them again.
    pub quarantined_rows: HashSet<u64>,
    /// Counts rebuilt from the data (`prompts_total` is `None`: the store cannot know it).
    pub counts: Counts,
    pub tokens: TokenTotals,
    /// Every cut present, in index order (for `Manifest::shards`).
    pub shards: Vec<ShardInfo>,
    /// Segments this recovery cut (left behind by a crash or an unfinished writer).
    pub recut: Vec<ShardInfo>,
    /// Incomplete last lines dropped (WAL segments, quarantine.jsonl).
    pub torn: Vec<TornTail>,
    /// Stale temporary files deleted.
    pub removed_tmp: Vec<PathBuf>,
    /// (id, sample_index) pairs seen more than once across shards; 0 unless something outside
    /// the store wrote into the run.
    pub duplicate_generations: u64,
    /// Failures of earlier sessions whose prompt is still not done (the last one per prompt),
    /// in source order. failures.jsonl is rewritten to hold exactly these.
    pub failures: Vec<FailureEntry>,
    /// Distinct samples stored per prompt id (shards and WAL).
    pub samples: std::collections::HashMap<String, u32>,
}

impl Recovered {
    /// Prompts with fewer than `n` of their samples stored, with how many are, by id: a shard
    /// holding the others was lost (every sample of a prompt is written in one WAL record).
    pub fn short_prompts(&self, n: u32) -> Vec<(String, u32)> {
        let mut short: Vec<(String, u32)> = self
            .samples
            .iter()
            .filter(|(_, count)| **count < n)
            .map(|(id, count)| (id.clone(), *count))
            .collect();
        short.sort();
        short
    }
}

impl RunDir {
    /// Finishes what a crash (or an unfinished writer) left: deletes stale `*.tmp`, cuts every
    /// remaining WAL segment into shards, trims a torn quarantine line, and rebuilds the done
    /// set and counts from the shards and the quarantine. Idempotent.
    ///
    /// Do not call it while a [`ShardWriter`] is open on the run.
    pub fn recover(&self) -> Result<Recovered> {
        let mut recovered = Recovered::default();
        for dir in [self.shards_dir(), self.wal_dir(), self.path.clone()] {
            for name in list_dir(&dir)? {
                if name.ends_with(".tmp") {
                    let path = dir.join(&name);
                    std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
                    recovered.removed_tmp.push(path);
                }
            }
        }
        for index in self.wal_segments()? {
            let (info, torn) = self.cut_segment(index, &[])?;
            recovered.recut.push(info);
            recovered.torn.extend(torn);
        }
        if let Some(torn) = truncate_torn_tail(&self.quarantine_path())? {
            recovered.torn.push(torn);
        }

        // Rebuild from the shards, reading only the small columns.
        let mut seen: HashSet<(String, u32)> = HashSet::new();
        let mut problems: std::collections::HashMap<String, crate::difficulty::ProblemTally> =
            std::collections::HashMap::new();
        let mut by_index: BTreeMap<u64, ShardInfo> = BTreeMap::new();
        for (kind, index, path) in self.shard_files()? {
            let info = by_index.entry(index).or_insert_with(|| ShardInfo {
                index,
                ..ShardInfo::default()
            });
            info.bytes += std::fs::metadata(&path)
                .map_err(StoreError::io("stat", &path))?
                .len();
            info.files
                .push(format!("{SHARDS_DIR}/{}", shard_file_name(&kind, index)));
            let rows = crate::read::scan_summaries(&path, |row| {
                let counts = &mut recovered.counts;
                counts.generations += 1;
                if row.accepted {
                    counts.accepted += 1;
                } else {
                    counts.rejected += 1;
                    let reason = row
                        .reject_reason
                        .clone()
                        .unwrap_or_else(|| "unknown".into());
                    *counts.rejected_by_reason.entry(reason).or_default() += 1;
                }
                if row.sample_index == 0 {
                    recovered.tokens.prompt += row.prompt_tokens;
                }
                recovered.tokens.completion += row.completion_tokens;
                recovered.tokens.reasoning += row.reasoning_tokens;
                recovered.tokens.estimated |= row.tokens_estimated;
                if seen.insert((row.id.clone(), row.sample_index)) {
                    *recovered.samples.entry(row.id.clone()).or_default() += 1;
                    problems.entry(row.id.clone()).or_default().add(
                        row.level.as_deref(),
                        row.accepted,
                        row.reject_reason.as_deref(),
                        row.truncations,
                    );
                } else {
                    recovered.duplicate_generations += 1;
                }
                recovered.done_ids.insert(row.id);
            })?;
            if kind == "accepted" {
                info.accepted_rows += rows;
            } else {
                info.rejected_rows += rows;
            }
        }
        for cut in &recovered.recut {
            if let Some(info) = by_index.get_mut(&cut.index) {
                info.sha256.extend(cut.sha256.clone());
            }
        }
        recovered.shards = by_index.into_values().collect();
        for problem in problems.values() {
            problem.record(&mut recovered.counts.by_difficulty);
        }

        // Every source row is accounted for once: by its generations, or by its quarantine
        // line (a duplicate id's second row too, which is why lines and not ids are counted).
        let mut prompts_done = recovered.done_ids.len() as u64;
        for entry in self.quarantined()? {
            recovered.counts.quarantined += 1;
            prompts_done += 1;
            if !entry.reason.starts_with("source.") {
                recovered.counts.prompts_failed += 1;
            }
            recovered.quarantined_rows.insert(entry.source_row);
            // A duplicate's id belongs to an earlier row, which may not be done yet.
            if entry.reason != "source.duplicate_id"
                && let Some(id) = entry.id
            {
                recovered.done_ids.insert(id);
            }
        }
        recovered.counts.prompts_done = prompts_done;

        // Failures made good since (the prompt is done now) are dropped; of the rest, the
        // latest per prompt is kept.
        let mut latest: BTreeMap<String, FailureEntry> = BTreeMap::new();
        for failure in self.failures()? {
            if !recovered.done_ids.contains(&failure.id) {
                latest.insert(failure.id.clone(), failure);
            }
        }
        let mut failures: Vec<FailureEntry> = latest.into_values().collect();
        failures.sort_by_key(|f| f.source_row);
        self.rewrite_failures(&failures)?;
        recovered.counts.set_unfinished(&failures);
        recovered.failures = failures;
        Ok(recovered)
    }

    /// Shards the manifest lists with a checksum whose bytes changed since they were
    /// written (bit rot, a stray write), each named with both checksums. Shards whose WAL
    /// segment is still present are skipped: recovery cuts them again from the WAL. Call it
    /// before [`Self::recover`], which reads the shards.
    pub fn verify_shard_checksums(&self, listed: &[ShardInfo]) -> Result<Vec<String>> {
        let segments: HashSet<u64> = self.wal_segments()?.into_iter().collect();
        let mut problems = Vec::new();
        for info in listed.iter().filter(|i| !segments.contains(&i.index)) {
            for (file, written) in &info.sha256 {
                let path = self.path.join(file);
                if !path.is_file() {
                    continue; // missing: see check_listed_shards
                }
                let actual = file_sha256(&path)?;
                if actual != *written {
                    problems.push(format!(
                        "{} changed after it was written (sha256 {actual}, written as {written})",
                        path.display()
                    ));
                }
            }
        }
        Ok(problems)
    }

    /// What is wrong with the shards the manifest lists (`listed`), given what recovery
    /// found on disk (`found`): a file that is gone, or one holding fewer rows than were cut
    /// into it. Each problem names the file and the rows it held. Empty when all is well.
    /// The recorded checksums of `listed` are carried into `found` (shards the recovery cut
    /// itself have fresh ones).
    pub fn check_listed_shards(
        &self,
        listed: &[ShardInfo],
        found: &mut [ShardInfo],
    ) -> Vec<String> {
        for info in listed {
            if let Some(target) = found.iter_mut().find(|f| f.index == info.index) {
                for (file, sum) in &info.sha256 {
                    target
                        .sha256
                        .entry(file.clone())
                        .or_insert_with(|| sum.clone());
                }
            }
        }
        let mut problems = Vec::new();
        let found: BTreeMap<u64, &ShardInfo> = found.iter().map(|s| (s.index, s)).collect();
        for info in listed {
            for file in &info.files {
                let name = file.rsplit('/').next().unwrap_or(file);
                let Some((kind, _)) = parse_shard_name(name) else {
                    continue;
                };
                let (listed_rows, found_rows) = match (kind, found.get(&info.index)) {
                    ("accepted", f) => (info.accepted_rows, f.map_or(0, |f| f.accepted_rows)),
                    (_, f) => (info.rejected_rows, f.map_or(0, |f| f.rejected_rows)),
                };
                if !self.path.join(file).is_file() {
                    problems.push(format!(
                        "{} is missing; it held {listed_rows} {kind} row(s)",
                        self.path.join(file).display()
                    ));
                } else if found_rows < listed_rows {
                    problems.push(format!(
                        "{} holds {found_rows} {kind} row(s) where {listed_rows} were written",
                        self.path.join(file).display()
                    ));
                }
            }
        }
        problems
    }
}

//! The run directory, its manifest, the shard writer and recovery.
//!
//! ```text
//! runs/<name>/
//!   pipeline.toml      frozen definition (written once, at create)
//!   manifest.json      Manifest, replaced atomically (tmp + fsync + rename + dir fsync)
//!   wal/00000.jsonl    WAL segments (see `wal`), numbered
//!   shards/accepted-00000.parquet, shards/rejected-00000.parquet
//!   quarantine.jsonl   one QuarantineEntry per line, fsynced per append
//!   failures.jsonl     one FailureEntry per prompt not answered yet (rewritten per session)
//!   lock               flock(2)ed by the process working on the run; holds its pid and host
//! ```
//!
//! # How rows move, and why nothing is lost or duplicated
//!
//! 1. [`ShardWriter::append`] buffers generations into the current WAL segment `k`;
//!    [`ShardWriter::commit`] writes and fsyncs them (group commit). Committed = done.
//! 2. Every `shard_rows` rows or `shard_interval` (whichever first; [`ShardWriter::cut_if_due`])
//!    segment `k` is *cut*: its lines are streamed into `shards/accepted-k.parquet` and
//!    `shards/rejected-k.parquet` (each written as `*.tmp`, fsynced, renamed, dir fsynced; a kind
//!    with no rows gets no file), then the segment is deleted (dir fsynced), and segment `k+1`
//!    begins.
//! 3. The WAL is the truth while it exists: shards numbered `k` count only once segment `k`
//!    is gone. [`RunDir::recover`] re-cuts every segment still present — the shard names are
//!    deterministic, so a half-finished cut is overwritten with the same rows, never added to —
//!    drops a torn WAL tail (a commit killed mid-write, never counted as done), deletes stale
//!    `*.tmp` files, and rebuilds the done set and the counts from the shards and the
//!    quarantine.
//! 4. A failed write (full disk) returns an error naming the file; the WAL segment refuses
//!    further appends (see `wal`), the manifest is untouched, and a later `recover` finds
//!    exactly the committed rows.
//!
//! Only one [`ShardWriter`] may be open on a run directory at a time (the pipeline's writer
//! actor owns it). A new writer starts at the segment number after every existing segment and
//! shard, so it never appends to a segment a crashed process left behind.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};
use crate::record::{FailureEntry, Generation, QuarantineEntry};
use crate::schema::{
    META_CONFIG_HASH, META_KIND, META_PIPELINE, META_SCHEMA_VERSION, SCHEMA_VERSION,
    generation_schema,
};
use crate::shard::{AtomicParquet, BATCH_ROWS};
use crate::wal::{FailAfter, TornTail, WalSegment, scan_segment, sync_dir, truncate_torn_tail};

mod lock;
mod manifest;
mod recovery;
mod writer;

pub use lock::RunLock;
pub use manifest::*;
pub use recovery::Recovered;
pub use writer::{ShardWriter, WriterOptions};

pub const PIPELINE_FILE: &str = "pipeline.toml";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const WAL_DIR: &str = "wal";
pub const SHARDS_DIR: &str = "shards";
pub const QUARANTINE_FILE: &str = "quarantine.jsonl";
pub const FAILURES_FILE: &str = "failures.jsonl";
pub const LOCK_FILE: &str = "lock";

/// A run directory on disk. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = crate::shard::tmp_path(path);
    let mut file = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
    file.write_all(bytes)
        .map_err(StoreError::io("write", &tmp))?;
    file.sync_all().map_err(StoreError::io("fsync", &tmp))?;
    drop(file);
    crate::shard::durable_rename(&tmp, path)
}

/// `(kind, index)` of a shard file name `accepted-00012.parquet`.
pub(crate) fn parse_shard_name(name: &str) -> Option<(&str, u64)> {
    let stem = name.strip_suffix(".parquet")?;
    let (kind, index) = stem.rsplit_once('-')?;
    if !matches!(kind, "accepted" | "rejected") || index.is_empty() {
        return None;
    }
    Some((kind, index.parse().ok()?))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".jsonl")?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub(crate) fn shard_file_name(kind: &str, index: u64) -> String {
    format!("{kind}-{index:05}.parquet")
}

fn segment_file_name(index: u64) -> String {
    format!("{index:05}.jsonl")
}

fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

impl RunDir {
    /// Creates a run directory (refusing one that exists and is not empty), with the frozen
    /// definition and the first manifest.
    pub fn create(
        path: impl AsRef<Path>,
        frozen_definition_text: &str,
        manifest: &Manifest,
    ) -> Result<RunDir> {
        let path = path.as_ref().to_owned();
        match std::fs::read_dir(&path) {
            Ok(entries) => {
                // The lock of a `run` that starts again where an earlier start failed.
                let mut others = entries.filter(|entry| {
                    entry
                        .as_ref()
                        .map_or(true, |entry| entry.file_name() != LOCK_FILE)
                });
                if others.next().is_some() {
                    return Err(StoreError::RunDirNotEmpty { path });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&path).map_err(StoreError::io("create", &path))?;
                if let Some(parent) = path.parent() {
                    sync_dir(parent)?;
                }
            }
            Err(e) => return Err(StoreError::io("open", &path)(e)),
        }
        for dir in [WAL_DIR, SHARDS_DIR] {
            let dir = path.join(dir);
            std::fs::create_dir(&dir).map_err(StoreError::io("create", &dir))?;
        }
        let run = RunDir { path };
        write_atomic(
            &run.path.join(PIPELINE_FILE),
            frozen_definition_text.as_bytes(),
        )?;
        run.write_manifest(manifest)?;
        Ok(run)
    }

    /// Opens an existing run directory.
    pub fn open(path: impl AsRef<Path>) -> Result<RunDir> {
        let path = path.as_ref().to_owned();
        for file in [MANIFEST_FILE, PIPELINE_FILE] {
            if !path.join(file).is_file() {
                return Err(StoreError::NotARunDir {
                    path,
                    missing: file,
                });
            }
        }
        for dir in [WAL_DIR, SHARDS_DIR] {
            let dir = path.join(dir);
            if !dir.exists() {
                std::fs::create_dir(&dir).map_err(StoreError::io("create", &dir))?;
            }
        }
        Ok(RunDir { path })
    }

    /// Whether `path` looks like a run directory.
    pub fn is_run_dir(path: &Path) -> bool {
        path.join(MANIFEST_FILE).is_file() && path.join(PIPELINE_FILE).is_file()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.path.join(WAL_DIR)
    }

    pub fn shards_dir(&self) -> PathBuf {
        self.path.join(SHARDS_DIR)
    }

    pub fn quarantine_path(&self) -> PathBuf {
        self.path.join(QUARANTINE_FILE)
    }

    /// Replaces the frozen definition (a resume under a changed definition).
    pub fn refreeze(&self, definition: &str) -> Result<()> {
        write_atomic(&self.path.join(PIPELINE_FILE), definition.as_bytes())
    }

    pub fn frozen_definition(&self) -> Result<String> {
        let path = self.path.join(PIPELINE_FILE);
        std::fs::read_to_string(&path).map_err(StoreError::io("read", &path))
    }

    pub fn manifest(&self) -> Result<Manifest> {
        let path = self.path.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(StoreError::io("read", &path))?;
        serde_json::from_str(&text).map_err(|source| StoreError::Json { path, source })
    }

    /// Replaces manifest.json atomically (pretty JSON).
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.path.join(MANIFEST_FILE);
        let mut text = serde_json::to_vec_pretty(manifest).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        text.push(b'\n');
        write_atomic(&path, &text)
    }

    /// Appends one entry to quarantine.jsonl and fsyncs it.
    pub fn quarantine(&self, entry: &QuarantineEntry) -> Result<()> {
        self.quarantine_many(std::slice::from_ref(entry))
    }

    /// Appends entries to quarantine.jsonl with one write and one fsync.
    pub fn quarantine_many(&self, entries: &[QuarantineEntry]) -> Result<()> {
        append_jsonl(&self.quarantine_path(), entries)
    }

    /// Appends failures to failures.jsonl with one write and one fsync.
    pub fn record_failures(&self, entries: &[FailureEntry]) -> Result<()> {
        append_jsonl(&self.path.join(FAILURES_FILE), entries)
    }

    /// Replaces failures.jsonl with `entries` (atomically; no file when there are none).
    pub fn rewrite_failures(&self, entries: &[FailureEntry]) -> Result<()> {
        let path = self.path.join(FAILURES_FILE);
        if entries.is_empty() {
            return match std::fs::remove_file(&path) {
                Ok(()) => sync_dir(&self.path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::io("remove", &path)(e)),
            };
        }
        let mut buf = Vec::new();
        for entry in entries {
            serde_json::to_writer(&mut buf, entry).map_err(|source| StoreError::Json {
                path: path.clone(),
                source,
            })?;
            buf.push(b'\n');
        }
        write_atomic(&path, &buf)
    }

    /// Reads failures.jsonl (a torn last line is skipped; no file is no failure).
    pub fn failures(&self) -> Result<Vec<FailureEntry>> {
        read_jsonl(&self.path.join(FAILURES_FILE))
    }

    /// Whether the run holds anything a run produced: WAL segments, shards, quarantined rows
    /// or failures. A directory without any (a start that failed early) can be started again.
    pub fn holds_data(&self) -> Result<bool> {
        let lines = |path: PathBuf| -> Result<bool> {
            match std::fs::metadata(&path) {
                Ok(meta) => Ok(meta.len() > 0),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(StoreError::io("stat", &path)(e)),
            }
        };
        Ok(!self.wal_segments()?.is_empty()
            || !self.shard_files()?.is_empty()
            || lines(self.quarantine_path())?
            || lines(self.path.join(FAILURES_FILE))?)
    }

    /// Removes what a start that failed before writing anything left (manifest, frozen
    /// definition, empty directories), so that the directory can hold a new run. Refuses a
    /// run that [`holds_data`](Self::holds_data). The lock file stays (its holder may be the
    /// caller).
    pub fn clear_empty_run(&self) -> Result<()> {
        if self.holds_data()? {
            return Err(StoreError::RunDirNotEmpty {
                path: self.path.clone(),
            });
        }
        for file in [MANIFEST_FILE, PIPELINE_FILE, QUARANTINE_FILE, FAILURES_FILE] {
            let path = self.path.join(file);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path)(e)),
            }
        }
        for dir in [self.wal_dir(), self.shards_dir()] {
            // Empty but for stale temporary files, which hold nothing committed.
            for name in list_dir(&dir)? {
                let path = dir.join(name);
                std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
            }
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &dir)(e)),
            }
        }
        sync_dir(&self.path)
    }

    /// Takes the run's exclusive lock (flock(2) on `lock`, holding this process's pid), or
    /// says which process holds it. The lock lives as long as the returned guard, and dies
    /// with the process: a run whose process was killed is taken over without ceremony.
    pub fn lock(&self) -> Result<RunLock> {
        RunLock::acquire(&self.path)
    }

    /// Reads quarantine.jsonl (a torn last line is skipped).
    pub fn quarantined(&self) -> Result<Vec<QuarantineEntry>> {
        read_jsonl(&self.quarantine_path())
    }

    /// Segment numbers present in wal/, ascending.
    pub fn wal_segments(&self) -> Result<Vec<u64>> {
        let mut segments: Vec<u64> = list_dir(&self.wal_dir())?
            .iter()
            .filter_map(|name| parse_segment_name(name))
            .collect();
        segments.sort_unstable();
        Ok(segments)
    }

    /// Shard files present in shards/: `(kind, index, path)`, by index then kind.
    pub fn shard_files(&self) -> Result<Vec<(String, u64, PathBuf)>> {
        let dir = self.shards_dir();
        let mut files: Vec<_> = list_dir(&dir)?
            .iter()
            .filter_map(|name| {
                let (kind, index) = parse_shard_name(name)?;
                Some((kind.to_owned(), index, dir.join(name)))
            })
            .collect();
        files.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        Ok(files)
    }

    fn footer(&self, kind: &str, extra: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let definition = self.frozen_definition()?;
        let mut metadata = vec![
            (META_SCHEMA_VERSION.to_owned(), SCHEMA_VERSION.to_owned()),
            (META_CONFIG_HASH.to_owned(), config_hash(&definition)),
            (META_PIPELINE.to_owned(), definition),
            (META_KIND.to_owned(), kind.to_owned()),
        ];
        for (key, value) in extra {
            metadata.retain(|(k, _)| k != key);
            metadata.push((key.clone(), value.clone()));
        }
        Ok(metadata)
    }

    /// Streams WAL segment `index` into its shards, then deletes the segment.
    fn cut_segment(
        &self,
        index: u64,
        extra: &[(String, String)],
    ) -> Result<(ShardInfo, Option<TornTail>)> {
        let segment = self.wal_dir().join(segment_file_name(index));
        let shards = self.shards_dir();
        let mut writers: [Option<AtomicParquet>; 2] = [None, None];
        let mut buffers: [Vec<Generation>; 2] = [Vec::new(), Vec::new()];
        const KINDS: [&str; 2] = ["accepted", "rejected"];
        let result = (|| -> Result<Option<TornTail>> {
            let flush = |kind: usize,
                         buffers: &mut [Vec<Generation>; 2],
                         writers: &mut [Option<AtomicParquet>; 2]|
             -> Result<()> {
                if buffers[kind].is_empty() {
                    return Ok(());
                }
                if writers[kind].is_none() {
                    let path = shards.join(shard_file_name(KINDS[kind], index));
                    writers[kind] = Some(AtomicParquet::create(
                        &path,
                        generation_schema(),
                        &self.footer(KINDS[kind], extra)?,
                    )?);
                }
                let writer = writers[kind].as_mut().expect("created above");
                writer.write_generations(&buffers[kind])?;
                buffers[kind].clear();
                Ok(())
            };
            let torn = scan_segment(&segment, |line| {
                for generation in line {
                    let kind = usize::from(!generation.accepted);
                    buffers[kind].push(generation);
                    if buffers[kind].len() >= BATCH_ROWS {
                        flush(kind, &mut buffers, &mut writers)?;
                    }
                }
                Ok(())
            })?;
            flush(0, &mut buffers, &mut writers)?;
            flush(1, &mut buffers, &mut writers)?;
            Ok(torn)
        })();
        let torn = match result {
            Ok(torn) => torn,
            Err(e) => {
                for writer in writers.into_iter().flatten() {
                    writer.abandon();
                }
                return Err(e);
            }
        };
        let mut info = ShardInfo {
            index,
            ..ShardInfo::default()
        };
        for (kind, writer) in writers.into_iter().enumerate() {
            let name = shard_file_name(KINDS[kind], index);
            match writer {
                Some(writer) => {
                    let rows = writer.rows();
                    info.bytes += writer.finish()?;
                    if kind == 0 {
                        info.accepted_rows = rows;
                    } else {
                        info.rejected_rows = rows;
                    }
                    let relative = format!("{SHARDS_DIR}/{name}");
                    info.sha256
                        .insert(relative.clone(), file_sha256(&shards.join(&name))?);
                    info.files.push(relative);
                }
                None => {
                    // A kind with no rows has no file; remove one an earlier attempt left.
                    let stale = shards.join(&name);
                    if stale.exists() {
                        std::fs::remove_file(&stale).map_err(StoreError::io("remove", &stale))?;
                    }
                }
            }
        }
        sync_dir(&shards)?;
        std::fs::remove_file(&segment).map_err(StoreError::io("remove WAL segment", &segment))?;
        sync_dir(&self.wal_dir())?;
        Ok((info, torn))
    }

    /// Every generation of the run: shards, then WAL segments not yet cut (read-only; a torn
    /// tail is skipped). Shards numbered like a segment still present are skipped, since the
    /// segment holds the truth.
    pub fn generations(&self, which: crate::read::Which) -> Result<crate::read::GenerationReader> {
        let segments: HashSet<u64> = self.wal_segments()?.into_iter().collect();
        let mut sources = Vec::new();
        for (kind, index, path) in self.shard_files()? {
            if segments.contains(&index) || !which.wants_kind(&kind) {
                continue;
            }
            sources.push(crate::read::Input::Parquet(path));
        }
        let mut segments: Vec<u64> = segments.into_iter().collect();
        segments.sort_unstable();
        for index in segments {
            sources.push(crate::read::Input::Wal(
                self.wal_dir().join(segment_file_name(index)),
            ));
        }
        Ok(crate::read::GenerationReader::new(sources, which))
    }
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 (hex) of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(StoreError::io("open", path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(StoreError::io("read", path))?;
    Ok(hex(&hasher.finalize()))
}

/// Reads a JSON-lines file the store wrote; `on_line` gets (1-based line, bytes without the
/// newline). A torn last line is skipped; a missing file is empty.
pub(crate) fn scan_jsonl(
    path: &Path,
    mut on_line: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("open", path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut bytes = Vec::new();
    let mut line = 0;
    loop {
        bytes.clear();
        if reader
            .read_until(b'\n', &mut bytes)
            .map_err(StoreError::io("read", path))?
            == 0
            || bytes.last() != Some(&b'\n')
        {
            return Ok(());
        }
        line += 1;
        let text = &bytes[..bytes.len() - 1];
        if !text.iter().all(u8::is_ascii_whitespace) {
            on_line(line, text)?;
        }
    }
}

/// Appends `entries` to the JSONL file at `path`, one line each, with one write and one fsync.
/// Every entry of a JSONL file of the run (a torn last line is skipped; no file is no entry);
/// a line that is not an entry is an error naming the file and line.
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut out = Vec::new();
    scan_jsonl(path, |line, text| {
        let entry = serde_json::from_slice(text).map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            line,
            message: e.to_string(),
        })?;
        out.push(entry);
        Ok(())
    })?;
    Ok(out)
}

fn append_jsonl<T: serde::Serialize>(path: &Path, entries: &[T]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut buf, entry).map_err(|source| StoreError::Json {
            path: path.to_owned(),
            source,
        })?;
        buf.push(b'\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(StoreError::io("open", path))?;
    file.write_all(&buf)
        .map_err(StoreError::io("write", path))?;
    file.sync_data().map_err(StoreError::io("fsync", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::Which;
    use crate::testing::sample;

    const DEFINITION: &str = "name = \"t\"\n[source]\npath = \"x.jsonl\"\n";

    fn new_run(dir: &Path) -> RunDir {
        let manifest = Manifest::new("run-1", "t", DEFINITION, "0.1.0");
        RunDir::create(dir.join("run"), DEFINITION, &manifest).unwrap()
    }

    fn options(rows: u64) -> WriterOptions {
        WriterOptions {
            shard_rows: rows,
            shard_interval: Duration::ZERO,
            footer_metadata: vec![("distillery.run_id".into(), "run-1".into())],
        }
    }

    fn ids(run: &RunDir, which: Which) -> Vec<(String, u32)> {
        let mut ids: Vec<_> = run
            .generations(which)
            .unwrap()
            .map(|g| {
                let g = g.unwrap();
                (g.id, g.sample_index)
            })
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn create_open_manifest_and_definition() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        assert_eq!(run.frozen_definition().unwrap(), DEFINITION);
        let mut manifest = run.manifest().unwrap();
        assert_eq!(manifest.config_hash, config_hash(DEFINITION));
        assert_eq!(manifest.config_hash.len(), 64);
        manifest.status = RunStatus::Completed;
        manifest
            .counts
            .rejected_by_reason
            .insert("math.wrong_answer".into(), 3);
        run.write_manifest(&manifest).unwrap();
        let reopened = RunDir::open(run.path()).unwrap();
        assert_eq!(reopened.manifest().unwrap(), manifest);
        let text = std::fs::read_to_string(run.path().join(MANIFEST_FILE)).unwrap();
        assert!(text.contains("\"status\": \"completed\""), "{text}");
        // Not empty any more: create refuses; a plain directory is not a run.
        let error = RunDir::create(run.path(), DEFINITION, &manifest).unwrap_err();
        assert!(
            matches!(error, StoreError::RunDirNotEmpty { .. }),
            "{error}"
        );
        let error = RunDir::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("manifest.json"), "{error}");
    }

    #[test]
    fn writer_cuts_shards_by_rows_with_footer_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let mut writer = run.writer(options(4)).unwrap();
        let mut cuts = Vec::new();
        for p in 0..5 {
            let id = format!("p{p}");
            writer
                .append(&[sample(&id, 0, true), sample(&id, 1, p % 2 == 0)])
                .unwrap();
            writer.commit().unwrap();
            cuts.extend(writer.cut_if_due().unwrap());
        }
        assert_eq!(cuts.len(), 2);
        assert_eq!((cuts[0].accepted_rows, cuts[0].rejected_rows), (3, 1));
        let last = writer.finish().unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].accepted_rows + last[0].rejected_rows, 2);
        assert!(run.wal_segments().unwrap().is_empty());
        let files = run.shard_files().unwrap();
        assert_eq!(files.len(), 5, "{files:?}");
        assert_eq!(ids(&run, Which::All).len(), 10);
        assert_eq!(
            ids(&run, Which::Rejected),
            vec![("p1".into(), 1), ("p3".into(), 1)]
        );
        let footer: BTreeMap<_, _> = crate::shard::footer_metadata(&files[0].2)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(footer[META_SCHEMA_VERSION], SCHEMA_VERSION);
        assert_eq!(footer[META_PIPELINE], DEFINITION);
        assert_eq!(footer[META_CONFIG_HASH], config_hash(DEFINITION));
        assert_eq!(footer["distillery.run_id"], "run-1");
        assert!(footer.contains_key("ARROW:schema"));
        // Recovery on a clean run changes nothing and counts right.
        let recovered = run.recover().unwrap();
        assert!(recovered.recut.is_empty() && recovered.torn.is_empty());
        assert_eq!(recovered.counts.generations, 10);
        assert_eq!(recovered.counts.accepted, 8);
        assert_eq!(recovered.counts.rejected, 2);
        assert_eq!(recovered.counts.rejected_by_reason["math.wrong_answer"], 2);
        assert_eq!(recovered.counts.prompts_done, 5);
        assert_eq!(recovered.tokens.prompt, 5 * 31);
        assert_eq!(recovered.shards.len(), 3);
        assert_eq!(recovered.duplicate_generations, 0);
    }

    #[test]
    fn shards_are_zstd_and_read_back_with_the_arrow_reader() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let mut writer = run.writer(options(100)).unwrap();
        let rows: Vec<_> = (0..3).map(|i| sample(&format!("q{i}"), 0, true)).collect();
        writer.append(&rows).unwrap();
        writer.finish().unwrap();
        let (_, _, path) = &run.shard_files().unwrap()[0];
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let column = builder.metadata().row_group(0).column(0);
        // Parquet records the codec, not the level.
        assert!(
            column.compression().to_string().starts_with("ZSTD"),
            "{:?}",
            column.compression()
        );
        assert_eq!(builder.schema().fields(), generation_schema().fields());
        let batches: Vec<_> = builder.build().unwrap().map(|b| b.unwrap()).collect();
        let read: Vec<_> = batches
            .iter()
            .flat_map(|b| crate::schema::from_record_batch(b).unwrap())
            .collect();
        assert_eq!(read, rows);
    }

    #[test]
    fn cut_by_interval() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let mut writer = run
            .writer(WriterOptions {
                shard_rows: 1000,
                shard_interval: Duration::from_millis(30),
                footer_metadata: vec![],
            })
            .unwrap();
        assert_eq!(
            writer.cut_if_due().unwrap(),
            None,
            "empty segments are not cut"
        );
        writer.append(&[sample("a", 0, true)]).unwrap();
        assert_eq!(writer.cut_if_due().unwrap(), None);
        std::thread::sleep(Duration::from_millis(40));
        let info = writer.cut_if_due().unwrap().unwrap();
        assert_eq!(info.accepted_rows, 1);
        assert_eq!(info.files, vec!["shards/accepted-00000.parquet".to_owned()]);
    }

    #[test]
    fn torn_wal_tail_is_recovered_without_the_torn_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let mut writer = run.writer(options(1000)).unwrap();
        writer
            .append(&[sample("a", 0, true), sample("a", 1, false)])
            .unwrap();
        writer
            .append(&[sample("b", 0, true), sample("b", 1, true)])
            .unwrap();
        writer.commit().unwrap();
        drop(writer); // kill -9: no finish
        let segment = run.wal_dir().join("00000.jsonl");
        let bytes = std::fs::read(&segment).unwrap();
        std::fs::write(&segment, &bytes[..bytes.len() - 20]).unwrap();
        let recovered = run.recover().unwrap();
        assert_eq!(recovered.torn.len(), 1);
        assert_eq!(recovered.torn[0].line, 2);
        assert_eq!(recovered.done_ids, HashSet::from(["a".to_owned()]));
        assert_eq!(recovered.counts.generations, 2);
        assert_eq!(recovered.recut.len(), 1);
        assert!(run.wal_segments().unwrap().is_empty());
        // The resumed run re-asks b and finishes; b lands once, in a new shard.
        let mut writer = run.writer(options(1000)).unwrap();
        writer
            .append(&[sample("b", 0, true), sample("b", 1, true)])
            .unwrap();
        let cut = writer.finish().unwrap();
        assert_eq!(cut[0].index, 1);
        let recovered = run.recover().unwrap();
        assert_eq!(recovered.counts.generations, 4);
        assert_eq!(recovered.duplicate_generations, 0);
        assert_eq!(ids(&run, Which::All).len(), 4);
    }

    #[test]
    fn half_cut_shard_is_recut_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let mut writer = run.writer(options(1000)).unwrap();
        for p in 0..6 {
            let id = format!("p{p}");
            writer
                .append(&[sample(&id, 0, true), sample(&id, 1, p < 2)])
                .unwrap();
        }
        writer.commit().unwrap();
        drop(writer);
        let segment = run.wal_dir().join("00000.jsonl");
        let wal_copy = std::fs::read(&segment).unwrap();
        // A cut that got as far as renaming the accepted shard, and left a rejected tmp.
        run.cut_segment(0, &[]).unwrap();
        std::fs::write(&segment, &wal_copy).unwrap();
        std::fs::remove_file(run.shards_dir().join("rejected-00000.parquet")).unwrap();
        std::fs::write(
            run.shards_dir().join("rejected-00000.parquet.tmp"),
            b"PAR1 half",
        )
        .unwrap();
        // Readers trust the segment over shard 0 while it exists.
        assert_eq!(ids(&run, Which::All).len(), 12);
        let recovered = run.recover().unwrap();
        assert_eq!(recovered.removed_tmp.len(), 1);
        assert_eq!(recovered.recut.len(), 1);
        assert_eq!(
            (
                recovered.recut[0].accepted_rows,
                recovered.recut[0].rejected_rows
            ),
            (8, 4)
        );
        assert_eq!(recovered.counts.generations, 12);
        assert_eq!(recovered.duplicate_generations, 0);
        assert_eq!(ids(&run, Which::All).len(), 12);
        assert_eq!(ids(&run, Which::Accepted).len(), 8);
        // Idempotent.
        let again = run.recover().unwrap();
        assert!(again.recut.is_empty());
        assert_eq!(again.counts, recovered.counts);
    }

    #[test]
    fn corrupt_wal_line_fails_recovery_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let good = serde_json::to_string(&[sample("a", 0, true)]).unwrap();
        std::fs::write(
            run.wal_dir().join("00002.jsonl"),
            format!("{good}\nnot json\n{good}\n"),
        )
        .unwrap();
        let error = run.recover().unwrap_err().to_string();
        assert!(error.contains("00002.jsonl:2"), "{error}");
        assert!(
            run.wal_dir().join("00002.jsonl").exists(),
            "the WAL is kept"
        );
        assert!(
            run.shard_files().unwrap().is_empty(),
            "no shard from a failed cut"
        );
    }

    #[test]
    fn quarantine_counts_and_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let entry = |id: Option<&str>, row, reason: &str| QuarantineEntry {
            id: id.map(str::to_owned),
            source_path: "x.jsonl".into(),
            source_row: row,
            reason: reason.into(),
            detail: "d".into(),
            raw: Some("{".into()),
        };
        run.quarantine(&entry(None, 3, "source.invalid_json"))
            .unwrap();
        run.quarantine_many(&[
            entry(Some("q9"), 9, "source.missing_field"),
            entry(Some("q10"), 10, "teacher.rejected"),
        ])
        .unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(run.quarantine_path())
            .unwrap();
        file.write_all(b"{\"id\":\"q11\",").unwrap();
        let recovered = run.recover().unwrap();
        assert_eq!(recovered.counts.quarantined, 3);
        assert_eq!(recovered.counts.prompts_failed, 1);
        assert_eq!(recovered.quarantined_rows, HashSet::from([3, 9, 10]));
        assert_eq!(recovered.done_ids.len(), 2);
        assert_eq!(recovered.counts.prompts_done, 3);
        assert_eq!(recovered.torn.len(), 1);
        run.quarantine(&entry(Some("q11"), 11, "source.empty_prompt"))
            .unwrap();
        assert_eq!(run.quarantined().unwrap().len(), 4);
    }

    #[test]
    fn full_disk_gives_a_clear_error_and_a_resumable_run() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let mut writer = run.writer(options(1000)).unwrap();
        writer.append(&[sample("a", 0, true)]).unwrap();
        writer.commit().unwrap();
        writer.simulate_disk_full_after(100);
        writer.append(&[sample("b", 0, true)]).unwrap();
        let error = writer.commit().unwrap_err().to_string();
        assert!(
            error.contains("wal/00000.jsonl") && error.contains("No space left"),
            "{error}"
        );
        assert!(writer.append(&[sample("c", 0, true)]).is_err());
        drop(writer);
        let recovered = run.recover().unwrap();
        assert_eq!(recovered.done_ids, HashSet::from(["a".to_owned()]));
        assert!(recovered.torn.is_empty());

        // A shard directory that cannot take files: the cut fails naming the path, the WAL
        // keeps the rows, and recovery finishes the cut once the problem is gone.
        let mut writer = run.writer(options(1)).unwrap();
        writer.append(&[sample("b", 0, true)]).unwrap();
        writer.commit().unwrap();
        let shards = run.shards_dir();
        std::fs::rename(&shards, dir.path().join("moved")).unwrap();
        std::fs::write(&shards, b"not a directory").unwrap();
        let error = writer.cut_if_due().unwrap_err().to_string();
        assert!(
            error.contains("shards/accepted-00001.parquet.tmp"),
            "{error}"
        );
        drop(writer);
        std::fs::remove_file(&shards).unwrap();
        std::fs::rename(dir.path().join("moved"), &shards).unwrap();
        let recovered = run.recover().unwrap();
        assert_eq!(recovered.recut.len(), 1);
        assert_eq!(
            ids(&run, Which::All),
            vec![("a".into(), 0), ("b".into(), 0)]
        );
    }

    #[test]
    fn quarantine_write_failure_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        std::fs::create_dir(run.quarantine_path()).unwrap();
        let error = run
            .quarantine(&QuarantineEntry {
                id: None,
                source_path: "x".into(),
                source_row: 1,
                reason: "source.invalid_json".into(),
                detail: String::new(),
                raw: None,
            })
            .unwrap_err()
            .to_string();
        assert!(error.contains("quarantine.jsonl"), "{error}");
    }

    #[test]
    fn the_lock_is_exclusive_names_its_holder_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let held = run.lock().unwrap();
        let error = run.lock().unwrap_err();
        let pid = std::process::id().to_string();
        assert!(
            matches!(&error, StoreError::Locked { holder, .. }
                if holder.split_whitespace().next() == Some(pid.as_str())),
            "{error}"
        );
        assert!(
            error.to_string().contains(&format!("process {pid}")),
            "{error}"
        );
        // The lock file is not data: the run can still be cleared and created anew.
        assert!(!run.holds_data().unwrap());
        drop(held);
        let _again = run.lock().unwrap();
    }

    #[test]
    fn failures_made_good_are_dropped_by_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let run = new_run(dir.path());
        let failure = |id: &str, row| FailureEntry {
            id: id.into(),
            source_path: "x.jsonl".into(),
            source_row: row,
            reason: "teacher.retries_exhausted".into(),
            detail: "HTTP 500".into(),
            at_ms: 1,
        };
        run.record_failures(&[failure("b", 2), failure("a", 1)])
            .unwrap();
        run.record_failures(&[failure("b", 2)]).unwrap();
        assert!(run.holds_data().unwrap());
        let mut writer = run.writer(options(1000)).unwrap();
        writer.append(&[sample("a", 0, true)]).unwrap();
        writer.finish().unwrap();
        let recovered = run.recover().unwrap();
        assert_eq!(recovered.failures, vec![failure("b", 2)]);
        assert_eq!(recovered.counts.prompts_unfinished, 1);
        assert_eq!(
            recovered.counts.unfinished_by_reason["teacher.retries_exhausted"],
            1
        );
        assert_eq!(run.failures().unwrap(), vec![failure("b", 2)]);
        run.rewrite_failures(&[]).unwrap();
        assert!(!run.path().join(FAILURES_FILE).exists());
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            parse_shard_name("accepted-00012.parquet"),
            Some(("accepted", 12))
        );
        assert_eq!(
            parse_shard_name("rejected-123456.parquet"),
            Some(("rejected", 123456))
        );
        assert_eq!(parse_shard_name("accepted-00012.parquet.tmp"), None);
        assert_eq!(parse_shard_name("other-1.parquet"), None);
        assert_eq!(parse_segment_name("00007.jsonl"), Some(7));
        assert_eq!(parse_segment_name("x.jsonl"), None);
    }
}

//! Training conversations: the one reader of runs, exported datasets and Parquet/JSONL files
//! for everything that trains on them. A run is read through `distillery-store` (its shards
//! and the WAL records not yet cut, as `export` reads it), so `train` and `export` see the same
//! rows of an unfinished run; files written by other tools need only a `messages` column
//! (and optionally `accepted`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StructArray};
use arrow::datatypes::DataType;
use distillery_store::{ChatMessage, RunDir, TeacherLogprobs, Which, logprobs, read_generations};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;

/// Why training data could not be read. Every variant names the file, row or line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot read Parquet: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("{path}: column `{column}`: {message}")]
    Column {
        path: PathBuf,
        column: String,
        message: String,
    },
    #[error("{path}, row {row}: {message}")]
    Row {
        path: PathBuf,
        row: usize,
        message: String,
    },
    #[error("{path}, line {line}: {message}")]
    JsonLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path}: not a run directory, an exported dataset (data/train-*.parquet|jsonl) or a .parquet/.jsonl file"
    )]
    UnknownData { path: PathBuf },
    /// A run whose records cannot be read.
    #[error(transparent)]
    Run(#[from] distillery_store::StoreError),
    #[error("no training conversations found in {paths}")]
    NoData { paths: String },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, source }
}

/// One training conversation and where it came from (`file row N`), for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub messages: Vec<ChatMessage>,
    pub origin: String,
    /// The teacher's top-k log-probabilities of the last assistant turn, when the data carries
    /// them (run shards and exports of runs with `[teacher] top_logprobs`).
    pub teacher_logprobs: Option<TeacherLogprobs>,
}

/// What [`load_conversations`] read.
#[derive(Debug, Default)]
pub struct LoadedData {
    pub conversations: Vec<Conversation>,
    /// The runs and data files read, in order.
    pub files: Vec<PathBuf>,
    /// Rows skipped because their `accepted` column was false.
    pub skipped_rejected: usize,
    /// Rows skipped because they had no assistant turn.
    pub skipped_no_assistant: usize,
}

/// The data files behind one `--data` argument that is not a run directory (a run is read
/// through its records, see [`load_conversations`]):
/// - a directory of shards copied out of a run: `<dir>/shards/accepted-*.parquet`;
/// - an exported dataset: `<dir>/data/train-*.parquet` or `<dir>/data/train-*.jsonl`
///   (or every `*.parquet` / `*.jsonl` directly in `<dir>/data` or `<dir>` when there is no
///   `train-*` file);
/// - a single `.parquet` or `.jsonl` file.
pub fn resolve_data_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return match extension(path) {
            Some("parquet" | "jsonl" | "json") => Ok(vec![path.to_path_buf()]),
            _ => Err(DataError::UnknownData {
                path: path.to_path_buf(),
            }),
        };
    }
    if !path.is_dir() {
        return Err(DataError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    // The shards of a run copied without the rest of its directory.
    let shards = path.join("shards");
    if shards.is_dir() {
        let files = list(&shards, |n| {
            n.starts_with("accepted-") && n.ends_with(".parquet")
        })?;
        if !files.is_empty() {
            return Ok(files);
        }
    }
    for dir in [path.join("data"), path.to_path_buf()] {
        if !dir.is_dir() {
            continue;
        }
        let train = list(&dir, |n| {
            n.starts_with("train") && (n.ends_with(".parquet") || n.ends_with(".jsonl"))
        })?;
        if !train.is_empty() {
            return Ok(train);
        }
        let any = list(&dir, |n| n.ends_with(".parquet") || n.ends_with(".jsonl"))?;
        if !any.is_empty() {
            return Ok(any);
        }
    }
    Err(DataError::UnknownData {
        path: path.to_path_buf(),
    })
}

fn extension(p: &Path) -> Option<&str> {
    p.extension().and_then(|e| e.to_str())
}

fn list(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if keep(name) && entry.path().is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every conversation behind `paths` (see [`resolve_data_files`]), in a stable order,
/// keeping only accepted rows that have at least one assistant turn.
pub fn load_conversations(paths: &[PathBuf]) -> Result<LoadedData> {
    let mut out = LoadedData::default();
    // A directory of shard runs (`run --shard`) is read as its runs, in shard order.
    for path in distillery_store::shard_set::expand(paths)? {
        if RunDir::is_run_dir(&path) {
            read_run(&path, &mut out)?;
            out.files.push(path);
            continue;
        }
        for file in resolve_data_files(&path)? {
            match extension(&file) {
                Some("parquet") => read_parquet(&file, &mut out)?,
                _ => read_jsonl(&file, &mut out)?,
            }
            out.files.push(file);
        }
    }
    if out.conversations.is_empty() {
        return Err(DataError::NoData {
            paths: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(out)
}

/// The accepted rows of a run, from its shards and the WAL records not yet cut.
fn read_run(path: &Path, out: &mut LoadedData) -> Result<()> {
    for generation in read_generations(path, Which::Accepted)? {
        let generation = generation?;
        let origin = format!(
            "{} (prompt {}, sample {})",
            path.display(),
            generation.id,
            generation.sample_index
        );
        push(
            out,
            generation.messages,
            origin,
            generation.teacher_logprobs,
        );
    }
    Ok(())
}

fn push(
    out: &mut LoadedData,
    messages: Vec<ChatMessage>,
    origin: String,
    teacher_logprobs: Option<TeacherLogprobs>,
) {
    if messages.iter().any(|m| m.role == "assistant") {
        out.conversations.push(Conversation {
            messages,
            origin,
            teacher_logprobs,
        });
    } else {
        out.skipped_no_assistant += 1;
    }
}

/// Reads the `messages` (and `accepted`, if present) columns of a Parquet file.
pub fn read_parquet(path: &Path, out: &mut LoadedData) -> Result<()> {
    let perr = |e: &dyn std::fmt::Display| DataError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(io_err(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| perr(&e))?;
    let schema = builder.schema().clone();
    let col_err = |column: &str, message: String| DataError::Column {
        path: path.to_path_buf(),
        column: column.to_string(),
        message,
    };
    let messages_idx = schema
        .index_of("messages")
        .map_err(|_| col_err("messages", "no such column".into()))?;
    let accepted_idx = schema.index_of("accepted").ok();
    let logprobs_idx = schema.index_of(logprobs::COLUMN).ok();
    let mut roots = vec![messages_idx];
    roots.extend(accepted_idx);
    roots.extend(logprobs_idx);
    roots.sort();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| perr(&e))?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| perr(&e))?;
        read_batch(path, &batch, &mut row, out)?;
    }
    Ok(())
}

fn read_batch(
    path: &Path,
    batch: &RecordBatch,
    row: &mut usize,
    out: &mut LoadedData,
) -> Result<()> {
    let col_err = |column: &str, message: String| DataError::Column {
        path: path.to_path_buf(),
        column: column.to_string(),
        message,
    };
    let messages = batch
        .column_by_name("messages")
        .ok_or_else(|| col_err("messages", "no such column".into()))?;
    let accepted: Option<BooleanArray> = match batch.column_by_name("accepted") {
        None => None,
        Some(a) => Some(
            a.as_boolean_opt()
                .ok_or_else(|| {
                    col_err("accepted", format!("expected bool, got {}", a.data_type()))
                })?
                .clone(),
        ),
    };
    let logprobs = logprobs::Reader::new(batch).map_err(|m| col_err(logprobs::COLUMN, m))?;
    // Lists of structs; accept List and LargeList.
    let list_item = |i: usize| -> Option<std::sync::Arc<dyn Array>> {
        match messages.data_type() {
            DataType::List(_) => Some(messages.as_list::<i32>().value(i)),
            DataType::LargeList(_) => Some(messages.as_list::<i64>().value(i)),
            _ => None,
        }
    };
    if !matches!(
        messages.data_type(),
        DataType::List(_) | DataType::LargeList(_)
    ) {
        return Err(col_err(
            "messages",
            format!(
                "expected list<struct<role, content>>, got {}",
                messages.data_type()
            ),
        ));
    }
    for i in 0..batch.num_rows() {
        let this_row = *row;
        *row += 1;
        let origin = format!("{} row {this_row}", path.display());
        if let Some(acc) = &accepted
            && (acc.is_null(i) || !acc.value(i))
        {
            out.skipped_rejected += 1;
            continue;
        }
        if messages.is_null(i) {
            return Err(DataError::Row {
                path: path.to_path_buf(),
                row: this_row,
                message: "`messages` is null".into(),
            });
        }
        let item = list_item(i).expect("type checked above");
        let structs: &StructArray = item.as_struct_opt().ok_or_else(|| {
            col_err(
                "messages",
                format!(
                    "expected list items to be structs, got {}",
                    item.data_type()
                ),
            )
        })?;
        let role = string_field(path, structs, "role")?;
        let content = string_field(path, structs, "content")?;
        let mut msgs = Vec::with_capacity(structs.len());
        for j in 0..structs.len() {
            let (Some(r), Some(c)) = (role[j].clone(), content[j].clone()) else {
                return Err(DataError::Row {
                    path: path.to_path_buf(),
                    row: this_row,
                    message: format!("messages[{j}]: null role or content"),
                });
            };
            msgs.push(ChatMessage {
                role: r,
                content: c,
            });
        }
        let teacher_logprobs = logprobs.get(i).map_err(|message| DataError::Row {
            path: path.to_path_buf(),
            row: this_row,
            message,
        })?;
        push(out, msgs, origin, teacher_logprobs);
    }
    Ok(())
}

fn string_field(path: &Path, s: &StructArray, name: &str) -> Result<Vec<Option<String>>> {
    let col = s.column_by_name(name).ok_or_else(|| DataError::Column {
        path: path.to_path_buf(),
        column: format!("messages.{name}"),
        message: "no such field".into(),
    })?;
    let casted = arrow::compute::cast(col, &DataType::Utf8).map_err(|e| DataError::Column {
        path: path.to_path_buf(),
        column: format!("messages.{name}"),
        message: format!("expected utf8, got {}: {e}", col.data_type()),
    })?;
    let strings = casted.as_string::<i32>();
    Ok((0..strings.len())
        .map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_string()))
        .collect())
}

#[derive(Deserialize)]
struct JsonRow {
    messages: Option<Vec<ChatMessage>>,
    accepted: Option<bool>,
    /// `export --format jsonl`'s form of the teacher's log-probabilities (null or absent
    /// when the row has none).
    #[serde(default)]
    teacher_logprobs: Option<serde_json::Value>,
}

/// Reads a JSONL file whose objects have a `messages` field (and optionally `accepted`).
pub fn read_jsonl(path: &Path, out: &mut LoadedData) -> Result<()> {
    let file = File::open(path).map_err(io_err(path))?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: JsonRow = serde_json::from_str(&line).map_err(|e| DataError::JsonLine {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        if row.accepted == Some(false) {
            out.skipped_rejected += 1;
            continue;
        }
        let messages = row.messages.ok_or_else(|| DataError::JsonLine {
            path: path.to_path_buf(),
            line: i + 1,
            message: "missing field `messages`".into(),
        })?;
        let teacher_logprobs = row
            .teacher_logprobs
            .filter(|v| !v.is_null())
            .map(|v| TeacherLogprobs::from_json(&v))
            .transpose()
            .map_err(|message| DataError::JsonLine {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            })?;
        push(
            out,
            messages,
            format!("{} line {}", path.display(), i + 1),
            teacher_logprobs,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use distillery_store::run_dir::{Manifest, WriterOptions};
    use distillery_store::testing::sample;

    use super::*;
    use crate::export::{ExportOptions, export};

    /// A run killed mid-way: 3 shards' worth cut, the rest only in the WAL.
    fn unfinished_run(dir: &Path) -> PathBuf {
        let definition = "name = \"gsm\"\n";
        let manifest = Manifest::new("r1", "gsm", definition, "0.1.0");
        let path = dir.join("gsm");
        let run = RunDir::create(&path, definition, &manifest).unwrap();
        let mut writer = run
            .writer(WriterOptions {
                shard_rows: 4,
                ..WriterOptions::default()
            })
            .unwrap();
        for p in 0..9 {
            let id = format!("gsm-{p}");
            writer
                .append(&[sample(&id, 0, true), sample(&id, 1, p % 2 == 0)])
                .unwrap();
            writer.commit().unwrap();
            if p < 6 {
                writer.cut_if_due().unwrap();
            }
        }
        // Dropped without `finish`, as by kill -9: the last prompts are in the WAL only.
        drop(writer);
        path
    }

    #[test]
    fn train_reads_what_export_exports_from_an_unfinished_run() {
        let dir = tempfile::tempdir().unwrap();
        let run = unfinished_run(dir.path());
        let cut = read_generations(&run.join("shards"), Which::Accepted)
            .unwrap()
            .count();
        assert!(
            (1..14).contains(&cut),
            "some accepted rows must be in shards and some only in the WAL, {cut} of 14 cut"
        );

        let mut options = ExportOptions::new(vec![run.clone()], dir.path().join("out"));
        options.allow_incomplete = true;
        options.format = crate::export::ExportFormat::Jsonl;
        let report = export(&options).unwrap();
        let exported: Vec<Vec<ChatMessage>> = std::fs::read_dir(dir.path().join("out/data"))
            .unwrap()
            .flat_map(|f| {
                let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
                text.lines()
                    .map(|line| {
                        let row: serde_json::Value = serde_json::from_str(line).unwrap();
                        serde_json::from_value(row["messages"].clone()).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();

        let loaded = load_conversations(std::slice::from_ref(&run)).unwrap();
        // 9 prompts: every sample 0 and the sample 1 of the even ones.
        assert_eq!(loaded.conversations.len(), 9 + 5);
        assert_eq!(report.rows_selected, 9 + 5);
        let mut trained: Vec<_> = loaded
            .conversations
            .into_iter()
            .map(|c| c.messages)
            .collect();
        let mut exported = exported;
        trained.sort_by(|a, b| {
            a.iter()
                .map(|m| &m.content)
                .cmp(b.iter().map(|m| &m.content))
        });
        exported.sort_by(|a, b| {
            a.iter()
                .map(|m| &m.content)
                .cmp(b.iter().map(|m| &m.content))
        });
        assert_eq!(trained, exported);
    }
}

//! Readers of generations: a run's shards (and WAL segments not yet cut), a directory of
//! Parquet files (an exported dataset), or single files. Everything streams batch by batch.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Result, StoreError};
use crate::record::Generation;
use crate::run_dir::RunDir;
use crate::shard::ShardFileReader;

/// Which generations a reader yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Which {
    #[default]
    Accepted,
    Rejected,
    All,
}

impl Which {
    pub(crate) fn wants_kind(self, kind: &str) -> bool {
        match self {
            Which::All => true,
            Which::Accepted => kind == "accepted",
            Which::Rejected => kind == "rejected",
        }
    }

    pub fn wants(self, generation: &Generation) -> bool {
        match self {
            Which::All => true,
            Which::Accepted => generation.accepted,
            Which::Rejected => !generation.accepted,
        }
    }
}

/// One input of a [`GenerationReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Parquet(PathBuf),
    /// A WAL segment, read without modifying it (a torn tail is skipped).
    Wal(PathBuf),
}

enum Current {
    None,
    Parquet(ShardFileReader),
    Rows(std::vec::IntoIter<Generation>),
}

/// Streams generations from a list of inputs, filtered by [`Which`].
pub struct GenerationReader {
    inputs: std::vec::IntoIter<Input>,
    which: Which,
    current: Current,
    failed: bool,
}

impl GenerationReader {
    pub fn new(inputs: Vec<Input>, which: Which) -> Self {
        Self {
            inputs: inputs.into_iter(),
            which,
            current: Current::None,
            failed: false,
        }
    }

    fn open_next(&mut self) -> Option<Result<()>> {
        let input = self.inputs.next()?;
        Some(match input {
            Input::Parquet(path) => ShardFileReader::open(&path).map(|r| {
                self.current = Current::Parquet(r);
            }),
            Input::Wal(path) => crate::wal::read_segment(&path).map(|contents| {
                self.current = Current::Rows(contents.generations.into_iter());
            }),
        })
    }
}

impl Iterator for GenerationReader {
    type Item = Result<Generation>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let next = match &mut self.current {
                Current::None => None,
                Current::Parquet(reader) => reader.next(),
                Current::Rows(rows) => rows.next().map(Ok),
            };
            match next {
                Some(Ok(generation)) => {
                    if self.which.wants(&generation) {
                        return Some(Ok(generation));
                    }
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                None => {
                    self.current = Current::None;
                    if let Err(e) = self.open_next()? {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

/// The Parquet files under `path`: the file itself, or every `*.parquet` below the directory
/// (recursively, sorted by path; hidden entries and `*.tmp` skipped).
pub fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(StoreError::io("open", path))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let entry = entry.map_err(StoreError::io("list", &dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let kind = entry.file_type().map_err(StoreError::io("stat", &path))?;
            if kind.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Generations of a run directory (shards and uncut WAL), of a directory of Parquet files, or
/// of one Parquet file.
pub fn read_generations(path: &Path, which: Which) -> Result<GenerationReader> {
    if RunDir::is_run_dir(path) {
        return RunDir::open(path)?.generations(which);
    }
    let inputs = parquet_files(path)?
        .into_iter()
        .map(Input::Parquet)
        .collect();
    Ok(GenerationReader::new(inputs, which))
}

/// Accepted generations of a run (or dataset directory): what the trainer reads.
pub fn read_shards(path: &Path) -> Result<GenerationReader> {
    read_generations(path, Which::Accepted)
}

/// The small columns of a generation row, for counting without decoding the texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSummary {
    pub id: String,
    pub sample_index: u32,
    pub accepted: bool,
    pub reject_reason: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    /// False for files written before the column existed.
    pub tokens_estimated: bool,
    /// The source's difficulty (`level`), when the file has the column and the row a value.
    pub level: Option<String>,
    /// Times the length limit cut the sample off; 0 for files written before the column.
    pub truncations: u32,
}

const SUMMARY_COLUMNS: [&str; 7] = [
    "id",
    "sample_index",
    "accepted",
    "reject_reason",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
];

/// Streams the [`RowSummary`] of every row of a shard, reading only those columns. Returns the
/// number of rows.
pub fn scan_summaries(path: &Path, mut on_row: impl FnMut(RowSummary)) -> Result<u64> {
    let file = File::open(path).map_err(StoreError::io("open", path))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(StoreError::parquet(path))?;
    let schema = builder.schema().clone();
    let mut roots = Vec::new();
    for name in SUMMARY_COLUMNS {
        let index = schema.index_of(name).map_err(|_| StoreError::BadRow {
            path: path.to_owned(),
            row: 0,
            message: format!("missing column `{name}`"),
        })?;
        roots.push(index);
    }
    for optional in ["tokens_estimated", "level", "truncations"] {
        if let Ok(index) = schema.index_of(optional) {
            roots.push(index);
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(StoreError::parquet(path))?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| StoreError::BadRow {
            path: path.to_owned(),
            row: rows,
            message: e.to_string(),
        })?;
        let bad = |row: usize, message: String| StoreError::BadRow {
            path: path.to_owned(),
            row: rows + row as u64,
            message,
        };
        let col = |name: &str, ty: &DataType| -> Result<arrow::array::ArrayRef> {
            let array = batch.column_by_name(name).expect("projected");
            arrow::compute::cast(array, ty).map_err(|e| bad(0, format!("column `{name}`: {e}")))
        };
        let id = col("id", &DataType::Utf8)?;
        let id = id.as_string::<i32>();
        let accepted = col("accepted", &DataType::Boolean)?;
        let accepted = accepted.as_boolean();
        let reason = col("reject_reason", &DataType::Utf8)?;
        let reason = reason.as_string::<i32>();
        let estimated = batch
            .column_by_name("tokens_estimated")
            .and_then(|c| c.as_boolean_opt());
        let level = match batch.column_by_name("level") {
            Some(_) => Some(col("level", &DataType::Utf8)?),
            None => None,
        };
        let level = level.as_ref().map(|l| l.as_string::<i32>());
        let truncations = match batch.column_by_name("truncations") {
            Some(_) => Some(col("truncations", &DataType::Int64)?),
            None => None,
        };
        let truncations = truncations.as_ref().map(|t| t.as_primitive::<Int64Type>());
        let ints: Vec<_> = [
            "sample_index",
            "prompt_tokens",
            "completion_tokens",
            "reasoning_tokens",
        ]
        .iter()
        .map(|name| col(name, &DataType::Int64))
        .collect::<Result<_>>()?;
        let ints: Vec<_> = ints.iter().map(|a| a.as_primitive::<Int64Type>()).collect();
        for row in 0..batch.num_rows() {
            if id.is_null(row) || accepted.is_null(row) || ints.iter().any(|a| a.is_null(row)) {
                return Err(bad(row, "null in a required column".into()));
            }
            let uint = |i: usize| {
                u64::try_from(ints[i].value(row))
                    .map_err(|_| bad(row, format!("negative `{}`", SUMMARY_COLUMNS[i])))
            };
            on_row(RowSummary {
                id: id.value(row).to_owned(),
                sample_index: u32::try_from(uint(0)?)
                    .map_err(|_| bad(row, "`sample_index` out of range".into()))?,
                accepted: accepted.value(row),
                reject_reason: reason.is_valid(row).then(|| reason.value(row).to_owned()),
                prompt_tokens: uint(1)?,
                completion_tokens: uint(2)?,
                reasoning_tokens: uint(3)?,
                tokens_estimated: estimated.is_some_and(|c| c.is_valid(row) && c.value(row)),
                level: level
                    .filter(|l| l.is_valid(row))
                    .map(|l| l.value(row).to_owned()),
                truncations: truncations
                    .filter(|t| t.is_valid(row))
                    .map_or(0, |t| u32::try_from(t.value(row)).unwrap_or(0)),
            });
        }
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    #[test]
    fn reads_a_directory_of_parquet_files_and_reports_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("data");
        std::fs::create_dir(&nested).unwrap();
        crate::shard::write_shard(&nested.join("a.parquet"), &[sample("a", 0, true)], &[]).unwrap();
        crate::shard::write_shard(
            &nested.join("b.parquet"),
            &[sample("b", 0, false), sample("c", 0, true)],
            &[],
        )
        .unwrap();
        std::fs::write(nested.join("c.parquet.tmp"), b"junk").unwrap();
        let all: Vec<_> = read_generations(dir.path(), Which::All)
            .unwrap()
            .map(|g| g.unwrap().id)
            .collect();
        assert_eq!(all, ["a", "b", "c"]);
        let accepted: Vec<_> = read_shards(dir.path())
            .unwrap()
            .map(|g| g.unwrap().id)
            .collect();
        assert_eq!(accepted, ["a", "c"]);

        // A row with a null where the record needs a value: the error names file and row.
        use arrow::array::{ArrayRef, RecordBatch, StringArray};
        use std::sync::Arc;
        let batch =
            crate::schema::to_record_batch(&[sample("x", 0, true), sample("y", 0, true)]).unwrap();
        let index = batch.schema().index_of("teacher_model").unwrap();
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(StringArray::from(vec![Some("m"), None])) as ArrayRef;
        let schema = Arc::new(arrow::datatypes::Schema::new(
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let bad = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let path = dir.path().join("bad.parquet");
        let mut file = crate::shard::AtomicParquet::create(&path, schema, &[]).unwrap();
        file.write_batch(&bad).unwrap();
        file.finish().unwrap();
        let error = read_generations(&path, Which::All)
            .unwrap()
            .find_map(Result::err)
            .unwrap()
            .to_string();
        assert!(
            error.contains("bad.parquet: row 1: `teacher_model` is null"),
            "{error}"
        );
    }
}

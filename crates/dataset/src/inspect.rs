//! Describe a run directory or an exported dataset: schema, row counts, sample rows, and a
//! histogram of reasoning tokens. [`inspect`] returns the text `distillery inspect` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::export::human_bytes;
use distillery_store::read::{Which, parquet_files, scan_summaries};
use distillery_store::run_dir::RunDir;
use distillery_store::schema::{array_value_to_json, generation_schema, to_record_batch};
use distillery_store::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Sample rows to print.
    pub samples: usize,
    /// Print long strings whole (default: cut at `max_chars`).
    pub full: bool,
    pub max_chars: usize,
    pub histogram_bins: usize,
}

impl Default for InspectOptions {
    fn default() -> Self {
        Self {
            samples: 1,
            full: false,
            max_chars: 400,
            histogram_bins: 10,
        }
    }
}

/// A readable type name: `list<struct<role: string, content: string>>`.
pub fn type_name(ty: &DataType) -> String {
    match ty {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "bool".into(),
        DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) => {
            format!("list<{}>", type_name(item.data_type()))
        }
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string().to_lowercase(),
    }
}

fn render_schema(out: &mut String, schema: &SchemaRef) {
    let width = schema
        .fields()
        .iter()
        .map(|f| f.name().len())
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "schema ({} columns):", schema.fields().len());
    for field in schema.fields() {
        let _ = writeln!(
            out,
            "  {:width$}  {}{}",
            field.name(),
            type_name(field.data_type()),
            if field.is_nullable() {
                ""
            } else {
                " (not null)"
            }
        );
    }
}

fn shorten(value: &mut Value, max: usize) {
    match value {
        Value::String(s) if s.chars().count() > max => {
            let total = s.chars().count();
            let cut: String = s.chars().take(max).collect();
            *s = format!("{cut}… [{} more chars]", total - max);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shorten(v, max)),
        Value::Object(map) => map.values_mut().for_each(|v| shorten(v, max)),
        _ => {}
    }
}

type Pairs = Vec<(String, Value)>;

/// A row's cells in column order.
fn row_pairs(batch: &arrow::array::RecordBatch, row: usize) -> Result<Pairs> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| {
            // Thousands of tokens per row: a sample shows what they amount to, not each one.
            let value = if f.name() == distillery_store::logprobs::COLUMN {
                match distillery_store::logprobs::Reader::new(batch)
                    .and_then(|r| r.get(row))
                    .map_err(StoreError::Schema)?
                {
                    Some(r) => format!("{} tokens, top {} each", r.len(), r.k).into(),
                    None => Value::Null,
                }
            } else {
                array_value_to_json(c, row)?
            };
            Ok((f.name().clone(), value))
        })
        .collect()
}

fn render_samples(out: &mut String, rows: Vec<Pairs>, options: &InspectOptions) {
    if rows.is_empty() {
        out.push_str("\nno rows to sample\n");
        return;
    }
    for (i, row) in rows.into_iter().enumerate() {
        let _ = writeln!(out, "\nsample row {}:", i + 1);
        for (key, mut value) in row {
            if !options.full {
                shorten(&mut value, options.max_chars);
            }
            let text = serde_json::to_string_pretty(&value).unwrap_or_default();
            let _ = writeln!(out, "  {key}: {}", text.replace('\n', "\n  "));
        }
    }
}

/// A text histogram of `values` in `bins` equal-width bins.
pub fn histogram(values: &[u64], bins: usize) -> String {
    let mut out = String::new();
    if values.is_empty() {
        out.push_str("  (no values)\n");
        return out;
    }
    let min = *values.iter().min().expect("non-empty");
    let max = *values.iter().max().expect("non-empty");
    let bins = bins.max(1) as u64;
    let width = ((max - min) / bins + 1).max(1);
    let count = ((max - min) / width + 1) as usize;
    let mut counts = vec![0u64; count];
    for v in values {
        counts[((v - min) / width) as usize] += 1;
    }
    let peak = *counts.iter().max().expect("non-empty");
    let label_width = format!("{}", min + width * count as u64 - 1).len();
    for (i, n) in counts.iter().enumerate() {
        let lo = min + width * i as u64;
        let hi = lo + width - 1;
        let bar = "█".repeat(((n * 40).div_ceil(peak.max(1))) as usize);
        let _ = writeln!(
            out,
            "  {lo:>label_width$} – {hi:>label_width$}  {n:>8}  {bar}"
        );
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mean = sorted.iter().sum::<u64>() as f64 / sorted.len() as f64;
    let _ = writeln!(
        out,
        "  n={} min={min} median={} mean={mean:.1} p90={} max={max}",
        sorted.len(),
        sorted[(sorted.len() - 1) / 2],
        sorted[((sorted.len() as f64 * 0.9).ceil() as usize).clamp(1, sorted.len()) - 1]
    );
    out
}

/// Reads the `reasoning_tokens` column of Parquet files, if they have it.
fn reasoning_tokens(files: &[PathBuf]) -> Result<Option<Vec<u64>>> {
    let mut values = Vec::new();
    for path in files {
        let file = File::open(path).map_err(StoreError::io("open", path))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(StoreError::parquet(path))?;
        let Ok(index) = builder.schema().index_of("reasoning_tokens") else {
            return Ok(None);
        };
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(StoreError::parquet(path))?;
        for batch in reader {
            let batch = batch.map_err(|e| StoreError::Source {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let column = arrow::compute::cast(batch.column(0), &DataType::Int64)?;
            let column = column.as_primitive::<Int64Type>();
            values.extend(
                (0..column.len())
                    .filter(|&i| column.is_valid(i))
                    .map(|i| column.value(i).max(0) as u64),
            );
        }
    }
    Ok(Some(values))
}

fn first_rows(files: &[PathBuf], n: usize) -> Result<Vec<Pairs>> {
    let mut rows = Vec::new();
    for path in files {
        if rows.len() >= n {
            break;
        }
        let file = File::open(path).map_err(StoreError::io("open", path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(StoreError::parquet(path))?
            .with_batch_size(n.max(1))
            .build()
            .map_err(StoreError::parquet(path))?;
        for batch in reader {
            let batch = batch.map_err(|e| StoreError::Source {
                path: path.clone(),
                message: e.to_string(),
            })?;
            for row in 0..batch.num_rows() {
                if rows.len() >= n {
                    return Ok(rows);
                }
                rows.push(row_pairs(&batch, row)?);
            }
        }
    }
    Ok(rows)
}

/// `train-00000-of-00002.parquet` → `train`; other names → the file stem.
fn split_of(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = name.split('.').next().unwrap_or(name);
    match stem.find("-of-").and_then(|at| stem[..at].rfind('-')) {
        Some(dash) => stem[..dash].to_owned(),
        None => stem.to_owned(),
    }
}

fn inspect_run(path: &Path, options: &InspectOptions, out: &mut String) -> Result<()> {
    let run = RunDir::open(path)?;
    let manifest = run.manifest()?;
    let _ = writeln!(out, "run directory {}", path.display());
    let _ = writeln!(
        out,
        "  pipeline {} · run {} · status {:?} · config {} · distillery {}",
        manifest.name,
        manifest.run_id,
        manifest.status,
        &manifest.config_hash[..manifest.config_hash.len().min(12)],
        manifest.distillery_version
    );
    let c = &manifest.counts;
    let _ = writeln!(
        out,
        "  manifest: prompts {}/{} · generations {} · accepted {} · rejected {} · quarantined {} · failed {}",
        c.prompts_done,
        c.prompts_total.map_or("?".into(), |t| t.to_string()),
        c.generations,
        c.accepted,
        c.rejected,
        c.quarantined,
        c.prompts_failed
    );
    let shard_files = run.shard_files()?;
    let segments = run.wal_segments()?;
    let bytes: u64 = shard_files
        .iter()
        .filter_map(|(_, _, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let _ = writeln!(
        out,
        "  files: {} shard file(s), {} · {} WAL segment(s) not yet cut · {} quarantine line(s)",
        shard_files.len(),
        human_bytes(bytes),
        segments.len(),
        run.quarantined()?.len()
    );

    // Counts from the data itself.
    let mut accepted = 0u64;
    let mut rejected = 0u64;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut tokens = Vec::new();
    let mut tally = |accepted_row: bool, reason: Option<String>, reasoning: u64| {
        if accepted_row {
            accepted += 1;
            tokens.push(reasoning);
        } else {
            rejected += 1;
            *reasons
                .entry(reason.unwrap_or_else(|| "unknown".into()))
                .or_default() += 1;
        }
    };
    let skip: std::collections::HashSet<u64> = segments.iter().copied().collect();
    for (_, index, file) in &shard_files {
        if !skip.contains(index) {
            scan_summaries(file, |row| {
                tally(row.accepted, row.reject_reason, row.reasoning_tokens)
            })?;
        }
    }
    for index in &segments {
        let segment = run.wal_dir().join(format!("{index:05}.jsonl"));
        for g in distillery_store::wal::read_segment(&segment)?.generations {
            tally(g.accepted, g.reject_reason, g.reasoning_tokens);
        }
    }
    let total = accepted + rejected;
    let _ = writeln!(
        out,
        "\nrows: {total} generations · {accepted} accepted · {rejected} rejected{}",
        if total > 0 {
            format!(
                " · acceptance {:.1}%",
                100.0 * accepted as f64 / total as f64
            )
        } else {
            String::new()
        }
    );
    for (reason, n) in &reasons {
        let _ = writeln!(out, "  rejected {reason}: {n}");
    }
    let files: Vec<PathBuf> = shard_files.iter().map(|(_, _, p)| p.clone()).collect();
    out.push_str(&distillery_store::logprobs::describe(
        distillery_store::logprobs::footprint(&files)?,
    ));
    out.push('\n');
    let schema = match shard_files.first() {
        Some((_, _, file)) => {
            let f = File::open(file).map_err(StoreError::io("open", file))?;
            ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(StoreError::parquet(file))?
                .schema()
                .clone()
        }
        None => generation_schema(),
    };
    render_schema(out, &schema);
    let mut samples = Vec::new();
    for g in run.generations(Which::Accepted)?.take(options.samples) {
        let batch = to_record_batch(std::slice::from_ref(&g?))?;
        samples.push(row_pairs(&batch, 0)?);
    }
    render_samples(out, samples, options);
    out.push_str("\nreasoning tokens of accepted rows:\n");
    out.push_str(&histogram(&tokens, options.histogram_bins));
    Ok(())
}

fn inspect_parquet(
    path: &Path,
    files: Vec<PathBuf>,
    options: &InspectOptions,
    out: &mut String,
) -> Result<()> {
    let _ = writeln!(
        out,
        "dataset {} ({} Parquet file(s))",
        path.display(),
        files.len()
    );
    let card = path.join("README.md");
    if card.is_file() {
        let _ = writeln!(out, "  dataset card: {}", card.display());
    }
    let mut splits: BTreeMap<String, (u64, u64, usize)> = BTreeMap::new();
    let mut schema = None;
    for file in &files {
        let f = File::open(file).map_err(StoreError::io("open", file))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(f).map_err(StoreError::parquet(file))?;
        let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
        let bytes = std::fs::metadata(file)
            .map_err(StoreError::io("stat", file))?
            .len();
        let entry = splits.entry(split_of(file)).or_default();
        entry.0 += rows;
        entry.1 += bytes;
        entry.2 += 1;
        schema.get_or_insert_with(|| builder.schema().clone());
    }
    let total: u64 = splits.values().map(|s| s.0).sum();
    let _ = writeln!(out, "\nrows: {total}");
    for (split, (rows, bytes, n)) in &splits {
        let _ = writeln!(
            out,
            "  {split}: {rows} rows in {n} file(s), {}",
            human_bytes(*bytes)
        );
    }
    out.push('\n');
    if let Some(schema) = &schema {
        render_schema(out, schema);
    }
    render_samples(out, first_rows(&files, options.samples)?, options);
    out.push('\n');
    out.push_str(&distillery_store::logprobs::describe(
        distillery_store::logprobs::footprint(&files)?,
    ));
    match reasoning_tokens(&files)? {
        Some(tokens) => {
            out.push_str("\nreasoning tokens:\n");
            out.push_str(&histogram(&tokens, options.histogram_bins));
        }
        None => out.push_str("\nno `reasoning_tokens` column: no length histogram\n"),
    }
    Ok(())
}

fn jsonl_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let entry = entry.map_err(StoreError::io("list", &dir))?;
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "jsonl") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn inspect_jsonl(
    path: &Path,
    files: Vec<PathBuf>,
    options: &InspectOptions,
    out: &mut String,
) -> Result<()> {
    let _ = writeln!(
        out,
        "dataset {} ({} JSONL file(s))",
        path.display(),
        files.len()
    );
    let mut splits: BTreeMap<String, u64> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut tokens = Vec::new();
    let mut keys: Option<Vec<(String, &'static str)>> = None;
    for file in &files {
        let reader = BufReader::new(File::open(file).map_err(StoreError::io("open", file))?);
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(StoreError::io("read", file))?;
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(&line).map_err(|e| StoreError::Corrupt {
                path: file.clone(),
                line: i as u64 + 1,
                message: e.to_string(),
            })?;
            *splits.entry(split_of(file)).or_default() += 1;
            if let Some(t) = value.get("reasoning_tokens").and_then(Value::as_u64) {
                tokens.push(t);
            }
            if let Value::Object(map) = value {
                keys.get_or_insert_with(|| {
                    map.iter()
                        .map(|(k, v)| {
                            let kind = match v {
                                Value::Null => "null",
                                Value::Bool(_) => "bool",
                                Value::Number(_) => "number",
                                Value::String(_) => "string",
                                Value::Array(_) => "list",
                                Value::Object(_) => "object",
                            };
                            (k.clone(), kind)
                        })
                        .collect()
                });
                if samples.len() < options.samples {
                    samples.push(map.into_iter().collect());
                }
            }
        }
    }
    let total: u64 = splits.values().sum();
    let _ = writeln!(out, "\nrows: {total}");
    for (split, rows) in &splits {
        let _ = writeln!(out, "  {split}: {rows} rows");
    }
    if let Some(keys) = keys {
        let _ = writeln!(out, "\nfields of the first row:");
        for (key, kind) in keys {
            let _ = writeln!(out, "  {key}  {kind}");
        }
    }
    render_samples(out, samples, options);
    out.push_str("\nreasoning tokens:\n");
    out.push_str(&histogram(&tokens, options.histogram_bins));
    Ok(())
}

/// Describes a run directory, an exported dataset directory, or one Parquet/JSONL file.
/// An exported dataset (a directory with `data/`) is whole only with its card, README.md,
/// which export moves into place last, and without temporary files.
fn check_whole_dataset(path: &Path) -> Result<()> {
    let data = path.join("data");
    if !data.is_dir() {
        return Ok(());
    }
    let partial = |what: String| {
        Err(StoreError::Invalid(format!(
            "{} is a partial dataset: {what} (an export that did not finish); run the export again",
            path.display()
        )))
    };
    if !path.join("README.md").is_file() {
        return partial(format!("{} has no README.md", path.display()));
    }
    let entries = std::fs::read_dir(&data).map_err(StoreError::io("list", &data))?;
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", &data))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            return partial(format!("data/{name} is a temporary file"));
        }
    }
    Ok(())
}

pub fn inspect(path: &Path, options: &InspectOptions) -> Result<String> {
    let mut out = String::new();
    if RunDir::is_run_dir(path) {
        inspect_run(path, options, &mut out)?;
        return Ok(out);
    }
    if !path.exists() {
        return Err(StoreError::Io {
            op: "inspect",
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    check_whole_dataset(path)?;
    let parquet = parquet_files(path)?;
    let jsonl_file = path.is_file() && path.extension().is_some_and(|e| e == "jsonl");
    if !jsonl_file && !parquet.is_empty() {
        inspect_parquet(path, parquet, options, &mut out)?;
        return Ok(out);
    }
    let jsonl = jsonl_files(path)?;
    if !jsonl.is_empty() {
        inspect_jsonl(path, jsonl, options, &mut out)?;
        return Ok(out);
    }
    Err(StoreError::Invalid(format!(
        "{} is neither a run directory nor a dataset (no .parquet or .jsonl files)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{ExportFormat, ExportOptions, export};
    use distillery_store::run_dir::{Manifest, WriterOptions};
    use distillery_store::testing::sample;

    fn run(dir: &Path) -> PathBuf {
        let manifest = Manifest::new("run-9", "demo", "name = \"demo\"\n", "0.1.0");
        let run = RunDir::create(dir.join("run"), "name = \"demo\"\n", &manifest).unwrap();
        let mut writer = run
            .writer(WriterOptions {
                shard_rows: 3,
                ..Default::default()
            })
            .unwrap();
        for p in 0..5 {
            let id = format!("p{p}");
            writer
                .append(&[sample(&id, 0, true), sample(&id, 1, p != 2)])
                .unwrap();
            writer.cut_if_due().unwrap();
        }
        writer.commit().unwrap();
        // Leave the last segment uncut, as an interrupted run would.
        drop(writer);
        run.path().to_owned()
    }

    #[test]
    fn inspects_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = run(dir.path());
        let text = inspect(&path, &InspectOptions::default()).unwrap();
        assert!(text.contains("pipeline demo · run run-9"), "{text}");
        assert!(
            text.contains("rows: 10 generations · 9 accepted · 1 rejected"),
            "{text}"
        );
        assert!(text.contains("rejected math.wrong_answer: 1"), "{text}");
        assert!(text.contains("1 WAL segment(s) not yet cut"), "{text}");
        assert!(
            text.contains("list<struct<role: string, content: string>>"),
            "{text}"
        );
        assert!(
            text.contains("  id: \"p0\"\n  sample_index: 0\n")
                && text.contains("\"role\": \"assistant\""),
            "{text}"
        );
        assert!(text.contains("n=9 min=100 median=100"), "{text}");
    }

    #[test]
    fn inspects_exported_parquet_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let path = run(dir.path());
        let mut options = ExportOptions::new(vec![path.clone()], dir.path().join("pq"));
        // The run was left unfinished on purpose.
        options.allow_incomplete = true;
        options.splits = crate::export::parse_splits("train=0.6,test=0.4").unwrap();
        export(&options).unwrap();
        let text = inspect(&dir.path().join("pq"), &InspectOptions::default()).unwrap();
        assert!(text.contains("rows: 9\n  test: "), "{text}");
        assert!(text.contains("dataset card"), "{text}");
        assert!(text.contains("reasoning tokens:\n"), "{text}");
        options.out = dir.path().join("js");
        options.format = ExportFormat::Jsonl;
        export(&options).unwrap();
        let text = inspect(
            &dir.path().join("js"),
            &InspectOptions {
                samples: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            text.contains("(2 JSONL file(s))") && text.contains("rows: 9"),
            "{text}"
        );
        assert!(
            text.contains("sample row 2:") && text.contains("  messages  list"),
            "{text}"
        );
        assert!(
            inspect(
                dir.path().join("nothing").as_path(),
                &InspectOptions::default()
            )
            .is_err()
        );
    }

    #[test]
    fn histogram_bins_cover_all_values() {
        let values: Vec<u64> = (0..100).collect();
        let text = histogram(&values, 10);
        assert_eq!(text.lines().count(), 11);
        assert!(text.contains("n=100 min=0 median=49"), "{text}");
        let one = histogram(&[5, 5, 5], 10);
        assert!(one.starts_with("  5 – 5         3  "), "{one}");
    }

    #[test]
    fn split_names() {
        assert_eq!(
            split_of(Path::new("data/train-00000-of-00002.parquet")),
            "train"
        );
        assert_eq!(
            split_of(Path::new("data/my-split-00001-of-00002.parquet")),
            "my-split"
        );
        assert_eq!(split_of(Path::new("x/shard.parquet")), "shard");
    }
}

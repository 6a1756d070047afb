//! Export runs as a Hugging Face-ready dataset.
//!
//! ```text
//! DIR/
//!   README.md                                 dataset card: YAML header (configs, data_files,
//!                                             dataset_info features and splits) + body
//!   data/train-00000-of-00002.parquet         ZSTD Parquet, generation schema (or --columns)
//!   data/train-00001-of-00002.parquet
//!   data/test-00000-of-00001.parquet
//! ```
//!
//! What [`export`] does, in order:
//! 1. Reads every input (run directories: shards plus WAL segments not yet cut; exported
//!    datasets or Parquet files), keeping accepted rows (or all with [`ExportOptions::which`]),
//!    and gathers per-run statistics (acceptance by reason, tokens) from all rows.
//! 2. Sorts the rows by a key independent of input order (prompt text, id, sample, run), then
//!    applies `dedup` (`exact`: identical `messages`; `prompt`: one row per prompt text) and
//!    `max_per_prompt`, keeping the first rows in that order.
//! 3. Adds the mix sources' rows so that each makes up its ratio of the final dataset.
//! 4. Assigns whole prompts (all samples of one prompt text) to splits, so no prompt is in two
//!    splits: prompts are ordered by a seeded hash and cut at the split ratios. Rows within a
//!    split are ordered by a seeded hash of their id and sample. Same rows and seed: same
//!    files, whichever run or machine made them.
//! 5. Writes each split in files of at most `shard_size`, atomically, and the card.
//!
//! The rows of one export are held in memory (the texts dominate: roughly the size of the
//! uncompressed shards).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use distillery_spec::SourceFormat;
use serde_json::Value;
use sha2::{Digest, Sha256};

use distillery_source::{RawRows, canonical_json, row_hash};
use distillery_store::read::{Which, parquet_files, read_generations};
use distillery_store::record::{ChatMessage, Generation, Provenance};
use distillery_store::run_dir::RunDir;
use distillery_store::schema::{
    META_SCHEMA_VERSION, SCHEMA_VERSION, generation_schema, row_to_json, to_record_batch,
};
use distillery_store::shard::AtomicParquet;
use distillery_store::shard_set;
use distillery_store::{Result, StoreError};

/// File format of the exported data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    #[default]
    Parquet,
    Jsonl,
}

impl ExportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Parquet => "parquet",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// The shape of the exported rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// One row per sample, every column of the run's rows (the generation schema).
    #[default]
    Samples,
    /// One row per problem with open-r1's columns (see [`crate::open_r1`]): every stored sample
    /// of the problem, accepted and rejected, in its `generations`.
    OpenR1,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Samples => "samples",
            Layout::OpenR1 => "open-r1",
        }
    }

    fn schema(self) -> SchemaRef {
        match self {
            Layout::Samples => generation_schema(),
            Layout::OpenR1 => crate::open_r1::problem_schema(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedup {
    /// Drop rows whose `messages` equal an earlier row's.
    Exact,
    /// Keep one row per prompt text.
    Prompt,
}

/// The most a data file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSize {
    Rows(u64),
    /// Uncompressed bytes of text (the compressed file is smaller).
    Bytes(u64),
}

impl Default for ShardSize {
    fn default() -> Self {
        ShardSize::Bytes(500 * 1000 * 1000)
    }
}

impl std::str::FromStr for ShardSize {
    type Err = StoreError;

    /// `10000` (rows), `500MB`, `1GB`, `64KB` (also `MiB`/`GiB`/`KiB`).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || {
            StoreError::Invalid(format!(
                "invalid shard size `{s}`: expected rows (`50000`) or a size (`500MB`, `1GB`)"
            ))
        };
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let number: u64 = s[..digits_end].parse().map_err(|_| bad())?;
        let unit = s[digits_end..].trim().to_ascii_lowercase();
        let size = match unit.as_str() {
            "" | "rows" => ShardSize::Rows(number),
            "b" => ShardSize::Bytes(number),
            "kb" => ShardSize::Bytes(number * 1000),
            "kib" => ShardSize::Bytes(number << 10),
            "mb" => ShardSize::Bytes(number * 1000 * 1000),
            "mib" => ShardSize::Bytes(number << 20),
            "gb" => ShardSize::Bytes(number * 1000 * 1000 * 1000),
            "gib" => ShardSize::Bytes(number << 30),
            _ => return Err(bad()),
        };
        if number == 0 {
            return Err(bad());
        }
        Ok(size)
    }
}

/// A general-data source mixed into the export (`PATH:RATIO`).
#[derive(Debug, Clone, PartialEq)]
pub struct MixSource {
    pub path: PathBuf,
    /// Share of the final dataset, in (0, 1).
    pub ratio: f64,
}

impl std::str::FromStr for MixSource {
    type Err = StoreError;

    /// `general.jsonl:0.2` or `general.jsonl:20%`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| StoreError::Invalid(format!("invalid mix `{s}`: {why}"));
        let (path, ratio) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("expected PATH:RATIO, e.g. general.jsonl:0.2"))?;
        let ratio = match ratio.strip_suffix('%') {
            Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
            None => ratio.trim().parse::<f64>(),
        }
        .map_err(|_| bad("the ratio is not a number"))?;
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(bad(
                "the ratio must be between 0 and 1 (exclusive), e.g. 0.2 or 20%",
            ));
        }
        if path.is_empty() {
            return Err(bad("the path is empty"));
        }
        Ok(MixSource {
            path: PathBuf::from(path),
            ratio,
        })
    }
}

/// Parses `train=0.98,test=0.02`.
pub fn parse_splits(spec: &str) -> Result<Vec<(String, f64)>> {
    let mut splits = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, ratio) = part.split_once('=').ok_or_else(|| {
            StoreError::Invalid(format!("invalid split `{part}`: expected NAME=RATIO"))
        })?;
        let name = name.trim();
        let valid = !name.is_empty()
            && name
                .split('.')
                .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            return Err(StoreError::Invalid(format!(
                "invalid split name `{name}`: use letters, digits and `_` (e.g. train, test, validation)"
            )));
        }
        let ratio: f64 = ratio.trim().parse().map_err(|_| {
            StoreError::Invalid(format!("invalid split `{part}`: the ratio is not a number"))
        })?;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(StoreError::Invalid(format!(
                "invalid split `{part}`: the ratio must be between 0 and 1"
            )));
        }
        if splits.iter().any(|(n, _)| n == name) {
            return Err(StoreError::Invalid(format!(
                "split `{name}` is given twice"
            )));
        }
        splits.push((name.to_owned(), ratio));
    }
    let total: f64 = splits.iter().map(|(_, r)| r).sum();
    if splits.is_empty() || (total - 1.0).abs() > 1e-6 {
        return Err(StoreError::Invalid(format!(
            "split ratios must add up to 1 (got {total}): e.g. train=0.98,test=0.02"
        )));
    }
    Ok(splits)
}

/// The rows an export removed as contaminated, beside the card.
pub const CONTAMINATION_FILE: &str = "contamination.jsonl";

/// Every option of an export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Run directories, exported datasets, or Parquet files/directories of generation rows.
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub format: ExportFormat,
    pub layout: Layout,
    /// Split names and ratios adding up to 1.
    pub splits: Vec<(String, f64)>,
    pub seed: u64,
    /// Accepted rows only (default), or all rows with their verdicts. In the open-r1 layout:
    /// the problems with an accepted sample (default), or every problem.
    pub which: Which,
    pub dedup: Option<Dedup>,
    pub max_per_prompt: Option<u32>,
    /// Columns to keep, in this order; `None`: every column of the generation schema.
    pub columns: Option<Vec<String>>,
    pub shard_size: ShardSize,
    pub mix: Vec<MixSource>,
    /// Replace an existing export in `out` (its `data/` and README.md).
    pub force: bool,
    /// Export run directories whose status is not `completed` (what they have so far).
    pub allow_incomplete: bool,
    /// Keep local paths and endpoint URLs in the rows and the card; without it the source is
    /// recorded by its file name and endpoints by their kind, so a published dataset does not
    /// carry the machine it was made on.
    pub keep_provenance: bool,
    /// The card's `license:`; `None`: the source's, read from a LICENSE file beside it when
    /// there is one, else `other` with a note.
    pub license: Option<String>,
    /// Drop rows whose problem overlaps these benchmark items; the dropped rows are listed in
    /// `contamination.jsonl` beside the card, with the item each matched.
    pub decontaminate: Option<std::sync::Arc<distillery_decontam::Index>>,
}

impl ExportOptions {
    pub fn new(inputs: Vec<PathBuf>, out: PathBuf) -> Self {
        Self {
            inputs,
            out,
            format: ExportFormat::Parquet,
            layout: Layout::Samples,
            splits: vec![("train".into(), 1.0)],
            seed: 0,
            which: Which::Accepted,
            dedup: None,
            max_per_prompt: None,
            columns: None,
            shard_size: ShardSize::default(),
            mix: Vec::new(),
            force: false,
            allow_incomplete: false,
            decontaminate: None,
            keep_provenance: false,
            license: None,
        }
    }
}

/// Statistics of one input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputStats {
    pub path: PathBuf,
    /// Pipeline name (run directories), else the directory or file name.
    pub name: String,
    pub run_ids: BTreeSet<String>,
    pub config_hashes: BTreeSet<String>,
    pub teacher_models: BTreeSet<String>,
    /// The frozen definition (run directories).
    pub definition: Option<String>,
    pub generations: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// WAL segments not yet cut into shards (an unfinished or crashed run); their rows are
    /// included.
    pub pending_wal_segments: usize,
    /// Problems, samples and acceptance by problem difficulty (see [`crate::difficulty`]).
    pub by_difficulty: BTreeMap<String, distillery_store::difficulty::DifficultyCounts>,
}

/// One written split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitReport {
    pub name: String,
    pub rows: u64,
    /// Paths relative to the output directory.
    pub files: Vec<String>,
    /// Bytes on disk.
    pub bytes: u64,
    /// Uncompressed size of the rows in memory (the card's `num_bytes`).
    pub num_bytes: u64,
}

/// One mix source's contribution.
#[derive(Debug, Clone, PartialEq)]
pub struct MixReport {
    pub path: PathBuf,
    pub ratio: f64,
    pub available: u64,
    pub wanted: u64,
    pub used: u64,
    /// Rows that could not be turned into a conversation, with the first reasons.
    pub skipped: u64,
    pub skip_examples: Vec<String>,
}

/// Token statistics of the exported reasoning rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenStats {
    pub rows: u64,
    pub reasoning_total: u64,
    pub reasoning_mean: f64,
    pub reasoning_median: u64,
    pub reasoning_p90: u64,
    pub reasoning_max: u64,
    pub completion_total: u64,
    pub completion_mean: f64,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub out: PathBuf,
    pub inputs: Vec<InputStats>,
    /// Rows kept by the accepted/all filter.
    pub rows_selected: u64,
    pub dropped_by_dedup: u64,
    pub dropped_by_max_per_prompt: u64,
    /// Rows dropped as contaminated, by benchmark.
    pub dropped_by_contamination: BTreeMap<String, u64>,
    /// The card's licence: given, or the source's.
    pub license: Option<String>,
    pub mix: Vec<MixReport>,
    pub splits: Vec<SplitReport>,
    pub tokens: TokenStats,
    pub card: PathBuf,
    /// Things the user should know (empty splits, short mix sources, unfinished runs).
    pub warnings: Vec<String>,
}

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

struct Row {
    generation: Generation,
    /// Hash of the prompt text: the unit of dedup, max-per-prompt and split assignment.
    group: u64,
    mixed: bool,
}

impl Row {
    fn new(generation: Generation, mixed: bool) -> Self {
        let group = hash64(&[generation.problem.as_bytes()]);
        Self {
            generation,
            group,
            mixed,
        }
    }

    fn order_key(&self) -> (u64, &str, u32, &str, i64) {
        let g = &self.generation;
        (
            self.group,
            &g.id,
            g.sample_index,
            &g.provenance.run_id,
            g.provenance.created_at_ms,
        )
    }
}

fn input_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Refuses a run directory that did not complete, unless `allow`ed (then it is a warning).
fn check_finished(path: &Path, allow: bool, warnings: &mut Vec<String>) -> Result<()> {
    if !RunDir::is_run_dir(path) {
        return Ok(());
    }
    let manifest = RunDir::open(path)?.manifest()?;
    if manifest.status == distillery_store::RunStatus::Completed {
        return Ok(());
    }
    let counts = &manifest.counts;
    let error = StoreError::Incomplete {
        path: path.to_owned(),
        status: manifest.status.to_string(),
        done: counts.prompts_done,
        total: counts
            .prompts_total
            .map_or_else(|| "?".to_owned(), |t| t.to_string()),
        failed: match counts.prompts_unfinished {
            0 => String::new(),
            n => format!(", {n} failed; see failures.jsonl"),
        },
    };
    if !allow {
        return Err(error);
    }
    warnings.push(format!("{error} (exported anyway: --allow-incomplete)"));
    Ok(())
}

/// Reads one input into `rows`; returns its statistics.
fn read_input(path: &Path, which: Which, rows: &mut Vec<Row>) -> Result<InputStats> {
    let mut stats = InputStats {
        path: path.to_owned(),
        name: input_name(path),
        ..InputStats::default()
    };
    let reader = if RunDir::is_run_dir(path) {
        let run = RunDir::open(path)?;
        let manifest = run.manifest()?;
        stats.name = manifest.name.clone();
        stats.definition = Some(run.frozen_definition()?);
        stats.pending_wal_segments = run.wal_segments()?.len();
        run.generations(Which::All)?
    } else {
        read_generations(path, Which::All)?
    };
    let mut problems: HashMap<String, distillery_store::difficulty::ProblemTally> = HashMap::new();
    for generation in reader {
        let generation = generation?;
        problems.entry(generation.id.clone()).or_default().add(
            generation.source.level.as_deref(),
            generation.accepted,
            generation.reject_reason.as_deref(),
            generation.length.truncations,
        );
        stats.generations += 1;
        if generation.accepted {
            stats.accepted += 1;
        } else {
            stats.rejected += 1;
            let reason = generation
                .reject_reason
                .clone()
                .unwrap_or_else(|| "unknown".into());
            *stats.rejected_by_reason.entry(reason).or_default() += 1;
        }
        let p = &generation.provenance;
        if !p.run_id.is_empty() {
            stats.run_ids.insert(p.run_id.clone());
        }
        if !p.config_hash.is_empty() {
            stats.config_hashes.insert(p.config_hash.clone());
        }
        if !generation.teacher_model.is_empty() {
            stats
                .teacher_models
                .insert(generation.teacher_model.clone());
        }
        if which.wants(&generation) {
            rows.push(Row::new(generation, false));
        }
    }
    for problem in problems.values() {
        problem.record(&mut stats.by_difficulty);
    }
    Ok(stats)
}

/// Every (prompt, sample) of a shard set is in one shard: a set whose shards overlap was not
/// split by one partition, and its union would hold some generations twice.
fn check_shards_disjoint(rows: &[Row], set_of_run: &HashMap<&str, &str>) -> Result<()> {
    let mut owner: HashMap<(&str, &str, u32), &str> = HashMap::new();
    for row in rows {
        let g = &row.generation;
        let run = g.provenance.run_id.as_str();
        let Some(set) = set_of_run.get(run) else {
            continue;
        };
        if let Some(other) = owner.insert((set, &g.id, g.sample_index), run)
            && other != run
        {
            return Err(StoreError::Invalid(format!(
                "prompt {} sample {} of `{set}` is in two shards (runs {other} and {run}): they were not split by the same partition",
                g.id, g.sample_index
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Mix sources

fn text_field<'a>(
    object: &'a serde_json::Map<String, Value>,
    names: &[&str],
) -> Option<(&'a str, &'a str)> {
    names.iter().find_map(|name| {
        let (key, value) = object.get_key_value(*name)?;
        let text = value.as_str()?;
        (!text.trim().is_empty()).then_some((key.as_str(), text))
    })
}

/// A general-data row as a conversation: a `messages` list of {role, content}, or
/// prompt/response-style fields (`prompt`/`instruction`/`question`/`problem` (+ `input`) and
/// `response`/`completion`/`output`/`answer`/`solution`), with an optional `system`.
pub fn conversation_from_row(value: &Value) -> std::result::Result<Vec<ChatMessage>, String> {
    let Value::Object(object) = value else {
        return Err("the row is not a JSON object".into());
    };
    if let Some(messages) = object
        .get("messages")
        .or_else(|| object.get("conversations"))
    {
        let Value::Array(items) = messages else {
            return Err("`messages` is not a list".into());
        };
        let mut out = Vec::new();
        for item in items {
            let role = item
                .get("role")
                .or_else(|| item.get("from"))
                .and_then(Value::as_str);
            let content = item
                .get("content")
                .or_else(|| item.get("value"))
                .and_then(Value::as_str);
            let (Some(role), Some(content)) = (role, content) else {
                return Err("a message lacks a text `role` or `content`".into());
            };
            let role = match role {
                "human" => "user",
                "gpt" => "assistant",
                other => other,
            };
            out.push(ChatMessage::new(role, content));
        }
        if !out.iter().any(|m| m.role == "user") || out.last().is_none_or(|m| m.role != "assistant")
        {
            return Err(
                "the conversation needs a user turn and must end with an assistant turn".into(),
            );
        }
        return Ok(out);
    }
    let (prompt_key, prompt) =
        text_field(object, &["prompt", "instruction", "question", "problem"])
            .ok_or("no `messages` and no prompt field (prompt, instruction, question, problem)")?;
    let (_, response) = text_field(
        object,
        &["response", "completion", "output", "answer", "solution"],
    )
    .ok_or("no response field (response, completion, output, answer, solution)")?;
    let mut user = prompt.to_owned();
    if prompt_key == "instruction"
        && let Some((_, input)) = text_field(object, &["input"])
    {
        user = format!("{prompt}\n\n{input}");
    }
    let mut out = Vec::new();
    if let Some((_, system)) = text_field(object, &["system"]) {
        out.push(ChatMessage::new("system", system));
    }
    out.push(ChatMessage::new("user", user));
    out.push(ChatMessage::new("assistant", response));
    Ok(out)
}

fn mixed_generation(messages: Vec<ChatMessage>, id: String, path: &Path, row: u64) -> Generation {
    let content = messages
        .last()
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let problem = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let system_prompt = messages
        .iter()
        .find(|m| m.role == "system")
        .map(|m| m.content.clone());
    Generation {
        id,
        sample_index: 0,
        problem,
        system_prompt,
        reference_answer: None,
        source: Default::default(),
        reasoning: None,
        content,
        extracted_answer: None,
        messages,
        checks: Vec::new(),
        accepted: true,
        reject_reason: None,
        teacher_model: String::new(),
        endpoint: String::new(),
        finish_reason: String::new(),
        reasoning_source: "absent".into(),
        prompt_tokens: 0,
        completion_tokens: 0,
        reasoning_tokens: 0,
        tokens_estimated: false,
        latency_ms: 0,
        attempts: 0,
        provenance: Provenance {
            run_id: String::new(),
            pipeline: "mix".into(),
            config_hash: String::new(),
            source_path: path.display().to_string(),
            source_row: row,
            created_at_ms: 0,
        },
        length: Default::default(),
        teacher_logprobs: None,
    }
}

fn is_generation_parquet(path: &Path) -> Result<bool> {
    if path.is_file() && path.extension().is_none_or(|e| e != "parquet") {
        return Ok(false);
    }
    let Some(first) = parquet_files(path)?.into_iter().next() else {
        return Ok(false);
    };
    let file = std::fs::File::open(&first).map_err(StoreError::io("open", &first))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(StoreError::parquet(&first))?;
    let schema = builder.schema();
    Ok([
        "id",
        "problem",
        "content",
        "messages",
        "accepted",
        "teacher_model",
    ]
    .iter()
    .all(|c| schema.index_of(c).is_ok()))
}

/// Reads a mix source's rows (as conversations), with the count of rows skipped.
fn read_mix(mix: &MixSource, report: &mut MixReport) -> Result<Vec<Generation>> {
    let path = &mix.path;
    let mut out = Vec::new();
    if RunDir::is_run_dir(path) || (path.exists() && is_generation_parquet(path)?) {
        for generation in read_generations(path, Which::Accepted)? {
            let mut generation = generation?;
            generation.provenance.pipeline = format!("mix:{}", generation.provenance.pipeline);
            out.push(generation);
        }
        return Ok(out);
    }
    let files: Vec<(PathBuf, SourceFormat)> = if path.is_dir() {
        parquet_files(path)?
            .into_iter()
            .map(|p| (p, SourceFormat::Parquet))
            .collect()
    } else {
        let format = SourceFormat::from_extension(path).ok_or_else(|| {
            StoreError::Invalid(format!(
                "mix source {}: unknown format (use .jsonl, .json or .parquet)",
                path.display()
            ))
        })?;
        vec![(path.clone(), format)]
    };
    for (file, format) in files {
        for item in RawRows::open(&file, format)? {
            let (row, value) = item?;
            let conversation = value
                .map_err(|q| q.detail)
                .and_then(|value| conversation_from_row(&value).map(|m| (m, row_hash(&value))));
            match conversation {
                Ok((messages, id)) => out.push(mixed_generation(messages, id, &file, row)),
                Err(why) => {
                    report.skipped += 1;
                    if report.skip_examples.len() < 3 {
                        report
                            .skip_examples
                            .push(format!("{} row {row}: {why}", file.display()));
                    }
                }
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Writing

fn project_schema(
    schema: SchemaRef,
    columns: &Option<Vec<String>>,
) -> Result<(SchemaRef, Option<Vec<usize>>)> {
    let Some(columns) = columns else {
        return Ok((schema, None));
    };
    let mut indices = Vec::new();
    for name in columns {
        let index = schema.index_of(name).map_err(|_| {
            let known: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            StoreError::Invalid(format!(
                "unknown column `{name}`; columns are: {}",
                known.join(", ")
            ))
        })?;
        if indices.contains(&index) {
            return Err(StoreError::Invalid(format!(
                "column `{name}` is given twice"
            )));
        }
        indices.push(index);
    }
    if indices.is_empty() {
        return Err(StoreError::Invalid("--columns names no column".into()));
    }
    Ok((Arc::new(schema.project(&indices)?), Some(indices)))
}

fn row_text_bytes(g: &Generation) -> u64 {
    let messages: usize = g
        .messages
        .iter()
        .map(|m| m.content.len() + m.role.len())
        .sum();
    (g.problem.len()
        + g.content.len()
        + g.reasoning.as_ref().map_or(0, String::len)
        + messages
        + 256) as u64
}

fn write_atomic_text(path: &Path, text: &[u8]) -> Result<u64> {
    use std::io::Write;
    let tmp = distillery_store::shard::tmp_path(path);
    let mut file = std::fs::File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
    file.write_all(text)
        .map_err(StoreError::io("write", &tmp))?;
    file.sync_all().map_err(StoreError::io("fsync", &tmp))?;
    drop(file);
    distillery_store::shard::durable_rename(&tmp, path)?;
    Ok(text.len() as u64)
}

/// The record batches of one data file: samples, or problems in the open-r1 layout, each cut to
/// the chosen columns.
fn file_batches<'a>(
    rows: &'a FileRows<'a>,
    projection: &'a Option<Vec<usize>>,
) -> Box<dyn Iterator<Item = Result<RecordBatch>> + 'a> {
    let project = move |batch: RecordBatch| -> Result<RecordBatch> {
        Ok(match projection {
            Some(indices) => batch.project(indices)?,
            None => batch,
        })
    };
    match rows {
        FileRows::Samples(rows) => Box::new(rows.chunks(distillery_store::shard::BATCH_ROWS).map(
            move |chunk| {
                let owned: Vec<Generation> = chunk.iter().map(|g| (*g).clone()).collect();
                project(to_record_batch(&owned)?)
            },
        )),
        FileRows::Problems(problems) => Box::new(
            problems
                .chunks(distillery_store::shard::BATCH_ROWS)
                .map(move |chunk| {
                    let refs: Vec<&[&Generation]> = chunk.iter().map(Vec::as_slice).collect();
                    project(crate::open_r1::to_record_batch(&refs)?)
                }),
        ),
    }
}

/// What one data file holds.
enum FileRows<'a> {
    Samples(Vec<&'a Generation>),
    /// Each problem's samples, in sample order.
    Problems(Vec<Vec<&'a Generation>>),
}

impl FileRows<'_> {
    fn is_empty(&self) -> bool {
        match self {
            FileRows::Samples(rows) => rows.is_empty(),
            FileRows::Problems(problems) => problems.is_empty(),
        }
    }
}

fn write_file(
    path: &Path,
    batches: impl Iterator<Item = Result<RecordBatch>>,
    format: ExportFormat,
    schema: &SchemaRef,
    metadata: &[(String, String)],
) -> Result<(u64, u64)> {
    let mut num_bytes = 0u64;
    match format {
        ExportFormat::Parquet => {
            let mut file = AtomicParquet::create(path, schema.clone(), metadata)?;
            for batch in batches {
                let batch: RecordBatch = batch?;
                num_bytes += batch.get_array_memory_size() as u64;
                file.write_batch(&batch)?;
            }
            Ok((file.finish()?, num_bytes))
        }
        ExportFormat::Jsonl => {
            let mut text = Vec::new();
            for batch in batches {
                let batch: RecordBatch = batch?;
                num_bytes += batch.get_array_memory_size() as u64;
                for row in 0..batch.num_rows() {
                    let object = row_to_json(&batch, row)?;
                    serde_json::to_writer(&mut text, &object).map_err(|source| {
                        StoreError::Json {
                            path: path.to_owned(),
                            source,
                        }
                    })?;
                    text.push(b'\n');
                }
            }
            Ok((write_atomic_text(path, &text)?, num_bytes))
        }
    }
}

/// Where an export is written before it is moved into place: `.<name>.export-tmp` next to
/// the output directory (same file system, so the final rename is atomic). A `kill -9` or a
/// full disk leaves only this directory, which the next export removes; `out` never holds a
/// partial dataset.
struct Staging {
    out: PathBuf,
    root: PathBuf,
}

fn side_path(out: &Path, suffix: &str) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "export".to_owned(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{name}.{suffix}"))
}

fn remove_if_present(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("remove", path)(e)),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

impl Staging {
    /// Refuses an `out` that holds a dataset unless `force`; makes an empty staging directory.
    fn new(out: &Path, force: bool) -> Result<Self> {
        let out = std::path::absolute(out).map_err(StoreError::io("resolve", out))?;
        let data = out.join("data");
        let card = out.join("README.md");
        let data_has_files = std::fs::read_dir(&data).is_ok_and(|mut d| d.next().is_some());
        if (data_has_files || card.exists()) && !force {
            return Err(StoreError::Invalid(format!(
                "{} already holds a dataset (data/ or README.md); use --force to replace it",
                out.display()
            )));
        }
        let parent = parent_dir(&out);
        std::fs::create_dir_all(&parent).map_err(StoreError::io("create", &parent))?;
        let root = side_path(&out, "export-tmp");
        remove_if_present(&root)?;
        let staged_data = root.join("data");
        std::fs::create_dir_all(&staged_data).map_err(StoreError::io("create", &staged_data))?;
        Ok(Self { out, root })
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn card(&self) -> PathBuf {
        self.root.join("README.md")
    }

    fn contamination(&self) -> PathBuf {
        self.root.join(CONTAMINATION_FILE)
    }

    /// Moves the staged dataset into `out`: one rename when `out` is absent, empty or holds
    /// only a dataset; otherwise `data/` and then README.md (the card last, so a dataset
    /// with a card is whole).
    fn commit(self) -> Result<()> {
        let parent = parent_dir(&self.out);
        sync_dir(&self.root.join("data"))?;
        sync_dir(&self.root)?;
        let entries: Vec<String> = match std::fs::read_dir(&self.out) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::io("list", &self.out)(e)),
        };
        let only_dataset = entries
            .iter()
            .all(|n| n == "data" || n == "README.md" || n == CONTAMINATION_FILE);
        if only_dataset {
            let old = side_path(&self.out, "export-old");
            remove_if_present(&old)?;
            if self.out.exists() {
                std::fs::rename(&self.out, &old).map_err(StoreError::io("rename", &self.out))?;
            }
            std::fs::rename(&self.root, &self.out).map_err(StoreError::io("rename", &self.root))?;
            sync_dir(&parent)?;
            remove_if_present(&old)?;
            return Ok(());
        }
        // `out` holds other files too: replace the dataset in it, card last.
        let (card, data) = (self.out.join("README.md"), self.out.join("data"));
        let contamination = self.out.join(CONTAMINATION_FILE);
        remove_if_present(&card)?;
        sync_dir(&self.out)?;
        remove_if_present(&data)?;
        remove_if_present(&contamination)?;
        std::fs::rename(self.root.join("data"), &data)
            .map_err(StoreError::io("rename", &self.root.join("data")))?;
        let staged_contamination = self.root.join(CONTAMINATION_FILE);
        if staged_contamination.exists() {
            std::fs::rename(&staged_contamination, &contamination)
                .map_err(StoreError::io("rename", &staged_contamination))?;
        }
        std::fs::rename(self.root.join("README.md"), &card)
            .map_err(StoreError::io("rename", &self.root.join("README.md")))?;
        sync_dir(&self.out)?;
        remove_if_present(&self.root)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    distillery_store::wal::sync_dir(dir)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn token_stats<'a>(rows: impl Iterator<Item = &'a Generation>) -> TokenStats {
    let mut reasoning = Vec::new();
    let mut stats = TokenStats::default();
    for g in rows {
        reasoning.push(g.reasoning_tokens);
        stats.completion_total += g.completion_tokens;
    }
    reasoning.sort_unstable();
    stats.rows = reasoning.len() as u64;
    stats.reasoning_total = reasoning.iter().sum();
    if stats.rows > 0 {
        stats.reasoning_mean = stats.reasoning_total as f64 / stats.rows as f64;
        stats.completion_mean = stats.completion_total as f64 / stats.rows as f64;
    }
    stats.reasoning_median = percentile(&reasoning, 0.5);
    stats.reasoning_p90 = percentile(&reasoning, 0.9);
    stats.reasoning_max = reasoning.last().copied().unwrap_or(0);
    stats
}

/// The rows of one split grouped into problems (every sample of one prompt text, in the
/// rows' order key, which is by prompt id and sample), the problems ordered by a seeded hash of
/// their prompt text: the same rows and seed give the same files.
fn problems_in_order<'a>(list: &[&'a Row], seed: &[u8]) -> Vec<Vec<&'a Generation>> {
    let mut sorted: Vec<&Row> = list.to_vec();
    sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let mut problems: Vec<(u64, Vec<&Generation>)> = Vec::new();
    for row in sorted {
        match problems.last_mut() {
            Some((group, samples)) if *group == row.group => samples.push(&row.generation),
            _ => problems.push((row.group, vec![&row.generation])),
        }
    }
    problems.sort_by_cached_key(|(group, _)| {
        (hash64(&[b"problem", seed, &group.to_le_bytes()]), *group)
    });
    problems.into_iter().map(|(_, samples)| samples).collect()
}

/// Exports runs as a dataset; see the module doc.
pub fn export(options: &ExportOptions) -> Result<ExportReport> {
    if options.inputs.is_empty() {
        return Err(StoreError::Invalid(
            "nothing to export: give at least one run directory".into(),
        ));
    }
    let total: f64 = options.splits.iter().map(|(_, r)| r).sum();
    if options.splits.is_empty() || (total - 1.0).abs() > 1e-6 {
        return Err(StoreError::Invalid("split ratios must add up to 1".into()));
    }
    let mix_total: f64 = options.mix.iter().map(|m| m.ratio).sum();
    if mix_total >= 1.0 {
        return Err(StoreError::Invalid(format!(
            "the mix ratios add up to {mix_total}; they must leave room for the runs (< 1)"
        )));
    }
    if options.max_per_prompt == Some(0) {
        return Err(StoreError::Invalid(
            "--max-per-prompt must be at least 1".into(),
        ));
    }
    if options.layout == Layout::OpenR1 {
        // One row per problem leaves nothing for these to act on, or (mix) has no problem to
        // put in the row: refused rather than quietly ignored.
        let conflicting = [
            (options.dedup.is_some(), "--dedup"),
            (options.max_per_prompt.is_some(), "--max-per-prompt"),
            (!options.mix.is_empty(), "--mix"),
        ];
        if let Some((_, flag)) = conflicting.iter().find(|(given, _)| *given) {
            return Err(StoreError::Invalid(format!(
                "{flag} does not apply to --layout open-r1, which holds one row per problem with every sample of it"
            )));
        }
    }
    let (schema, projection) = project_schema(options.layout.schema(), &options.columns)?;
    let mut warnings = Vec::new();
    let paths = shard_set::expand(&options.inputs)?;
    let sets = shard_set::shard_sets(&paths)?;
    // Shards are checked as a set, so that every missing or unfinished one is named at once.
    let problems: Vec<_> = sets.iter().flat_map(|s| s.problems.clone()).collect();
    if problems
        .iter()
        .any(|p| !p.is_incompleteness() || !options.allow_incomplete)
    {
        return Err(StoreError::Shards { problems });
    }
    warnings.extend(
        problems
            .iter()
            .map(|p| format!("{p} (exported anyway: --allow-incomplete)")),
    );
    // Which shard set each shard's rows come from, by run id.
    let set_of_run: HashMap<&str, &str> = sets
        .iter()
        .flat_map(|s| {
            s.members
                .iter()
                .map(|m| (m.manifest.run_id.as_str(), s.name.as_str()))
        })
        .collect();
    for path in &paths {
        if !sets
            .iter()
            .any(|s| s.members.iter().any(|m| m.path == *path))
        {
            check_finished(path, options.allow_incomplete, &mut warnings)?;
        }
    }

    // 1. Read.
    let mut rows = Vec::new();
    let mut inputs = Vec::new();
    // The open-r1 layout keeps every sample of a chosen problem, so it reads them all and
    // chooses problems below.
    let read_which = match options.layout {
        Layout::Samples => options.which,
        Layout::OpenR1 => Which::All,
    };
    for path in &paths {
        let stats = read_input(path, read_which, &mut rows)?;
        if stats.pending_wal_segments > 0 {
            warnings.push(format!(
                "{}: {} WAL segment(s) not yet cut into shards (unfinished run); their rows are included",
                path.display(),
                stats.pending_wal_segments
            ));
        }
        if stats.generations == 0 {
            warnings.push(format!("{}: no generations found", path.display()));
        }
        inputs.push(stats);
    }
    if options.layout == Layout::OpenR1 {
        let accepted: HashSet<u64> = rows
            .iter()
            .filter(|r| r.generation.accepted)
            .map(|r| r.group)
            .collect();
        rows.retain(|r| match options.which {
            Which::All => true,
            Which::Accepted => accepted.contains(&r.group),
            Which::Rejected => !accepted.contains(&r.group),
        });
    }
    let rows_selected = rows.len() as u64;
    check_shards_disjoint(&rows, &set_of_run)?;

    // 2. Order, dedup, cap per prompt.
    rows.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let mut seen_rows: HashSet<(String, u32, String)> = HashSet::new();
    let before = rows.len();
    rows.retain(|r| {
        let g = &r.generation;
        seen_rows.insert((g.id.clone(), g.sample_index, g.provenance.run_id.clone()))
    });
    let mut dropped_by_dedup = (before - rows.len()) as u64;
    match options.dedup {
        None => {}
        Some(Dedup::Exact) => {
            let mut seen = HashSet::new();
            let before = rows.len();
            rows.retain(|r| {
                let messages = serde_json::to_value(&r.generation.messages).unwrap_or(Value::Null);
                seen.insert(hash64(&[canonical_json(&messages).as_bytes()]))
            });
            dropped_by_dedup += (before - rows.len()) as u64;
        }
        Some(Dedup::Prompt) => {
            let mut seen = HashSet::new();
            let before = rows.len();
            rows.retain(|r| seen.insert(r.group));
            dropped_by_dedup += (before - rows.len()) as u64;
        }
    }
    let mut dropped_by_contamination: BTreeMap<String, u64> = BTreeMap::new();
    let mut contaminated: Vec<Value> = Vec::new();
    if let Some(index) = &options.decontaminate {
        // The problem as the source gave it: the template around it only adds words no
        // benchmark item has (rows from before the source's fields were kept: the prompt).
        let mut verdicts: HashMap<u64, Option<distillery_decontam::Match>> = HashMap::new();
        rows.retain(|r| {
            let found = verdicts
                .entry(r.group)
                .or_insert_with(|| index.check(crate::open_r1::source_problem(&r.generation)));
            let Some(found) = found else {
                return true;
            };
            *dropped_by_contamination
                .entry(found.benchmark.clone())
                .or_default() += 1;
            contaminated.push(serde_json::json!({
                "id": r.generation.id,
                "sample_index": r.generation.sample_index,
                "matched": found,
            }));
            false
        });
    }
    let mut dropped_by_max_per_prompt = 0;
    if let Some(k) = options.max_per_prompt {
        let mut per_group: HashMap<u64, u32> = HashMap::new();
        let before = rows.len();
        rows.retain(|r| {
            let n = per_group.entry(r.group).or_default();
            *n += 1;
            *n <= k
        });
        dropped_by_max_per_prompt = (before - rows.len()) as u64;
    }
    let reasoning_rows = rows.len() as u64;

    // Before the paths are cut: the source's licence, when a LICENSE file sits beside it.
    let sources: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.generation.provenance.source_path.as_str())
        .collect();
    let license = options.license.clone().or_else(|| {
        let found: BTreeSet<&str> = sources.iter().filter_map(|s| license_beside(s)).collect();
        // One licence for every source, or none stated.
        (found.len() == 1).then(|| found.into_iter().next().unwrap_or_default().to_owned())
    });
    if !options.keep_provenance {
        for row in &mut rows {
            strip_provenance(&mut row.generation);
        }
    }

    // 3. Mix.
    let mut mix_reports = Vec::new();
    for mix in &options.mix {
        let mut report = MixReport {
            path: mix.path.clone(),
            ratio: mix.ratio,
            available: 0,
            wanted: (reasoning_rows as f64 * mix.ratio / (1.0 - mix_total)).round() as u64,
            used: 0,
            skipped: 0,
            skip_examples: Vec::new(),
        };
        let mut candidates = read_mix(mix, &mut report)?;
        report.available = candidates.len() as u64;
        let seed = options.seed.to_le_bytes();
        let path_text = mix.path.display().to_string();
        candidates.sort_by_cached_key(|g| {
            (
                hash64(&[b"mix", &seed, path_text.as_bytes(), g.id.as_bytes()]),
                g.provenance.source_row,
            )
        });
        candidates.truncate(report.wanted as usize);
        report.used = candidates.len() as u64;
        if report.used < report.wanted {
            warnings.push(format!(
                "mix {}: wanted {} rows for a ratio of {}, only {} usable; the mix share is lower",
                mix.path.display(),
                report.wanted,
                mix.ratio,
                report.used
            ));
        }
        rows.extend(candidates.into_iter().map(|g| Row::new(g, true)));
        mix_reports.push(report);
    }

    // 4. Splits by prompt group.
    let seed = options.seed.to_le_bytes();
    let mut groups: Vec<u64> = rows
        .iter()
        .map(|r| r.group)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    groups.sort_by_cached_key(|g| (hash64(&[b"split", &seed, &g.to_le_bytes()]), *g));
    let mut split_of_group: HashMap<u64, usize> = HashMap::new();
    let mut start = 0usize;
    let mut cumulative = 0.0;
    for (index, (_, ratio)) in options.splits.iter().enumerate() {
        cumulative += ratio;
        let end = if index + 1 == options.splits.len() {
            groups.len()
        } else {
            ((cumulative * groups.len() as f64).round() as usize).clamp(start, groups.len())
        };
        for group in &groups[start..end] {
            split_of_group.insert(*group, index);
        }
        start = end;
    }
    let mut split_rows: Vec<Vec<&Row>> = vec![Vec::new(); options.splits.len()];
    for row in &rows {
        split_rows[split_of_group[&row.group]].push(row);
    }

    // 5. Write.
    let staging = Staging::new(&options.out, options.force)?;
    let data_dir = staging.data_dir();
    let runs_meta: Vec<Value> = inputs
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "run_ids": s.run_ids,
                "config_hashes": s.config_hashes,
            })
        })
        .collect();
    let metadata = vec![
        (META_SCHEMA_VERSION.to_owned(), SCHEMA_VERSION.to_owned()),
        (
            "distillery.export".to_owned(),
            Value::Array(runs_meta).to_string(),
        ),
        (
            "distillery.export_seed".to_owned(),
            options.seed.to_string(),
        ),
        (
            "distillery.layout".to_owned(),
            options.layout.name().to_owned(),
        ),
    ];
    let mut splits = Vec::new();
    for (index, (name, _)) in options.splits.iter().enumerate() {
        let mut list = std::mem::take(&mut split_rows[index]);
        if list.is_empty() {
            warnings.push(format!("split `{name}` is empty and was not written"));
            continue;
        }
        // Not the run id or the source's path: a second run of the same definition, or one on
        // another machine, exports its rows in the same order (and trains the same student).
        list.sort_by_cached_key(|r| {
            let g = &r.generation;
            (
                hash64(&[
                    b"row",
                    &seed,
                    g.id.as_bytes(),
                    &g.sample_index.to_le_bytes(),
                ]),
                r.order_key(),
            )
        });
        // Cut into files, a problem (all its samples) or a sample at a time.
        let units: Vec<Vec<&Generation>> = match options.layout {
            Layout::Samples => list.iter().map(|r| vec![&r.generation]).collect(),
            Layout::OpenR1 => problems_in_order(&list, &seed),
        };
        let mut files: Vec<Vec<Vec<&Generation>>> = vec![Vec::new()];
        let mut current = 0u64;
        for unit in units {
            let size = match options.shard_size {
                ShardSize::Rows(_) => 1,
                ShardSize::Bytes(_) => unit.iter().map(|g| row_text_bytes(g)).sum(),
            };
            let limit = match options.shard_size {
                ShardSize::Rows(n) | ShardSize::Bytes(n) => n,
            };
            let last = files.last_mut().expect("non-empty");
            if !last.is_empty() && current + size > limit {
                files.push(Vec::new());
                current = 0;
            }
            files.last_mut().expect("non-empty").push(unit);
            current += size;
        }
        let n = files.len();
        let mut report = SplitReport {
            name: name.clone(),
            rows: 0,
            files: Vec::new(),
            bytes: 0,
            num_bytes: 0,
        };
        for (i, units) in files.into_iter().enumerate() {
            let file_rows = match options.layout {
                Layout::Samples => FileRows::Samples(units.into_iter().flatten().collect()),
                Layout::OpenR1 => FileRows::Problems(units),
            };
            report.rows += match &file_rows {
                FileRows::Samples(rows) => rows.len(),
                FileRows::Problems(problems) => problems.len(),
            } as u64;
            if file_rows.is_empty() {
                continue;
            }
            let file_name = format!("{name}-{i:05}-of-{n:05}.{}", options.format.extension());
            let path = data_dir.join(&file_name);
            let (bytes, num_bytes) = write_file(
                &path,
                file_batches(&file_rows, &projection),
                options.format,
                &schema,
                &metadata,
            )?;
            report.bytes += bytes;
            report.num_bytes += num_bytes;
            report.files.push(format!("data/{file_name}"));
        }
        splits.push(report);
    }
    let tokens = token_stats(rows.iter().filter(|r| !r.mixed).map(|r| &r.generation));
    let mut report = ExportReport {
        out: options.out.clone(),
        inputs,
        rows_selected,
        dropped_by_dedup,
        dropped_by_max_per_prompt,
        dropped_by_contamination,
        license,
        mix: mix_reports,
        splits,
        tokens,
        card: options.out.join("README.md"),
        warnings,
    };
    if report.splits.is_empty() {
        return Err(StoreError::Invalid(
            "no rows to export (no accepted generations in the inputs?)".into(),
        ));
    }
    if options.decontaminate.is_some() {
        let lines: String = contaminated
            .iter()
            .map(|line| format!("{line}\n"))
            .collect();
        write_atomic_text(&staging.contamination(), lines.as_bytes())?;
    }
    let card = dataset_card(&report, options, &schema);
    write_atomic_text(&staging.card(), card.as_bytes())?;
    staging.commit()?;
    report.card = options.out.join("README.md");
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// The dataset card

/// The `datasets` feature declaration of an Arrow type, as YAML lines at `indent`.
fn feature_yaml(out: &mut String, name: &str, ty: &DataType, indent: usize) {
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}- name: {name}");
    match ty {
        DataType::List(item) | DataType::LargeList(item) => match item.data_type() {
            DataType::Struct(fields) => {
                let _ = writeln!(out, "{pad}  list:");
                for field in fields {
                    feature_yaml(out, field.name(), field.data_type(), indent + 2);
                }
            }
            other => {
                let _ = writeln!(out, "{pad}  sequence: {}", dtype(other));
            }
        },
        DataType::Struct(fields) => {
            let _ = writeln!(out, "{pad}  struct:");
            for field in fields {
                feature_yaml(out, field.name(), field.data_type(), indent + 2);
            }
        }
        other => {
            let _ = writeln!(out, "{pad}  dtype: {}", dtype(other));
        }
    }
}

fn dtype(ty: &DataType) -> &'static str {
    match ty {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Boolean => "bool",
        DataType::Int8 => "int8",
        DataType::Int16 => "int16",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::UInt8 => "uint8",
        DataType::UInt16 => "uint16",
        DataType::UInt32 => "uint32",
        DataType::UInt64 => "uint64",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        _ => "string",
    }
}

/// A YAML-safe double-quoted scalar.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// Acceptance by problem difficulty, so that a reader sees how far rejection sampling tilted
/// the set toward easy problems. Only where rejected rows were read too: from accepted rows
/// alone every difficulty would look fully accepted.
fn difficulty_section(y: &mut String, report: &ExportReport) {
    let mut by: BTreeMap<String, distillery_store::difficulty::DifficultyCounts> = BTreeMap::new();
    for input in &report.inputs {
        for (name, counts) in &input.by_difficulty {
            by.entry(name.clone()).or_default().add(counts);
        }
    }
    if by.is_empty() || report.inputs.iter().all(|input| input.rejected == 0) {
        return;
    }
    y.push_str(
        "\n## Acceptance by difficulty\n\nFiltering by correctness keeps what the teacher solves. \
         A problem's difficulty is the source's level where it has one, else the teacher's pass \
         rate on it (verified samples over samples). `lost to length`: samples rejected because \
         the length limit cut them off.\n\n\
         | difficulty | problems | with an accepted sample | samples | accepted | acceptance | truncated | lost to length |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, row) in distillery_store::difficulty::ordered(&by) {
        let _ = writeln!(
            y,
            "| {name} | {} | {} | {} | {} | {:.1}% | {} | {} |",
            row.problems,
            row.problems_accepted,
            row.samples,
            row.accepted,
            row.acceptance(),
            row.truncated,
            row.lost_to_length
        );
    }
}

fn dataset_card(report: &ExportReport, options: &ExportOptions, schema: &Schema) -> String {
    let mut y = String::new();
    y.push_str("---\n");
    let license = report.license.as_deref();
    let _ = writeln!(y, "license: {}", yaml_str(license.unwrap_or("other")));
    y.push_str("tags:\n- distillery\n- reasoning\n- distillation\n- synthetic\n");
    y.push_str("task_categories:\n- text-generation\n");
    let total_rows: u64 = report.splits.iter().map(|s| s.rows).sum();
    let size_category = match total_rows {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        1_000_000..10_000_000 => "1M<n<10M",
        _ => "10M<n<100M",
    };
    let _ = writeln!(y, "size_categories:\n- {size_category}");
    y.push_str("configs:\n- config_name: default\n  data_files:\n");
    for split in &report.splits {
        let _ = writeln!(
            y,
            "  - split: {}\n    path: {}",
            split.name,
            yaml_str(&format!("data/{}-*", split.name))
        );
    }
    y.push_str("dataset_info:\n  features:\n");
    for field in schema.fields() {
        feature_yaml(&mut y, field.name(), field.data_type(), 2);
    }
    y.push_str("  splits:\n");
    for split in &report.splits {
        let _ = writeln!(
            y,
            "  - name: {}\n    num_bytes: {}\n    num_examples: {}",
            split.name, split.num_bytes, split.rows
        );
    }
    let download: u64 = report.splits.iter().map(|s| s.bytes).sum();
    let dataset: u64 = report.splits.iter().map(|s| s.num_bytes).sum();
    let _ = writeln!(y, "  download_size: {download}\n  dataset_size: {dataset}");
    y.push_str("---\n\n");

    // Body.
    let names: Vec<_> = report.inputs.iter().map(|i| i.name.as_str()).collect();
    let _ = writeln!(y, "# {}\n", names.join(" + "));
    y.push_str(
        "Reasoning traces distilled from a teacher model with \
         Distillery: each prompt was sent to the \
         teacher, every answer was verified (rejection sampling), and the rows below are what \
         passed",
    );
    y.push_str(if options.which == Which::All {
        " — plus the rejected rows with their reasons (`accepted`, `reject_reason`).\n\n"
    } else {
        ".\n\n"
    });
    let tagged = report.inputs.iter().any(|input| {
        input.definition.as_deref().is_some_and(|text| {
            distillery_spec::Pipeline::parse(text, Path::new("pipeline.toml"), Path::new("."))
                .is_ok_and(|p| {
                    p.prompt.assistant_format == distillery_spec::AssistantFormat::Tagged
                })
        })
    });
    y.push_str(if tagged {
        "`messages` is SFT-ready: optional system turn, the user turn, and the assistant turn \
         `<think>\\n{reasoning}\\n</think>\\n<answer>\\n{answer}\\n</answer>` (the tagged \
         layout of R1-Zero and open-r1's format reward: the run asked for \
         `assistant_format = \"tagged\"`).\n\n"
    } else {
        "`messages` is SFT-ready: optional system turn, the user turn, and the assistant turn \
         `<think>\\n{reasoning}\\n</think>\\n\\n{answer}` (DeepSeek-R1 layout).\n\n"
    });
    layout_section(&mut y, options);
    y.push_str("```python\nfrom datasets import load_dataset\nds = load_dataset(\"path/to/this/dataset\")\n```\n\n");

    y.push_str("## Splits\n\n| split | rows | files | size on disk |\n|---|---:|---:|---:|\n");
    for split in &report.splits {
        let _ = writeln!(
            y,
            "| {} | {} | {} | {} |",
            split.name,
            split.rows,
            split.files.len(),
            human_bytes(split.bytes)
        );
    }
    let _ = writeln!(
        y,
        "\nSplits are assigned per prompt (all samples of a prompt are in the same split), seed {}.",
        options.seed
    );

    y.push_str("\n## Sources\n\n| input | pipeline / runs | teacher | generations | accepted | rejected | acceptance |\n|---|---|---|---:|---:|---:|---:|\n");
    for input in &report.inputs {
        let rate = if input.generations > 0 {
            format!(
                "{:.1}%",
                100.0 * input.accepted as f64 / input.generations as f64
            )
        } else {
            "–".into()
        };
        let runs: Vec<_> = input.run_ids.iter().map(String::as_str).collect();
        let teachers: Vec<_> = input.teacher_models.iter().map(String::as_str).collect();
        let _ = writeln!(
            y,
            "| `{}` | {} ({}) | {} | {} | {} | {} | {} |",
            shown_path(&input.path, options.keep_provenance),
            input.name,
            runs.join(", "),
            teachers.join(", "),
            input.generations,
            input.accepted,
            input.rejected,
            rate
        );
    }

    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    let mut rejected = 0;
    for input in &report.inputs {
        rejected += input.rejected;
        for (reason, n) in &input.rejected_by_reason {
            *reasons.entry(reason).or_default() += n;
        }
    }
    y.push_str("\n## Rejections by reason\n\n");
    if reasons.is_empty() {
        y.push_str("No generation was rejected.\n");
    } else {
        y.push_str("| reason | rejected | share of rejections |\n|---|---:|---:|\n");
        let mut sorted: Vec<_> = reasons.into_iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (reason, n) in sorted {
            let _ = writeln!(
                y,
                "| `{reason}` | {n} | {:.1}% |",
                100.0 * n as f64 / rejected as f64
            );
        }
    }

    difficulty_section(&mut y, report);

    let t = &report.tokens;
    let _ = write!(
        y,
        "\n## Tokens (exported reasoning rows)\n\n| | value |\n|---|---:|\n\
         | rows | {} |\n| reasoning tokens, total | {} |\n| reasoning tokens, mean | {:.1} |\n\
         | reasoning tokens, median | {} |\n| reasoning tokens, p90 | {} |\n\
         | reasoning tokens, max | {} |\n| completion tokens, total | {} |\n\
         | completion tokens, mean | {:.1} |\n",
        t.rows,
        t.reasoning_total,
        t.reasoning_mean,
        t.reasoning_median,
        t.reasoning_p90,
        t.reasoning_max,
        t.completion_total,
        t.completion_mean
    );

    if options.decontaminate.is_some() {
        y.push_str("\n## Contamination\n\n");
        y.push_str(
            "Rows whose problem shares an 8-word run with a benchmark item (corroborated by a \
             longer run, the item's numbers or its whole length), or is a near duplicate of one, \
             were removed; `contamination.jsonl` lists each with the item it matched.\n\n",
        );
        y.push_str("| benchmark | rows removed |\n|---|---:|\n");
        if report.dropped_by_contamination.is_empty() {
            y.push_str("| (none) | 0 |\n");
        }
        for (benchmark, n) in &report.dropped_by_contamination {
            let _ = writeln!(y, "| {benchmark} | {n} |");
        }
    }

    y.push_str("\n## Export\n\n");
    let _ = writeln!(
        y,
        "- rows: {} selected ({}), {} dropped by dedup ({}), {} dropped by max-per-prompt ({})",
        report.rows_selected,
        if options.which == Which::All {
            "all"
        } else {
            "accepted only"
        },
        report.dropped_by_dedup,
        match options.dedup {
            None => "off",
            Some(Dedup::Exact) => "exact",
            Some(Dedup::Prompt) => "prompt",
        },
        report.dropped_by_max_per_prompt,
        options
            .max_per_prompt
            .map_or("off".to_owned(), |k| k.to_string())
    );
    for mix in &report.mix {
        let _ = writeln!(
            y,
            "- mixed in `{}` at {:.1}%: {} rows (of {} usable{})",
            shown_path(&mix.path, options.keep_provenance),
            100.0 * mix.ratio,
            mix.used,
            mix.available,
            if mix.skipped > 0 {
                format!(", {} skipped", mix.skipped)
            } else {
                String::new()
            }
        );
    }
    for warning in &report.warnings {
        let warning = if options.keep_provenance {
            warning.clone()
        } else {
            report.inputs.iter().fold(warning.clone(), |w, input| {
                w.replace(
                    &input.path.display().to_string(),
                    &shown_path(&input.path, false),
                )
            })
        };
        let _ = writeln!(y, "- note: {warning}");
    }

    if license.is_none() {
        y.push_str(
            "- note: the licence of the source is not known (`license: other`); give it with \
             `distillery export --license ID` before publishing\n",
        );
    }

    // The shards of one run share their definition: it is shown once.
    let mut shown = HashSet::new();
    for input in &report.inputs {
        if let Some(definition) = &input.definition
            && shown.insert(definition)
        {
            let definition = if options.keep_provenance {
                definition.clone()
            } else {
                redact_definition(definition)
            };
            let _ = write!(
                y,
                "\n<details><summary>Pipeline definition of {}</summary>\n\n```toml\n{}\n```\n\n</details>\n",
                input.name,
                definition.trim_end().replace("```", "ʼʼʼ")
            );
        }
    }
    y
}

/// What a row of this export is, and what its columns hold.
fn layout_section(y: &mut String, options: &ExportOptions) {
    y.push_str("## Layout\n\n");
    match options.layout {
        Layout::Samples => y.push_str(
            "One row per sample of the teacher (`id`, `sample_index`). `problem` is the prompt \
             as sent (the template applied); `source_problem` is the problem as the source \
             gives it and `source_solution` the source's worked solution, with `problem_type`, \
             `level` and `origin` when the pipeline names those fields (null otherwise). \
             `checks` holds every check's verdict.\n\n",
        ),
        Layout::OpenR1 => {
            y.push_str(
                "One row per problem, in the layout of open-r1's datasets \
                 (`open-r1/OpenR1-Math-220k`):\n\n\
                 | column | what |\n|---|---|\n\
                 | `problem` | the problem as the source gives it (not the rendered prompt) |\n\
                 | `solution` | the source's worked solution, when the pipeline names one |\n\
                 | `answer` | the reference answer the math check compared with |\n\
                 | `problem_type`, `level` | the source's, when the pipeline names them |\n\
                 | `source` | the source's origin field, else the pipeline's name |\n\
                 | `uuid` | a stable UUID derived from the prompt id (`id`) |\n\
                 | `messages` | the first accepted generation as a conversation (empty when none was accepted) |\n\
                 | `generations` | every stored sample of the problem, accepted and rejected, by sample index: the assistant turn `<think>…</think>` then the answer |\n\
                 | `finish_reasons` | each generation's finish reason (`stop`, `length`) |\n\
                 | `correctness_math_verify` | whether each generation's final answer matched the reference (null where no math check ran) |\n\
                 | `correctness_count` | the number of `true` in `correctness_math_verify` |\n\
                 | `generation_accepted`, `reject_reasons` | whether each generation passed every check and the keep policy, else its first failing reason |\n\n",
            );
            y.push_str(if options.which == Which::All {
                "Every problem the teacher answered is here, with or without an accepted generation.\n\n"
            } else {
                "A problem is here when at least one of its generations was accepted; its rejected \
                 generations stay in `generations`, marked in `generation_accepted`.\n\n"
            });
        }
    }
}

/// A local path as the card shows it: whole with `--keep-provenance`, else its last part.
fn shown_path(path: &Path, keep: bool) -> String {
    if keep {
        path.display().to_string()
    } else {
        file_name(&path.display().to_string())
    }
}

/// The file name of a local path.
fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// An endpoint as its kind: a URL says where a server runs (and may carry credentials).
fn endpoint_kind(endpoint: &str) -> String {
    if endpoint.contains("://") {
        "openai-compatible".into()
    } else {
        endpoint.to_owned()
    }
}

fn strip_provenance(generation: &mut Generation) {
    generation.provenance.source_path = file_name(&generation.provenance.source_path);
    generation.endpoint = endpoint_kind(&generation.endpoint);
}

/// A definition with its local paths cut to file names and its URLs removed.
fn redact_definition(definition: &str) -> String {
    definition
        .lines()
        .map(|line| {
            let Some((key, value)) = line.split_once('=') else {
                return line.to_owned();
            };
            let name = key.trim();
            let value = value.trim();
            let quoted = value.strip_prefix('"').and_then(|v| v.split_once('"'));
            match (name, quoted) {
                ("path", Some((path, rest))) => format!("{key}= \"{}\"{rest}", file_name(path)),
                ("base_url", Some((_, rest))) => format!("{key}= \"<redacted>\"{rest}"),
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The licence of a source file, from a LICENSE file beside it.
fn license_beside(source: &str) -> Option<&'static str> {
    let text = std::fs::read_to_string(Path::new(source).parent()?.join("LICENSE")).ok()?;
    let head = text.lines().take(3).collect::<Vec<_>>().join(" ");
    if head.contains("MIT License") {
        Some("mit")
    } else if head.contains("Apache License") {
        Some("apache-2.0")
    } else {
        None
    }
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillery_store::run_dir::{Manifest, WriterOptions};
    use distillery_store::testing::sample;

    fn make_run(dir: &Path, name: &str, prompts: usize, run_id: &str) -> PathBuf {
        let definition = format!("name = \"{name}\"\n");
        let mut manifest = Manifest::new(run_id, name, &definition, "0.1.0");
        manifest.name = name.into();
        let path = dir.join(name);
        let run = RunDir::create(&path, &definition, &manifest).unwrap();
        let mut writer = run
            .writer(WriterOptions {
                shard_rows: 7,
                ..WriterOptions::default()
            })
            .unwrap();
        for p in 0..prompts {
            let id = format!("{name}-{p}");
            let mut samples = vec![sample(&id, 0, true), sample(&id, 1, p % 3 != 0)];
            for s in &mut samples {
                s.provenance.run_id = run_id.into();
            }
            writer.append(&samples).unwrap();
            writer.commit().unwrap();
            writer.cut_if_due().unwrap();
        }
        writer.finish().unwrap();
        manifest.status = distillery_store::RunStatus::Completed;
        run.write_manifest(&manifest).unwrap();
        path
    }

    #[test]
    fn a_run_that_did_not_complete_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let run = make_run(dir.path(), "gsm", 4, "r1");
        let run_dir = RunDir::open(&run).unwrap();
        let mut manifest = run_dir.manifest().unwrap();
        manifest.status = distillery_store::RunStatus::Incomplete;
        manifest.counts.prompts_total = Some(6);
        manifest.counts.prompts_done = 4;
        manifest.counts.prompts_unfinished = 2;
        run_dir.write_manifest(&manifest).unwrap();
        let mut options = ExportOptions::new(vec![run.clone()], dir.path().join("out"));
        let error = export(&options).unwrap_err().to_string();
        assert!(
            error.contains("is incomplete (4 of 6 prompts done, 2 failed; see failures.jsonl)")
                && error.contains("--allow-incomplete"),
            "{error}"
        );
        assert!(!dir.path().join("out").exists());
        options.allow_incomplete = true;
        let report = export(&options).unwrap();
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("--allow-incomplete")),
            "{:?}",
            report.warnings
        );
        assert_eq!(report.splits[0].rows, 4 + 2);
    }

    fn all_rows(dir: &Path) -> Vec<Generation> {
        read_generations(dir, Which::All)
            .unwrap()
            .map(|g| g.unwrap())
            .collect()
    }

    #[test]
    fn splits_are_by_prompt_deterministic_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let run = make_run(dir.path(), "gsm", 40, "r1");
        let mut options = ExportOptions::new(vec![run], dir.path().join("out"));
        options.splits = parse_splits("train=0.75,test=0.25").unwrap();
        options.seed = 7;
        options.shard_size = ShardSize::Rows(20);
        let report = export(&options).unwrap();
        // 40 prompts: 80 samples, 14 rejected (sample 1 when p % 3 == 0).
        assert_eq!(report.rows_selected, 80 - 14);
        let train = &report.splits[0];
        let test = &report.splits[1];
        assert_eq!(train.rows + test.rows, 66);
        assert_eq!(train.files.len(), train.rows.div_ceil(20) as usize);
        assert_eq!(
            train.files[0],
            format!("data/train-00000-of-{:05}.parquet", train.files.len())
        );
        let train_rows = all_rows(&dir.path().join("out").join(&train.files[0]));
        assert_eq!(train_rows.len(), 20);
        // No prompt in two splits.
        let ids = |split: &str| -> HashSet<String> {
            let mut ids = HashSet::new();
            for file in parquet_files(&dir.path().join("out/data")).unwrap() {
                if file
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(split)
                {
                    ids.extend(all_rows(&file).into_iter().map(|g| g.id));
                }
            }
            ids
        };
        let (train_ids, test_ids) = (ids("train-"), ids("test-"));
        assert_eq!(train_ids.len() + test_ids.len(), 40);
        assert!(train_ids.is_disjoint(&test_ids));
        assert_eq!(test_ids.len(), 10);
        // Same seed: byte-identical files; another seed: another assignment.
        let first = std::fs::read(dir.path().join(format!("out/{}", test.files[0]))).unwrap();
        options.force = true;
        export(&options).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(format!("out/{}", test.files[0]))).unwrap(),
            first
        );
        options.seed = 8;
        export(&options).unwrap();
        assert_ne!(ids("test-"), test_ids);
        // Refuses to overwrite without force.
        options.force = false;
        assert!(
            export(&options)
                .unwrap_err()
                .to_string()
                .contains("--force")
        );
    }

    #[test]
    fn two_runs_of_the_same_rows_export_in_the_same_order() {
        let dir = tempfile::tempdir().unwrap();
        let order = |run_id: &str| -> Vec<(String, u32)> {
            let base = dir.path().join(run_id);
            let run = make_run(&base, "gsm", 12, run_id);
            export(&ExportOptions::new(vec![run], base.join("out"))).unwrap();
            all_rows(&base.join("out/data"))
                .into_iter()
                .map(|g| (g.id, g.sample_index))
                .collect()
        };
        let first = order("run-1");
        assert_eq!(first.len(), 20);
        assert_eq!(first, order("run-2"));
        let mut sorted = first.clone();
        sorted.sort();
        assert_ne!(first, sorted, "rows are shuffled, not sorted");
    }

    #[test]
    fn dedup_max_per_prompt_all_and_columns() {
        let dir = tempfile::tempdir().unwrap();
        let run = make_run(dir.path(), "gsm", 6, "r1");
        let mut options = ExportOptions::new(vec![run.clone()], dir.path().join("a"));
        options.dedup = Some(Dedup::Prompt);
        let report = export(&options).unwrap();
        assert_eq!(report.splits[0].rows, 6);

        let mut options = ExportOptions::new(vec![run.clone()], dir.path().join("b"));
        options.which = Which::All;
        options.max_per_prompt = Some(1);
        let report = export(&options).unwrap();
        assert_eq!((report.rows_selected, report.splits[0].rows), (12, 6));
        assert_eq!(report.dropped_by_max_per_prompt, 6);
        let rows = all_rows(&dir.path().join("b/data"));
        assert!(
            rows.iter().all(|g| g.sample_index == 0),
            "the first sample is kept"
        );

        // Two runs of the same prompts (e.g. two machines) with exact dedup.
        let mut options = ExportOptions::new(vec![run.clone(), run.clone()], dir.path().join("c"));
        options.dedup = Some(Dedup::Exact);
        let report = export(&options).unwrap();
        assert_eq!(report.splits[0].rows, 10);

        let mut options = ExportOptions::new(vec![run], dir.path().join("d"));
        options.columns = Some(vec!["id".into(), "messages".into()]);
        options.format = ExportFormat::Jsonl;
        let report = export(&options).unwrap();
        let text =
            std::fs::read_to_string(dir.path().join("d").join(&report.splits[0].files[0])).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let keys: Vec<_> = first.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 2);
        assert_eq!(first["messages"][0]["role"], "user");
        let card = std::fs::read_to_string(dir.path().join("d/README.md")).unwrap();
        assert!(
            card.contains("  - name: messages\n    list:\n    - name: role\n      dtype: string\n"),
            "{card}"
        );
        assert!(!card.contains("name: problem"));

        let mut options = ExportOptions::new(vec![dir.path().join("gsm")], dir.path().join("e"));
        options.columns = Some(vec!["nope".into()]);
        assert!(
            export(&options)
                .unwrap_err()
                .to_string()
                .contains("unknown column `nope`")
        );
    }

    #[test]
    fn mix_reaches_its_ratio() {
        let dir = tempfile::tempdir().unwrap();
        let run = make_run(dir.path(), "gsm", 20, "r1");
        let general = dir.path().join("general.jsonl");
        let mut lines = Vec::new();
        for i in 0..100 {
            lines.push(if i % 2 == 0 {
                serde_json::json!({"messages": [{"role": "user", "content": format!("hi {i}")}, {"role": "assistant", "content": "hello"}]})
            } else {
                serde_json::json!({"instruction": format!("do {i}"), "input": "x", "output": "done"})
            }
            .to_string());
        }
        lines.push("{\"text\": \"no conversation\"}".into());
        std::fs::write(&general, lines.join("\n")).unwrap();
        let mut options = ExportOptions::new(vec![run], dir.path().join("out"));
        options.mix = vec!["general.jsonl:20%".parse::<MixSource>().unwrap()];
        options.mix[0].path = general;
        let report = export(&options).unwrap();
        let reasoning = report.rows_selected; // 20 prompts, 34 accepted rows
        assert_eq!(
            report.mix[0].wanted,
            (reasoning as f64 * 0.25).round() as u64
        );
        assert_eq!(report.mix[0].used, report.mix[0].wanted);
        assert_eq!(report.mix[0].skipped, 1);
        let rows = all_rows(&dir.path().join("out/data"));
        let mixed: Vec<_> = rows
            .iter()
            .filter(|g| g.provenance.pipeline == "mix")
            .collect();
        assert_eq!(mixed.len() as u64, report.mix[0].used);
        let share = mixed.len() as f64 / rows.len() as f64;
        assert!((share - 0.2).abs() < 0.02, "{share}");
        assert!(
            mixed
                .iter()
                .all(|g| g.messages.last().unwrap().role == "assistant")
        );
        let card = std::fs::read_to_string(dir.path().join("out/README.md")).unwrap();
        assert!(card.contains("mixed in"), "{card}");
    }

    #[test]
    fn card_has_header_counts_and_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let run = make_run(dir.path(), "gsm", 9, "r1");
        let mut options = ExportOptions::new(vec![run], dir.path().join("out"));
        options.splits = parse_splits("train=0.8,test=0.2").unwrap();
        let report = export(&options).unwrap();
        let card = std::fs::read_to_string(&report.card).unwrap();
        assert!(card.starts_with("---\n"));
        let header = card[4..].split("\n---\n").next().unwrap();
        for needle in [
            "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: \"data/train-*\"",
            "dataset_info:\n  features:\n  - name: id\n    dtype: string",
            "  - name: checks\n    list:\n    - name: check\n      dtype: string\n    - name: passed\n      dtype: bool",
            "  - name: sample_index\n    dtype: int32",
            "  splits:\n  - name: train\n",
        ] {
            assert!(header.contains(needle), "missing {needle:?} in\n{header}");
        }
        assert!(
            card.contains("| `math.wrong_answer` | 3 | 100.0% |"),
            "{card}"
        );
        assert!(card.contains("| reasoning tokens, max | 101 |"), "{card}");
        assert!(card.contains("```toml\nname = \"gsm\"\n```"), "{card}");
    }

    /// The open-r1 layout: one row per problem holding every sample, accepted and rejected,
    /// the problems chosen by `which`; the card describes it; options that need one row per
    /// sample are refused.
    #[test]
    fn open_r1_layout_groups_samples_by_problem() {
        let dir = tempfile::tempdir().unwrap();
        // 9 prompts × 2 samples; sample 1 is rejected when p % 3 == 0.
        let run = make_run(dir.path(), "gsm", 9, "r1");
        let mut options = ExportOptions::new(vec![run.clone()], dir.path().join("out"));
        options.layout = Layout::OpenR1;
        options.splits = parse_splits("train=0.7,test=0.3").unwrap();
        options.format = ExportFormat::Jsonl;
        let report = export(&options).unwrap();
        let problems: u64 = report.splits.iter().map(|s| s.rows).sum();
        assert_eq!(problems, 9);
        assert_eq!(
            report.rows_selected, 18,
            "rejected samples are kept in the rows"
        );
        let mut rows = Vec::new();
        for split in &report.splits {
            for file in &split.files {
                let text = std::fs::read_to_string(dir.path().join("out").join(file)).unwrap();
                rows.extend(
                    text.lines()
                        .map(|l| serde_json::from_str::<Value>(l).unwrap()),
                );
            }
        }
        assert_eq!(rows.len(), 9);
        let with_rejected = rows
            .iter()
            .filter(|r| r["generation_accepted"] == serde_json::json!([true, false]))
            .count();
        assert_eq!(with_rejected, 3);
        for row in &rows {
            assert_eq!(row["generations"].as_array().unwrap().len(), 2, "{row}");
            assert_eq!(row["problem"], row["messages"][0]["content"]);
            let keys: BTreeSet<&str> = row
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let schema = crate::open_r1::problem_schema();
            let columns: BTreeSet<&str> =
                schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(keys, columns);
        }
        let card = std::fs::read_to_string(&report.card).unwrap();
        assert!(card.contains("One row per problem"), "{card}");
        assert!(
            card.contains("  - name: generations\n    sequence: string"),
            "{card}"
        );
        assert!(
            card.contains("  - name: correctness_count\n    dtype: int64"),
            "{card}"
        );

        // Same rows, same seed: the same files.
        let first = std::fs::read(dir.path().join("out").join(&report.splits[0].files[0])).unwrap();
        options.force = true;
        export(&options).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("out").join(&report.splits[0].files[0])).unwrap(),
            first
        );

        for (flag, change) in [
            (
                "--dedup",
                &(|o: &mut ExportOptions| o.dedup = Some(Dedup::Exact))
                    as &dyn Fn(&mut ExportOptions),
            ),
            ("--max-per-prompt", &|o: &mut ExportOptions| {
                o.max_per_prompt = Some(1)
            }),
        ] {
            let mut refused = ExportOptions::new(vec![run.clone()], dir.path().join("x"));
            refused.layout = Layout::OpenR1;
            change(&mut refused);
            let error = export(&refused).unwrap_err().to_string();
            assert!(error.contains(flag) && error.contains("open-r1"), "{error}");
        }
    }

    /// The default layout carries the source's own problem and solution beside the prompt.
    #[test]
    fn sample_layout_keeps_the_source_problem_and_solution() {
        let dir = tempfile::tempdir().unwrap();
        let run = make_run(dir.path(), "gsm", 3, "r1");
        let options = ExportOptions::new(vec![run], dir.path().join("out"));
        export(&options).unwrap();
        let rows = all_rows(&dir.path().join("out/data"));
        assert!(!rows.is_empty());
        for row in rows {
            assert_eq!(row.source.problem.as_deref(), Some(row.problem.as_str()));
            assert_eq!(row.source.solution.as_deref(), Some("Six times seven."));
        }
        let card = std::fs::read_to_string(dir.path().join("out/README.md")).unwrap();
        assert!(
            card.contains("  - name: source_solution\n    dtype: string"),
            "{card}"
        );
        assert!(card.contains("One row per sample"), "{card}");
    }

    #[test]
    fn option_parsing() {
        assert_eq!("5000".parse::<ShardSize>().unwrap(), ShardSize::Rows(5000));
        assert_eq!(
            "500MB".parse::<ShardSize>().unwrap(),
            ShardSize::Bytes(500_000_000)
        );
        assert_eq!(
            "1GiB".parse::<ShardSize>().unwrap(),
            ShardSize::Bytes(1 << 30)
        );
        assert!("0".parse::<ShardSize>().is_err() && "5 parsecs".parse::<ShardSize>().is_err());
        let mix: MixSource = "data/c:general.jsonl:0.2".parse().unwrap();
        assert_eq!(
            (mix.path.to_str().unwrap(), mix.ratio),
            ("data/c:general.jsonl", 0.2)
        );
        assert!("x.jsonl:1.5".parse::<MixSource>().is_err());
        assert!(parse_splits("train=0.9,test=0.2").is_err());
        assert!(parse_splits("tr ain=1").is_err());
        assert_eq!(parse_splits("train=0.98, test=0.02").unwrap().len(), 2);
    }
}

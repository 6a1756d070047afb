//! Training data: conversations from run shards, exported datasets or JSONL; rendering with
//! the chat template; the assistant-only loss mask; truncation; packing into rows.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StructArray};
use arrow::datatypes::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use distillery_store::TeacherLogprobs;
use distillery_store::logprobs;

use crate::align::{Aligner, LogprobStats};
use crate::error::{Result, TrainError, io_err};
use crate::loss::SparseTarget;
use crate::template::ChatTemplate;

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// One training conversation and where it came from (`file row N`), for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub messages: Vec<Message>,
    pub origin: String,
    /// The teacher's top-k log-probabilities of the last assistant turn, when the data carries
    /// them (run shards and exports of runs with `[teacher] top_logprobs`).
    pub teacher_logprobs: Option<TeacherLogprobs>,
}

/// What [`load_conversations`] read.
#[derive(Debug, Default)]
pub struct LoadedData {
    pub conversations: Vec<Conversation>,
    /// The data files read, in order.
    pub files: Vec<PathBuf>,
    /// Rows skipped because their `accepted` column was false.
    pub skipped_rejected: usize,
    /// Rows skipped because they had no assistant turn.
    pub skipped_no_assistant: usize,
}

/// The data files behind one `--data` argument:
/// - a run directory: `<run>/shards/accepted-*.parquet`;
/// - an exported dataset: `<dir>/data/train-*.parquet` or `<dir>/data/train-*.jsonl`
///   (or every `*.parquet` / `*.jsonl` directly in `<dir>/data` or `<dir>` when there is no
///   `train-*` file);
/// - a single `.parquet` or `.jsonl` file.
pub fn resolve_data_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return match extension(path) {
            Some("parquet" | "jsonl" | "json") => Ok(vec![path.to_path_buf()]),
            _ => Err(TrainError::UnknownData {
                path: path.to_path_buf(),
            }),
        };
    }
    if !path.is_dir() {
        return Err(TrainError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
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
    Err(TrainError::UnknownData {
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
    for path in paths {
        for file in resolve_data_files(path)? {
            match extension(&file) {
                Some("parquet") => read_parquet(&file, &mut out)?,
                _ => read_jsonl(&file, &mut out)?,
            }
            out.files.push(file);
        }
    }
    if out.conversations.is_empty() {
        return Err(TrainError::NoData {
            paths: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(out)
}

fn push(
    out: &mut LoadedData,
    messages: Vec<Message>,
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
    let perr = |e: &dyn std::fmt::Display| TrainError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(io_err(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| perr(&e))?;
    let schema = builder.schema().clone();
    let col_err = |column: &str, message: String| TrainError::Column {
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
    let col_err = |column: &str, message: String| TrainError::Column {
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
            return Err(TrainError::Row {
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
                return Err(TrainError::Row {
                    path: path.to_path_buf(),
                    row: this_row,
                    message: format!("messages[{j}]: null role or content"),
                });
            };
            msgs.push(Message {
                role: r,
                content: c,
            });
        }
        let teacher_logprobs = logprobs.get(i).map_err(|message| TrainError::Row {
            path: path.to_path_buf(),
            row: this_row,
            message,
        })?;
        push(out, msgs, origin, teacher_logprobs);
    }
    Ok(())
}

fn string_field(path: &Path, s: &StructArray, name: &str) -> Result<Vec<Option<String>>> {
    let col = s.column_by_name(name).ok_or_else(|| TrainError::Column {
        path: path.to_path_buf(),
        column: format!("messages.{name}"),
        message: "no such field".into(),
    })?;
    let casted = arrow::compute::cast(col, &DataType::Utf8).map_err(|e| TrainError::Column {
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
    messages: Option<Vec<Message>>,
    accepted: Option<bool>,
}

/// Reads a JSONL file whose objects have a `messages` field (and optionally `accepted`).
pub fn read_jsonl(path: &Path, out: &mut LoadedData) -> Result<()> {
    let file = File::open(path).map_err(io_err(path))?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: JsonRow = serde_json::from_str(&line).map_err(|e| TrainError::JsonLine {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        if row.accepted == Some(false) {
            out.skipped_rejected += 1;
            continue;
        }
        let messages = row.messages.ok_or_else(|| TrainError::JsonLine {
            path: path.to_path_buf(),
            line: i + 1,
            message: "missing field `messages`".into(),
        })?;
        push(
            out,
            messages,
            format!("{} line {}", path.display(), i + 1),
            None,
        );
    }
    Ok(())
}

/// A tokenised conversation: every token of the rendered text and whether it belongs to an
/// assistant turn (i.e. is trained on).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub tokens: Vec<u32>,
    pub assistant: Vec<bool>,
    /// With an [`Aligner`]: the teacher's distribution predicting each token (see
    /// [`crate::align`]). Empty otherwise.
    pub sparse: Vec<Option<SparseTarget>>,
    /// With an [`Aligner`]: how this conversation's log-probabilities lined up.
    pub logprob_stats: Option<LogprobStats>,
}

/// A training example ready for packing: `inputs[i]` predicts `targets[i]`; the loss counts
/// where `mask[i]` (the target is an assistant token).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub mask: Vec<bool>,
    /// The teacher's distribution predicting `targets[i]` (distillation from stored
    /// log-probabilities); empty without it.
    pub sparse: Vec<Option<SparseTarget>>,
}

impl Example {
    /// Number of loss-bearing positions.
    pub fn loss_tokens(&self) -> usize {
        self.mask.iter().filter(|m| **m).count()
    }
}

/// Counts from [`Encoder::encode_all`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeStats {
    pub conversations: usize,
    pub examples: usize,
    /// Conversations cut to `max_len`.
    pub truncated: usize,
    /// Conversations with no assistant token left after truncation (dropped).
    pub dropped_empty: usize,
    pub tokens: usize,
    pub loss_tokens: usize,
    /// With distillation from stored log-probabilities: how they lined up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<LogprobStats>,
}

/// Renders conversations with a chat template and tokenises them with the assistant mask.
pub struct Encoder<'a> {
    pub tokenizer: &'a Tokenizer,
    pub template: &'a ChatTemplate,
    /// Lines up rows' stored teacher log-probabilities with the student's tokens.
    pub aligner: Option<&'a Aligner>,
}

impl Encoder<'_> {
    /// Renders and tokenises `conv`. When the template marks assistant text with
    /// `{% generation %}` blocks, the loss mask is those blocks, token by token as transformers'
    /// `return_assistant_tokens_mask` (and TRL's `assistant_only_loss`) take them: every token
    /// from the one holding a block's first byte to the one holding its last.
    /// Without markers, assistant spans are found by rendering prefixes: for each
    /// assistant turn `i`, the text added by rendering `messages[..=i]` over rendering
    /// `messages[..i]` with the generation prompt is that turn's span (its content and
    /// end-of-turn marker); it is located in the full rendering, then mapped to tokens via the
    /// tokenizer's byte offsets (a token is an assistant token when it starts inside a span).
    pub fn encode(&self, conv: &Conversation) -> Result<Encoded> {
        let origin = conv.origin.as_str();
        let rendered = self.template.render_marked(&conv.messages, false, origin)?;
        let full = rendered.text;
        let (enc, assistant, spans) = match rendered.generation_spans {
            Some(blocks) => {
                let enc = self.tokenize(&full, origin)?;
                let assistant = enc
                    .get_offsets()
                    .iter()
                    .map(|&(s, e)| {
                        // A token overlapping a block (a zero-width one: sitting inside it).
                        blocks
                            .iter()
                            .any(|b| (s < b.end && e > b.start) || (s == e && b.contains(&s)))
                    })
                    .collect();
                let spans = blocks.iter().map(|b| (b.start, b.end)).collect();
                (enc, assistant, spans)
            }
            None => {
                let spans = self.assistant_spans_by_prefix(conv, &full)?;
                let enc = self.tokenize(&full, origin)?;
                let assistant = enc
                    .get_offsets()
                    .iter()
                    .map(|&(s, e)| {
                        // Zero-width tokens (none in practice) count with their position.
                        spans
                            .iter()
                            .any(|&(a, b)| (s >= a && s < b) || (s == e && s > a && s <= b))
                    })
                    .collect();
                (enc, assistant, spans)
            }
        };
        let tokens = enc.get_ids().to_vec();
        let (sparse, logprob_stats) = match self.aligner {
            None => (Vec::new(), None),
            Some(aligner) => {
                let last_turn = conv
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == "assistant")
                    .map(|m| m.content.as_str());
                // The stored log-probabilities belong to the last assistant turn (the one the
                // teacher generated); a template that rewrote it leaves nothing to line up.
                let located = last_turn.zip(spans.last()).and_then(|(turn, &(start, _))| {
                    full[start..].find(turn).map(|at| (start + at, turn))
                });
                match (&conv.teacher_logprobs, located) {
                    (Some(logprobs), Some((at, turn))) => {
                        let (sparse, stats) =
                            aligner.align(&full, &tokens, enc.get_offsets(), at, turn, logprobs);
                        (sparse, Some(stats))
                    }
                    (Some(logprobs), None) => (
                        vec![None; tokens.len()],
                        Some(LogprobStats {
                            rows: 1,
                            teacher_positions: logprobs.len(),
                            ..LogprobStats::default()
                        }),
                    ),
                    (None, _) => (
                        vec![None; tokens.len()],
                        Some(LogprobStats {
                            rows_without: 1,
                            ..LogprobStats::default()
                        }),
                    ),
                }
            }
        };
        Ok(Encoded {
            tokens,
            assistant,
            sparse,
            logprob_stats,
        })
    }

    /// The byte spans of the assistant turns in `full`, found by rendering prefixes (see
    /// [`Encoder::encode`]), for templates without `{% generation %}` markers.
    fn assistant_spans_by_prefix(
        &self,
        conv: &Conversation,
        full: &str,
    ) -> Result<Vec<(usize, usize)>> {
        let origin = conv.origin.as_str();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut cursor = 0usize;
        for (i, m) in conv.messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let prompt = self.template.render(&conv.messages[..i], true, origin)?;
            let with_turn = self.template.render(&conv.messages[..=i], false, origin)?;
            let Some(turn) = with_turn.strip_prefix(prompt.as_str()) else {
                return Err(TrainError::Render {
                    origin: origin.to_string(),
                    message: format!(
                        "chat template: rendering up to assistant turn {i} does not extend the \
                         rendering with the generation prompt; cannot locate the assistant span"
                    ),
                });
            };
            if turn.is_empty() {
                continue;
            }
            // Usually the span sits exactly at len(prompt); templates that rewrite earlier
            // turns (e.g. dropping reasoning) shift it, so search from the cursor.
            let at_prompt = prompt.len() >= cursor
                && full
                    .get(prompt.len()..)
                    .is_some_and(|r| r.starts_with(turn));
            let start = if at_prompt {
                prompt.len()
            } else {
                cursor
                    + full[cursor..]
                        .find(turn)
                        .ok_or_else(|| TrainError::Render {
                            origin: origin.to_string(),
                            message: format!(
                                "chat template: assistant turn {i} does not appear in the full \
                             rendering"
                            ),
                        })?
            };
            spans.push((start, start + turn.len()));
            cursor = start + turn.len();
        }
        Ok(spans)
    }

    fn tokenize(&self, text: &str, origin: &str) -> Result<tokenizers::Encoding> {
        self.tokenizer
            .encode(text, false)
            .map_err(|e| TrainError::Tokenize {
                origin: origin.to_string(),
                message: e.to_string(),
            })
    }

    /// Encodes every conversation into shifted examples of at most `max_len` positions
    /// (`max_len + 1` tokens), counting truncations; examples with no assistant token left are
    /// dropped.
    pub fn encode_all(
        &self,
        convs: &[Conversation],
        max_len: usize,
    ) -> Result<(Vec<Example>, EncodeStats)> {
        let mut stats = EncodeStats {
            conversations: convs.len(),
            ..Default::default()
        };
        let mut out = Vec::with_capacity(convs.len());
        for conv in convs {
            let enc = self.encode(conv)?;
            if let Some(s) = &enc.logprob_stats {
                stats
                    .logprobs
                    .get_or_insert_with(LogprobStats::default)
                    .add(s);
            }
            match to_example(&enc, max_len) {
                (Some(ex), truncated) => {
                    stats.truncated += usize::from(truncated);
                    stats.tokens += ex.inputs.len();
                    stats.loss_tokens += ex.loss_tokens();
                    out.push(ex);
                }
                (None, truncated) => {
                    stats.truncated += usize::from(truncated);
                    stats.dropped_empty += 1;
                }
            }
        }
        stats.examples = out.len();
        Ok((out, stats))
    }
}

/// Shifts an encoded conversation into inputs/targets/mask, truncating to `max_len`
/// positions. Returns the example (None when no loss position is left) and whether it was
/// truncated.
pub fn to_example(enc: &Encoded, max_len: usize) -> (Option<Example>, bool) {
    let n = enc.tokens.len().min(max_len + 1);
    let truncated = enc.tokens.len() > max_len + 1;
    if n < 2 {
        return (None, truncated);
    }
    let ex = Example {
        inputs: enc.tokens[..n - 1].to_vec(),
        targets: enc.tokens[1..n].to_vec(),
        mask: enc.assistant[1..n].to_vec(),
        sparse: enc.sparse.get(1..n).map(<[_]>::to_vec).unwrap_or_default(),
    };
    if ex.loss_tokens() == 0 {
        (None, truncated)
    } else {
        (Some(ex), truncated)
    }
}

/// One row of a batch: `segments[i]` is 0 for padding, else the 1-based index of the example
/// the position belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub mask: Vec<bool>,
    pub segments: Vec<u32>,
    /// Per position, as [`Example::sparse`]; empty when no example carries any.
    pub sparse: Vec<Option<SparseTarget>>,
}

impl Row {
    fn new() -> Self {
        Row {
            inputs: Vec::new(),
            targets: Vec::new(),
            mask: Vec::new(),
            segments: Vec::new(),
            sparse: Vec::new(),
        }
    }

    fn push(&mut self, ex: &Example, segment: u32) {
        self.inputs.extend_from_slice(&ex.inputs);
        self.targets.extend_from_slice(&ex.targets);
        self.mask.extend_from_slice(&ex.mask);
        self.segments
            .extend(std::iter::repeat_n(segment, ex.inputs.len()));
        if !ex.sparse.is_empty() {
            // Earlier examples without any keep their positions with `None`.
            self.sparse
                .resize(self.inputs.len() - ex.inputs.len(), None);
            self.sparse.extend_from_slice(&ex.sparse);
        }
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    pub fn loss_tokens(&self) -> usize {
        self.mask.iter().filter(|m| **m).count()
    }
}

/// Greedy next-fit packing in the given order: examples are appended to the current row
/// while they fit in `max_len`, each with its own segment id (attention never crosses them and
/// positions restart). With `pack == false` each example gets its own row.
pub fn pack(examples: &[&Example], max_len: usize, pack: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row = Row::new();
    let mut segment = 0u32;
    for ex in examples {
        debug_assert!(ex.inputs.len() <= max_len);
        if !row.is_empty() && (!pack || row.len() + ex.inputs.len() > max_len) {
            rows.push(std::mem::replace(&mut row, Row::new()));
            segment = 0;
        }
        segment += 1;
        row.push(ex, segment);
    }
    if !row.is_empty() {
        rows.push(row);
    }
    rows
}

/// A batch of rows padded to the longest, as flat row-major buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub len: usize,
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub mask: Vec<f32>,
    pub segments: Vec<u32>,
    /// Per position, as [`Row::sparse`] (padded with `None`); empty when no row has any.
    pub sparse: Vec<Option<SparseTarget>>,
    /// Real (non-padding) positions.
    pub tokens: usize,
    pub loss_tokens: usize,
}

impl Batch {
    /// Pads `rows` to the longest one (padding: input/target 0, mask 0, segment 0).
    pub fn from_rows(rows: &[Row]) -> Batch {
        let len = rows.iter().map(Row::len).max().unwrap_or(0);
        let n = rows.len() * len;
        let mut b = Batch {
            rows: rows.len(),
            len,
            inputs: Vec::with_capacity(n),
            targets: Vec::with_capacity(n),
            mask: Vec::with_capacity(n),
            segments: Vec::with_capacity(n),
            sparse: Vec::new(),
            tokens: 0,
            loss_tokens: 0,
        };
        let any_sparse = rows.iter().any(|r| !r.sparse.is_empty());
        for r in rows {
            let pad = len - r.len();
            b.inputs
                .extend(r.inputs.iter().copied().chain(std::iter::repeat_n(0, pad)));
            b.targets
                .extend(r.targets.iter().copied().chain(std::iter::repeat_n(0, pad)));
            b.mask.extend(
                r.mask
                    .iter()
                    .map(|&m| if m { 1.0 } else { 0.0 })
                    .chain(std::iter::repeat_n(0.0, pad)),
            );
            b.segments.extend(
                r.segments
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, pad)),
            );
            if any_sparse {
                let start = b.sparse.len();
                b.sparse.extend(r.sparse.iter().cloned());
                b.sparse.resize(start + len, None);
            }
            b.tokens += r.len();
            b.loss_tokens += r.loss_tokens();
        }
        b
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ListArray, StringArray};
    use arrow::datatypes::{Field, Fields, Schema};
    use parquet::arrow::ArrowWriter;

    pub(crate) fn conv(pairs: &[(&str, &str)]) -> Conversation {
        Conversation {
            teacher_logprobs: None,
            messages: pairs
                .iter()
                .map(|(r, c)| Message {
                    role: r.to_string(),
                    content: c.to_string(),
                })
                .collect(),
            origin: "test".into(),
        }
    }

    /// Writes a shard-like Parquet file with `messages` and `accepted` (plus an extra column
    /// the reader must ignore).
    pub(crate) fn write_parquet(path: &Path, rows: &[(Conversation, bool)]) {
        let msg_fields = Fields::from(vec![
            Field::new("role", DataType::Utf8, false),
            Field::new("content", DataType::Utf8, false),
        ]);
        let item = Arc::new(Field::new(
            "item",
            DataType::Struct(msg_fields.clone()),
            false,
        ));
        let mut roles = Vec::new();
        let mut contents = Vec::new();
        let mut offsets = vec![0i32];
        for (c, _) in rows {
            for m in &c.messages {
                roles.push(m.role.clone());
                contents.push(m.content.clone());
            }
            offsets.push(roles.len() as i32);
        }
        let structs = StructArray::new(
            msg_fields,
            vec![
                Arc::new(StringArray::from(roles)),
                Arc::new(StringArray::from(contents)),
            ],
            None,
        );
        let list = ListArray::new(
            item.clone(),
            arrow::buffer::OffsetBuffer::new(offsets.into()),
            Arc::new(structs),
            None,
        );
        let ids = StringArray::from(
            (0..rows.len())
                .map(|i| format!("id-{i}"))
                .collect::<Vec<_>>(),
        );
        let accepted = BooleanArray::from(rows.iter().map(|(_, a)| *a).collect::<Vec<_>>());
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("messages", DataType::List(item), false),
            Field::new("accepted", DataType::Boolean, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(ids), Arc::new(list), Arc::new(accepted)],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn reads_run_shards_keeping_only_accepted_rows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shards")).unwrap();
        let a = conv(&[("user", "1+1?"), ("assistant", "2")]);
        let b = conv(&[("user", "2+2?"), ("assistant", "5")]);
        let c = conv(&[("user", "no answer")]);
        write_parquet(
            &dir.path().join("shards/accepted-00000.parquet"),
            &[(a.clone(), true), (b, false), (c, true)],
        );
        // Not an accepted shard: ignored.
        std::fs::write(dir.path().join("shards/rejected-00000.parquet"), b"junk").unwrap();
        let data = load_conversations(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(data.conversations.len(), 1);
        assert_eq!(data.conversations[0].messages, a.messages);
        assert!(
            data.conversations[0]
                .origin
                .ends_with("accepted-00000.parquet row 0")
        );
        assert_eq!(data.skipped_rejected, 1);
        assert_eq!(data.skipped_no_assistant, 1);
    }

    #[test]
    fn reads_exported_parquet_and_jsonl_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let a = conv(&[("user", "q"), ("assistant", "a")]);
        write_parquet(
            &dir.path().join("data/train-00000-of-00001.parquet"),
            &[(a.clone(), true)],
        );
        let data = load_conversations(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(data.conversations.len(), 1);

        let jsonl = dir.path().join("x.jsonl");
        std::fs::write(
            &jsonl,
            "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n\n{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"b\"}],\"accepted\":false}\n",
        )
        .unwrap();
        let data = load_conversations(std::slice::from_ref(&jsonl)).unwrap();
        assert_eq!(data.conversations.len(), 1);
        assert_eq!(data.conversations[0].messages, a.messages);
        assert_eq!(data.skipped_rejected, 1);

        std::fs::write(&jsonl, "{\"messages\":[]}\n{\"messages\": 3}\n").unwrap();
        let err = load_conversations(std::slice::from_ref(&jsonl))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.jsonl, line 2"), "{err}");

        let err = load_conversations(&[dir.path().join("missing")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn parquet_without_messages_column_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec!["x"]))])
                .unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let err = load_conversations(&[path]).unwrap_err().to_string();
        assert!(
            err.contains("bad.parquet") && err.contains("`messages`"),
            "{err}"
        );
    }

    /// A byte-level tokenizer with no merges (one token per byte) plus ChatML specials.
    pub(crate) fn byte_tokenizer() -> Tokenizer {
        use tokenizers::AddedToken;
        use tokenizers::models::bpe::BPE;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort();
        assert_eq!(alphabet.len(), 256);
        let vocab: [(String, u32); 256] =
            std::array::from_fn(|i| (alphabet[i].to_string(), i as u32));
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, vec![])
            .build()
            .unwrap();
        let mut tok = Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        tok.with_decoder(Some(ByteLevel::default()));
        tok.add_special_tokens([
            AddedToken::from("<|im_start|>", true),
            AddedToken::from("<|im_end|>", true),
        ])
        .unwrap();
        tok
    }

    /// ChatML as it was before it carried `{% generation %}` markers: the prefix-rendering
    /// fallback finds its assistant spans.
    const UNMARKED_CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn loss_mask_covers_exactly_the_assistant_turns() {
        // The markers' spans end at `<|im_end|>`; the fallback's take the turn's whole text,
        // its new line too. The rendered text is the same.
        let marked = ChatTemplate::chatml();
        assert!(marked.has_generation_markers());
        check_assistant_mask(&marked, "");
        let unmarked = ChatTemplate::new(UNMARKED_CHATML, vec![], None).unwrap();
        assert!(!unmarked.has_generation_markers());
        check_assistant_mask(&unmarked, "\n");
    }

    fn check_assistant_mask(tmpl: &ChatTemplate, after_end: &str) {
        let tok = byte_tokenizer();
        let enc = Encoder {
            aligner: None,
            tokenizer: &tok,
            template: tmpl,
        };
        let c = conv(&[
            ("system", "sys"),
            ("user", "héllo"),
            ("assistant", "<think>\nr\n</think>\n\nA1"),
            ("user", "more"),
            ("assistant", "A2"),
        ]);
        let e = enc.encode(&c).unwrap();
        assert_eq!(e.tokens.len(), e.assistant.len());
        // Concatenate the text of the masked tokens, turn by turn.
        let mut runs: Vec<Vec<u32>> = Vec::new();
        let mut prev = false;
        for (t, &m) in e.tokens.iter().zip(&e.assistant) {
            if m {
                if !prev {
                    runs.push(Vec::new());
                }
                runs.last_mut().unwrap().push(*t);
            }
            prev = m;
        }
        let texts: Vec<String> = runs.iter().map(|r| tok.decode(r, false).unwrap()).collect();
        assert_eq!(
            texts,
            vec![
                format!("<think>\nr\n</think>\n\nA1<|im_end|>{after_end}"),
                format!("A2<|im_end|>{after_end}")
            ]
        );
        // Everything else (system, user turns, role headers) is unmasked.
        let unmasked: Vec<u32> = e
            .tokens
            .iter()
            .zip(&e.assistant)
            .filter(|(_, m)| !**m)
            .map(|(t, _)| *t)
            .collect();
        let newline = if after_end.is_empty() { "\n" } else { "" };
        assert_eq!(
            tok.decode(&unmasked, false).unwrap(),
            format!(
                "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhéllo<|im_end|>\n<|im_start|>assistant\n{newline}<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n{newline}"
            )
        );
        let (examples, stats) = enc.encode_all(std::slice::from_ref(&c), 1024).unwrap();
        assert_eq!(stats.truncated, 0);
        assert_eq!(
            stats.loss_tokens,
            e.assistant.iter().filter(|m| **m).count()
        );
        assert_eq!(examples[0].targets, e.tokens[1..]);
    }

    #[test]
    fn template_that_rewrites_history_still_locates_the_last_turn() {
        // Like DeepSeek-R1's template: reasoning is stripped from assistant turns.
        let src = "{% for m in messages %}{% if m['role'] == 'assistant' %}{% set c = m['content'].split('</think>')[-1] %}{{ 'A:' + c + '|' }}{% else %}{{ 'U:' + m['content'] + '|' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'A:' }}{% endif %}";
        let tmpl = ChatTemplate::new(src, vec![], None).unwrap();
        let tok = byte_tokenizer();
        let enc = Encoder {
            aligner: None,
            tokenizer: &tok,
            template: &tmpl,
        };
        let e = enc
            .encode(&conv(&[("user", "q"), ("assistant", "<think>x</think>ok")]))
            .unwrap();
        let masked: Vec<u32> = e
            .tokens
            .iter()
            .zip(&e.assistant)
            .filter(|(_, m)| **m)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(tok.decode(&masked, false).unwrap(), "ok|");
    }

    fn ex(n: usize, first: u32) -> Example {
        Example {
            sparse: Vec::new(),
            inputs: (0..n as u32).map(|i| first + i).collect(),
            targets: (0..n as u32).map(|i| first + i + 1).collect(),
            mask: (0..n).map(|i| i % 2 == 1).collect(),
        }
    }

    #[test]
    fn packing_keeps_examples_whole_with_segment_ids() {
        let (a, b, c) = (ex(3, 10), ex(4, 20), ex(5, 30));
        let rows = pack(&[&a, &b, &c], 8, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].inputs, vec![10, 11, 12, 20, 21, 22, 23]);
        assert_eq!(rows[0].segments, vec![1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(rows[1].segments, vec![1; 5]);
        let batch = Batch::from_rows(&rows);
        assert_eq!((batch.rows, batch.len), (2, 7));
        assert_eq!(&batch.segments[7..], &[1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(&batch.mask[7..], &[0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(batch.tokens, 12);
        assert_eq!(batch.loss_tokens, 1 + 2 + 2);

        let rows = pack(&[&a, &b, &c], 8, false);
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.segments.iter().all(|&s| s == 1)));
    }

    #[test]
    fn truncation_is_counted_and_empty_examples_dropped() {
        let enc = Encoded {
            tokens: (0..10).collect(),
            assistant: (0..10).map(|i| i >= 6).collect(),
            sparse: Vec::new(),
            logprob_stats: None,
        };
        let (e, t) = to_example(&enc, 20);
        let e = e.unwrap();
        assert!(!t);
        assert_eq!(e.inputs.len(), 9);
        assert_eq!(e.loss_tokens(), 4);
        let (e, t) = to_example(&enc, 7);
        assert!(t);
        assert_eq!(e.unwrap().loss_tokens(), 2); // targets 1..=7, assistant 6 and 7
        let (e, t) = to_example(&enc, 4);
        assert!(t && e.is_none());
    }
}

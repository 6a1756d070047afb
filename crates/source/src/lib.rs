//! Lazy reading of the prompt source, apart from the run's own files (`distillery-store`):
//! the pipeline, `eval`'s benchmarks, the mock teacher and `export` read sources through it.
//!
//! [`SourceReader`] yields one item per source row, in file order, without loading the file:
//! JSONL line by line, a JSON array element by element (a small scanner finds element bounds,
//! so one bad element does not spoil the rest), Parquet in record batches. A row that cannot be
//! used becomes a [`QuarantineEntry`] with a reason code; an I/O failure or a file that is not
//! of its format at all is a [`StoreError`] and ends the iteration.
//!
//! Row numbers: JSONL rows are 1-based line numbers (as editors show them); JSON rows are the
//! 0-based array index; Parquet rows are the 0-based row index across the file.
//!
//! Reason codes: `source.invalid_utf8`, `source.invalid_json`, `source.not_an_object`,
//! `source.missing_field`, `source.invalid_field`, `source.empty_prompt`, `source.no_answer`
//! (the answer field holds no answer of the configured kind), `source.duplicate_id`.

#![forbid(unsafe_code)]
// A quarantined row is an expected outcome carried by value, not an error to propagate.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use arrow::array::RecordBatch;
use distillery_spec::{AnswerExtract, MissingField, Shard, Source, SourceFormat, Template};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use distillery_store::record::QuarantineEntry;
use distillery_store::schema::row_to_json;
use distillery_store::{Result, StoreError};

/// How much of a bad row is kept in its quarantine entry.
pub const MAX_RAW_BYTES: usize = 16 * 1024;

/// A usable source row.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    /// See the module doc for the numbering of each format.
    pub row_number: u64,
    /// Stable prompt id: the id field (stringified) when configured, else [`row_hash`].
    pub id: String,
    /// The whole row, for the prompt template and the code check's fields.
    pub fields: Map<String, Value>,
    /// The reference answer read from the answer field with the configured extraction.
    pub reference_answer: Option<String>,
}

impl SourceRow {
    /// The prompt field's text (the reader checked that it is a non-empty string or number).
    pub fn prompt<'a>(&'a self, source: &Source) -> Option<std::borrow::Cow<'a, str>> {
        self.fields.get(&source.prompt_field).and_then(scalar_text)
    }

    /// A field as text, see [`field_text`].
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields.get(name).and_then(field_text)
    }

    /// The row's own description of its problem, as the definition names the fields.
    pub fn source_fields(&self, source: &Source) -> distillery_store::record::SourceFields {
        let meta = &source.metadata;
        let field = |name: &Option<String>| name.as_deref().and_then(|n| self.field(n));
        distillery_store::record::SourceFields {
            problem: self.prompt(source).map(std::borrow::Cow::into_owned),
            solution: field(&meta.solution_field),
            problem_type: field(&meta.problem_type_field),
            level: field(&meta.level_field),
            origin: field(&meta.origin_field),
        }
    }

    /// The user turn: `template` filled with this row's fields. The pipeline and
    /// `distillery eval` both render prompts here, so a student is evaluated with exactly the
    /// prompt its training traces were asked with.
    pub fn render(&self, template: &Template) -> std::result::Result<String, MissingField> {
        template.render(|field| self.field(field))
    }
}

/// A field's value as prompt text: strings as they are, numbers and booleans as written,
/// arrays of strings joined by new lines (as MBPP's test lists are); `None` for null, objects
/// and other arrays.
pub fn field_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|lines| lines.join("\n")),
        Value::Null | Value::Object(_) => None,
    }
}

/// One item of the source: a usable row, or a row for quarantine.
pub type SourceItem = std::result::Result<SourceRow, QuarantineEntry>;

enum Inner {
    Jsonl {
        reader: BufReader<File>,
        line: u64,
    },
    Json(JsonArrayScanner<BufReader<File>>),
    Parquet {
        reader: ParquetRecordBatchReader,
        batch: Option<RecordBatch>,
        next_in_batch: usize,
        row: u64,
    },
}

fn id_digest(id: &str) -> u128 {
    let digest = Sha256::digest(id.as_bytes());
    u128::from_le_bytes(
        digest[..16]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

/// Reads a pipeline's source lazily; an iterator of `Result<SourceItem>`.
pub struct SourceReader {
    source: Source,
    display_path: String,
    inner: Inner,
    rows_read: u64,
    /// 128-bit digests of the ids seen so far: the one thing that grows with the source, kept
    /// at 16 bytes a row (a collision is as likely as a SHA-256 one truncated to 128 bits).
    seen_ids: HashSet<u128>,
    done: bool,
    /// Only this shard's items are yielded (see [`SourceReader::shard`]).
    shard: Option<Shard>,
}

impl SourceReader {
    /// Opens the source; fails when the file cannot be opened or is not of its format.
    pub fn open(source: &Source) -> Result<Self> {
        let path = &source.path;
        let file = File::open(path).map_err(StoreError::io("open source", path))?;
        let inner = match source.format {
            SourceFormat::Jsonl => Inner::Jsonl {
                reader: BufReader::with_capacity(1 << 16, file),
                line: 0,
            },
            SourceFormat::Json => Inner::Json(JsonArrayScanner::new(
                BufReader::with_capacity(1 << 16, file),
                path.clone(),
            )?),
            SourceFormat::Parquet => {
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(StoreError::parquet(path))?
                    .with_batch_size(1024)
                    .build()
                    .map_err(StoreError::parquet(path))?;
                Inner::Parquet {
                    reader,
                    batch: None,
                    next_in_batch: 0,
                    row: 0,
                }
            }
        };
        Ok(Self {
            source: source.clone(),
            display_path: path.display().to_string(),
            inner,
            rows_read: 0,
            seen_ids: HashSet::new(),
            done: false,
            shard: None,
        })
    }

    /// Yields only the items of `shard`: rows whose stable id falls in it, and quarantined
    /// rows by their id or, when they have none (not JSON, no id field), by their row number.
    /// Every row is still read, so `limit`, row numbers and duplicate ids mean what they mean
    /// in an unsharded run (a duplicate has its original's id, hence its shard).
    pub fn shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// Rows read so far (usable and quarantined), in every shard.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    fn quarantine(
        &self,
        row: u64,
        id: Option<String>,
        reason: &str,
        detail: String,
        raw: Option<String>,
    ) -> SourceItem {
        Err(QuarantineEntry {
            id,
            source_path: self.display_path.clone(),
            source_row: row,
            reason: reason.to_owned(),
            detail,
            raw: raw.map(|r| truncate_raw(&r)),
        })
    }

    /// Next raw row: its number and either its parsed value or a quarantine entry.
    fn next_raw(&mut self) -> Result<Option<(u64, std::result::Result<Value, SourceItem>)>> {
        match &mut self.inner {
            Inner::Jsonl { reader, line } => {
                let mut bytes = Vec::new();
                loop {
                    bytes.clear();
                    let n = reader
                        .read_until(b'\n', &mut bytes)
                        .map_err(StoreError::io("read source", &self.source.path))?;
                    if n == 0 {
                        return Ok(None);
                    }
                    *line += 1;
                    let row = *line;
                    let text = match std::str::from_utf8(&bytes) {
                        Ok(text) => text,
                        Err(e) => {
                            let raw = String::from_utf8_lossy(&bytes).into_owned();
                            let item = self.quarantine(
                                row,
                                None,
                                "source.invalid_utf8",
                                format!("line {row} is not UTF-8: {e}"),
                                Some(raw),
                            );
                            return Ok(Some((row, Err(item))));
                        }
                    };
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    return Ok(Some(match serde_json::from_str::<Value>(text) {
                        Ok(value) => (row, Ok(value)),
                        Err(e) => {
                            let text = text.to_owned();
                            (
                                row,
                                Err(self.quarantine(
                                    row,
                                    None,
                                    "source.invalid_json",
                                    format!("line {row}: {e}"),
                                    Some(text),
                                )),
                            )
                        }
                    }));
                }
            }
            Inner::Json(scanner) => {
                let Some(element) = scanner.next_element()? else {
                    return Ok(None);
                };
                let row = element.index;
                Ok(Some(
                    match serde_json::from_slice::<Value>(&element.bytes) {
                        Ok(value) => (row, Ok(value)),
                        Err(e) => {
                            let raw = String::from_utf8_lossy(&element.bytes).into_owned();
                            let (reason, what) = if std::str::from_utf8(&element.bytes).is_err() {
                                ("source.invalid_utf8", "is not UTF-8")
                            } else {
                                ("source.invalid_json", "is not valid JSON")
                            };
                            (
                                row,
                                Err(self.quarantine(
                                    row,
                                    None,
                                    reason,
                                    format!("element {row} (line {}) {what}: {e}", element.line),
                                    Some(raw),
                                )),
                            )
                        }
                    },
                ))
            }
            Inner::Parquet {
                reader,
                batch,
                next_in_batch,
                row,
            } => loop {
                if let Some(current) = batch
                    && *next_in_batch < current.num_rows()
                {
                    let object = row_to_json(current, *next_in_batch)
                        .map_err(|e| e.in_file(&self.source.path, *row))?;
                    *next_in_batch += 1;
                    let number = *row;
                    *row += 1;
                    return Ok(Some((number, Ok(Value::Object(object)))));
                }
                match reader.next() {
                    None => return Ok(None),
                    Some(Ok(next)) => {
                        *batch = Some(next);
                        *next_in_batch = 0;
                    }
                    Some(Err(e)) => {
                        return Err(StoreError::Source {
                            path: self.source.path.clone(),
                            message: format!("reading row {}: {e}", *row),
                        });
                    }
                }
            },
        }
    }

    fn make_row(&mut self, row: u64, value: Value) -> SourceItem {
        let source = &self.source;
        let raw = || Some(value.to_string());
        let Value::Object(fields) = &value else {
            return self.quarantine(
                row,
                None,
                "source.not_an_object",
                format!("row {row} is a JSON {}, not an object", json_kind(&value)),
                raw(),
            );
        };
        let id = match &source.id_field {
            None => row_hash(&value),
            Some(field) => match fields.get(field) {
                None | Some(Value::Null) => {
                    return self.quarantine(
                        row,
                        None,
                        "source.missing_field",
                        format!("row {row} has no id field `{field}`"),
                        raw(),
                    );
                }
                Some(Value::String(s)) if s.trim().is_empty() => {
                    return self.quarantine(
                        row,
                        None,
                        "source.invalid_field",
                        format!("row {row}: id field `{field}` is empty"),
                        raw(),
                    );
                }
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            },
        };
        match fields.get(&source.prompt_field) {
            None | Some(Value::Null) => {
                return self.quarantine(
                    row,
                    Some(id),
                    "source.missing_field",
                    format!("row {row} has no prompt field `{}`", source.prompt_field),
                    raw(),
                );
            }
            Some(value) => match scalar_text(value) {
                None => {
                    return self.quarantine(
                        row,
                        Some(id),
                        "source.invalid_field",
                        format!(
                            "row {row}: prompt field `{}` is a {}, not text",
                            source.prompt_field,
                            json_kind(value)
                        ),
                        raw(),
                    );
                }
                Some(text) if text.trim().is_empty() => {
                    return self.quarantine(
                        row,
                        Some(id),
                        "source.empty_prompt",
                        format!("row {row}: prompt field `{}` is empty", source.prompt_field),
                        raw(),
                    );
                }
                Some(_) => {}
            },
        }
        let reference_answer = match &source.answer_field {
            None => None,
            Some(field) => {
                let Some(text) = fields.get(field).and_then(scalar_text) else {
                    return self.quarantine(
                        row,
                        Some(id),
                        "source.missing_field",
                        format!("row {row} has no answer field `{field}` (or it is not text)"),
                        raw(),
                    );
                };
                match distillery_verify::math::reference_answer(&text, source.answer_extract) {
                    Some(answer) => Some(answer),
                    None => {
                        return self.quarantine(
                            row,
                            Some(id),
                            "source.no_answer",
                            format!(
                                "row {row}: answer field `{field}` has no {} answer",
                                match source.answer_extract {
                                    AnswerExtract::Verbatim => "non-empty",
                                    AnswerExtract::Gsm8k => "`#### N`",
                                    AnswerExtract::Boxed => "\\boxed{…}",
                                }
                            ),
                            raw(),
                        );
                    }
                }
            }
        };
        if !self.seen_ids.insert(id_digest(&id)) {
            return self.quarantine(
                row,
                Some(id.clone()),
                "source.duplicate_id",
                format!("row {row}: prompt id `{id}` already appeared earlier in the source"),
                raw(),
            );
        }
        let Value::Object(fields) = value else {
            unreachable!("checked above")
        };
        Ok(SourceRow {
            row_number: row,
            id,
            fields,
            reference_answer,
        })
    }
}

/// Raw rows of a JSONL, JSON or Parquet file as JSON values, without the prompt-field checks
/// of [`SourceReader`] (for general-purpose data, e.g. the export's mix sources). Items are
/// `(row number, value or quarantine entry)`.
pub struct RawRows(SourceReader);

impl RawRows {
    pub fn open(path: &std::path::Path, format: SourceFormat) -> Result<Self> {
        let source = Source {
            path: path.to_owned(),
            format,
            id_field: None,
            prompt_field: String::new(),
            answer_field: None,
            answer_extract: AnswerExtract::Verbatim,
            metadata: Default::default(),
            limit: None,
        };
        SourceReader::open(&source).map(Self)
    }
}

impl Iterator for RawRows {
    type Item = Result<(u64, std::result::Result<Value, QuarantineEntry>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.0.next_raw() {
            Ok(None) => None,
            Err(e) => Some(Err(e)),
            Ok(Some((row, Ok(value)))) => Some(Ok((row, Ok(value)))),
            Ok(Some((row, Err(item)))) => {
                let entry = match item {
                    Err(entry) => entry,
                    Ok(_) => unreachable!("next_raw only quarantines"),
                };
                Some(Ok((row, Err(entry))))
            }
        }
    }
}

impl Iterator for SourceReader {
    type Item = Result<SourceItem>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let item = self.next_any()?;
            let mine = match (&item, self.shard) {
                (_, None) | (Err(_), _) => true,
                (Ok(Ok(row)), Some(shard)) => shard.contains(&row.id),
                (Ok(Err(entry)), Some(shard)) => match &entry.id {
                    Some(id) => shard.contains(id),
                    None => shard.contains(&format!("source row {}", entry.source_row)),
                },
            };
            if mine {
                return Some(item);
            }
        }
    }
}

impl SourceReader {
    /// The next item of any shard.
    fn next_any(&mut self) -> Option<Result<SourceItem>> {
        if self.done {
            return None;
        }
        if self
            .source
            .limit
            .is_some_and(|limit| self.rows_read >= limit)
        {
            self.done = true;
            return None;
        }
        match self.next_raw() {
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
            Ok(Some((row, raw))) => {
                self.rows_read += 1;
                Some(Ok(match raw {
                    Ok(value) => self.make_row(row, value),
                    Err(item) => item,
                }))
            }
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Strings as they are, numbers as their JSON text; anything else is not text.
fn scalar_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}

fn truncate_raw(raw: &str) -> String {
    if raw.len() <= MAX_RAW_BYTES {
        return raw.to_owned();
    }
    let mut end = MAX_RAW_BYTES;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

/// Canonical JSON: object keys sorted at every level, no whitespace. Independent of whether
/// `serde_json` keeps insertion order in the build.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The id of a row without an id field: the first 16 hex digits of the SHA-256 of its
/// canonical JSON.
pub fn row_hash(value: &Value) -> String {
    let digest = Sha256::digest(canonical_json(value).as_bytes());
    distillery_store::run_dir::hex(&digest[..8])
}

// ---------------------------------------------------------------------------------------------
// JSON array scanning

struct Element {
    index: u64,
    /// 1-based line where the element starts.
    line: u64,
    bytes: Vec<u8>,
}

/// Splits a JSON array into its top-level elements without parsing them, tracking strings and
/// nesting so commas inside them do not split.
struct JsonArrayScanner<R: BufRead> {
    bytes: std::iter::Peekable<std::io::Bytes<R>>,
    path: PathBuf,
    line: u64,
    index: u64,
    finished: bool,
}

impl<R: BufRead> JsonArrayScanner<R> {
    fn new(reader: R, path: PathBuf) -> Result<Self> {
        let mut scanner = Self {
            bytes: reader.bytes().peekable(),
            path,
            line: 1,
            index: 0,
            finished: false,
        };
        // Optional UTF-8 BOM, whitespace, then `[`.
        match scanner.skip_ws()? {
            Some(0xEF) => {
                for _ in 0..3 {
                    scanner.bump()?;
                }
                match scanner.skip_ws()? {
                    Some(b'[') => {}
                    _ => return Err(scanner.not_an_array()),
                }
            }
            Some(b'[') => {}
            _ => return Err(scanner.not_an_array()),
        }
        scanner.bump()?;
        if scanner.skip_ws()? == Some(b']') {
            scanner.bump()?;
            scanner.finish()?;
        }
        Ok(scanner)
    }

    fn not_an_array(&self) -> StoreError {
        StoreError::Source {
            path: self.path.clone(),
            message: format!(
                "line {}: a JSON source must be an array of objects (`[{{…}}, …]`); use \
                 format = \"jsonl\" for one object per line",
                self.line
            ),
        }
    }

    fn peek(&mut self) -> Result<Option<u8>> {
        match self.bytes.peek() {
            None => Ok(None),
            Some(Ok(b)) => Ok(Some(*b)),
            Some(Err(_)) => {
                let Some(Err(e)) = self.bytes.next() else {
                    unreachable!()
                };
                Err(StoreError::Io {
                    op: "read source",
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }

    fn bump(&mut self) -> Result<Option<u8>> {
        let b = self.peek()?;
        if b.is_some() {
            self.bytes.next();
        }
        if b == Some(b'\n') {
            self.line += 1;
        }
        Ok(b)
    }

    fn skip_ws(&mut self) -> Result<Option<u8>> {
        while let Some(b) = self.peek()? {
            if b.is_ascii_whitespace() {
                self.bump()?;
            } else {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// After the closing `]`: only whitespace may follow.
    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        if let Some(b) = self.skip_ws()? {
            return Err(StoreError::Source {
                path: self.path.clone(),
                message: format!(
                    "line {}: unexpected `{}` after the end of the JSON array",
                    self.line, b as char
                ),
            });
        }
        Ok(())
    }

    fn next_element(&mut self) -> Result<Option<Element>> {
        if self.finished {
            return Ok(None);
        }
        if self.skip_ws()?.is_none() {
            return Err(StoreError::Source {
                path: self.path.clone(),
                message: format!("line {}: the JSON array is not closed with `]`", self.line),
            });
        }
        let line = self.line;
        let mut bytes = Vec::new();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let Some(b) = self.peek()? else {
                return Err(StoreError::Source {
                    path: self.path.clone(),
                    message: format!(
                        "line {}: the file ends inside element {} (started on line {line})",
                        self.line, self.index
                    ),
                });
            };
            if in_string {
                self.bump()?;
                bytes.push(b);
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => depth -= 1,
                b',' | b']' if depth == 0 => {
                    self.bump()?;
                    if b == b']' {
                        self.finish()?;
                    }
                    let index = self.index;
                    self.index += 1;
                    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                        bytes.pop();
                    }
                    return Ok(Some(Element { index, line, bytes }));
                }
                _ => {}
            }
            self.bump()?;
            bytes.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;

    fn source(path: &Path, format: SourceFormat) -> Source {
        Source {
            path: path.to_owned(),
            format,
            id_field: None,
            prompt_field: "question".into(),
            answer_field: Some("answer".into()),
            answer_extract: AnswerExtract::Gsm8k,
            metadata: Default::default(),
            limit: None,
        }
    }

    fn read_all(source: &Source) -> Vec<SourceItem> {
        SourceReader::open(source)
            .unwrap()
            .collect::<Result<Vec<_>>>()
            .unwrap()
    }

    #[test]
    fn rows_render_templates_with_text_numbers_and_line_lists() {
        let row = SourceRow {
            row_number: 1,
            id: "x".into(),
            fields: serde_json::json!({
                "question": "2+2?", "n": 4, "flag": true, "tests": ["a", "b"], "meta": {}
            })
            .as_object()
            .unwrap()
            .clone(),
            reference_answer: None,
        };
        let template = Template::parse("{question} {n} {flag}\n{tests}");
        assert_eq!(row.render(&template).unwrap(), "2+2? 4 true\na\nb");
        assert_eq!(
            row.render(&Template::r1_math("question")).unwrap(),
            format!("2+2?\n{}", distillery_spec::R1_MATH_INSTRUCTION)
        );
        let missing = row.render(&Template::parse("{meta}")).unwrap_err();
        assert_eq!(missing.field, "meta");
        assert_eq!(row.field("absent"), None);
    }

    #[test]
    fn jsonl_rows_and_quarantine_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        let mut f = File::create(&path).unwrap();
        writeln!(f, r##"{{"question": "1+1?", "answer": "so #### 2"}}"##).unwrap(); // 1
        writeln!(f).unwrap(); // 2: blank, skipped
        writeln!(f, r#"{{"question": "broken"#).unwrap(); // 3
        writeln!(f, r#"[1, 2]"#).unwrap(); // 4
        writeln!(f, r#####"{{"answer": "#### 3"}}"#####).unwrap(); // 5
        writeln!(
            f,
            r#####"{{"question": "big?", "answer": "#### 1,000"}}"#####
        )
        .unwrap(); // 6
        writeln!(f, r#"{{"question": "no marker", "answer": "4"}}"#).unwrap(); // 7
        f.write_all(b"{\"question\": \"\xff\"}\n").unwrap(); // 8
        writeln!(f, r##"{{"question": "1+1?", "answer": "so #### 2"}}"##).unwrap(); // 9: duplicate
        write!(f, r#####"{{"question": "last", "answer": "#### 5"}}"#####).unwrap(); // 10, no newline
        drop(f);
        let items = read_all(&source(&path, SourceFormat::Jsonl));
        let summary: Vec<(u64, String)> = items
            .iter()
            .map(|item| match item {
                Ok(row) => (
                    row.row_number,
                    format!("ok {}", row.reference_answer.as_deref().unwrap()),
                ),
                Err(q) => (q.source_row, q.reason.clone()),
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "ok 2".to_owned()),
                (3, "source.invalid_json".into()),
                (4, "source.not_an_object".into()),
                (5, "source.missing_field".into()),
                (6, "ok 1000".into()),
                (7, "source.no_answer".into()),
                (8, "source.invalid_utf8".into()),
                (9, "source.duplicate_id".into()),
                (10, "ok 5".into()),
            ]
        );
        let Err(bad) = &items[1] else { panic!() };
        assert_eq!(bad.raw.as_deref(), Some(r#"{"question": "broken"#));
        assert!(bad.source_path.ends_with("data.jsonl"));
        let Ok(first) = &items[0] else { panic!() };
        assert_eq!(first.id.len(), 16);
        assert_eq!(
            first.id,
            row_hash(&serde_json::json!({"answer": "so #### 2", "question": "1+1?"}))
        );
    }

    #[test]
    fn id_field_is_stringified_and_limit_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        let lines = [
            r#####"{"id": 17, "question": "a", "answer": "#### 1"}"#####,
            r#####"{"id": "x-2", "question": "b", "answer": "#### 2"}"#####,
            r#####"{"question": "c", "answer": "#### 3"}"#####,
            r#####"{"id": 4, "question": "d", "answer": "#### 4"}"#####,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let mut src = source(&path, SourceFormat::Jsonl);
        src.id_field = Some("id".into());
        let items = read_all(&src);
        assert_eq!(items[0].as_ref().unwrap().id, "17");
        assert_eq!(items[1].as_ref().unwrap().id, "x-2");
        assert_eq!(
            items[2].as_ref().unwrap_err().reason,
            "source.missing_field"
        );
        assert_eq!(items.len(), 4);
        src.limit = Some(2);
        let items = read_all(&src);
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn json_array_elements_with_bad_ones_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.json");
        let text = "[\n  {\"question\": \"a, [b]\", \"answer\": \"#### 1\"},\n  {\"question\": tru},\n  \"str\",\n  {\"question\": \"q\\\"}\", \"answer\": \"#### 2\"}\n]\n";
        std::fs::write(&path, text).unwrap();
        let items = read_all(&source(&path, SourceFormat::Json));
        assert_eq!(items.len(), 4);
        let first = items[0].as_ref().unwrap();
        assert_eq!(
            (first.row_number, first.fields["question"].as_str()),
            (0, Some("a, [b]"))
        );
        let bad = items[1].as_ref().unwrap_err();
        assert_eq!(
            (bad.source_row, bad.reason.as_str()),
            (1, "source.invalid_json")
        );
        assert!(bad.detail.contains("line 3"), "{}", bad.detail);
        assert_eq!(bad.raw.as_deref(), Some("{\"question\": tru}"));
        assert_eq!(
            items[2].as_ref().unwrap_err().reason,
            "source.not_an_object"
        );
        let last = items[3].as_ref().unwrap();
        assert_eq!(last.fields["question"], "q\"}");
        assert_eq!(last.reference_answer.as_deref(), Some("2"));
    }

    #[test]
    fn json_that_is_not_an_array_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.json");
        std::fs::write(&path, "{\"question\": \"a\"}").unwrap();
        let Err(error) = SourceReader::open(&source(&path, SourceFormat::Json)) else {
            panic!("accepted an object")
        };
        assert!(error.to_string().contains("must be an array"), "{error}");
        std::fs::write(&path, "[{\"question\": \"a\", \"answer\": \"#### 1\"}").unwrap();
        let results: Vec<_> = SourceReader::open(&source(&path, SourceFormat::Json))
            .unwrap()
            .collect();
        assert!(results.last().unwrap().as_ref().is_err());
        std::fs::write(&path, "[ ]").unwrap();
        assert!(read_all(&source(&path, SourceFormat::Json)).is_empty());
    }

    #[test]
    fn parquet_rows_become_objects() {
        use arrow::array::{Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("idx", DataType::Int64, false),
            Field::new("question", DataType::Utf8, true),
            Field::new("answer", DataType::Utf8, true),
        ]));
        let n = 2500;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(
                    (0..n)
                        .map(|i| (i != 1234).then(|| format!("q{i}")))
                        .collect::<StringArray>(),
                ),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("x\\boxed{{\\frac{{{i}}}{{2}}}}")),
                )),
            ],
        )
        .unwrap();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None)
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let mut src = source(&path, SourceFormat::Parquet);
        src.id_field = Some("idx".into());
        src.answer_extract = AnswerExtract::Boxed;
        let items = read_all(&src);
        assert_eq!(items.len(), n as usize);
        let row = items[2000].as_ref().unwrap();
        assert_eq!((row.row_number, row.id.as_str()), (2000, "2000"));
        assert_eq!(row.reference_answer.as_deref(), Some("\\frac{2000}{2}"));
        let bad = items[1234].as_ref().unwrap_err();
        assert_eq!(
            (bad.source_row, bad.reason.as_str()),
            (1234, "source.missing_field")
        );
        assert_eq!(bad.id.as_deref(), Some("1234"));
    }

    #[test]
    fn row_hash_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": [1, "s"]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": {"x": [1, "s"], "y": 2}, "b": 1}"#).unwrap();
        assert_eq!(row_hash(&a), row_hash(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":[1,"s"],"y":2},"b":1}"#);
        assert_ne!(row_hash(&a), row_hash(&serde_json::json!({"b": 2})));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let Err(error) = SourceReader::open(&source(
            Path::new("/nonexistent/x.jsonl"),
            SourceFormat::Jsonl,
        )) else {
            panic!()
        };
        assert!(
            error.to_string().contains("/nonexistent/x.jsonl"),
            "{error}"
        );
    }
}

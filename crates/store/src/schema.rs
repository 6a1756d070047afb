//! The Arrow schema of a generation row, and conversions between [`Generation`]s and record
//! batches.
//!
//! Layout choices, so that pyarrow, Hugging Face `datasets`, DuckDB and Spark read the shards as
//! they are:
//! - `messages` is `list<struct<role: string, content: string>>`, the layout chat datasets on
//!   the Hub use; `checks` is `list<struct<check, passed, reason, detail>>`.
//! - Counters are signed (`int64`, `int32`): Spark and some `datasets` versions have no unsigned
//!   types. Values that do not fit are an error, never a silent wrap.
//! - Provenance is flattened into top-level columns (`run_id`, `pipeline`, `config_hash`,
//!   `source_path`, `source_row`, `created_at_ms`) so that filters and `GROUP BY` need no struct
//!   access.
//! - Nested fields are nullable, as pyarrow and `datasets` declare them; the reader rejects a
//!   null where the record needs a value, naming the row.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use serde_json::{Map, Value};

use crate::error::{Result, StoreError};
use crate::record::{
    ChatMessage, CheckResult, Generation, LengthHandling, Provenance, SourceFields,
};

/// Version of the row layout, written to every shard's footer (`distillery.schema_version`).
/// 2 added the source's own fields (`source_problem`, `source_solution`, `problem_type`,
/// `level`, `origin`) and the teacher's top-k log-probabilities (`teacher_logprobs`); files of
/// version 1 read with those null. 3 added how the length limit treated each sample
/// (`truncations`, `continuations`, `reasks`); files of earlier versions read them as 0.
pub const SCHEMA_VERSION: &str = "3";

/// Footer key of the schema version.
pub const META_SCHEMA_VERSION: &str = "distillery.schema_version";
/// Footer key of the frozen pipeline definition (TOML text).
pub const META_PIPELINE: &str = "distillery.pipeline";
/// Footer key of the definition's hash.
pub const META_CONFIG_HASH: &str = "distillery.config_hash";
/// Footer key of the shard kind (`accepted` or `rejected`).
pub const META_KIND: &str = "distillery.kind";

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, true),
        Field::new("content", DataType::Utf8, true),
    ])
}

fn check_fields() -> Fields {
    Fields::from(vec![
        Field::new("check", DataType::Utf8, true),
        Field::new("passed", DataType::Boolean, true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, true),
    ])
}

fn list_of(fields: Fields) -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true)))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let i64f = |name: &str| Field::new(name, DataType::Int64, false);
    let i32f = |name: &str| Field::new(name, DataType::Int32, false);
    Arc::new(Schema::new(vec![
        s("id", false),
        i32f("sample_index"),
        s("problem", false),
        s("system_prompt", true),
        s("reference_answer", true),
        s("source_problem", true),
        s("source_solution", true),
        s("problem_type", true),
        s("level", true),
        s("origin", true),
        s("reasoning", true),
        s("content", false),
        s("extracted_answer", true),
        Field::new("messages", list_of(message_fields()), false),
        Field::new("checks", list_of(check_fields()), false),
        Field::new("accepted", DataType::Boolean, false),
        s("reject_reason", true),
        s("teacher_model", false),
        s("endpoint", false),
        s("finish_reason", false),
        s("reasoning_source", false),
        i64f("prompt_tokens"),
        i64f("completion_tokens"),
        i64f("reasoning_tokens"),
        Field::new("tokens_estimated", DataType::Boolean, false),
        i64f("latency_ms"),
        i32f("attempts"),
        i32f("truncations"),
        i32f("continuations"),
        i32f("reasks"),
        s("run_id", false),
        s("pipeline", false),
        s("config_hash", false),
        s("source_path", false),
        i64f("source_row"),
        i64f("created_at_ms"),
        crate::logprobs::field(),
    ]))
});

/// The schema of a generation row (shards, WAL cuts and exported datasets alike).
pub fn generation_schema() -> SchemaRef {
    SCHEMA.clone()
}

fn to_i64(value: u64, what: &str, row: usize) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::Schema(format!("row {row}: {what} {value} does not fit in int64")))
}

fn to_i32(value: u32, what: &str, row: usize) -> Result<i32> {
    i32::try_from(value)
        .map_err(|_| StoreError::Schema(format!("row {row}: {what} {value} does not fit in int32")))
}

fn strings<'a>(rows: &'a [Generation], f: impl Fn(&'a Generation) -> &'a str) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
}

fn opt_strings<'a>(
    rows: &'a [Generation],
    f: impl Fn(&'a Generation) -> Option<&'a str>,
) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn messages_array(rows: &[Generation]) -> Result<ArrayRef> {
    let all = || rows.iter().flat_map(|g| g.messages.iter());
    let role: ArrayRef = Arc::new(StringArray::from_iter_values(
        all().map(|m| m.role.as_str()),
    ));
    let content: ArrayRef = Arc::new(StringArray::from_iter_values(
        all().map(|m| m.content.as_str()),
    ));
    list_of_structs(
        message_fields(),
        vec![role, content],
        rows.iter().map(|g| g.messages.len()),
    )
}

fn checks_array(rows: &[Generation]) -> Result<ArrayRef> {
    let all = || rows.iter().flat_map(|g| g.checks.iter());
    let check: ArrayRef = Arc::new(StringArray::from_iter_values(
        all().map(|c| c.check.as_str()),
    ));
    let passed: ArrayRef = Arc::new(all().map(|c| Some(c.passed)).collect::<BooleanArray>());
    let reason: ArrayRef = Arc::new(all().map(|c| c.reason.as_deref()).collect::<StringArray>());
    let detail: ArrayRef = Arc::new(all().map(|c| c.detail.as_deref()).collect::<StringArray>());
    list_of_structs(
        check_fields(),
        vec![check, passed, reason, detail],
        rows.iter().map(|g| g.checks.len()),
    )
}

/// One list of structs per row: the rows' items, flattened into `columns`, split by `lengths`.
fn list_of_structs(
    fields: Fields,
    columns: Vec<ArrayRef>,
    lengths: impl IntoIterator<Item = usize>,
) -> Result<ArrayRef> {
    let DataType::List(item) = list_of(fields.clone()) else {
        unreachable!("list_of builds a list")
    };
    let values = StructArray::try_new(fields, columns, None)?;
    let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
    Ok(Arc::new(ListArray::try_new(
        item,
        offsets,
        Arc::new(values),
        None,
    )?))
}

/// Builds one record batch of [`generation_schema`] from generations.
pub fn to_record_batch(rows: &[Generation]) -> Result<RecordBatch> {
    let i64s = |what: &str, f: &dyn Fn(&Generation) -> u64| -> Result<ArrayRef> {
        let values = rows
            .iter()
            .enumerate()
            .map(|(i, g)| to_i64(f(g), what, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Int64Array::from(values)))
    };
    let i32s = |what: &str, f: &dyn Fn(&Generation) -> u32| -> Result<ArrayRef> {
        let values = rows
            .iter()
            .enumerate()
            .map(|(i, g)| to_i32(f(g), what, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Int32Array::from(values)))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(rows, |g| &g.id),
        i32s("sample_index", &|g| g.sample_index)?,
        strings(rows, |g| &g.problem),
        opt_strings(rows, |g| g.system_prompt.as_deref()),
        opt_strings(rows, |g| g.reference_answer.as_deref()),
        opt_strings(rows, |g| g.source.problem.as_deref()),
        opt_strings(rows, |g| g.source.solution.as_deref()),
        opt_strings(rows, |g| g.source.problem_type.as_deref()),
        opt_strings(rows, |g| g.source.level.as_deref()),
        opt_strings(rows, |g| g.source.origin.as_deref()),
        opt_strings(rows, |g| g.reasoning.as_deref()),
        strings(rows, |g| &g.content),
        opt_strings(rows, |g| g.extracted_answer.as_deref()),
        messages_array(rows)?,
        checks_array(rows)?,
        Arc::new(BooleanArray::from(
            rows.iter().map(|g| g.accepted).collect::<Vec<_>>(),
        )),
        opt_strings(rows, |g| g.reject_reason.as_deref()),
        strings(rows, |g| &g.teacher_model),
        strings(rows, |g| &g.endpoint),
        strings(rows, |g| &g.finish_reason),
        strings(rows, |g| &g.reasoning_source),
        i64s("prompt_tokens", &|g| g.prompt_tokens)?,
        i64s("completion_tokens", &|g| g.completion_tokens)?,
        i64s("reasoning_tokens", &|g| g.reasoning_tokens)?,
        Arc::new(BooleanArray::from(
            rows.iter().map(|g| g.tokens_estimated).collect::<Vec<_>>(),
        )),
        i64s("latency_ms", &|g| g.latency_ms)?,
        i32s("attempts", &|g| g.attempts)?,
        i32s("truncations", &|g| g.length.truncations)?,
        i32s("continuations", &|g| g.length.continuations)?,
        i32s("reasks", &|g| g.length.reasks)?,
        strings(rows, |g| &g.provenance.run_id),
        strings(rows, |g| &g.provenance.pipeline),
        strings(rows, |g| &g.provenance.config_hash),
        strings(rows, |g| &g.provenance.source_path),
        i64s("source_row", &|g| g.provenance.source_row)?,
        Arc::new(Int64Array::from(
            rows.iter()
                .map(|g| g.provenance.created_at_ms)
                .collect::<Vec<_>>(),
        )),
        crate::logprobs::to_array(rows.iter().map(|g| g.teacher_logprobs.as_ref())),
    ];
    Ok(RecordBatch::try_new(generation_schema(), columns)?)
}

// ---------------------------------------------------------------------------------------------
// Reading

fn row_error(row: usize, message: impl Into<String>) -> StoreError {
    StoreError::BadRow {
        path: Default::default(),
        row: row as u64,
        message: message.into(),
    }
}

/// A column cast to the type the reader wants, so that files rewritten by other tools
/// (`large_string`, `string_view`, unsigned counters) still read.
fn column(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<Option<ArrayRef>> {
    let Some(array) = batch.column_by_name(name) else {
        return Ok(None);
    };
    if array.data_type() == ty {
        return Ok(Some(array.clone()));
    }
    arrow::compute::cast(array, ty).map(Some).map_err(|e| {
        StoreError::Schema(format!(
            "column `{name}`: cannot read {} as {ty}: {e}",
            array.data_type()
        ))
    })
}

fn required(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef> {
    column(batch, name, ty)?.ok_or_else(|| StoreError::Schema(format!("missing column `{name}`")))
}

struct Str {
    name: &'static str,
    array: Option<ArrayRef>,
}

impl Str {
    fn new(batch: &RecordBatch, name: &'static str, must: bool) -> Result<Self> {
        let array = if must {
            Some(required(batch, name, &DataType::Utf8)?)
        } else {
            column(batch, name, &DataType::Utf8)?
        };
        Ok(Self { name, array })
    }

    fn opt(&self, row: usize) -> Option<String> {
        let array = self.array.as_ref()?.as_string::<i32>();
        array.is_valid(row).then(|| array.value(row).to_owned())
    }

    fn get(&self, row: usize) -> Result<String> {
        self.opt(row)
            .ok_or_else(|| row_error(row, format!("`{}` is null", self.name)))
    }
}

struct Int {
    name: &'static str,
    array: ArrayRef,
}

impl Int {
    fn new(batch: &RecordBatch, name: &'static str) -> Result<Self> {
        Ok(Self {
            name,
            array: required(batch, name, &DataType::Int64)?,
        })
    }

    fn optional(batch: &RecordBatch, name: &'static str) -> Result<Option<Self>> {
        Ok(column(batch, name, &DataType::Int64)?.map(|array| Self { name, array }))
    }

    /// The value of an optional column; 0 where the column is absent.
    fn u32_or_zero(column: &Option<Self>, row: usize) -> Result<u32> {
        column.as_ref().map_or(Ok(0), |c| c.u32(row))
    }

    fn i64(&self, row: usize) -> Result<i64> {
        let array = self.array.as_primitive::<arrow::datatypes::Int64Type>();
        if array.is_null(row) {
            return Err(row_error(row, format!("`{}` is null", self.name)));
        }
        Ok(array.value(row))
    }

    fn u64(&self, row: usize) -> Result<u64> {
        let value = self.i64(row)?;
        u64::try_from(value)
            .map_err(|_| row_error(row, format!("`{}` is negative ({value})", self.name)))
    }

    fn u32(&self, row: usize) -> Result<u32> {
        let value = self.i64(row)?;
        u32::try_from(value)
            .map_err(|_| row_error(row, format!("`{}` out of range ({value})", self.name)))
    }
}

/// A `list<struct<…>>` column: its list offsets and the struct's string/bool children.
struct StructList {
    name: &'static str,
    list: ListArray,
    children: Vec<ArrayRef>,
}

impl StructList {
    fn new(batch: &RecordBatch, name: &'static str, fields: &[(&str, DataType)]) -> Result<Self> {
        let array = batch
            .column_by_name(name)
            .ok_or_else(|| StoreError::Schema(format!("missing column `{name}`")))?;
        let list = match array.data_type() {
            DataType::List(_) => array.as_list::<i32>().clone(),
            DataType::LargeList(item)
            | DataType::ListView(item)
            | DataType::LargeListView(item) => {
                let target = DataType::List(item.clone());
                arrow::compute::cast(array, &target)?
                    .as_list::<i32>()
                    .clone()
            }
            other => {
                return Err(StoreError::Schema(format!(
                    "column `{name}` is {other}, expected a list of structs"
                )));
            }
        };
        let values = list.values();
        let Some(structs) = values.as_struct_opt() else {
            return Err(StoreError::Schema(format!(
                "column `{name}` holds {}, expected structs",
                values.data_type()
            )));
        };
        let mut children = Vec::with_capacity(fields.len());
        for (field, ty) in fields {
            let child = structs.column_by_name(field).ok_or_else(|| {
                StoreError::Schema(format!("column `{name}` has no struct field `{field}`"))
            })?;
            let child = if child.data_type() == ty {
                child.clone()
            } else {
                arrow::compute::cast(child, ty)
                    .map_err(|e| StoreError::Schema(format!("column `{name}.{field}`: {e}")))?
            };
            children.push(child);
        }
        // Null structs inside the list read as their (null) children and are refused below.
        Ok(Self {
            name,
            list,
            children,
        })
    }

    fn range(&self, row: usize) -> Result<std::ops::Range<usize>> {
        if self.list.is_null(row) {
            return Err(row_error(row, format!("`{}` is null", self.name)));
        }
        let offsets = self.list.value_offsets();
        Ok(offsets[row] as usize..offsets[row + 1] as usize)
    }

    fn str(&self, child: usize, i: usize) -> Option<String> {
        let array = self.children[child].as_string::<i32>();
        array.is_valid(i).then(|| array.value(i).to_owned())
    }

    fn bool(&self, child: usize, i: usize) -> Option<bool> {
        let array = self.children[child].as_boolean();
        array.is_valid(i).then(|| array.value(i))
    }
}

/// Decodes a record batch of [`generation_schema`] (or a compatible one: wider or narrower
/// string and integer types, missing optional columns) into generations.
///
/// Row-level problems are [`StoreError::BadRow`] with the row within the batch; the file
/// readers add the path and the row offset.
pub fn from_record_batch(batch: &RecordBatch) -> Result<Vec<Generation>> {
    let id = Str::new(batch, "id", true)?;
    let sample_index = Int::new(batch, "sample_index")?;
    let problem = Str::new(batch, "problem", true)?;
    let system_prompt = Str::new(batch, "system_prompt", false)?;
    let reference_answer = Str::new(batch, "reference_answer", false)?;
    // Absent from files written before they existed: read as null.
    let source_problem = Str::new(batch, "source_problem", false)?;
    let source_solution = Str::new(batch, "source_solution", false)?;
    let problem_type = Str::new(batch, "problem_type", false)?;
    let level = Str::new(batch, "level", false)?;
    let origin = Str::new(batch, "origin", false)?;
    let reasoning = Str::new(batch, "reasoning", false)?;
    let content = Str::new(batch, "content", true)?;
    let extracted_answer = Str::new(batch, "extracted_answer", false)?;
    let messages = StructList::new(
        batch,
        "messages",
        &[("role", DataType::Utf8), ("content", DataType::Utf8)],
    )?;
    let checks = match batch.column_by_name("checks") {
        Some(_) => Some(StructList::new(
            batch,
            "checks",
            &[
                ("check", DataType::Utf8),
                ("passed", DataType::Boolean),
                ("reason", DataType::Utf8),
                ("detail", DataType::Utf8),
            ],
        )?),
        None => None,
    };
    let accepted = required(batch, "accepted", &DataType::Boolean)?;
    let accepted = accepted.as_boolean();
    let reject_reason = Str::new(batch, "reject_reason", false)?;
    let teacher_model = Str::new(batch, "teacher_model", true)?;
    let endpoint = Str::new(batch, "endpoint", true)?;
    let finish_reason = Str::new(batch, "finish_reason", true)?;
    let reasoning_source = Str::new(batch, "reasoning_source", true)?;
    let prompt_tokens = Int::new(batch, "prompt_tokens")?;
    let completion_tokens = Int::new(batch, "completion_tokens")?;
    let reasoning_tokens = Int::new(batch, "reasoning_tokens")?;
    // Files written before the column existed read as measured counts.
    let tokens_estimated = batch
        .column_by_name("tokens_estimated")
        .and_then(|c| c.as_boolean_opt());
    let latency_ms = Int::new(batch, "latency_ms")?;
    let attempts = Int::new(batch, "attempts")?;
    // Files of schema 2 and before read as samples the length limit never cut.
    let truncations = Int::optional(batch, "truncations")?;
    let continuations = Int::optional(batch, "continuations")?;
    let reasks = Int::optional(batch, "reasks")?;
    let run_id = Str::new(batch, "run_id", true)?;
    let pipeline = Str::new(batch, "pipeline", true)?;
    let config_hash = Str::new(batch, "config_hash", true)?;
    let source_path = Str::new(batch, "source_path", true)?;
    let source_row = Int::new(batch, "source_row")?;
    let created_at_ms = Int::new(batch, "created_at_ms")?;
    // Files written before the column existed read as rows without log-probabilities.
    let teacher_logprobs = crate::logprobs::Reader::new(batch).map_err(StoreError::Schema)?;

    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut msgs = Vec::new();
        for i in messages.range(row)? {
            let role = messages
                .str(0, i)
                .ok_or_else(|| row_error(row, "a message has a null `role`"))?;
            let text = messages
                .str(1, i)
                .ok_or_else(|| row_error(row, "a message has a null `content`"))?;
            msgs.push(ChatMessage::new(role, text));
        }
        let mut verdicts = Vec::new();
        if let Some(checks) = &checks {
            for i in checks.range(row)? {
                verdicts.push(CheckResult {
                    check: checks
                        .str(0, i)
                        .ok_or_else(|| row_error(row, "a check has a null `check`"))?,
                    passed: checks
                        .bool(1, i)
                        .ok_or_else(|| row_error(row, "a check has a null `passed`"))?,
                    reason: checks.str(2, i),
                    detail: checks.str(3, i),
                });
            }
        }
        if accepted.is_null(row) {
            return Err(row_error(row, "`accepted` is null"));
        }
        out.push(Generation {
            id: id.get(row)?,
            sample_index: sample_index.u32(row)?,
            problem: problem.get(row)?,
            system_prompt: system_prompt.opt(row),
            reference_answer: reference_answer.opt(row),
            source: SourceFields {
                problem: source_problem.opt(row),
                solution: source_solution.opt(row),
                problem_type: problem_type.opt(row),
                level: level.opt(row),
                origin: origin.opt(row),
            },
            reasoning: reasoning.opt(row),
            content: content.get(row)?,
            extracted_answer: extracted_answer.opt(row),
            messages: msgs,
            checks: verdicts,
            accepted: accepted.value(row),
            reject_reason: reject_reason.opt(row),
            teacher_model: teacher_model.get(row)?,
            endpoint: endpoint.get(row)?,
            finish_reason: finish_reason.get(row)?,
            reasoning_source: reasoning_source.get(row)?,
            prompt_tokens: prompt_tokens.u64(row)?,
            completion_tokens: completion_tokens.u64(row)?,
            reasoning_tokens: reasoning_tokens.u64(row)?,
            tokens_estimated: tokens_estimated.is_some_and(|c| c.is_valid(row) && c.value(row)),
            latency_ms: latency_ms.u64(row)?,
            attempts: attempts.u32(row)?,
            provenance: Provenance {
                run_id: run_id.get(row)?,
                pipeline: pipeline.get(row)?,
                config_hash: config_hash.get(row)?,
                source_path: source_path.get(row)?,
                source_row: source_row.u64(row)?,
                created_at_ms: created_at_ms.i64(row)?,
            },
            length: LengthHandling {
                truncations: Int::u32_or_zero(&truncations, row)?,
                continuations: Int::u32_or_zero(&continuations, row)?,
                reasks: Int::u32_or_zero(&reasks, row)?,
            },
            teacher_logprobs: teacher_logprobs
                .get(row)
                .map_err(|message| row_error(row, message))?,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Generic conversion to JSON (Parquet prompt sources, `inspect`)

/// One cell of any Arrow array as JSON: numbers, strings, booleans, lists and structs map to
/// their JSON kind; binary becomes (lossy) UTF-8 text; dates, times, decimals and other types
/// become their display string.
pub fn array_value_to_json(array: &dyn Array, row: usize) -> Result<Value> {
    use arrow::datatypes::*;
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    let value = match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float16 => {
            f64::from(array.as_primitive::<Float16Type>().value(row).to_f32()).into()
        }
        DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(row)).into(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).into(),
        DataType::Utf8 => array.as_string::<i32>().value(row).into(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).into(),
        DataType::Utf8View => array.as_string_view().value(row).into(),
        DataType::Binary => String::from_utf8_lossy(array.as_binary::<i32>().value(row)).into(),
        DataType::LargeBinary => {
            String::from_utf8_lossy(array.as_binary::<i64>().value(row)).into()
        }
        DataType::BinaryView => String::from_utf8_lossy(array.as_binary_view().value(row)).into(),
        DataType::List(_) => list_to_json(&array.as_list::<i32>().value(row))?,
        DataType::LargeList(_) => list_to_json(&array.as_list::<i64>().value(row))?,
        DataType::FixedSizeList(_, _) => list_to_json(&array.as_fixed_size_list().value(row))?,
        DataType::Struct(fields) => {
            let structs = array.as_struct();
            let mut object = Map::new();
            for (field, child) in fields.iter().zip(structs.columns()) {
                object.insert(field.name().clone(), array_value_to_json(child, row)?);
            }
            Value::Object(object)
        }
        DataType::Dictionary(_, value_type) => {
            let plain = arrow::compute::cast(&array.slice(row, 1), value_type)?;
            array_value_to_json(&plain, 0)?
        }
        _ => arrow::util::display::array_value_to_string(array, row)?.into(),
    };
    Ok(value)
}

fn list_to_json(values: &ArrayRef) -> Result<Value> {
    (0..values.len())
        .map(|i| array_value_to_json(values, i))
        .collect::<Result<Vec<_>>>()
        .map(Value::Array)
}

/// One row of a record batch as a JSON object keyed by column name.
/// The teacher's log-probabilities take their documented JSON form
/// ([`crate::TeacherLogprobs::to_json`]), not their quantised bytes.
pub fn row_to_json(batch: &RecordBatch, row: usize) -> Result<Map<String, Value>> {
    let mut object = Map::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let value = if field.name() == crate::logprobs::COLUMN {
            crate::logprobs::Reader::new(batch)
                .and_then(|reader| reader.get(row))
                .map_err(StoreError::Schema)?
                .map_or(Value::Null, |logprobs| logprobs.to_json())
        } else {
            array_value_to_json(column, row)?
        };
        object.insert(field.name().clone(), value);
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    #[test]
    fn round_trip_preserves_every_field() {
        let mut rows = vec![
            sample("a", 0, true),
            sample("a", 1, false),
            sample("b", 0, true),
        ];
        rows[2].system_prompt = Some("You are terse.".into());
        rows[2].reasoning = None;
        rows[2].checks.clear();
        rows[2]
            .messages
            .insert(0, ChatMessage::new("system", "You are terse."));
        let mut logprobs = crate::TeacherLogprobs::new(2);
        logprobs.push(b"4", -0.1, [(&b"4"[..], -0.1), (&b"5"[..], -2.5)]);
        logprobs.push(b"\xe4", -3.0, [(&b"x"[..], -0.2)]);
        rows[0].teacher_logprobs = Some(logprobs);
        let batch = to_record_batch(&rows).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.schema(), generation_schema());
        assert_eq!(from_record_batch(&batch).unwrap(), rows);
    }

    /// Files written before the `teacher_logprobs` column existed read as rows without it.
    #[test]
    fn shards_without_the_logprobs_column_still_read() {
        let rows = vec![sample("a", 0, true)];
        let batch = to_record_batch(&rows).unwrap();
        let index = batch.schema().index_of(crate::logprobs::COLUMN).unwrap();
        let mut batch = batch;
        batch.remove_column(index);
        assert_eq!(from_record_batch(&batch).unwrap(), rows);
    }

    #[test]
    fn empty_batch_round_trips() {
        let batch = to_record_batch(&[]).unwrap();
        assert_eq!(batch.num_rows(), 0);
        assert!(from_record_batch(&batch).unwrap().is_empty());
    }

    #[test]
    fn messages_column_is_list_of_role_content_structs() {
        let schema = generation_schema();
        let DataType::List(item) = schema.field_with_name("messages").unwrap().data_type() else {
            panic!("messages is not a list")
        };
        let DataType::Struct(fields) = item.data_type() else {
            panic!("messages items are not structs")
        };
        let names: Vec<_> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["role", "content"]);
    }

    #[test]
    fn counters_that_do_not_fit_are_errors() {
        let mut row = sample("a", 0, true);
        row.prompt_tokens = u64::MAX;
        let error = to_record_batch(&[row]).unwrap_err().to_string();
        assert!(error.contains("prompt_tokens"), "{error}");
    }

    #[test]
    fn missing_required_column_is_named() {
        let batch = to_record_batch(&[sample("a", 0, true)]).unwrap();
        let index = batch.schema().index_of("content").unwrap();
        let mut batch = batch;
        batch.remove_column(index);
        let error = from_record_batch(&batch).unwrap_err().to_string();
        assert!(error.contains("`content`"), "{error}");
    }

    #[test]
    fn wider_types_are_read() {
        let batch = to_record_batch(&[sample("a", 0, true)]).unwrap();
        let schema = batch.schema();
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| match f.data_type() {
                DataType::Utf8 => arrow::compute::cast(c, &DataType::LargeUtf8).unwrap(),
                _ => c.clone(),
            })
            .collect::<Vec<_>>();
        let fields = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Field::new(f.name(), DataType::LargeUtf8, f.is_nullable()),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>();
        let wide = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        assert_eq!(
            from_record_batch(&wide).unwrap(),
            vec![sample("a", 0, true)]
        );
    }

    #[test]
    fn rows_convert_to_json() {
        let batch = to_record_batch(&[sample("a", 1, false)]).unwrap();
        let row = row_to_json(&batch, 0).unwrap();
        assert_eq!(row["id"], "a");
        assert_eq!(row["sample_index"], 1);
        assert_eq!(row["messages"][0]["role"], "user");
        assert_eq!(row["checks"][1]["reason"], "math.wrong_answer");
        assert_eq!(row["system_prompt"], Value::Null);
    }
}

//! The open-r1 layout of an export: one row per problem, every sample of it in list columns,
//! with the column names of open-r1's datasets (`open-r1/OpenR1-Math-220k`), so recipes
//! written for them read ours unchanged.
//!
//! | column | type | what |
//! |---|---|---|
//! | `problem` | string | the problem as the source gives it (not the rendered prompt) |
//! | `solution` | string? | the source's worked solution (`[source] solution_field`) |
//! | `answer` | string? | the reference answer the math check compared with |
//! | `problem_type` | string? | `[source] problem_type_field` |
//! | `level` | string? | `[source] level_field` (the difficulty) |
//! | `source` | string | `[source] origin_field` when the row has it, else the pipeline's name |
//! | `uuid` | string | a UUID derived from the prompt id (the id itself when it is one) |
//! | `id` | string | Distillery's stable prompt id |
//! | `messages` | list<struct<role, content>> | the first accepted sample's conversation (empty when none was accepted) |
//! | `generations` | list<string> | every stored sample's assistant turn, `<think>\n…\n</think>\n\n…`, by sample index |
//! | `finish_reasons` | list<string> | each generation's finish reason |
//! | `correctness_math_verify` | list<bool> | whether each generation's answer matched (null where no math check ran) |
//! | `correctness_count` | int64 | the number of `true` in `correctness_math_verify` |
//! | `generation_accepted` | list<bool> | whether each generation passed every check and the keep policy |
//! | `reject_reasons` | list<string> | each generation's first failing reason code (null when accepted) |

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanArray, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use sha2::{Digest, Sha256};

use distillery_store::Result;
use distillery_store::record::{ChatMessage, Generation};

/// The samples of one problem, in sample order; never empty.
pub type Problem<'a> = [&'a Generation];

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, true),
        Field::new("content", DataType::Utf8, true),
    ])
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let list = |name: &str, item: DataType| Field::new(name, list_of(item), false);
    Arc::new(Schema::new(vec![
        s("problem", false),
        s("solution", true),
        s("answer", true),
        s("problem_type", true),
        s("level", true),
        s("source", false),
        s("uuid", false),
        s("id", false),
        list("messages", DataType::Struct(message_fields())),
        list("generations", DataType::Utf8),
        list("finish_reasons", DataType::Utf8),
        list("correctness_math_verify", DataType::Boolean),
        Field::new("correctness_count", DataType::Int64, false),
        list("generation_accepted", DataType::Boolean),
        list("reject_reasons", DataType::Utf8),
    ]))
});

/// The schema of an open-r1 layout row.
pub fn problem_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The problem text of a row: the source's, else (rows written before the source's own fields
/// were kept) the prompt as sent.
pub fn source_problem(g: &Generation) -> &str {
    g.source.problem.as_deref().unwrap_or(&g.problem)
}

/// The math check's verdict on a sample; `None` when it did not run.
fn math_verdict(g: &Generation) -> Option<bool> {
    g.checks
        .iter()
        .find(|c| c.check == "math")
        .map(|c| c.passed)
}

/// The conversation to train on: the first accepted sample's.
fn first_accepted<'a>(problem: &Problem<'a>) -> &'a [ChatMessage] {
    problem
        .iter()
        .find(|g| g.accepted)
        .map_or(&[], |g| g.messages.as_slice())
}

/// The assistant turn of a sample as its conversation holds it (so `generations` and
/// `messages` agree byte for byte), else rebuilt from its parts.
fn assistant_text(g: &Generation) -> String {
    match g.messages.last() {
        Some(m) if m.role == "assistant" => m.content.clone(),
        _ => distillery_store::record::assistant_turn(g.reasoning.as_deref(), &g.content),
    }
}

/// A UUID for a prompt id: the id when it is a UUID already (a source's `uuid` used as
/// `id_field`), else version 8 (RFC 9562, vendor-defined) over the id's SHA-256, so the same id
/// gives the same UUID on every machine.
pub fn uuid_for(id: &str) -> String {
    if is_uuid(id) {
        return id.to_ascii_lowercase();
    }
    let digest = Sha256::digest(format!("distillery-prompt:{id}").as_bytes());
    let mut b: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn list_array(item: DataType, lengths: Vec<usize>, values: ArrayRef) -> Result<ArrayRef> {
    let DataType::List(field) = list_of(item) else {
        unreachable!("list_of builds a list")
    };
    Ok(Arc::new(ListArray::try_new(
        field,
        OffsetBuffer::<i32>::from_lengths(lengths),
        values,
        None,
    )?))
}

/// One record batch of [`problem_schema`], a row per problem.
pub fn to_record_batch(problems: &[&Problem]) -> Result<RecordBatch> {
    let first = |f: fn(&Generation) -> Option<&str>| -> ArrayRef {
        Arc::new(problems.iter().map(|p| f(p[0])).collect::<StringArray>())
    };
    let texts = |f: &dyn Fn(&Problem) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(problems.iter().map(|p| f(p))))
    };
    let samples = || problems.iter().flat_map(|p| p.iter());
    let lengths = || problems.iter().map(|p| p.len()).collect::<Vec<_>>();

    let conversations: Vec<&[ChatMessage]> = problems.iter().map(|p| first_accepted(p)).collect();
    let roles: ArrayRef = Arc::new(StringArray::from_iter_values(
        conversations
            .iter()
            .flat_map(|c| c.iter().map(|m| m.role.as_str())),
    ));
    let contents: ArrayRef = Arc::new(StringArray::from_iter_values(
        conversations
            .iter()
            .flat_map(|c| c.iter().map(|m| m.content.as_str())),
    ));
    let messages = list_array(
        DataType::Struct(message_fields()),
        conversations.iter().map(|c| c.len()).collect(),
        Arc::new(StructArray::try_new(
            message_fields(),
            vec![roles, contents],
            None,
        )?),
    )?;
    let generations = list_array(
        DataType::Utf8,
        lengths(),
        Arc::new(StringArray::from_iter_values(
            samples().map(|g| assistant_text(g)),
        )),
    )?;
    let finish_reasons = list_array(
        DataType::Utf8,
        lengths(),
        Arc::new(StringArray::from_iter_values(
            samples().map(|g| g.finish_reason.as_str()),
        )),
    )?;
    let correctness = list_array(
        DataType::Boolean,
        lengths(),
        Arc::new(samples().map(|g| math_verdict(g)).collect::<BooleanArray>()),
    )?;
    let correctness_count: ArrayRef =
        Arc::new(Int64Array::from_iter_values(problems.iter().map(|p| {
            p.iter().filter(|g| math_verdict(g) == Some(true)).count() as i64
        })));
    let accepted = list_array(
        DataType::Boolean,
        lengths(),
        Arc::new(
            samples()
                .map(|g| Some(g.accepted))
                .collect::<BooleanArray>(),
        ),
    )?;
    let reject_reasons = list_array(
        DataType::Utf8,
        lengths(),
        Arc::new(
            samples()
                .map(|g| g.reject_reason.as_deref())
                .collect::<StringArray>(),
        ),
    )?;
    let columns: Vec<ArrayRef> = vec![
        texts(&|p| source_problem(p[0]).to_owned()),
        first(|g| g.source.solution.as_deref()),
        first(|g| g.reference_answer.as_deref()),
        first(|g| g.source.problem_type.as_deref()),
        first(|g| g.source.level.as_deref()),
        texts(&|p| {
            p[0].source
                .origin
                .clone()
                .unwrap_or_else(|| p[0].provenance.pipeline.clone())
        }),
        texts(&|p| uuid_for(&p[0].id)),
        texts(&|p| p[0].id.clone()),
        messages,
        generations,
        finish_reasons,
        correctness,
        correctness_count,
        accepted,
        reject_reasons,
    ];
    Ok(RecordBatch::try_new(problem_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillery_store::schema::row_to_json;
    use distillery_store::testing::sample;

    #[test]
    fn one_row_per_problem_with_every_sample_in_order() {
        let a = [
            sample("a", 0, false),
            sample("a", 1, true),
            sample("a", 2, true),
        ];
        let mut b = [sample("b", 0, false)];
        b[0].checks.retain(|c| c.check != "math");
        b[0].source.origin = Some("olympiads".into());
        let a_refs: Vec<&Generation> = a.iter().collect();
        let b_refs: Vec<&Generation> = b.iter().collect();
        let batch = to_record_batch(&[&a_refs, &b_refs]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let row = row_to_json(&batch, 0).unwrap();
        assert_eq!(row["problem"], "What is a?");
        assert_eq!(row["solution"], "Six times seven.");
        assert_eq!(row["answer"], "42");
        assert_eq!(row["level"], "Level 2");
        assert_eq!(row["source"], "test");
        assert_eq!(row["generations"].as_array().unwrap().len(), 3);
        assert_eq!(row["generations"][1], a[1].messages[1].content.as_str());
        assert!(
            row["generations"][0]
                .as_str()
                .unwrap()
                .starts_with("<think>\n")
        );
        assert_eq!(
            row["finish_reasons"],
            serde_json::json!(["stop", "stop", "stop"])
        );
        assert_eq!(
            row["correctness_math_verify"],
            serde_json::json!([false, true, true])
        );
        assert_eq!(row["correctness_count"], 2);
        assert_eq!(
            row["generation_accepted"],
            serde_json::json!([false, true, true])
        );
        assert_eq!(
            row["reject_reasons"],
            serde_json::json!(["math.wrong_answer", null, null])
        );
        // The first accepted sample is the conversation to train on.
        assert_eq!(
            row["messages"][1]["content"],
            a[1].messages[1].content.as_str()
        );
        let row = row_to_json(&batch, 1).unwrap();
        assert_eq!(row["source"], "olympiads");
        assert_eq!(row["messages"], serde_json::json!([]));
        assert_eq!(row["correctness_math_verify"], serde_json::json!([null]));
        assert_eq!(row["correctness_count"], 0);
    }

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let u = uuid_for("gsm8k-17");
        assert_eq!(u, uuid_for("gsm8k-17"));
        assert_ne!(u, uuid_for("gsm8k-18"));
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "8", "version 8: {u}");
        assert!("89ab".contains(&u[19..20]), "variant: {u}");
        let given = "3F2504E0-4F89-41D3-9A0C-0305E82C3301";
        assert_eq!(uuid_for(given), given.to_ascii_lowercase());
    }
}

//! Turning a source row into the request the teacher gets.

use std::sync::Arc;

use distillery_source::{SourceRow, field_text};
use distillery_spec::{Pipeline, Source};
use distillery_store::record::{QuarantineEntry, SourceFields};
use distillery_teacher::{Message, Role};
use serde_json::Value;

/// One prompt on its way through the pipeline.
#[derive(Debug, Clone)]
pub struct PromptJob {
    pub id: String,
    pub row_number: u64,
    /// The user turn, template applied.
    pub problem: String,
    pub system: Option<String>,
    pub reference_answer: Option<String>,
    /// The problem as the source gave it and its other described fields, for the rows.
    pub source_fields: SourceFields,
    /// The source row, for checks that read more fields (code tests).
    pub fields: Arc<serde_json::Map<String, Value>>,
}

impl PromptJob {
    /// Renders the prompt template with the row's fields. A row that lacks a field the template
    /// or the checks need becomes a quarantine entry.
    pub fn from_row(row: SourceRow, pipeline: &Pipeline) -> Result<Self, Box<QuarantineEntry>> {
        let problem = row.render(&pipeline.prompt.template).map_err(|missing| {
            quarantine(
                &row,
                &pipeline.source,
                "source.missing_field",
                format!(
                    "the prompt template uses {{{}}}, which this row lacks (or is not text)",
                    missing.field
                ),
            )
        })?;
        if pipeline.verify.math
            && pipeline.source.answer_field.is_some()
            && row.reference_answer.is_none()
        {
            return Err(quarantine(
                &row,
                &pipeline.source,
                "source.missing_answer",
                "math verification is on but the row has no reference answer to compare with"
                    .to_owned(),
            ));
        }
        if let Some(code) = &pipeline.verify.code {
            let needed = std::iter::once(&code.tests_field).chain(&code.entry_point_field);
            for field in needed {
                if row.field(field).is_none() {
                    return Err(quarantine(
                        &row,
                        &pipeline.source,
                        "source.missing_field",
                        format!("the code check needs the field `{field}`, which this row lacks"),
                    ));
                }
            }
        }
        Ok(Self {
            source_fields: row.source_fields(&pipeline.source),
            id: row.id,
            row_number: row.row_number,
            problem,
            system: pipeline.prompt.system.clone(),
            reference_answer: row.reference_answer,
            fields: Arc::new(row.fields),
        })
    }

    /// The conversation sent to the teacher.
    pub fn messages(&self) -> Vec<Message> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.system {
            messages.push(Message::new(Role::System, system.clone()));
        }
        messages.push(Message::new(Role::User, self.problem.clone()));
        messages
    }

    /// A text field of the source row (numbers are given as text, arrays of strings joined by
    /// new lines as MBPP's test lists are).
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields.get(name).and_then(field_text)
    }
}

fn quarantine(
    row: &SourceRow,
    source: &Source,
    reason: &str,
    detail: String,
) -> Box<QuarantineEntry> {
    let raw = serde_json::to_string(&row.fields).ok().map(|mut raw| {
        if raw.len() > distillery_source::MAX_RAW_BYTES {
            let cut = (0..=distillery_source::MAX_RAW_BYTES)
                .rev()
                .find(|&i| raw.is_char_boundary(i))
                .unwrap_or(0);
            raw.truncate(cut);
        }
        raw
    });
    Box::new(QuarantineEntry {
        id: Some(row.id.clone()),
        source_path: source.path.display().to_string(),
        source_row: row.row_number,
        reason: reason.to_owned(),
        detail,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pipeline(extra: &str) -> Pipeline {
        let text = format!(
            "name = \"t\"\n[source]\npath = \"x.jsonl\"\nprompt_field = \"question\"\nanswer_field = \"answer\"\n[teacher]\nkind = \"mock\"\n{extra}"
        );
        Pipeline::parse(&text, Path::new("t.toml"), Path::new("/d")).unwrap()
    }

    fn row(fields: Value) -> SourceRow {
        SourceRow {
            row_number: 3,
            id: "abc".into(),
            fields: fields.as_object().unwrap().clone(),
            reference_answer: Some("4".into()),
        }
    }

    #[test]
    fn renders_the_r1_instruction_after_the_question() {
        let job = PromptJob::from_row(row(serde_json::json!({"question": "2+2?"})), &pipeline(""))
            .unwrap();
        assert_eq!(
            job.problem,
            "2+2?\nPlease reason step by step, and put your final answer within \\boxed{}."
        );
        let messages = job.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].role, Role::User);
    }

    #[test]
    fn a_row_without_the_prompt_field_is_quarantined() {
        let entry =
            PromptJob::from_row(row(serde_json::json!({"q": "2+2?"})), &pipeline("")).unwrap_err();
        assert_eq!(entry.reason, "source.missing_field");
        assert_eq!(entry.source_row, 3);
        assert!(entry.detail.contains("{question}"), "{}", entry.detail);
        assert_eq!(entry.raw.as_deref(), Some(r#"{"q":"2+2?"}"#));
    }

    #[test]
    fn a_row_without_a_reference_is_quarantined_when_math_is_checked() {
        let mut r = row(serde_json::json!({"question": "2+2?"}));
        r.reference_answer = None;
        let entry = PromptJob::from_row(r, &pipeline("")).unwrap_err();
        assert_eq!(entry.reason, "source.missing_answer");
    }
}

//! Fixtures for tests, here and in the crates that read runs (`features = ["testing"]`).

use crate::record::{ChatMessage, CheckResult, Generation, Provenance, SourceFields};

/// A generation with every optional field set, for tests here and in the crates that read runs.
pub fn sample(id: &str, sample_index: u32, accepted: bool) -> Generation {
    let reasoning = format!("Let me think about {id}.");
    let content = format!("The answer is \\boxed{{{sample_index}}}.");
    Generation {
        id: id.to_owned(),
        sample_index,
        problem: format!("What is {id}?"),
        system_prompt: None,
        reference_answer: Some("42".into()),
        source: SourceFields {
            problem: Some(format!("What is {id}?")),
            solution: Some("Six times seven.".into()),
            problem_type: None,
            level: Some("Level 2".into()),
            origin: None,
        },
        reasoning: Some(reasoning.clone()),
        content: content.clone(),
        extracted_answer: Some(sample_index.to_string()),
        messages: vec![
            ChatMessage::new("user", format!("What is {id}?")),
            ChatMessage::new(
                "assistant",
                crate::record::assistant_turn(Some(&reasoning), &content),
            ),
        ],
        checks: vec![
            CheckResult {
                check: "format".into(),
                passed: true,
                reason: None,
                detail: None,
            },
            CheckResult {
                check: "math".into(),
                passed: accepted,
                reason: (!accepted).then(|| "math.wrong_answer".into()),
                detail: (!accepted).then(|| format!("{sample_index} != 42")),
            },
        ],
        accepted,
        reject_reason: (!accepted).then(|| "math.wrong_answer".into()),
        teacher_model: "deepseek-reasoner".into(),
        endpoint: "http://127.0.0.1:1/v1".into(),
        finish_reason: "stop".into(),
        reasoning_source: "field".into(),
        prompt_tokens: 31,
        completion_tokens: 120 + u64::from(sample_index),
        reasoning_tokens: 100 + u64::from(sample_index),
        tokens_estimated: sample_index == 1,
        latency_ms: 850,
        attempts: 1,
        provenance: Provenance {
            run_id: "run-1".into(),
            pipeline: "test".into(),
            config_hash: "abc".into(),
            source_path: "data.jsonl".into(),
            source_row: 7,
            created_at_ms: 1_700_000_000_000,
        },
        length: Default::default(),
        teacher_logprobs: None,
    }
}

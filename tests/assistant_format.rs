//! `[prompt] assistant_format = "tagged"` end to end: the default prompt asks for `<answer>`
//! tags, the mock teacher writes them, the format check requires exactly one non-empty block
//! (its own reason codes otherwise), and the training conversation is in the tagged layout.

mod common;

fn run(dir: &std::path::Path, name: &str, mock: &str) -> Vec<distillery_store::Generation> {
    let definition = common::mock_definition(dir, name, 8, "", mock);
    let text = std::fs::read_to_string(&definition).unwrap();
    std::fs::write(
        &definition,
        format!("{text}\n[prompt]\nassistant_format = \"tagged\"\n\n[verify]\nmath = true\nformat = true\nkeep = \"all\"\n"),
    )
    .unwrap();
    let out = dir.join(name);
    common::run_definition(&definition, &out);
    common::rows(&out)
}

#[test]
fn tagged_answers_are_asked_for_checked_and_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run(dir.path(), "tagged", "accuracy = 1.0\nseed = 1");
    assert_eq!(rows.len(), 16);
    for row in &rows {
        assert!(
            row.problem.contains("<answer> </answer>"),
            "the default prompt asks for the tags: {}",
            row.problem
        );
        assert!(row.accepted, "{:?} {:?}", row.reject_reason, row.content);
        let assistant = &row.messages.last().unwrap().content;
        assert!(
            assistant.starts_with("<think>\n")
                && assistant.contains("\n</think>\n<answer>\n")
                && assistant.ends_with("\n</answer>"),
            "{assistant}"
        );
        // The math check reads the answer inside the tags.
        assert!(row.extracted_answer.is_some());
    }

    // A teacher that ignores the request: every sample is rejected by its own reason.
    let rows = run(
        dir.path(),
        "untagged",
        "accuracy = 1.0\nseed = 1\nassistant_format = \"r1\"",
    );
    assert_eq!(rows.len(), 16);
    for row in &rows {
        assert_eq!(
            row.reject_reason.as_deref(),
            Some("format.answer_tag_missing"),
            "{}",
            row.content
        );
    }
}

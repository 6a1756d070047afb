//! Code problems end to end, through the binary: `pipelines/humaneval-mock.toml` (the mock
//! teacher writing code with bugs, the sandbox rejecting them with a reason), the MBPP layout
//! of the shipped pycode set, and `distillery eval --benchmark humaneval` against the mock at
//! accuracy 1 and 0.

use std::collections::BTreeMap;
use std::path::Path;

use distillery_spec::{Backend, Pipeline};
use distillery_store::RunStatus;
use serde_json::Value;

mod common;
use common::{MockProcess, manifest, repo_root, rows, run_ok};

/// The reasons a code sample may be rejected for.
const CODE_REASONS: [&str; 5] = [
    "code.failed",
    "code.timeout",
    "code.memory",
    "code.syntax",
    "code.no_code",
];

/// Runs `definition` (relative to the checkout) into `run`, then checks the manifest, the rows
/// and `status` agree; the rejected rows by reason.
fn run_code_pipeline(definition: &str, run: &Path) -> (u64, u64, BTreeMap<String, u64>) {
    run_ok(&[
        "run",
        definition,
        "--run-dir",
        run.to_str().unwrap(),
        "--plain",
    ]);
    let manifest = manifest(run);
    assert_eq!(manifest.status, RunStatus::Completed);
    let counts = &manifest.counts;
    assert_eq!(Some(counts.prompts_done), counts.prompts_total);
    let rows = rows(run);
    assert_eq!(rows.len() as u64, counts.generations);
    let mut by_reason = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.accepted) {
        let reason = row.reject_reason.clone().unwrap();
        assert!(
            CODE_REASONS.contains(&reason.as_str()),
            "{} sample {} rejected for {reason}, not a code reason",
            row.id,
            row.sample_index
        );
        let code = row.checks.iter().find(|c| c.check == "code").unwrap();
        assert_eq!(code.reason.as_deref(), Some(reason.as_str()));
        *by_reason.entry(reason).or_insert(0u64) += 1;
    }
    for row in rows.iter().filter(|r| r.accepted) {
        let content = &row.messages.last().unwrap().content;
        assert!(content.starts_with("<think>\n"), "{content}");
        assert!(content.contains("```python\n"), "{content}");
    }
    // Each row keeps the code that was run.
    for row in &rows {
        let code = row.extracted_answer.as_deref().unwrap_or_default();
        assert!(code.contains("def "), "{}: {code:?}", row.id);
    }
    // The code block ends some answers; others go on with a sentence after it.
    let prose_after = rows
        .iter()
        .filter(|r| !r.content.trim_end().ends_with("```"))
        .count();
    assert!(
        prose_after > 0 && prose_after < rows.len(),
        "{prose_after} of {} answers go on after their code",
        rows.len()
    );
    assert_eq!(by_reason, counts.rejected_by_reason);
    let status = run_ok(&["status", run.to_str().unwrap()]);
    let status = String::from_utf8_lossy(&status.stdout);
    for reason in by_reason.keys() {
        assert!(status.contains(reason.as_str()), "{reason}:\n{status}");
    }
    (counts.accepted, counts.rejected, by_reason)
}

/// `accepted` of `samples` is within four standard deviations of `accuracy`.
fn assert_share(accepted: u64, samples: u64, accuracy: f64) {
    let share = accepted as f64 / samples as f64;
    let sd = (accuracy * (1.0 - accuracy) / samples as f64).sqrt();
    assert!(
        (share - accuracy).abs() <= 4.0 * sd,
        "{accepted} of {samples} accepted ({share:.3}); the mock's accuracy is {accuracy} (sd {sd:.3})"
    );
}

/// The mock's accuracy as `definition` sets it.
fn accuracy_of(definition: &str) -> f64 {
    let pipeline = Pipeline::from_file(&repo_root().join(definition)).unwrap();
    match pipeline.teacher.backend {
        Backend::Mock { settings, .. } => settings.accuracy,
        other => panic!("{definition} is not a mock teacher's: {other:?}"),
    }
}

#[test]
fn humaneval_mock_accepts_the_mocks_accuracy_and_rejects_with_code_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let definition = "pipelines/humaneval-mock.toml";
    let (accepted, rejected, by_reason) = run_code_pipeline(definition, &run);
    let samples = accepted + rejected;
    assert!(samples >= 164, "{samples} samples for 164 problems");
    assert_share(accepted, samples, accuracy_of(definition));
    // Bugs of every kind were injected: some do not parse, some never end, the rest fail.
    for reason in ["code.failed", "code.syntax", "code.timeout"] {
        assert!(by_reason.contains_key(reason), "no {reason}: {by_reason:?}");
    }
}

#[test]
fn the_mbpp_layout_runs_asserts_after_the_setup_code() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped pycode definition, cut to 40 problems.
    let text = std::fs::read_to_string(repo_root().join("pipelines/pycode-mock.toml")).unwrap();
    let text = text
        .replace(
            "path = \"../datasets/pycode/train.jsonl\"",
            &format!(
                "path = \"{}\"\nlimit = 40",
                repo_root().join("datasets/pycode/train.jsonl").display()
            ),
        )
        .replace("dir = \"../runs\"", "");
    assert!(
        text.contains("limit = 40"),
        "the source path moved:\n{text}"
    );
    let definition = dir.path().join("pycode.toml");
    std::fs::write(&definition, text).unwrap();
    let run = dir.path().join("run");
    let (accepted, rejected, by_reason) = run_code_pipeline(definition.to_str().unwrap(), &run);
    assert_eq!(accepted + rejected, 40);
    assert_share(accepted, 40, accuracy_of("pipelines/pycode-mock.toml"));
    assert!(rejected > 0, "{by_reason:?}");
}

fn eval_humaneval(mock: &MockProcess, out: &Path) -> String {
    let args = vec![
        "eval".to_owned(),
        "distillery-mock-r1".into(),
        "--base-url".into(),
        mock.base_url.clone(),
        "--benchmark".into(),
        "humaneval".into(),
        "--plain".into(),
        // Infinite loops are cut after two seconds; right answers take a fraction of it.
        "--code-timeout-secs".into(),
        "2".into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    String::from_utf8(run_ok(&args).stdout).unwrap()
}

fn humaneval_mock(accuracy: &str) -> MockProcess {
    MockProcess::replaying(
        &repo_root().join("datasets/humaneval/HumanEval.jsonl"),
        &[
            "--question-field",
            "prompt",
            "--answer-field",
            "canonical_solution",
            "--accuracy",
            accuracy,
        ],
    )
}

fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// At accuracy 0 every answer carries a bug, and each kind fails as it should: the reasons
/// eval counts are the kinds the mock says it injected.
fn assert_all_wrong(mock: &MockProcess, out: &Path, problems: u64) {
    let report = report(out);
    assert_eq!(report["pass_at_1"], 0.0);
    let failures = report["failures"].as_object().unwrap();
    let count = |reason: &str| failures.get(reason).and_then(Value::as_u64).unwrap_or(0);
    let bugs = &mock.stats()["code_bugs"];
    let bug = |kind: &str| bugs[kind].as_u64().unwrap();
    assert_eq!(
        count("code.syntax"),
        bug("syntax_error"),
        "{failures:?} {bugs}"
    );
    assert_eq!(
        count("code.timeout"),
        bug("infinite_loop"),
        "{failures:?} {bugs}"
    );
    assert_eq!(
        count("code.failed"),
        bug("off_by_one") + bug("wrong_operator") + bug("missing_edge_case"),
        "{failures:?} {bugs}"
    );
    assert_eq!(
        count("code.syntax") + count("code.timeout") + count("code.failed"),
        problems
    );
}

/// All 164 problems twice, each answer run in the sandbox: about 12 s on two cores.
#[test]
fn eval_humaneval_scores_164_of_164_and_0_of_164() {
    let dir = tempfile::tempdir().unwrap();
    let right = humaneval_mock("1.0");
    let stdout = eval_humaneval(&right, &dir.path().join("right"));
    assert!(
        stdout.starts_with("pass@1 1.0000 ± 0.0000 (164/164)\n"),
        "{stdout}"
    );
    drop(right);

    let wrong = humaneval_mock("0.0");
    let out = dir.path().join("wrong");
    let stdout = eval_humaneval(&wrong, &out);
    assert!(
        stdout.starts_with("pass@1 0.0000 ± 0.0000 (0/164)\n"),
        "{stdout}"
    );
    assert_all_wrong(&wrong, &out, 164);
}

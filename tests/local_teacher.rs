//! `distillery run`, `status` and `resume` with `teacher.kind = "local"`, driven the way a user
//! does: a tiny random model from `distillery init-model` is the teacher, run in-process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use distillery_store::{RunDir, RunStatus};

mod common;
use common::{distillery, gsm8k, manifest, meaning, repo_root, rows, run_ok};

/// `distillery init-model --tiny DIR`: a tiny random Qwen2 with its tokenizer and template.
fn init_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny-teacher");
    let output = run_ok(&[
        "init-model",
        "--arch",
        "qwen2",
        "--tiny",
        model.to_str().unwrap(),
        "--seed",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("wrote a tiny qwen2 model"));
    model
}

/// A definition over `source` with the local teacher at `checkpoint`.
fn local_definition(dir: &Path, source: &Path, checkpoint: &Path, teacher: &str) -> PathBuf {
    let file = dir.join("local.toml");
    let text = format!(
        "name = \"local-e2e\"\n\
         [source]\n\
         path = {source:?}\n\
         prompt_field = \"question\"\n\
         answer_field = \"answer\"\n\
         answer_extract = \"gsm8k\"\n\
         limit = 6\n\
         \n\
         [teacher]\n\
         kind = \"local\"\n\
         n = 2\n\
         {teacher}\n\
         \n\
         [teacher.local]\n\
         checkpoint = {checkpoint:?}\n\
         batch_size = 4\n\
         \n\
         [verify]\n\
         math = true\n\
         format = true\n\
         keep = \"all_correct\"\n",
        source = source.display().to_string(),
        checkpoint = checkpoint.display().to_string(),
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn run(definition: &Path, run: &Path) -> Output {
    run_ok(&[
        "run",
        definition.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--plain",
    ])
}

#[test]
fn a_local_teacher_run_completes_and_resumes_to_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path());
    let definition = local_definition(dir.path(), &gsm8k(), &model, "max_tokens = 16");
    let run_path = dir.path().join("run");
    let started = Instant::now();
    run(&definition, &run_path);
    eprintln!("6 prompts x 2 samples: {:?}", started.elapsed());

    let first = manifest(&run_path);
    assert_eq!(first.status, RunStatus::Completed);
    let counts = &first.counts;
    assert_eq!(counts.prompts_total, Some(6));
    assert_eq!(counts.prompts_done, 6);
    assert_eq!(counts.generations, 12);
    assert_eq!(counts.accepted + counts.rejected, 12);
    assert_eq!(counts.quarantined, 0);

    let written = rows(&run_path);
    assert_eq!(
        written.len(),
        12,
        "accepted and rejected samples are all recorded"
    );
    let prompts: BTreeSet<&str> = written.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(prompts.len(), 6);
    let mut by_reason = BTreeMap::new();
    for row in &written {
        assert_eq!(row.teacher_model, "tiny-teacher");
        assert!(row.endpoint.starts_with("local:"), "{}", row.endpoint);
        assert!(row.prompt_tokens > 10, "{}", row.prompt_tokens);
        assert!(
            ["stop", "length"].contains(&row.finish_reason.as_str()),
            "{}",
            row.finish_reason
        );
        assert!(!row.checks.is_empty());
        if !row.accepted {
            *by_reason
                .entry(row.reject_reason.clone().expect("a rejected row says why"))
                .or_insert(0u64) += 1;
        }
    }
    assert_eq!(by_reason, counts.rejected_by_reason);
    // The request's completion tokens (its samples' shares add up to them): 1 to 16 a sample.
    for id in &prompts {
        let tokens: u64 = written
            .iter()
            .filter(|r| r.id == *id)
            .map(|r| r.completion_tokens)
            .sum();
        assert!((2..=32).contains(&tokens), "{id}: {tokens}");
    }
    // A random model writes noise: some samples are rejected, each with its reason.
    assert!(counts.rejected > 0, "{counts:?}");
    assert_eq!(
        first.tokens.completion,
        written.iter().map(|r| r.completion_tokens).sum::<u64>()
    );

    let status = run_ok(&["status", run_path.to_str().unwrap()]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("6 of 6 done"), "{status}");
    assert!(status.to_lowercase().contains("completed"), "{status}");

    // Resuming a completed run asks the teacher for nothing and changes nothing.
    run_ok(&["resume", run_path.to_str().unwrap(), "--plain"]);
    let resumed = manifest(&run_path);
    assert_eq!(resumed.status, RunStatus::Completed);
    assert_eq!(resumed.counts, first.counts);
    assert_eq!(resumed.tokens, first.tokens);
    assert_eq!(meaning(&rows(&run_path)), meaning(&written));

    // Every sample is seeded from the definition: a second run writes the same rows.
    let again = dir.path().join("again");
    run(&definition, &again);
    assert_eq!(meaning(&rows(&again)), meaning(&written));
}

#[test]
fn a_prompt_longer_than_the_context_is_quarantined_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path());
    // Two ordinary problems and one far longer than the tiny model's 2048-token context
    // (every digit is a token).
    let source = dir.path().join("source.jsonl");
    let long = "1 + ".repeat(1200);
    let lines = [
        serde_json::json!({"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}),
        serde_json::json!({"question": format!("What is {long}1?"), "answer": "#### 1201"}),
        serde_json::json!({"question": "What is 4 + 4?", "answer": "4 + 4 = 8\n#### 8"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&source, text).unwrap();
    let definition = local_definition(dir.path(), &source, &model, "max_tokens = 8");
    let run_path = dir.path().join("run");
    run(&definition, &run_path);

    let manifest = manifest(&run_path);
    assert_eq!(manifest.status, RunStatus::Completed);
    assert_eq!(manifest.counts.prompts_done, 3, "{:?}", manifest.counts);
    assert_eq!(manifest.counts.generations, 4);
    assert_eq!(manifest.counts.quarantined, 1);
    assert_eq!(rows(&run_path).len(), 4);
    let quarantined = RunDir::open(&run_path).unwrap().quarantined().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].source_row, 2);
    assert_eq!(quarantined[0].reason, "teacher.rejected");
    assert!(
        quarantined[0].detail.contains("context is 2048"),
        "{}",
        quarantined[0].detail
    );

    // Done means done: a resume does not ask for it again.
    run_ok(&["resume", run_path.to_str().unwrap(), "--plain"]);
    let resumed = RunDir::open(&run_path).unwrap();
    assert_eq!(resumed.quarantined().unwrap().len(), 1);
    assert_eq!(resumed.manifest().unwrap().counts, manifest.counts);
}

#[test]
fn a_missing_checkpoint_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("models/no-such-model.gguf");
    let definition = local_definition(dir.path(), &gsm8k(), &missing, "max_tokens = 16");
    let run_path = dir.path().join("run");
    let output = distillery()
        .args([
            "run",
            definition.to_str().unwrap(),
            "--run-dir",
            run_path.to_str().unwrap(),
            "--plain",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("teacher.local.checkpoint"), "{stderr}");
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(!run_path.exists(), "no run is started");
}

#[test]
fn a_checkpoint_gone_by_resume_time_stops_with_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path());
    let definition = local_definition(dir.path(), &gsm8k(), &model, "max_tokens = 4");
    let run_path = dir.path().join("run");
    run(&definition, &run_path);
    std::fs::remove_dir_all(&model).unwrap();
    let output = distillery()
        .args(["resume", run_path.to_str().unwrap(), "--plain"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot load the local teacher from")
            && stderr.contains(&model.display().to_string()),
        "{stderr}"
    );
}

/// The shipped gsm8k-local definition with the real SmolLM2 checkpoint from `make model`, cut to
/// 2 prompts and 64 tokens. Not in CI (it needs the download and takes seconds of CPU):
/// `cargo test -p distillery --test local_teacher -- --ignored --nocapture`.
#[test]
#[ignore = "needs models/ from `make model`"]
fn smollm2_from_make_model_runs_the_shipped_local_pipeline() {
    let checkpoint = repo_root().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !checkpoint.exists() {
        eprintln!(
            "skipping: {} is missing; run `make model`",
            checkpoint.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("pipelines/gsm8k-local.toml")).unwrap();
    let absolute = |path: PathBuf| format!("{:?}", path.display().to_string());
    let text = text
        .replace("\"../datasets/gsm8k/test.jsonl\"", &absolute(gsm8k()))
        .replace(
            "\"../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\"",
            &absolute(checkpoint),
        )
        .replace("limit = 50", "limit = 2")
        .replace("max_tokens = 512", "max_tokens = 64");
    assert!(text.contains("limit = 2") && text.contains("max_tokens = 64"));
    let definition = dir.path().join("gsm8k-local.toml");
    std::fs::write(&definition, text).unwrap();
    let run_path = dir.path().join("run");
    let started = Instant::now();
    run(&definition, &run_path);
    let elapsed = started.elapsed();

    let manifest = manifest(&run_path);
    assert_eq!(manifest.status, RunStatus::Completed);
    assert_eq!(manifest.counts.prompts_done, 2);
    let written = rows(&run_path);
    assert_eq!(written.len(), 4, "2 prompts x n = 2");
    for row in &written {
        assert_eq!(row.teacher_model, "SmolLM2-135M-Instruct.Q4_1");
        assert!(!row.content.trim().is_empty(), "SmolLM2 writes something");
    }
    eprintln!(
        "SmolLM2-135M (Q4_1 GGUF): 2 prompts x 2 samples x <= 64 tokens in {elapsed:?} \
         ({} completion tokens, {} accepted)",
        manifest.tokens.completion, manifest.counts.accepted
    );
    eprintln!("first sample: {:?}", written[0].content);
}

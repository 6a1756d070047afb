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
    common::run_definition(definition, run)
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

/// `top_logprobs = 4` with the local teacher: every accepted row stores its tokens'
/// log-probabilities from the model's own logits, spelling the sample's text, each position's
/// alternatives most likely first and none above 0. (Checked against a direct forward pass in
/// crates/teacher/src/local.rs's unit tests.)
#[test]
fn a_local_teacher_captures_top_logprobs_for_every_accepted_sample() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path());
    // A random model rarely picks its one EOS, and a truncated sample is rejected: a quarter
    // of the vocabulary ends a sample here, so samples stop after a few tokens.
    let config_path = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["eos_token_id"] = (0..768u32).step_by(4).collect::<Vec<_>>().into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    // Only the checks noise passes: a random model's samples are accepted (math and format off,
    // generous mixing and repetition limits).
    let definition = dir.path().join("local-logprobs.toml");
    std::fs::write(
        &definition,
        format!(
            "name = \"local-logprobs\"\n\
             [source]\npath = {source:?}\nprompt_field = \"question\"\nanswer_field = \"answer\"\n\
             answer_extract = \"gsm8k\"\nlimit = 4\n\
             [teacher]\nkind = \"local\"\nn = 2\nmax_tokens = 24\ntemperature = 1.0\ntop_logprobs = 4\n\
             [teacher.local]\ncheckpoint = {checkpoint:?}\nbatch_size = 4\n\
             [verify]\nmath = false\nformat = false\nmax_mixed_script_ratio = 1.0\n\
             max_repetition_ratio = 1.0\nkeep = \"all\"\n",
            source = gsm8k().display().to_string(),
            checkpoint = model.display().to_string(),
        ),
    )
    .unwrap();
    let run_path = dir.path().join("run");
    run(&definition, &run_path);
    let written = rows(&run_path);
    assert_eq!(written.len(), 8);
    let accepted: Vec<_> = written.iter().filter(|r| r.accepted).collect();
    assert!(
        accepted.len() >= 4,
        "{} of 8 accepted: {:?}",
        accepted.len(),
        written.iter().map(|r| &r.reject_reason).collect::<Vec<_>>()
    );
    for row in &accepted {
        let logprobs = row.teacher_logprobs.as_ref().unwrap_or_else(|| {
            panic!(
                "row {} {} has no log-probabilities",
                row.id, row.sample_index
            )
        });
        assert_eq!(logprobs.k, 4);
        // The tokens spell the text (the reasoning split out of `<think>` tags, if any; the
        // decoder replaces stray bytes as lossy UTF-8 does).
        let spelled = String::from_utf8_lossy(&logprobs.text_bytes()).into_owned();
        let trimmed = spelled.trim();
        match &row.reasoning {
            None => assert_eq!(trimmed, row.content),
            Some(reasoning) => assert!(
                trimmed.contains(reasoning.as_str()) && trimmed.ends_with(row.content.as_str()),
                "{trimmed:?}"
            ),
        }
        for i in 0..logprobs.len() {
            let position = logprobs.position(i);
            assert!(position.logprob <= 0.0, "{}", position.logprob);
            assert_eq!(position.top.len(), 4);
            assert!(position.top.iter().all(|(_, lp)| *lp <= 0.0));
            assert!(
                position.top.windows(2).all(|w| w[0].1 >= w[1].1),
                "{:?}",
                position.top
            );
            // The sampled token is no likelier than the most likely one (up to quantisation).
            assert!(position.logprob <= position.top[0].1 + 0.05);
        }
    }
    let positions: usize = accepted
        .iter()
        .map(|r| r.teacher_logprobs.as_ref().unwrap().len())
        .sum();
    assert!(positions >= accepted.len(), "{positions} positions");
    assert!(
        written
            .iter()
            .filter(|r| !r.accepted)
            .all(|r| r.teacher_logprobs.is_none())
    );
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
    assert!(
        checkpoint.exists(),
        "{} is missing; run `make model`",
        checkpoint.display()
    );
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

//! `distillery run`, `resume` and `status` driven the way a user does, against the mock
//! teacher: faults, kill -9 at random moments, Ctrl-C, a full disk, changed definitions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use distillery_store::{RunDir, RunStatus};

mod common;
use common::*;

fn mock_definition(dir: &Path, limit: u32, extra_teacher: &str, mock: &str) -> PathBuf {
    common::mock_definition(
        dir,
        "e2e",
        limit,
        extra_teacher,
        &format!("seed = 11\n{mock}\n\n[output]\nshard_rows = 40"),
    )
}

#[test]
fn a_run_with_every_fault_completes_with_correct_counts() {
    let (_dir, definition, run) = scratch_run(|dir| {
        mock_definition(
            dir,
            60,
            "concurrency = 16\nretries = 10",
            "accuracy = 0.7\ntruncation_rate = 0.05\nlanguage_mix_rate = 0.05\nlatency_ms = 5\n\
         [teacher.mock.faults]\nrate_limit = 0.05\nretry_after_secs = 1\nserver_error = 0.05\n\
         reset = 0.05\nstall = 0.02\nstall_secs = 4\nmalformed = 0.05",
        )
    });
    run_definition(&definition, &run);

    let manifest = manifest(&run);
    assert_eq!(manifest.status, RunStatus::Completed);
    let counts = &manifest.counts;
    assert_eq!(counts.prompts_total, Some(60));
    assert_eq!(counts.prompts_done, 60);
    assert_eq!(counts.generations, 120);
    assert_eq!(counts.accepted + counts.rejected, 120);
    assert!(counts.accepted > 40 && counts.rejected > 0, "{counts:?}");

    let rows = rows(&run);
    assert_eq!(rows.len(), 120);
    let accepted = rows.iter().filter(|r| r.accepted).count() as u64;
    assert_eq!(accepted, counts.accepted);
    let mut by_reason = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.accepted) {
        *by_reason
            .entry(row.reject_reason.clone().unwrap())
            .or_insert(0u64) += 1;
    }
    assert_eq!(by_reason, counts.rejected_by_reason);
    assert!(by_reason.contains_key("math.wrong_answer"), "{by_reason:?}");
    assert!(rows.iter().any(|r| r.attempts > 1), "faults were retried");
    for row in rows.iter().filter(|r| r.accepted) {
        let assistant = &row.messages.last().unwrap();
        assert_eq!(assistant.role, "assistant");
        assert!(assistant.content.starts_with("<think>\n"));
    }

    let status = run_ok(&["status", run.to_str().unwrap()]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("60 of 60 done"), "{status}");
    assert!(status.contains("math.wrong_answer"), "{status}");
}

/// `dir/remote.toml`: the first `limit` GSM8K rows sent to the mock teacher at `base_url`, two
/// samples each, cut into shards of 30 rows.
fn remote_definition(dir: &Path, base_url: &str, limit: u32) -> PathBuf {
    let file = dir.join("remote.toml");
    common::served_definition(
        &file,
        "kill9",
        u64::from(limit),
        base_url,
        "kind = \"openai\"\nn = 2\nconcurrency = 4\n\n[output]\nshard_rows = 30",
    );
    file
}

const INSTRUCTION: &str =
    "\nPlease reason step by step, and put your final answer within \\boxed{}.";

#[test]
fn kill_9_at_random_moments_then_resume_gives_exactly_the_uninterrupted_rows() {
    const PROMPTS: u32 = 300;
    let dir = tempfile::tempdir().unwrap();

    let reference_mock = MockProcess::start(&["--latency-ms", "50"]);
    let reference_def = remote_definition(dir.path(), &reference_mock.base_url, PROMPTS);
    let reference = dir.path().join("reference");
    run_definition(&reference_def, &reference);
    let expected = meaning(&rows(&reference));
    assert_eq!(expected.len(), 2 * PROMPTS as usize);

    let mock = MockProcess::start(&["--latency-ms", "50"]);
    let definition = remote_definition(&dir.path().join(""), &mock.base_url, PROMPTS);
    let run = dir.path().join("killed");
    let run_arg = run.to_str().unwrap();
    // Durable prompts (by question) and the mock's request counts at each kill.
    let mut snapshots: Vec<(HashSet<String>, HashMap<String, u64>)> = Vec::new();
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    let mut kills = 0;
    let mut first = true;
    let started = Instant::now();
    loop {
        let mut command = if first {
            run_command(&definition, &run)
        } else {
            resume_command(&run)
        };
        first = false;
        let mut child = spawn_quiet(&mut command);
        random.pause(80, 220);
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let durable: HashSet<String> = RunDir::open(&run).unwrap().recover().unwrap().done_ids;
        let questions: HashSet<String> = if durable.is_empty() {
            HashSet::new()
        } else {
            rows(&run)
                .into_iter()
                .filter(|r| durable.contains(&r.id))
                .map(|r| r.problem.trim_end_matches(INSTRUCTION).to_owned())
                .collect()
        };
        snapshots.push((questions, mock.requests()));
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run makes no progress"
        );
        if kills >= 12 {
            break;
        }
    }
    assert!(
        kills >= 10,
        "only {kills} kills landed; the run was too short"
    );
    run_ok(&["resume", run_arg, "--plain"]);

    let manifest = manifest(&run);
    assert_eq!(manifest.status, RunStatus::Completed);
    assert_eq!(manifest.counts.prompts_done, u64::from(PROMPTS));
    assert_eq!(
        meaning(&rows(&run)),
        expected,
        "same rows as the uninterrupted run"
    );

    // A prompt durable at a kill was never asked again afterwards: only in-flight ones were.
    let last = mock.requests();
    for (durable, before) in &snapshots {
        for question in durable {
            assert_eq!(
                last.get(question),
                before.get(question),
                "durable prompt re-asked: {question}"
            );
        }
    }
    let total: u64 = last.values().sum();
    assert!(total >= u64::from(PROMPTS));
    println!(
        "{kills} kills; {} requests for {PROMPTS} prompts ({} re-sent in-flight prompts)",
        total,
        total - u64::from(PROMPTS)
    );
}

#[test]
fn ctrl_c_interrupts_within_the_grace_period_and_resume_finishes() {
    let (_dir, definition, run) =
        scratch_run(|dir| mock_definition(dir, 200, "concurrency = 4", "latency_ms = 50"));
    let child = spawn_with_grace(&definition, &run);
    std::thread::sleep(Duration::from_millis(700));
    send_signal(&child, "INT");
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let interrupted = manifest(&run);
    assert_eq!(interrupted.status, RunStatus::Interrupted);
    assert!(interrupted.counts.prompts_done < 200);
    let status = run_ok(&["status", run.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("interrupted"));

    resume_completes(&run, 200);
}

#[test]
fn a_full_disk_stops_the_run_clearly_and_it_resumes_without_loss() {
    let (_dir, definition, run) =
        scratch_run(|dir| mock_definition(dir, 80, "concurrency = 8", ""));
    let output = run_until_disk_full(&definition, &run, "30000");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains("wal/"),
        "the error names the file: {stderr}"
    );
    assert!(stderr.contains("resum"), "{stderr}");

    resume_completes(&run, 80);
}

#[test]
fn resume_refuses_an_unsafe_change_of_definition_unless_forced() {
    let (dir, definition, run) = scratch_run(|dir| mock_definition(dir, 30, "concurrency = 4", ""));
    let run_arg = run.to_str().unwrap();
    let output = run_output(&definition, &run, &["--stop-after", "10"]);
    assert_eq!(output.status.code(), Some(130));

    // More samples per prompt changes what the rows are: refused, with the field named.
    let text = std::fs::read_to_string(&definition).unwrap();
    let unsafe_def = dir.path().join("more-samples.toml");
    std::fs::write(&unsafe_def, text.replace("n = 2", "n = 3")).unwrap();
    let output = distillery()
        .args([
            "resume",
            run_arg,
            "--plain",
            "--pipeline",
            unsafe_def.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("teacher.samples_per_prompt: 2 → 3"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");

    // More concurrency only changes speed: accepted.
    let safe_def = dir.path().join("faster.toml");
    std::fs::write(
        &safe_def,
        text.replace("concurrency = 4", "concurrency = 12"),
    )
    .unwrap();
    run_ok(&[
        "resume",
        run_arg,
        "--plain",
        "--pipeline",
        safe_def.to_str().unwrap(),
    ]);
    assert_eq!(manifest(&run).counts.prompts_done, 30);
    assert_eq!(rows(&run).len(), 60);

    // Starting a run where one exists points at resume.
    let output = distillery()
        .args(["run", definition.to_str().unwrap(), "--run-dir", run_arg])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("distillery resume"));
}

#[test]
fn broken_source_rows_go_to_quarantine_once_and_the_rest_completes() {
    let dir = tempfile::tempdir().unwrap();
    let good = gsm8k_lines(5);
    let source = dir.path().join("source.jsonl");
    let lines = [
        good[0].as_str(),
        good[1].as_str(),
        r#"{"question": "cut off"#,
        "{\"answer\": \"#### 3\"}",
        good[2].as_str(),
        "[1, 2]",
        good[3].as_str(),
        good[1].as_str(),
        good[4].as_str(),
    ];
    std::fs::write(&source, lines.join("\n") + "\n").unwrap();
    let definition = dir.path().join("pipeline.toml");
    std::fs::write(
        &definition,
        r#"name = "quarantine"
[source]
path = "source.jsonl"
prompt_field = "question"
answer_field = "answer"
answer_extract = "gsm8k"
[teacher]
kind = "mock"
[teacher.mock]
accuracy = 1.0
"#,
    )
    .unwrap();
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    run_definition(&definition, &run);

    let quarantine = || -> Vec<(u64, String)> {
        RunDir::open(&run)
            .unwrap()
            .quarantined()
            .unwrap()
            .into_iter()
            .map(|entry| {
                assert!(entry.raw.is_some(), "the raw row is kept: {entry:?}");
                (entry.source_row, entry.reason)
            })
            .collect()
    };
    let expected = vec![
        (3, "source.invalid_json".to_string()),
        (4, "source.missing_field".to_string()),
        (6, "source.not_an_object".to_string()),
        (8, "source.duplicate_id".to_string()),
    ];
    assert_eq!(quarantine(), expected);
    let counts = manifest(&run).counts;
    assert_eq!(manifest(&run).status, RunStatus::Completed);
    assert_eq!((counts.prompts_done, counts.quarantined), (9, 4));
    assert_eq!(rows(&run).len(), 5, "every good row is asked once");

    // Resuming a finished run changes nothing: no second quarantine line, no new rows.
    run_ok(&["resume", run_arg, "--plain"]);
    assert_eq!(quarantine(), expected);
    assert_eq!(rows(&run).len(), 5);
    let status = run_ok(&["status", run_arg]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("9 of 9 done"), "{status}");
    assert!(status.contains("quarantine 4 rows"), "{status}");
}

#[test]
fn without_a_terminal_the_logs_and_summary_are_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let definition = mock_definition(dir.path(), 5, "", "");
    let output = distillery()
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .args(["run", definition.to_str().unwrap(), "--run-dir"])
        .arg(dir.path().join("run"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(" INFO run `e2e-"), "{stderr}");
    assert!(stderr.contains("prompts    5 of 5 done"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no escape codes for colours or bars: {stderr:?}"
    );
}

//! Logit distillation from a served teacher: `[teacher] top_logprobs = k` captures the
//! teacher's top-k log-probabilities while it writes the traces, the shards keep them for
//! every accepted row, and `train --kd-from-logprobs` distils on them without asking the
//! teacher again. A student whose tokenizer does not cover the teacher's tokens is refused
//! before training, naming the tokens and their share.

mod common;

use std::path::Path;

use common::{MockProcess, distillery, rows, run_ok, served_definition};

/// A tiny student (its tokenizer is the one the mock teacher tokenises with) in `dir/student`.
fn student(dir: &Path) -> std::path::PathBuf {
    let student = dir.join("student");
    run_ok(&[
        "init-model",
        "--arch",
        "qwen2",
        "--tiny",
        student.to_str().unwrap(),
    ]);
    student
}

/// `distillery train` of `student` on `data` into `out` for `steps` steps with
/// `--kd-from-logprobs` and `extra`, not yet run.
fn kd_train(
    student: &Path,
    data: &Path,
    out: &Path,
    steps: u32,
    extra: &[&str],
) -> std::process::Command {
    let mut command = distillery();
    command
        .args(["train", "--model"])
        .arg(student)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--steps", &steps.to_string(), "--kd-from-logprobs"])
        .args(extra);
    command
}

/// The tiny student, and a mock teacher that tokenizes its text with the student's tokenizer
/// (so the captured log-probabilities are over the student's vocabulary).
fn student_and_mock(dir: &Path) -> (std::path::PathBuf, MockProcess) {
    let student = student(dir);
    let tokenizer = student.join("tokenizer.json");
    let mock = MockProcess::start(&["--tokenizer", tokenizer.to_str().unwrap()]);
    (student, mock)
}

fn total_requests(mock: &MockProcess) -> u64 {
    mock.requests().values().sum()
}

#[test]
fn captured_top_logprobs_train_a_student_with_no_second_teacher_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (student, mock) = student_and_mock(dir.path());
    let definition = dir.path().join("pipeline.toml");
    served_definition(
        &definition,
        "kd",
        12,
        &mock.base_url,
        "n = 2\ntop_logprobs = 8\nstream = true\ntimeout_secs = 5",
    );
    let run = dir.path().join("run");
    common::run_definition(&definition, &run);
    let rows = rows(&run);
    let accepted: Vec<_> = rows.iter().filter(|r| r.accepted).collect();
    assert!(accepted.len() >= 8, "{} accepted", accepted.len());
    for row in &accepted {
        let logprobs = row.teacher_logprobs.as_ref().unwrap_or_else(|| {
            panic!(
                "row {} {} has no log-probabilities",
                row.id, row.sample_index
            )
        });
        assert_eq!(logprobs.k, 8);
        // The tokens spell what the teacher generated: its reasoning, then its answer.
        let spelled = String::from_utf8(logprobs.text_bytes()).unwrap();
        assert_eq!(
            spelled,
            format!("{}{}", row.reasoning.as_deref().unwrap(), row.content)
        );
    }
    // Rejected rows are not trained on, so they do not pay for the column.
    assert!(
        rows.iter()
            .filter(|r| !r.accepted)
            .all(|r| r.teacher_logprobs.is_none())
    );
    let inspect = run_ok(&["inspect", run.to_str().unwrap()]);
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.contains("bytes per generated token"), "{inspect}");

    let requests = total_requests(&mock);
    let out = dir.path().join("kd-student");
    common::succeeds(&mut kd_train(
        &student,
        &run,
        &out,
        3,
        &[
            "--lr",
            "1e-3",
            "--kd-alpha",
            "0.5",
            "--kd-temperature",
            "2:1",
        ],
    ));
    assert_eq!(
        total_requests(&mock),
        requests,
        "training asked the teacher again"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("loss").is_some())
        .collect();
    assert_eq!(steps.len(), 3);
    for step in &steps {
        let kl = step["kl"].as_f64().expect("the KD term is logged");
        assert!(kl.is_finite() && kl > 0.0, "{step}");
        assert!(step["temperature"].as_f64().is_some());
    }
    assert_eq!(steps[0]["temperature"].as_f64(), Some(2.0));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let stats = &summary["train"]["logprobs"];
    assert_eq!(stats["unmapped_positions"], 0, "{stats}");
    assert!(stats["aligned_positions"].as_u64().unwrap() > 0, "{stats}");
}

/// The mock splitting its text into words the tiny student's vocabulary mostly lacks: a
/// clear error before training, then `--kd-aligned-only` trains on what lines up.
#[test]
fn a_student_that_does_not_cover_the_teachers_tokens_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let student = student(dir.path());
    let mock = MockProcess::start(&[]);
    let definition = dir.path().join("pipeline.toml");
    served_definition(
        &definition,
        "kd-words",
        4,
        &mock.base_url,
        "n = 1\ntop_logprobs = 4\nstream = false\ntimeout_secs = 5",
    );
    let run = dir.path().join("run");
    common::run_definition(&definition, &run);
    let train = |extra: &[&str], out: &str| {
        kd_train(&student, &run, &dir.path().join(out), 1, extra)
            .output()
            .unwrap()
    };
    let refused = train(&[], "refused");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("does not cover the teacher's tokens")
            && stderr.contains("teacher positions (")
            && stderr.contains("%)")
            && stderr.contains("first \"")
            && stderr.contains("--kd-aligned-only"),
        "{stderr}"
    );
    assert!(!dir.path().join("refused/model.safetensors").exists());
    let aligned = train(&["--kd-aligned-only"], "aligned");
    assert!(
        aligned.status.success(),
        "{}",
        String::from_utf8_lossy(&aligned.stderr)
    );
}

/// `--kd-from-logprobs` on data captured without `top_logprobs` says how to capture them.
#[test]
fn distilling_from_data_without_logprobs_says_how_to_capture_them() {
    let dir = tempfile::tempdir().unwrap();
    let student = student(dir.path());
    let definition =
        common::mock_definition(dir.path(), "plain", 3, "", "accuracy = 1.0\nseed = 3");
    let run = dir.path().join("run");
    common::run_definition(&definition, &run);
    let output = kd_train(&student, &run, &dir.path().join("out"), 1, &[])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("top_logprobs = k"), "{stderr}");
}

/// kill -9 at random moments with `top_logprobs = 8`, then resume: every accepted sample has
/// its log-probabilities exactly once, equal to what an uninterrupted run stores.
#[test]
fn kill_9_then_resume_stores_each_samples_logprobs_once_as_an_uninterrupted_run_does() {
    use std::collections::BTreeMap;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    const PROMPTS: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let student = student(dir.path());
    let tokenizer = student.join("tokenizer.json");
    let settings = [
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--latency-ms",
        "40",
    ];
    let teacher = "n = 2\ntop_logprobs = 8\nconcurrency = 4\n[output]\nshard_rows = 30";

    let by_sample = |run: &Path| {
        rows(run)
            .into_iter()
            .map(|r| {
                (
                    (r.id.clone(), r.sample_index),
                    (r.accepted, r.teacher_logprobs),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let reference_mock = MockProcess::start(&settings);
    let reference_def = dir.path().join("reference.toml");
    served_definition(
        &reference_def,
        "kd-kill",
        PROMPTS,
        &reference_mock.base_url,
        teacher,
    );
    let reference = dir.path().join("reference");
    common::run_definition(&reference_def, &reference);
    let expected = by_sample(&reference);
    assert_eq!(expected.len() as u64, 2 * PROMPTS);
    let accepted = expected.values().filter(|(accepted, _)| *accepted).count();
    assert!(accepted as u64 > PROMPTS, "{accepted} accepted");
    assert!(
        expected
            .values()
            .all(|(accepted, lp)| *accepted == lp.as_ref().is_some_and(|lp| !lp.is_empty())),
        "the reference stores log-probabilities for exactly its accepted samples"
    );

    let mock = MockProcess::start(&settings);
    let definition = dir.path().join("killed.toml");
    served_definition(&definition, "kd-kill", PROMPTS, &mock.base_url, teacher);
    let run = dir.path().join("killed");
    let mut random = 0x9e37_79b9_7f4a_7c15_u64;
    let mut kills = 0;
    let started = Instant::now();
    for attempt in 0..8 {
        let mut command = distillery();
        if attempt == 0 {
            command
                .args(["run", definition.to_str().unwrap(), "--run-dir"])
                .arg(&run);
        } else {
            command.arg("resume").arg(&run);
        }
        let mut child = command
            .arg("--plain")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        std::thread::sleep(Duration::from_millis(150 + random % 250));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
    }
    assert!(
        kills >= 4,
        "only {kills} kills landed; the run was too short"
    );
    run_ok(&["resume", run.to_str().unwrap(), "--plain"]);
    // `rows` fails on a sample written twice.
    let resumed = by_sample(&run);
    assert_eq!(resumed.len(), expected.len());
    for (key, want) in &expected {
        assert_eq!(resumed.get(key), Some(want), "sample {key:?}");
    }
    assert!(
        mock.requests().values().sum::<u64>() > 0,
        "the killed run asked the teacher"
    );
    println!("{kills} kills; {accepted} accepted samples, each with its log-probabilities once");
}

/// `export --format jsonl` writes the log-probabilities in their documented JSON form (per
/// generated token its text, log-probability and `top_logprobs`, as OpenAI's `logprobs.content`),
/// rows without them hold null, and `train --kd-from-logprobs` reads them back from the JSONL.
#[test]
fn a_jsonl_export_carries_the_logprobs_and_trains_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let (student, mock) = student_and_mock(dir.path());
    let definition = dir.path().join("pipeline.toml");
    served_definition(
        &definition,
        "kd-jsonl",
        8,
        &mock.base_url,
        "n = 2\ntop_logprobs = 4\nstream = false\ntimeout_secs = 5",
    );
    let run = dir.path().join("run");
    common::run_definition(&definition, &run);
    let stored = rows(&run);
    let ds = dir.path().join("ds");
    common::export_ok(&run, &ds, &["--format", "jsonl", "--all"]);
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(ds.join("data")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(path.extension().unwrap(), "jsonl", "{}", path.display());
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            lines.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
        }
    }
    assert_eq!(lines.len(), stored.len());
    let mut with = 0;
    for line in &lines {
        let row = stored
            .iter()
            .find(|r| {
                r.id == line["id"].as_str().unwrap()
                    && u64::from(r.sample_index) == line["sample_index"].as_u64().unwrap()
            })
            .unwrap();
        let json = &line["teacher_logprobs"];
        let Some(logprobs) = &row.teacher_logprobs else {
            assert!(json.is_null(), "{json}");
            continue;
        };
        with += 1;
        assert_eq!(json["k"], 4);
        let content = json["content"].as_array().unwrap();
        assert_eq!(content.len(), logprobs.len());
        let spelled: String = content
            .iter()
            .map(|t| t["token"].as_str().unwrap())
            .collect();
        assert_eq!(
            spelled,
            format!("{}{}", row.reasoning.as_deref().unwrap(), row.content)
        );
        for (i, token) in content.iter().enumerate() {
            let position = logprobs.position(i);
            assert_eq!(token["logprob"].as_f64().unwrap() as f32, position.logprob);
            let top = token["top_logprobs"].as_array().unwrap();
            assert_eq!(top.len(), position.top.len());
            assert!(!top.is_empty() && top.len() <= 4);
            let values: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
            assert!(values.iter().all(|&v| v <= 0.0));
            assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
        }
    }
    assert!(with >= 8, "{with} rows with log-probabilities");
    assert!(
        with < lines.len(),
        "the rejected rows are exported too, with null"
    );

    let out = dir.path().join("from-jsonl");
    common::succeeds(&mut kd_train(&student, &ds, &out, 2, &[]));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let stats = &summary["train"]["logprobs"];
    assert!(stats["aligned_positions"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["unmapped_positions"], 0, "{stats}");

    // A broken entry is an error naming the file, the line and the field.
    let broken = dir.path().join("broken.jsonl");
    let mut first = lines
        .iter()
        .find(|l| !l["teacher_logprobs"].is_null())
        .unwrap()
        .clone();
    first["teacher_logprobs"]["content"][0]["logprob"] = "high".into();
    std::fs::write(&broken, format!("{first}\n")).unwrap();
    let output = kd_train(&student, &broken, &dir.path().join("no"), 1, &[])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.jsonl")
            && stderr.contains("line 1")
            && stderr.contains("teacher_logprobs.content[0]`.logprob"),
        "{stderr}"
    );
}

//! `distillery eval`, driven the way a user drives it: against the built-in mock teacher over
//! HTTP (whose accuracy we set, so the score is known in advance), against a tiny local
//! checkpoint from `distillery init-model`, and with the inputs users get wrong.

use std::path::Path;

use serde_json::Value;

mod common;
use common::{MockProcess, distillery, repo_root, run_ok};

/// The error `distillery eval …` exits with.
fn eval_fails(args: &[&str]) -> String {
    let output = distillery().arg("eval").args(args).output().unwrap();
    assert!(
        !output.status.success(),
        "distillery eval {args:?} succeeded:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn report(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn pass_at_1(out: &Path) -> f64 {
    report(out)["pass_at_1"]
        .as_f64()
        .expect("a numeric pass_at_1")
}

/// Rows of problems.parquet, read back with the Arrow schema it was written with.
fn problems_have_first_tokens(out: &Path) -> bool {
    distillery_eval::read_problems(&out.join("problems.parquet"))
        .unwrap()
        .iter()
        .all(|p| p.error.is_some() || p.first_token_ms.is_some())
}

fn parquet_rows(out: &Path) -> u64 {
    let path = out.join("problems.parquet");
    let (schema, rows) = distillery_store::shard::file_schema(&path).unwrap();
    for column in ["id", "prompt", "reference", "n", "correct", "samples"] {
        assert!(schema.field_with_name(column).is_ok(), "no column {column}");
    }
    rows
}

/// `distillery eval distillery-mock-r1 --base-url … --benchmark gsm8k --limit N` + `extra`.
fn eval_mock(mock: &MockProcess, out: &Path, limit: u32, extra: &[&str]) -> String {
    let mut args = vec![
        "eval",
        "distillery-mock-r1",
        "--base-url",
        &mock.base_url,
        "--benchmark",
        "gsm8k",
        "--plain",
        "--out",
        out.to_str().unwrap(),
    ];
    let limit = limit.to_string();
    args.extend(["--limit", &limit]);
    args.extend(extra);
    String::from_utf8(run_ok(&args).stdout).unwrap()
}

#[test]
fn a_teacher_that_is_always_right_scores_one() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::start(&["--accuracy", "1.0"]);
    let out = dir.path().join("perfect");
    let stdout = eval_mock(&mock, &out, 20, &[]);
    assert!(
        stdout.starts_with("pass@1 1.0000 ± 0.0000 (20/20)\n"),
        "summary:\n{stdout}"
    );
    assert!(stdout.contains("failures  none"), "{stdout}");
    assert!(stdout.contains("tokens/s"), "{stdout}");
    assert!(stdout.contains(&format!("{}", out.join("report.json").display())));
    assert!(stdout.contains(&format!("{}", out.join("problems.parquet").display())));

    let json = report(&out);
    assert_eq!(json["pass_at_1"], 1.0);
    assert_eq!(json["problems"], 20);
    assert_eq!(json["benchmark"], "gsm8k");
    assert_eq!(json["model"], "distillery-mock-r1");
    assert_eq!(json["backend"], "openai");
    assert_eq!(json["samples"], 1);
    assert_eq!(json["temperature"], 0.0, "one sample is greedy");
    assert!(json["tokens"]["completion"].as_u64().unwrap() > 0);
    assert_eq!(parquet_rows(&out), 20);
    // Streamed, so the serving figures are all known, and they are consistent.
    let serving = &json["deployment"];
    let ms = |figure: &str, q: &str| serving[figure][q].as_f64().unwrap();
    assert!(
        ms("first_token_ms", "p50") <= ms("latency_ms", "p50"),
        "{serving}"
    );
    assert!(
        ms("latency_ms", "p50") <= ms("latency_ms", "p95"),
        "{serving}"
    );
    // The simulator may send a whole answer within the millisecond of its first token, which
    // leaves no decode time to divide by: then the figure is absent, never zero or infinite.
    let decode = &serving["decode_tokens_per_s"];
    assert!(
        decode.is_null() || decode["p50"].as_f64().unwrap() > 0.0,
        "{serving}"
    );
    assert!(stdout.contains("serving   latency p50"), "{stdout}");

    // Each problem was asked exactly as the pipeline asks it, and graded against `#### N`.
    let problems = distillery_eval::read_problems(&out.join("problems.parquet")).unwrap();
    assert!(
        problems[0]
            .prompt
            .ends_with("\nPlease reason step by step, and put your final answer within \\boxed{}."),
        "{}",
        problems[0].prompt
    );
    assert_eq!(problems[0].reference.as_deref(), Some("18"));
    assert_eq!(problems[0].samples[0].extracted.as_deref(), Some("18"));
}

#[test]
fn a_teacher_that_is_always_wrong_scores_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::start(&["--accuracy", "0.0"]);
    let out = dir.path().join("wrong");
    let stdout = eval_mock(&mock, &out, 10, &[]);
    assert!(
        stdout.starts_with("pass@1 0.0000 ± 0.0000 (0/10)\n"),
        "{stdout}"
    );
    assert_eq!(pass_at_1(&out), 0.0);
    assert_eq!(report(&out)["failures"]["math.wrong_answer"], 10);
    assert!(stdout.contains("math.wrong_answer 10"), "{stdout}");
}

#[test]
fn more_samples_give_pass_at_k_at_least_pass_at_1() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::start(&["--accuracy", "0.5"]);
    let out = dir.path().join("half");
    let stdout = eval_mock(&mock, &out, 20, &["--samples", "4"]);
    let json = report(&out);
    let p1 = json["pass_at_1"].as_f64().unwrap();
    let p4 = json["pass_at_k"]["4"].as_f64().unwrap();
    assert!(p1 > 0.0 && p1 < 1.0, "pass@1 {p1}");
    assert!(p4 >= p1, "pass@4 {p4} < pass@1 {p1}");
    assert_eq!(json["total_samples"], 80);
    assert_eq!(
        json["temperature"], 0.6,
        "several samples follow the R1 recipe"
    );
    assert_eq!(json["top_p"], 0.95);
    let first = stdout.lines().next().unwrap();
    assert!(first.starts_with(&format!("pass@1 {p1:.4} ± ")), "{stdout}");
    assert!(stdout.contains(&format!("pass@4    {p4:.4}")), "{stdout}");
    let problems = distillery_eval::read_problems(&out.join("problems.parquet")).unwrap();
    assert_eq!(problems.len(), 20);
    assert!(problems.iter().all(|p| p.samples.len() == 4));
}

#[test]
fn a_tiny_local_checkpoint_is_evaluated_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    run_ok(&[
        "init-model",
        "--arch",
        "qwen2",
        "--tiny",
        model.to_str().unwrap(),
    ]);
    let out = dir.path().join("local");
    let output = run_ok(&[
        "eval",
        model.to_str().unwrap(),
        "--benchmark",
        "datasets/arith/test.jsonl",
        "--limit",
        "4",
        "--max-tokens",
        "8",
        "--plain",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("pass@1 "), "{stdout}");
    let p1 = pass_at_1(&out);
    let json = report(&out);
    // One greedy sample per problem: pass@1 is the share of correct samples.
    let (correct, total) = (
        json["correct_samples"].as_f64().unwrap(),
        json["total_samples"].as_f64().unwrap(),
    );
    assert_eq!(total, 4.0);
    assert_eq!(p1, correct / total);
    assert_eq!(json["backend"], "local");
    // In-process generation knows when each request's first token was sampled.
    let serving = &json["deployment"];
    assert!(
        serving["first_token_ms"]["p50"].as_f64().unwrap()
            <= serving["latency_ms"]["p50"].as_f64().unwrap(),
        "{serving}"
    );
    assert!(serving["peak_rss_mib"].as_f64().unwrap() > 0.0, "{serving}");
    assert!(
        problems_have_first_tokens(&out),
        "every answered problem has a first token"
    );
    assert_eq!(json["model"], "tiny");
    assert_eq!(json["benchmark"], "arith-test");
    assert_eq!(json["max_tokens"], 8);
    assert_eq!(json["problems"], 4);
    assert_eq!(parquet_rows(&out), 4);
    let problems = distillery_eval::read_problems(&out.join("problems.parquet")).unwrap();
    // The arith hold-out is GSM8K-style: the reference is what follows `####`.
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(repo_root().join("datasets/arith/test.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let expected = first["answer"]
        .as_str()
        .unwrap()
        .rsplit("####")
        .next()
        .unwrap()
        .trim();
    assert_eq!(problems[0].reference.as_deref(), Some(expected));
    assert!(
        problems
            .iter()
            .all(|p| p.samples[0].finish_reason == "length" || p.samples[0].finish_reason == "stop")
    );
}

#[test]
fn bad_inputs_are_refused_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model");
    let error = eval_fails(&[missing.to_str().unwrap(), "--benchmark", "gsm8k"]);
    assert!(error.contains(missing.to_str().unwrap()), "{error}");
    assert!(error.contains("does not exist"), "{error}");

    // A model that exists, so that the benchmark is what fails.
    let model = dir.path().join("model.gguf");
    std::fs::write(&model, b"").unwrap();
    let error = eval_fails(&[model.to_str().unwrap(), "--benchmark", "gsm9k"]);
    assert!(error.contains("gsm9k"), "{error}");
    assert!(error.contains("gsm8k, math500, humaneval"), "{error}");

    let broken = dir.path().join("broken.jsonl");
    std::fs::write(
        &broken,
        "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n{\"question\": \"2+2?\"}\n",
    )
    .unwrap();
    let error = eval_fails(&[
        model.to_str().unwrap(),
        "--benchmark",
        broken.to_str().unwrap(),
    ]);
    assert!(
        error.contains(&format!("{}:2:", broken.display())),
        "{error}"
    );
    assert!(error.contains("`answer`"), "{error}");

    let error = eval_fails(&[
        model.to_str().unwrap(),
        "--benchmark",
        "math500",
        "--datasets-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(error.contains("not shipped"), "{error}");

    let error = eval_fails(&[
        "m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--benchmark",
        "gsm8k",
        "--temperature=-1",
    ]);
    assert!(error.contains("--temperature"), "{error}");
}

/// The R1 report's figures offline: MATH-500 and AIME 2024 are shipped, and pass@1 over k
/// samples comes with its standard error.
#[test]
fn math500_and_aime24_run_offline_with_a_standard_error() {
    let math500 = repo_root().join("datasets/math500/test.jsonl");
    let mock = MockProcess::replaying(
        &math500,
        &[
            "--question-field",
            "problem",
            "--answer-field",
            "answer",
            "--accuracy",
            "0.5",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("math500");
    let stdout = String::from_utf8(
        run_ok(&[
            "eval",
            "distillery-mock-r1",
            "--base-url",
            &mock.base_url,
            "--benchmark",
            "math500",
            "--samples",
            "4",
            "--limit",
            "40",
            "--plain",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout,
    )
    .unwrap();
    let report = report(&out);
    let (p1, se) = (
        report["pass_at_1"].as_f64().unwrap(),
        report["pass_at_1_stderr"].as_f64().unwrap(),
    );
    assert_eq!(report["total_samples"], 160);
    // Accuracy 0.5 on 160 samples: pass@1 near 0.5, and a standard error of a few hundredths.
    assert!((0.3..0.7).contains(&p1), "pass@1 {p1}");
    assert!(se > 0.01 && se < 0.15, "standard error {se}");
    let first = stdout.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "pass@1 {p1:.4} ± {se:.4} ({}/160)",
            report["correct_samples"]
        )
    );

    // AIME 2024 resolves offline too (the mock above replays MATH-500, so every answer is
    // wrong; what is checked is that all 30 problems are asked and graded).
    let aime = dir.path().join("aime24");
    run_ok(&[
        "eval",
        "distillery-mock-r1",
        "--base-url",
        &mock.base_url,
        "--benchmark",
        "aime24",
        "--plain",
        "--out",
        aime.to_str().unwrap(),
    ]);
    assert_eq!(self::report(&aime)["problems"], 30);
}

/// `--device` and `--dtype`, as train and eval take them: bf16 runs on the CPU too, and a GPU
/// asked of a build without CUDA support is refused with how to get one, never a silent CPU run.
#[test]
fn device_and_dtype_choose_where_and_how_a_model_runs() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    run_ok(&["init-model", "--tiny", &s(&model)]);
    let data = repo_root().join("datasets/arith/train.jsonl");
    let messages = dir.path().join("messages.jsonl");
    let rows: String = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .take(8)
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap();
            let messages = serde_json::json!({"messages": [
                {"role": "user", "content": row["question"]},
                {"role": "assistant", "content": row["answer"]},
            ]});
            format!("{messages}\n")
        })
        .collect();
    std::fs::write(&messages, rows).unwrap();
    let student = dir.path().join("student");
    let train = |device: &str, out: &Path| {
        distillery()
            .args([
                "train",
                "--model",
                &s(&model),
                "--data",
                &s(&messages),
                "--out",
            ])
            .arg(out)
            .args(["--steps", "2", "--eval-fraction", "0", "--max-len", "128"])
            .args(["--dtype", "bf16", "--device", device])
            .output()
            .unwrap()
    };
    let trained = train("cpu", &student);
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(student.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["torch_dtype"], "bfloat16");
    let out = dir.path().join("eval");
    run_ok(&[
        "eval",
        &s(&student),
        "--benchmark",
        "datasets/arith/test.jsonl",
        "--limit",
        "2",
        "--max-tokens",
        "4",
        "--dtype",
        "bf16",
        "--device",
        "auto",
        "--plain",
        "--out",
        &s(&out),
    ]);
    assert_eq!(report(&out)["total_samples"], 2);

    if !cfg!(feature = "cuda") {
        let refused = train("cuda", &dir.path().join("gpu"));
        assert!(!refused.status.success());
        let error = String::from_utf8_lossy(&refused.stderr);
        assert!(
            error.contains("cuda:0") && error.contains("scripts/build-cuda.sh"),
            "{error}"
        );
        let error = eval_fails(&[&s(&student), "--benchmark", "gsm8k", "--device", "cuda:1"]);
        assert!(
            error.contains("cuda:1") && error.contains("without CUDA support"),
            "{error}"
        );
    }
    let error = eval_fails(&[&s(&student), "--benchmark", "gsm8k", "--device", "tpu"]);
    assert!(
        error.contains("expected cpu, cuda, cuda:N or auto"),
        "{error}"
    );
    let error = eval_fails(&[&s(&student), "--benchmark", "gsm8k", "--dtype", "fp8"]);
    assert!(error.contains("expected f32 or bf16"), "{error}");
}

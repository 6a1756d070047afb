//! `distillery verify`, driven the way a user drives it: grading a file of answers (JSONL, and a
//! run's own Parquet shard with its field names), one pair from the command line, and
//! regrading a run and a dataset whose recorded verdicts are out of date.

use std::collections::BTreeSet;
use std::path::Path;

use distillery_store::{CheckResult, Generation};
use serde_json::Value;

mod common;
use common::{distillery, rows, run_ok};

fn json_lines(text: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn grades_a_jsonl_file_and_names_the_rows_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answers.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"id": "a", "gold": "72", "prediction": "Natalia sold 72 clips.\n#### 72"}"#,
            "\n",
            r#"{"id": "b", "gold": "1/3", "prediction": "So the answer is \\boxed{0.333}."}"#,
            "\n",
            r#"{"id": "c", "gold": "5"}"#,
            "\n",
            "not json\n",
            r#"{"id": "d", "gold": "2.74", "prediction": "Soucis : 2,74 $ a.."}"#,
            "\n",
        ),
    )
    .unwrap();
    let output = distillery()
        .args(["verify", file.to_str().unwrap()])
        .output()
        .unwrap();
    // Every readable row is graded, and the exit code says that two were not.
    assert_eq!(output.status.code(), Some(2));
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["correct"], true);
    assert_eq!(lines[0]["extracted"], "72");
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[1]["correct"], false);
    assert_eq!(lines[1]["reason"], "math.wrong_answer");
    assert_eq!(lines[2]["row"], 3);
    assert!(
        lines[2]["error"]
            .as_str()
            .unwrap()
            .contains("`prediction` is missing")
    );
    assert_eq!(lines[3]["row"], 4);
    assert!(lines[3]["error"].as_str().unwrap().contains("invalid_json"));
    assert_eq!(lines[4]["correct"], true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("answers.jsonl:3: field `prediction` is missing"),
        "{stderr}"
    );
}

#[test]
fn grades_one_pair_with_an_exit_code_per_verdict() {
    let pass = distillery()
        .args(["verify", "--gold", "1/3", "--prediction", "about $0.3333$"])
        .output()
        .unwrap();
    assert_eq!(pass.status.code(), Some(0));
    assert_eq!(json_lines(&pass.stdout)[0]["correct"], true);
    let fail = distillery()
        .args(["verify", "--gold", "1/3", "--prediction", "0.333"])
        .output()
        .unwrap();
    assert_eq!(fail.status.code(), Some(1));
    // Math-Verify's decimal-place rounding, when asked for.
    let rounded = distillery()
        .args(["verify", "--gold", "1/3", "--prediction", "0.333"])
        .args(["--float-rounding", "3"])
        .output()
        .unwrap();
    assert_eq!(rounded.status.code(), Some(0));
}

/// A mock run of `limit` GSM8K prompts, two samples each, most answers right.
fn mock_run(dir: &Path, limit: u32) -> std::path::PathBuf {
    let definition =
        common::mock_definition(dir, "verify-e2e", limit, "", "seed = 3\naccuracy = 0.6");
    let run = dir.join("run");
    common::run_definition(&definition, &run);
    run
}

#[test]
fn grades_a_runs_shard_by_its_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path(), 10);
    let recorded: Vec<Generation> = rows(&run);
    let shards: Vec<_> = std::fs::read_dir(run.join("shards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!shards.is_empty());
    let mut graded = 0;
    for shard in &shards {
        let output = run_ok(&[
            "verify",
            shard.to_str().unwrap(),
            "--gold-field",
            "reference_answer",
            "--prediction-field",
            "content",
        ]);
        for line in json_lines(&output.stdout) {
            let row = recorded
                .iter()
                .find(|r| {
                    Value::String(r.id.clone()) == line["id"] && {
                        // Two samples share an id; the extracted answer tells them apart.
                        r.extracted_answer.as_deref() == line["extracted"].as_str()
                    }
                })
                .unwrap_or_else(|| panic!("no recorded row for {line}"));
            let math_passed = row
                .checks
                .iter()
                .find(|c| c.check == "math")
                .unwrap()
                .passed;
            assert_eq!(line["correct"], math_passed, "{line}");
            graded += 1;
        }
    }
    assert_eq!(graded, recorded.len());
}

#[test]
fn regrade_rewrites_out_of_date_verdicts_and_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_run(dir.path(), 12);
    let original = rows(&run);

    // The same run graded by the current verifier: nothing changes.
    let same = dir.path().join("same");
    let output = run_ok(&[
        "verify",
        "--regrade",
        run.to_str().unwrap(),
        "--out",
        same.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("0 verdicts changed"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(same.join("changes.jsonl")).unwrap(),
        ""
    );

    // A dataset whose first three accepted rows were rejected by an older, wrong verifier.
    let mut stale = original.clone();
    let mut flipped = BTreeSet::new();
    for row in stale.iter_mut().filter(|r| r.accepted).take(3) {
        row.accepted = false;
        row.reject_reason = Some("math.wrong_answer".into());
        let math = row.checks.iter_mut().find(|c| c.check == "math").unwrap();
        *math = CheckResult {
            check: "math".into(),
            passed: false,
            reason: Some("math.wrong_answer".into()),
            detail: Some("an older verifier".into()),
        };
        flipped.insert((row.id.clone(), row.sample_index));
    }
    assert_eq!(flipped.len(), 3);
    let dataset = dir.path().join("dataset");
    std::fs::create_dir(&dataset).unwrap();
    distillery_store::shard::write_shard(&dataset.join("train.parquet"), &stale, &[]).unwrap();

    let out = dir.path().join("regraded");
    let output = run_ok(&[
        "verify",
        "--regrade",
        dataset.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("3 verdicts changed"), "{stdout}");
    assert!(stdout.contains("math.wrong_answer"), "{stdout}");

    let changes = json_lines(
        std::fs::read_to_string(out.join("changes.jsonl"))
            .unwrap()
            .as_bytes(),
    );
    let changed: BTreeSet<(String, u32)> = changes
        .iter()
        .map(|c| {
            assert_eq!(c["before"]["accepted"], false);
            assert_eq!(c["after"]["accepted"], true);
            (
                c["id"].as_str().unwrap().to_owned(),
                c["sample_index"].as_u64().unwrap() as u32,
            )
        })
        .collect();
    assert_eq!(changed, flipped);

    // The regraded rows are the original run's, verdicts included.
    let regraded = rows(&out.join("regraded.parquet"));
    let verdicts = |rows: &[Generation]| -> BTreeSet<(String, u32, bool)> {
        rows.iter()
            .map(|r| (r.id.clone(), r.sample_index, r.accepted))
            .collect()
    };
    assert_eq!(verdicts(&regraded), verdicts(&original));

    // An output directory that already holds something is refused.
    let again = distillery()
        .args(["verify", "--regrade", dataset.to_str().unwrap(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

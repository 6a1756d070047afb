//! `distillery decontaminate` on a training set with benchmark problems planted in it: exact
//! copies and a light paraphrase are removed and listed with the item they matched, the rest is
//! kept row for row, and an unreadable row is named and kept with the removed ones.

use serde_json::{Value, json};

mod common;
use common::{distillery, repo_root, run_ok};

fn jsonl(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn planted_benchmark_problems_are_removed_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let train = jsonl(&repo_root().join("datasets/gsm8k/train.jsonl"));
    let math500 = jsonl(&repo_root().join("datasets/math500/test.jsonl"));
    let aime = jsonl(&repo_root().join("datasets/aime24/test.jsonl"));
    let mut rows: Vec<Value> = train[..300]
        .iter()
        .map(|r| json!({ "problem": r["question"], "answer": r["answer"] }))
        .collect();
    rows.insert(10, json!({ "problem": math500[7]["problem"] }));
    rows.insert(50, json!({ "problem": aime[3]["problem"] }));
    // A paraphrase: other case and punctuation, a lead-in, and a few words dropped.
    let words: Vec<&str> = aime[5]["problem"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    let paraphrase: Vec<&str> = words
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 != 6)
        .map(|(_, w)| *w)
        .collect();
    rows.insert(
        100,
        json!({ "problem": format!("Please solve: {}", paraphrase.join(" ").to_uppercase()) }),
    );
    rows.insert(
        200,
        json!({ "question": "a row without the problem field" }),
    );
    let input = dir.path().join("train.jsonl");
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&input, text).unwrap();

    let out = dir.path().join("clean.jsonl");
    let output = distillery()
        .arg("decontaminate")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    // The unreadable row makes the exit code say that not every row was checked.
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("train.jsonl:201: no text field `problem`"),
        "{stderr}"
    );

    let removed = jsonl(&dir.path().join("clean.removed.jsonl"));
    let matched: Vec<(&str, &str)> = removed
        .iter()
        .filter_map(|r| {
            Some((
                r["matched"]["benchmark"].as_str()?,
                r["matched"]["item_id"].as_str()?,
            ))
        })
        .collect();
    let aime_id = |i: usize| aime[i]["id"].to_string();
    assert!(matched.contains(&("math500", math500[7]["unique_id"].as_str().unwrap())));
    assert!(matched.contains(&("aime24", aime_id(3).as_str())));
    assert!(
        matched.contains(&("aime24", aime_id(5).as_str())),
        "{matched:?}"
    );
    assert_eq!(
        removed.iter().filter(|r| r.get("error").is_some()).count(),
        1
    );
    // Every row is in exactly one of the two files.
    let clean = jsonl(&out);
    assert_eq!(clean.len() + removed.len(), rows.len());
    assert!(
        matched.len() <= 3 + 2,
        "too many GSM8K rows removed: {matched:?}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("aime24"), "{stdout}");
}

/// `export --decontaminate`: a run over GSM8K training questions with five test questions
/// planted among them exports without the planted ones, lists them in contamination.jsonl
/// and counts them in the card.
#[test]
fn export_drops_planted_benchmark_problems_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let train = jsonl(&repo_root().join("datasets/gsm8k/train.jsonl"));
    let test = jsonl(&repo_root().join("datasets/gsm8k/test.jsonl"));
    let mut rows: Vec<Value> = train[..30].to_vec();
    for (k, planted) in test[100..105].iter().enumerate() {
        rows.insert(3 + 6 * k, planted.clone());
    }
    let source = dir.path().join("source.jsonl");
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&source, text).unwrap();
    let definition = dir.path().join("pipeline.toml");
    std::fs::write(
        &definition,
        format!(
            r#"name = "planted"
[source]
path = "{}"
prompt_field = "question"
answer_field = "answer"
answer_extract = "gsm8k"

[teacher]
kind = "mock"
n = 2

[teacher.mock]
seed = 1
accuracy = 1.0
truncation_rate = 0.0
language_mix_rate = 0.0
"#,
            source.display()
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    common::run_definition(&definition, &run);

    let out = dir.path().join("dataset");
    let output = common::export_ok(&run, &out, &["--decontaminate", "gsm8k,math500"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("dropped as contaminated by gsm8k"),
        "{stdout}"
    );

    let planted: Vec<&str> = test[100..105]
        .iter()
        .map(|r| r["question"].as_str().unwrap())
        .collect();
    let listed = jsonl(&out.join("contamination.jsonl"));
    assert!(!listed.is_empty());
    assert!(
        listed.iter().all(|r| r["matched"]["benchmark"] == "gsm8k"),
        "{listed:?}"
    );
    // Every planted question that was accepted is gone from the data, and nothing else is.
    let exported = common::rows(&out);
    assert!(
        exported
            .iter()
            .all(|r| planted.iter().all(|q| !r.problem.contains(q))),
        "a planted question was exported"
    );
    assert_eq!(exported.len() + listed.len(), 2 * rows.len());
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("## Contamination"), "{card}");
    assert!(
        card.contains(&format!("| gsm8k | {} |", listed.len())),
        "{card}"
    );
    run_ok(&["inspect", out.to_str().unwrap()]);
}

//! Recall and false positives on real data: every item of the shipped benchmarks planted in a
//! training set, exactly and as a light paraphrase that breaks every 8-gram, and the clean GSM8K
//! training set, which must stay (almost) untouched.

use std::path::Path;

use distillery_decontam::{BUILTIN, BenchmarkItem, Index, Options, load_benchmark};

fn benchmarks() -> Vec<BenchmarkItem> {
    let datasets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
    let items: Vec<BenchmarkItem> = BUILTIN
        .iter()
        .flat_map(|(name, ..)| load_benchmark(&datasets, name).unwrap())
        .collect();
    assert!(items.len() > 2000, "only {} benchmark items", items.len());
    items
}

/// A light paraphrase: lower case, no punctuation, a few words swapped for synonyms, and every
/// sixth word that is not a number dropped, so that no run of 8 words survives.
fn paraphrase(text: &str) -> String {
    const SYNONYMS: &[(&str, &str)] = &[
        ("how", "what"),
        ("many", "number"),
        ("total", "sum"),
        ("buys", "purchases"),
        ("find", "determine"),
        ("compute", "calculate"),
    ];
    let mut out = vec!["please", "solve"];
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    for (i, word) in words.iter().enumerate() {
        let is_number = word.chars().all(|c| c.is_ascii_digit());
        if i % 6 == 5 && !is_number {
            continue;
        }
        let word = SYNONYMS
            .iter()
            .find(|(w, _)| w == word)
            .map_or(word.as_str(), |(_, s)| s);
        out.push(word);
    }
    out.join(" ")
}

fn share(found: usize, of: usize) -> f64 {
    found as f64 / of as f64
}

#[test]
fn planted_copies_and_paraphrases_are_found() {
    let items = benchmarks();
    let index = Index::new(items.clone(), Options::default());
    let exact = items
        .iter()
        .filter(|i| index.check(&i.text).is_some_and(|m| m.item_id == i.id))
        .count();
    let paraphrased = items
        .iter()
        .filter(|i| index.check(&paraphrase(&i.text)).is_some())
        .count();
    println!(
        "exact copies found: {exact}/{n} ({:.1}%), paraphrases found: {paraphrased}/{n} ({:.1}%)",
        100.0 * share(exact, items.len()),
        100.0 * share(paraphrased, items.len()),
        n = items.len()
    );
    assert!(share(exact, items.len()) >= 0.99);
    assert!(share(paraphrased, items.len()) >= 0.90);
}

#[test]
fn clean_gsm8k_train_is_left_alone() {
    let index = Index::new(benchmarks(), Options::default());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/gsm8k/train.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let questions: Vec<String> = text
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            row["question"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(questions.len(), 7473);
    let flagged: Vec<_> = questions
        .iter()
        .filter_map(|q| index.check(q).map(|m| (q, m)))
        .collect();
    for (q, m) in flagged.iter().take(10) {
        println!("flagged: {q:?} → {m:?}");
    }
    let rate = share(flagged.len(), questions.len());
    println!(
        "GSM8K train flagged: {}/{} ({:.2}%)",
        flagged.len(),
        questions.len(),
        100.0 * rate
    );
    assert!(rate <= 0.005, "false-positive rate {rate:.4}");
}

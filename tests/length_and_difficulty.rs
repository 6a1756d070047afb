//! What the length limit costs and how rejection sampling tilts a data set, end to end against
//! the mock teacher: `[verify] on_truncated = "continue"` and `"reask"` recover samples that
//! `"reject"` loses (and each row says how the limit treated it), `[teacher] until_correct`
//! samples a problem until enough of its samples are verified or `max_samples` are drawn (also
//! across an interrupted run and its resume), and `status` and the dataset card report
//! acceptance by problem difficulty.

mod common;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{distillery, run_ok};
use distillery_store::Generation;

/// `dir/NAME.toml` over the first `limit` GSM8K rows (two samples each), run into `dir/NAME`:
/// its rows and `distillery status`.
fn run(
    dir: &Path,
    name: &str,
    limit: u32,
    teacher: &str,
    mock: &str,
    verify: &str,
) -> (Vec<Generation>, String, PathBuf) {
    let definition = definition(dir, name, limit, teacher, mock, verify);
    let out = dir.join(name);
    common::run_definition(&definition, &out);
    let status = run_ok(&["status", out.to_str().unwrap()]);
    (
        common::rows(&out),
        String::from_utf8_lossy(&status.stdout).into_owned(),
        out,
    )
}

fn definition(
    dir: &Path,
    name: &str,
    limit: u32,
    teacher: &str,
    mock: &str,
    verify: &str,
) -> PathBuf {
    let file = common::mock_definition(dir, name, limit, teacher, mock);
    let text = std::fs::read_to_string(&file).unwrap();
    let own = dir.join(format!("{name}.toml"));
    std::fs::write(
        &own,
        format!("{text}\n[verify]\nmath = true\nformat = true\n{verify}\n"),
    )
    .unwrap();
    own
}

type Key = (String, u32);

fn key(row: &Generation) -> Key {
    (row.id.clone(), row.sample_index)
}

fn squeezed(text: &str) -> String {
    text.split_whitespace().collect()
}

const TRUNCATING: &str = "accuracy = 1.0\ntruncation_rate = 0.5\nseed = 7";

#[test]
fn continue_and_reask_recover_what_reject_loses() {
    let dir = tempfile::tempdir().unwrap();
    let (rejected, status, _) = run(dir.path(), "reject", 12, "", TRUNCATING, "");
    assert_eq!(rejected.len(), 24);
    let cut: BTreeMap<Key, &Generation> = rejected
        .iter()
        .filter(|r| r.reject_reason.as_deref() == Some("length.truncated"))
        .map(|r| (key(r), r))
        .collect();
    let lost = cut.len();
    assert!((3..=21).contains(&lost), "{lost} of 24 cut off");
    // Every right, whole answer is accepted: the length limit is all that was lost.
    assert_eq!(rejected.iter().filter(|r| r.accepted).count(), 24 - lost);
    for row in &rejected {
        let expected = u32::from(cut.contains_key(&key(row)));
        assert_eq!(row.length.truncations, expected, "{:?}", key(row));
        assert_eq!((row.length.continuations, row.length.reasks), (0, 0));
    }
    assert!(
        status.contains(&format!(
            "length     {lost} sample(s) cut off by the length limit: 0 recovered, {lost} rejected"
        )),
        "{status}"
    );

    // Continued: the same samples are cut, each is finished from where it stopped.
    let (continued, status, _) = run(
        dir.path(),
        "continue",
        12,
        "",
        TRUNCATING,
        "on_truncated = \"continue\"",
    );
    assert_eq!(continued.len(), 24);
    assert!(
        continued.iter().all(|r| r.accepted),
        "{:?}",
        continued
            .iter()
            .filter(|r| !r.accepted)
            .map(|r| (&r.reject_reason, &r.content))
            .collect::<Vec<_>>()
    );
    let continued_keys: BTreeSet<Key> = continued
        .iter()
        .filter(|r| r.length.continuations > 0)
        .map(key)
        .collect();
    assert_eq!(continued_keys, cut.keys().cloned().collect::<BTreeSet<_>>());
    for row in continued.iter().filter(|r| r.length.continuations > 0) {
        assert_eq!(row.length.truncations, 1);
        let before = squeezed(cut[&key(row)].reasoning.as_deref().unwrap());
        let after = squeezed(row.reasoning.as_deref().unwrap());
        assert!(
            after.starts_with(&before) && after.len() > before.len(),
            "the continuation goes on from the cut reasoning:\n{before}\n{after}"
        );
        assert_eq!(row.finish_reason, "stop");
    }
    assert!(
        status.contains(&format!(
            "length     {lost} sample(s) cut off by the length limit: {lost} recovered, 0 rejected"
        )),
        "{status}"
    );

    // Re-asked: each cut sample is asked once more (the default budget, four times max_tokens,
    // leaves room for one request of twice max_tokens); a fresh sample may be cut again.
    let (reasked, _, run_dir) = run(
        dir.path(),
        "reask",
        12,
        "",
        TRUNCATING,
        "on_truncated = \"reask\"",
    );
    assert_eq!(reasked.len(), 24);
    let reasked_keys: BTreeSet<Key> = reasked
        .iter()
        .filter(|r| r.length.reasks > 0)
        .map(key)
        .collect();
    assert_eq!(reasked_keys, cut.keys().cloned().collect::<BTreeSet<_>>());
    let still_lost = reasked
        .iter()
        .filter(|r| r.reject_reason.as_deref() == Some("length.truncated"))
        .count();
    assert!(still_lost < lost, "{still_lost} of {lost} lost again");
    for row in reasked.iter().filter(|r| r.length.reasks > 0) {
        assert_eq!(row.length.reasks, 1);
        assert_eq!(row.length.truncations, if row.accepted { 1 } else { 2 });
    }
    let manifest = common::manifest(&run_dir);
    let truncated: u64 = manifest
        .counts
        .by_difficulty
        .values()
        .map(|d| d.truncated)
        .sum();
    assert_eq!(truncated, lost as u64);
}

#[test]
fn a_continuation_of_raw_think_tags_without_streaming_is_split_right() {
    // The server sends `<think>` in the content and no reasoning field; a continuation's
    // reply has no opening tag, only the rest of the reasoning, `</think>` and the answer.
    let dir = tempfile::tempdir().unwrap();
    let mock = format!("{TRUNCATING}\nreasoning_style = \"think_tags\"");
    let (rejected, _, _) = run(dir.path(), "raw-reject", 8, "stream = false", &mock, "");
    let lost = rejected
        .iter()
        .filter(|r| r.reject_reason.as_deref() == Some("length.truncated"))
        .count();
    assert!(lost > 0);
    let (rows, _, _) = run(
        dir.path(),
        "raw-continue",
        8,
        "stream = false",
        &mock,
        "on_truncated = \"continue\"",
    );
    assert_eq!(
        rows.iter().filter(|r| r.length.continuations > 0).count(),
        lost
    );
    for row in &rows {
        assert!(row.accepted, "{:?}: {:?}", row.reject_reason, row.content);
        assert!(!row.content.contains("think>"), "{}", row.content);
        assert!(!row.reasoning.as_deref().unwrap().contains("think>"));
    }
}

#[test]
fn a_continuation_is_bounded_by_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mock = "accuracy = 1.0\nseed = 2";
    // Room for many continuations: every sample is finished, piece by piece.
    let (rows, _, _) = run(
        dir.path(),
        "roomy",
        6,
        "max_tokens = 40",
        mock,
        "on_truncated = \"continue\"\ntruncation_budget_tokens = 4000",
    );
    assert!(
        rows.iter().all(|r| r.accepted),
        "{:?}",
        rows.iter().map(|r| &r.reject_reason).collect::<Vec<_>>()
    );
    assert!(
        rows.iter().any(|r| r.length.continuations >= 2),
        "traces longer than 80 tokens"
    );
    for row in &rows {
        // The first request and every continuation but the last were cut off.
        assert_eq!(
            row.length.truncations,
            row.length.continuations,
            "{:?}",
            key(row)
        );
    }
    // Room for one continuation of 20 tokens: longer answers stay cut off and are rejected.
    let (rows, _, _) = run(
        dir.path(),
        "tight",
        6,
        "max_tokens = 40",
        mock,
        "on_truncated = \"continue\"\ntruncation_budget_tokens = 60",
    );
    let lost: Vec<&Generation> = rows
        .iter()
        .filter(|r| r.reject_reason.as_deref() == Some("length.truncated"))
        .collect();
    assert!(!lost.is_empty());
    for row in rows.iter().filter(|r| r.length.truncations > 0) {
        assert_eq!(row.length.continuations, 1, "{:?}", key(row));
    }
    for row in lost {
        assert_eq!(row.length.truncations, 2);
    }
}

/// Every problem was sampled until `k` of its samples were verified (and no further round) or
/// `max` samples were drawn, in rounds of two, numbered 0.. without a gap.
fn assert_until_correct(rows: &[Generation], k: usize, max: usize) -> (usize, usize) {
    let mut problems: BTreeMap<&str, Vec<&Generation>> = BTreeMap::new();
    for row in rows {
        problems.entry(&row.id).or_default().push(row);
    }
    let (mut reached, mut spent) = (0, 0);
    for (id, mut samples) in problems {
        samples.sort_by_key(|r| r.sample_index);
        let indices: Vec<u32> = samples.iter().map(|r| r.sample_index).collect();
        assert_eq!(
            indices,
            (0..samples.len() as u32).collect::<Vec<_>>(),
            "{id}"
        );
        assert!(
            samples.len() <= max && samples.len() % 2 == 0,
            "{id}: {indices:?}"
        );
        let accepted = samples.iter().filter(|r| r.accepted).count();
        let before_last_round = samples[..samples.len() - 2]
            .iter()
            .filter(|r| r.accepted)
            .count();
        assert!(before_last_round < k, "{id} was sampled after it had {k}");
        if accepted >= k {
            reached += 1;
        } else {
            assert_eq!(
                samples.len(),
                max,
                "{id} stopped before max_samples with {accepted}"
            );
            spent += 1;
        }
    }
    (reached, spent)
}

#[test]
fn until_correct_samples_until_k_verified_or_max_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, status, run_dir) = run(
        dir.path(),
        "until",
        10,
        "until_correct = 2\nmax_samples = 6",
        "accuracy = 0.4\nseed = 5",
        "",
    );
    let (reached, spent) = assert_until_correct(&rows, 2, 6);
    assert_eq!(reached + spent, 10);
    assert!(
        reached >= 1 && spent >= 1,
        "reached {reached}, spent {spent}"
    );
    assert!(
        rows.len() > 20,
        "later rounds were asked: {} rows",
        rows.len()
    );
    let manifest = common::manifest(&run_dir);
    assert_eq!(manifest.counts.prompts_done, 10);
    assert_eq!(manifest.counts.generations, rows.len() as u64);
    // Without a source level, problems are grouped by the teacher's pass rate on them.
    assert!(status.contains("difficulty (level/pass rate)"), "{status}");
    assert!(status.contains("\n  pass rate "), "{status}");

    // A teacher that is never right: every problem takes max_samples.
    let (rows, _, _) = run(
        dir.path(),
        "never",
        3,
        "until_correct = 1\nmax_samples = 4",
        "accuracy = 0.0\nseed = 5",
        "",
    );
    assert_eq!(rows.len(), 12);
    assert_until_correct(&rows, 1, 4);
}

#[test]
fn an_interrupted_until_correct_run_resumes_without_over_or_under_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let definition = definition(
        dir.path(),
        "resumed",
        12,
        "until_correct = 2\nmax_samples = 6\nconcurrency = 2",
        "accuracy = 0.4\nseed = 5\nlatency_ms = 20",
        "",
    );
    let out = dir.path().join("resumed");
    let interrupted = distillery()
        .args([
            "run",
            definition.to_str().unwrap(),
            "--run-dir",
            out.to_str().unwrap(),
            "--plain",
            "--stop-after",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(
        interrupted.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&interrupted.stderr)
    );
    let partial = common::manifest(&out).counts.prompts_done;
    assert!(partial < 12, "{partial}");
    run_ok(&["resume", out.to_str().unwrap(), "--plain"]);
    let rows = common::rows(&out);
    let (reached, spent) = assert_until_correct(&rows, 2, 6);
    assert_eq!(reached + spent, 12);
    let manifest = common::manifest(&out);
    assert_eq!(manifest.counts.prompts_done, 12);
    assert_eq!(manifest.counts.generations, rows.len() as u64);
    let counted: u64 = manifest
        .counts
        .by_difficulty
        .values()
        .map(|d| d.samples)
        .sum();
    assert_eq!(
        counted,
        rows.len() as u64,
        "recovery counts each sample once"
    );
}

#[test]
fn status_and_card_report_acceptance_by_source_level() {
    let dir = tempfile::tempdir().unwrap();
    let definition = dir.path().join("math.toml");
    std::fs::write(
        &definition,
        format!(
            r#"name = "math-levels"
[source]
path = "{}"
prompt_field = "problem"
answer_field = "answer"
id_field = "unique_id"
level_field = "level"
limit = 16

[prompt]
assistant_format = "tagged"

[teacher]
kind = "mock"
n = 2
timeout_secs = 5

[teacher.mock]
accuracy = 0.5
seed = 3
"#,
            common::repo_root()
                .join("datasets/math500/test.jsonl")
                .display()
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    common::run_definition(&definition, &run);
    let rows = common::rows(&run);
    // MATH-500's levels are bare numbers: shown as `level N`.
    let levels: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r.source.level.as_ref())
        .map(|level| format!("level {level}"))
        .collect();
    assert!(levels.len() >= 2, "{levels:?}");
    let status =
        String::from_utf8_lossy(&run_ok(&["status", run.to_str().unwrap()]).stdout).into_owned();
    let manifest = common::manifest(&run);
    for level in &levels {
        let counts = *manifest
            .counts
            .by_difficulty
            .get(level)
            .unwrap_or_else(|| panic!("{level} in {:?}", manifest.counts.by_difficulty.keys()));
        let accepted = rows
            .iter()
            .filter(|r| {
                r.source
                    .level
                    .as_ref()
                    .map(|l| format!("level {l}"))
                    .as_ref()
                    == Some(level)
                    && r.accepted
            })
            .count();
        assert_eq!(counts.accepted, accepted as u64, "{level}");
        assert!(
            status.contains(&format!("  {level:<26} {:>8}", counts.problems)),
            "{level}:\n{status}"
        );
    }
    assert!(
        !status.contains("\n  pass rate "),
        "every row has a level:\n{status}"
    );

    let out = dir.path().join("export");
    run_ok(&[
        "export",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--all",
    ]);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("## Acceptance by difficulty"), "{card}");
    for level in &levels {
        let counts = manifest.counts.by_difficulty[level];
        assert!(
            card.contains(&format!(
                "| {level} | {} | {} | {} | {} |",
                counts.problems, counts.problems_accepted, counts.samples, counts.accepted
            )),
            "{level}:\n{card}"
        );
    }
    // The run asked for the tagged layout, and the card says so.
    assert!(card.contains("</think>\\n<answer>"), "{card}");
}

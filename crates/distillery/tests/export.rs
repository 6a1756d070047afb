//! End-to-end tests of `distillery export` and `distillery inspect`, driving the binary on a
//! run built with the store API.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../../tests/common/mod.rs"]
mod common;

use distillery_dataset::inspect::type_name;
use distillery_store::shard::{file_schema, footer_metadata};
use distillery_store::{
    ChatMessage, CheckResult, Generation, Manifest, Provenance, RunDir, RunStatus, Which,
    WriterOptions, assistant_turn, read_generations,
};

const DEFINITION: &str =
    "name = \"gsm8k-test\"\n\n[source]\npath = \"test.jsonl\"\nprompt_field = \"question\"\n";

fn generation(run_id: &str, prompt: usize, sample: u32, accepted: bool) -> Generation {
    let id = format!("q{prompt:03}");
    // Every sample of a prompt answers the same problem.
    let problem = format!("What is {prompt} plus one?");
    let reasoning = format!(
        "We add {prompt} and {sample}. {}",
        "Check. ".repeat(prompt % 7)
    );
    let content = format!("The answer is \\boxed{{{}}}.", prompt + sample as usize);
    Generation {
        id: id.clone(),
        sample_index: sample,
        problem: problem.clone(),
        system_prompt: None,
        reference_answer: Some(prompt.to_string()),
        source: Default::default(),
        reasoning: Some(reasoning.clone()),
        content: content.clone(),
        extracted_answer: Some((prompt + sample as usize).to_string()),
        messages: vec![
            ChatMessage::new("user", problem),
            ChatMessage::new("assistant", assistant_turn(Some(&reasoning), &content)),
        ],
        checks: vec![CheckResult {
            check: "math".into(),
            passed: accepted,
            reason: (!accepted).then(|| "math.wrong_answer".into()),
            detail: None,
        }],
        accepted,
        reject_reason: (!accepted).then(|| "math.wrong_answer".into()),
        teacher_model: "deepseek-reasoner".into(),
        endpoint: "http://127.0.0.1:9/v1".into(),
        finish_reason: "stop".into(),
        reasoning_source: "field".into(),
        prompt_tokens: 40,
        completion_tokens: 200 + prompt as u64,
        reasoning_tokens: 150 + prompt as u64,
        tokens_estimated: false,
        latency_ms: 900,
        attempts: 1,
        provenance: Provenance {
            run_id: run_id.into(),
            pipeline: "gsm8k-test".into(),
            config_hash: distillery_store::config_hash(DEFINITION),
            source_path: "test.jsonl".into(),
            source_row: prompt as u64 + 1,
            created_at_ms: 1_700_000_000_000,
        },
        length: Default::default(),
        teacher_logprobs: None,
    }
}

/// A finished run of `prompts` prompts × 2 samples; sample 1 of every 4th prompt is rejected.
fn make_run(dir: &Path, name: &str, prompts: usize) -> PathBuf {
    let run_id = format!("{name}-id");
    let mut manifest = Manifest::new(&run_id, name, DEFINITION, "0.1.0");
    let run = RunDir::create(dir.join(name), DEFINITION, &manifest).unwrap();
    let mut writer = run
        .writer(WriterOptions {
            shard_rows: 16,
            ..WriterOptions::default()
        })
        .unwrap();
    for p in 0..prompts {
        writer
            .append(&[
                generation(&run_id, p, 0, true),
                generation(&run_id, p, 1, p % 4 != 0),
            ])
            .unwrap();
        writer.commit().unwrap();
        if let Some(info) = writer.cut_if_due().unwrap() {
            manifest.shards.push(info);
        }
    }
    manifest.shards.extend(writer.finish().unwrap());
    let recovered = run.recover().unwrap();
    manifest.counts = recovered.counts;
    manifest.tokens = recovered.tokens;
    manifest.status = RunStatus::Completed;
    run.write_manifest(&manifest).unwrap();
    run.path().to_owned()
}

fn distillery(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distillery"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let output = distillery(args);
    assert!(
        output.status.success(),
        "distillery {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn data_files(out: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(out.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn export_layout_card_and_arrow_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let run = make_run(dir.path(), "gsm", 50);
    let out = dir.path().join("dataset");
    let stdout = ok(&[
        "export",
        s(&run),
        "--out",
        s(&out),
        "--split",
        "train=0.8,test=0.2",
        "--seed",
        "3",
        "--shard-size",
        "30",
    ]);
    assert!(
        stdout.contains("train: ") && stdout.contains("test: "),
        "{stdout}"
    );

    // 50 prompts × 2 samples, 13 rejected: 87 accepted rows; 40 prompts train, 10 test.
    let files = data_files(&out);
    let train: Vec<_> = files.iter().filter(|f| f.starts_with("train-")).collect();
    let test: Vec<_> = files.iter().filter(|f| f.starts_with("test-")).collect();
    let n = train.len();
    assert!(n >= 2, "{files:?}");
    for (i, name) in train.iter().enumerate() {
        assert_eq!(**name, format!("train-{i:05}-of-{n:05}.parquet"));
    }
    assert_eq!(*test[0], format!("test-00000-of-{:05}.parquet", test.len()));

    // Read back with the arrow reader: schema, footer, rows, no prompt in two splits.
    let mut ids_by_split = Vec::new();
    let mut total = 0;
    for split in ["train", "test"] {
        let mut ids = HashSet::new();
        for name in files.iter().filter(|f| f.starts_with(&format!("{split}-"))) {
            let path = out.join("data").join(name);
            let (schema, rows) = file_schema(&path).unwrap();
            assert!(rows <= 30);
            let messages = schema.field_with_name("messages").unwrap();
            assert_eq!(
                type_name(messages.data_type()),
                "list<struct<role: string, content: string>>"
            );
            let footer = footer_metadata(&path).unwrap();
            assert!(
                footer
                    .iter()
                    .any(|(k, v)| k == "distillery.schema_version" && v == "3")
            );
            for g in read_generations(&path, Which::All).unwrap() {
                let g = g.unwrap();
                assert!(g.accepted);
                assert!(g.messages[1].content.starts_with("<think>\nWe add"));
                ids.insert(g.id);
                total += 1;
            }
        }
        ids_by_split.push(ids);
    }
    assert_eq!(total, 87);
    assert_eq!(ids_by_split[0].len(), 40);
    assert_eq!(ids_by_split[1].len(), 10);
    assert!(ids_by_split[0].is_disjoint(&ids_by_split[1]));

    // The card: YAML header as the Hub expects, then counts, reasons and tokens.
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    let (header, body) = card
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .expect("front matter");
    for needle in [
        "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: \"data/train-*\"\n  - split: test\n    path: \"data/test-*\"",
        "dataset_info:\n  features:\n",
        "  - name: messages\n    list:\n    - name: role\n      dtype: string\n    - name: content\n      dtype: string",
        "  - name: test\n    num_bytes: ",
        "    num_examples: ",
    ] {
        assert!(header.contains(needle), "missing {needle:?} in:\n{header}");
    }
    assert!(
        body.contains("| `math.wrong_answer` | 13 | 100.0% |"),
        "{body}"
    );
    assert!(body.contains("deepseek-reasoner"), "{body}");
    assert!(body.contains("| 100 | 87 | 13 | 87.0% |"), "{body}");
    assert!(body.contains("reasoning tokens, max | 199 |"), "{body}");
    assert!(body.contains("[source]\npath = \"test.jsonl\""), "{body}");

    // Deterministic: the same command again (with --force) writes the same bytes.
    let before = std::fs::read(out.join("data").join(test[0])).unwrap();
    ok(&[
        "export",
        s(&run),
        "--out",
        s(&out),
        "--split",
        "train=0.8,test=0.2",
        "--seed",
        "3",
        "--shard-size",
        "30",
        "--force",
    ]);
    assert_eq!(
        std::fs::read(out.join("data").join(test[0])).unwrap(),
        before
    );
}

#[test]
fn several_runs_all_rows_dedup_and_mix() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_run(dir.path(), "machine-a", 12);
    let b = make_run(dir.path(), "machine-b", 12);
    // Two machines that answered the same prompts: dedup by prompt keeps one row each.
    let out = dir.path().join("merged");
    let stdout = ok(&[
        "export",
        s(&a),
        s(&b),
        "--out",
        s(&out),
        "--all",
        "--dedup",
        "prompt",
    ]);
    assert!(
        stdout.contains("48 rows selected, 36 dropped by dedup"),
        "{stdout}"
    );
    let rows: Vec<_> = read_generations(&out.join("data"), Which::All)
        .unwrap()
        .map(|g| g.unwrap())
        .collect();
    assert_eq!(rows.len(), 12);

    // --all keeps rejected rows with their reason.
    let out = dir.path().join("all");
    ok(&[
        "export",
        s(&a),
        "--out",
        s(&out),
        "--all",
        "--format",
        "jsonl",
    ]);
    let text = std::fs::read_to_string(out.join("data/train-00000-of-00001.jsonl")).unwrap();
    let rejected = text
        .lines()
        .filter(|l| l.contains("\"reject_reason\":\"math.wrong_answer\""))
        .count();
    assert_eq!((text.lines().count(), rejected), (24, 3));

    // 80/20 mix with general data.
    let general = dir.path().join("general.jsonl");
    let lines: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "{{\"messages\": [{{\"role\": \"user\", \"content\": \"Say hi #{i}\"}}, {{\"role\": \"assistant\", \"content\": \"hi\"}}]}}"
            )
        })
        .collect();
    std::fs::write(&general, lines.join("\n")).unwrap();
    let out = dir.path().join("mixed");
    let mix = format!("{}:0.2", general.display());
    let stdout = ok(&["export", s(&a), "--out", s(&out), "--mix", &mix]);
    // 21 accepted reasoning rows: 21 × 0.2 / 0.8 = 5.25 → 5 general rows.
    assert!(stdout.contains("mixed 5 rows"), "{stdout}");
    let rows: Vec<_> = read_generations(&out.join("data"), Which::All)
        .unwrap()
        .map(|g| g.unwrap())
        .collect();
    assert_eq!(rows.len(), 26);
    assert_eq!(
        rows.iter()
            .filter(|g| g.provenance.pipeline == "mix")
            .count(),
        5
    );
}

#[test]
fn inspect_run_and_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let run = make_run(dir.path(), "gsm", 20);
    let text = ok(&["inspect", s(&run)]);
    for needle in [
        "pipeline gsm · run gsm-id · status Completed",
        "rows: 40 generations · 35 accepted · 5 rejected · acceptance 87.5%",
        "rejected math.wrong_answer: 5",
        "list<struct<role: string, content: string>>",
        "sample row 1:",
        "reasoning tokens of accepted rows:",
        "n=35 min=150",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let out = dir.path().join("ds");
    ok(&[
        "export",
        s(&run),
        "--out",
        s(&out),
        "--split",
        "train=0.5,test=0.5",
    ]);
    let text = ok(&["inspect", s(&out), "--samples", "2"]);
    for needle in [
        "rows: 35\n  test: ",
        "  train: ",
        "sample row 2:",
        "reasoning tokens:",
        "dataset card",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = make_run(dir.path(), "gsm", 4);
    let cases: [(&[&str], &str); 5] = [
        (
            &["export", "/nonexistent/run", "--out", "/tmp/x"],
            "/nonexistent/run",
        ),
        (
            &[
                "export",
                s(&run),
                "--out",
                "o",
                "--split",
                "train=0.9,test=0.2",
            ],
            "add up to 1",
        ),
        (
            &["export", s(&run), "--out", "o", "--columns", "id,bogus"],
            "unknown column `bogus`",
        ),
        (
            &["export", s(&run), "--out", "o", "--mix", "x.jsonl:2"],
            "between 0 and 1",
        ),
        (&["inspect", "/nonexistent/ds"], "/nonexistent/ds"),
    ];
    for (args, message) in cases {
        let output = distillery(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    // An existing dataset is not overwritten without --force.
    let out = dir.path().join("ds");
    ok(&["export", s(&run), "--out", s(&out)]);
    let output = distillery(&["export", s(&run), "--out", s(&out)]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
}

/// pyarrow (and DuckDB where installed) read the export unchanged; the card's YAML parses.
#[test]
fn pyarrow_reads_the_export_and_the_card_yaml_parses() {
    if !common::pyarrow_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = make_run(dir.path(), "gsm", 30);
    let out = dir.path().join("ds");
    ok(&[
        "export",
        s(&run),
        "--out",
        s(&out),
        "--split",
        "train=0.9,test=0.1",
        "--shard-size",
        "20",
    ]);
    let script = r#"
import glob, os, sys
import pyarrow as pa, pyarrow.parquet as pq, yaml
out = sys.argv[1]
files = sorted(glob.glob(os.path.join(out, "data", "*.parquet")))
assert files, "no files"
rows = 0
for f in files:
    t = pq.read_table(f)
    rows += t.num_rows
    m = t.schema.field("messages").type
    assert pa.types.is_list(m), m
    item = m.value_type
    assert pa.types.is_struct(item), item
    assert [item.field(i).name for i in range(item.num_fields)] == ["role", "content"], item
    assert all(pa.types.is_string(item.field(i).type) for i in range(2)), item
    first = t.slice(0, 1).to_pylist()[0]
    assert first["messages"][0]["role"] == "user", first["messages"]
    assert first["messages"][1]["content"].startswith("<think>\n"), first["messages"]
    meta = pq.read_metadata(f).metadata
    assert meta[b"distillery.schema_version"] == b"3", meta
assert rows == 52, rows
card = open(os.path.join(out, "README.md")).read()
assert card.startswith("---\n")
header = yaml.safe_load(card.split("---\n")[1])
cfg = header["configs"][0]
assert cfg["config_name"] == "default"
assert {d["split"]: d["path"] for d in cfg["data_files"]} == {"train": "data/train-*", "test": "data/test-*"}
feats = {f["name"]: f for f in header["dataset_info"]["features"]}
assert [x["name"] for x in feats["messages"]["list"]] == ["role", "content"], feats["messages"]
assert feats["sample_index"]["dtype"] == "int32"
splits = {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]}
assert sum(splits.values()) == 52, splits
try:
    import duckdb
except ImportError:
    print("duckdb not installed: skipped")
else:
    con = duckdb.connect()
    n = con.execute(f"select count(*) from read_parquet('{out}/data/*.parquet')").fetchall()[0][0]
    roles = con.execute(f"select messages[1].role from read_parquet('{out}/data/*.parquet') limit 1").fetchall()
    assert roles == [("user",)], roles
    assert n == 52, n
    print("duckdb ok")
print("pyarrow ok")
try:
    import datasets
except ImportError:
    print("datasets not installed: skipped")
else:
    ds = datasets.load_dataset(out)
    assert sorted(ds.keys()) == ["test", "train"], ds
    assert ds["train"].num_rows + ds["test"].num_rows == 52
    row = ds["train"][0]
    assert row["messages"][0]["role"] == "user" and "content" in row["messages"][1], row
    print("datasets ok")
"#;
    common::python_reads(script, &[&out], dir.path());
}

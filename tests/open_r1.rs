//! `distillery export --layout open-r1`: a real run on MATH-500 rows with the mock teacher,
//! exported one row per problem with open-r1's columns, read back by pyarrow (and `datasets`
//! where installed); the default layout keeps one row per sample and gains the source's own
//! problem and solution.

mod common;
use common::repo_root;

/// `dir/pipeline.toml`: the first 12 MATH-500 problems, 3 samples each, half of them wrong.
fn math500_run(dir: &std::path::Path) -> std::path::PathBuf {
    let definition = dir.join("pipeline.toml");
    std::fs::write(
        &definition,
        format!(
            r#"name = "math500-openr1"
[source]
path = "{}"
prompt_field = "problem"
answer_field = "answer"
id_field = "unique_id"
solution_field = "solution"
problem_type_field = "subject"
level_field = "level"
limit = 12

[teacher]
kind = "mock"
n = 3
timeout_secs = 5

[teacher.mock]
accuracy = 0.5
seed = 3

[verify]
math = true
format = true
"#,
            repo_root().join("datasets/math500/test.jsonl").display()
        ),
    )
    .unwrap();
    let run = dir.join("run");
    common::run_definition(&definition, &run);
    run
}

#[test]
fn open_r1_layout_is_one_row_per_problem_and_reads_in_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let run = math500_run(dir.path());
    let stored = common::rows(&run);
    assert_eq!(stored.len(), 36);
    assert!(stored.iter().any(|g| !g.accepted) && stored.iter().any(|g| g.accepted));
    let first = &stored[0];
    // The source's own problem, not the rendered prompt, and its solution and level.
    assert!(
        first
            .problem
            .starts_with(first.source.problem.as_deref().unwrap())
    );
    assert_ne!(first.problem, first.source.problem.clone().unwrap());
    assert!(
        first
            .source
            .solution
            .as_deref()
            .unwrap()
            .contains("\\boxed")
    );
    assert!(first.source.level.is_some() && first.source.problem_type.is_some());

    let out = dir.path().join("openr1");
    common::export_ok(&run, &out, &["--layout", "open-r1", "--all"]);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("One row per problem"), "{card}");
    assert!(card.contains("num_examples: 12"), "{card}");

    let samples = dir.path().join("samples");
    common::export_ok(&run, &samples, &[]);
    let accepted = common::rows(&samples);
    assert_eq!(accepted.len(), stored.iter().filter(|g| g.accepted).count());
    assert!(accepted.iter().all(|g| g.source.solution.is_some()));

    if !common::pyarrow_available() {
        return;
    }
    // What the run stored, per problem, for the script to compare with.
    let mut expected = serde_json::Map::new();
    for g in &stored {
        let entry = expected
            .entry(g.source.problem.clone().unwrap())
            .or_insert_with(|| serde_json::json!({"n": 0, "accepted": 0, "correct": 0}));
        entry["n"] = (entry["n"].as_u64().unwrap() + 1).into();
        entry["accepted"] = (entry["accepted"].as_u64().unwrap() + u64::from(g.accepted)).into();
        let correct = g.checks.iter().any(|c| c.check == "math" && c.passed);
        entry["correct"] = (entry["correct"].as_u64().unwrap() + u64::from(correct)).into();
    }
    let expected_path = dir.path().join("expected.json");
    std::fs::write(
        &expected_path,
        serde_json::Value::Object(expected).to_string(),
    )
    .unwrap();
    let script = r#"
import glob, json, os, sys
import pyarrow as pa, pyarrow.parquet as pq, yaml
out, expected = sys.argv[1], json.load(open(sys.argv[2]))
t = pa.concat_tables(pq.read_table(f) for f in sorted(glob.glob(os.path.join(out, "data", "*.parquet"))))
assert t.num_rows == 12, t.num_rows
for name in ["problem", "solution", "answer", "source", "uuid", "problem_type", "messages",
             "generations", "finish_reasons", "correctness_math_verify", "correctness_count"]:
    assert name in t.column_names, (name, t.column_names)
assert pa.types.is_list(t.schema.field("generations").type)
assert t.schema.field("correctness_math_verify").type.value_type == pa.bool_()
for row in t.to_pylist():
    e = expected[row["problem"]]
    assert len(row["generations"]) == e["n"] == len(row["finish_reasons"]), row
    assert sum(row["generation_accepted"]) == e["accepted"], row
    assert row["correctness_count"] == e["correct"] == sum(row["correctness_math_verify"]), row
    assert all(g.startswith("<think>\n") for g in row["generations"]), row["generations"]
    assert "\\boxed" in row["solution"] and row["answer"], row
    assert row["source"] == "math500-openr1", row["source"]
    if e["accepted"]:
        assert row["messages"][0]["role"] == "user" and row["messages"][0]["content"].startswith(row["problem"])
        assert row["messages"][-1]["content"] in row["generations"]
    else:
        assert row["messages"] == [], row["messages"]
header = yaml.safe_load(open(os.path.join(out, "README.md")).read().split("---\n")[1])
feats = {f["name"]: f for f in header["dataset_info"]["features"]}
assert feats["generations"]["sequence"] == "string", feats["generations"]
assert feats["correctness_count"]["dtype"] == "int64"
print("pyarrow ok")
try:
    import datasets
except ImportError:
    print("datasets not installed: skipped")
else:
    ds = datasets.load_dataset("parquet", data_files=os.path.join(out, "data", "*.parquet"))
    assert ds["train"].num_rows == 12
    ds = datasets.load_dataset(out)
    assert ds["train"].num_rows == 12 and "generations" in ds["train"].column_names
    print("datasets ok")
"#;
    common::python_reads(script, &[&out, &expected_path], dir.path());
}

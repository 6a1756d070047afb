//! An export is safe to publish as it is: no absolute path of the machine that made it, no
//! endpoint URL, a licence in the card, and the same details back with `--keep-provenance`.

mod common;
use common::{MockProcess, gsm8k, repo_root};

#[test]
fn exports_carry_no_local_paths_or_urls_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockProcess::start(&[]);
    let definition = dir.path().join("pipeline.toml");
    common::served_definition(&definition, "publish", 6, &mock.base_url, "");
    let run = dir.path().join("run");
    common::run_definition(&definition, &run);

    let out = dir.path().join("dataset");
    common::export_ok(&run, &out, &["--all"]);
    let rows = common::rows(&out);
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row.provenance.source_path, "test.jsonl");
        assert_eq!(row.endpoint, "openai-compatible");
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    let root = repo_root().canonicalize().unwrap();
    for secret in [
        root.to_str().unwrap(),
        "127.0.0.1",
        "http://",
        dir.path().to_str().unwrap(),
    ] {
        assert!(
            !card.contains(secret),
            "the card carries {secret:?}:\n{card}"
        );
    }
    // GSM8K's LICENSE sits beside its test.jsonl: the card says MIT.
    assert!(card.contains("license: \"mit\""), "{card}");

    let kept = dir.path().join("kept");
    common::export_ok(
        &run,
        &kept,
        &["--keep-provenance", "--license", "cc-by-4.0"],
    );
    let row = &common::rows(&kept)[0];
    assert_eq!(row.provenance.source_path, gsm8k().display().to_string());
    assert!(
        row.endpoint.starts_with("http://127.0.0.1:"),
        "{}",
        row.endpoint
    );
    let card = std::fs::read_to_string(kept.join("README.md")).unwrap();
    assert!(card.contains("license: \"cc-by-4.0\""), "{card}");
}

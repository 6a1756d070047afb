//! Helpers shared by the end-to-end tests: the binary, the checkout, run directories and the
//! mock teacher in its own process. Each test binary uses a different subset of them.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use distillery_store::{Generation, Manifest, RunDir, Which};

/// The built binary, run from the checkout's root as a user would, with quiet logs.
pub(crate) fn distillery() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_distillery"));
    command.env("RUST_LOG", "warn");
    command.current_dir(repo_root());
    command
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn gsm8k() -> PathBuf {
    repo_root().join("datasets/gsm8k/test.jsonl")
}

/// `dir/pipeline.toml`: the built-in mock teacher over the first `limit` GSM8K rows, two
/// samples each, with `teacher` added to `[teacher]` and `mock` to `[teacher.mock]` (which may
/// open further tables).
pub(crate) fn mock_definition(
    dir: &Path,
    name: &str,
    limit: u32,
    teacher: &str,
    mock: &str,
) -> PathBuf {
    let file = dir.join("pipeline.toml");
    let body = format!(
        "[teacher]\nkind = \"mock\"\nn = 2\ntimeout_secs = 2\n{teacher}\n\n[teacher.mock]\n{mock}\n"
    );
    write_gsm8k_definition(&file, name, u64::from(limit), &body);
    file
}

/// `file`: the first `limit` GSM8K rows sent to the OpenAI-compatible server at `base_url`
/// (the mock teacher in its own process), with `teacher` added to `[teacher]` (which may open
/// further tables).
pub(crate) fn served_definition(
    file: &Path,
    name: &str,
    limit: u64,
    base_url: &str,
    teacher: &str,
) {
    let body = format!(
        "[teacher]\nbase_url = \"{base_url}\"\nmodel = \"distillery-mock-r1\"\n{teacher}\n"
    );
    write_gsm8k_definition(file, name, limit, &body);
}

/// A definition named `name` over the first `limit` GSM8K rows, then `rest` (the teacher and
/// any further tables).
fn write_gsm8k_definition(file: &Path, name: &str, limit: u64, rest: &str) {
    std::fs::write(
        file,
        format!(
            r#"name = "{name}"
[source]
path = "{}"
prompt_field = "question"
answer_field = "answer"
answer_extract = "gsm8k"
limit = {limit}

{rest}"#,
            gsm8k().display()
        ),
    )
    .unwrap();
}

/// `distillery ARGS`, which must succeed.
pub(crate) fn run_ok(args: &[&str]) -> Output {
    let output = distillery().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "distillery {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Whether python3 imports pyarrow and PyYAML; when not, says that the check is skipped and
/// how to install them (CI's `.ci/run` does).
pub(crate) fn pyarrow_available() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import pyarrow, yaml"])
        .output();
    let available = probe.is_ok_and(|o| o.status.success());
    if !available {
        eprintln!(
            "NOTICE: skipping the pyarrow check: python3 with pyarrow and PyYAML is not available \
             (pip install pyarrow pyyaml)"
        );
    }
    available
}

/// Runs the Python `script` with `args`, the Hugging Face libraries offline and their caches
/// under `scratch`. It must succeed and print `pyarrow ok`; returns what it printed.
pub(crate) fn python_reads(script: &str, args: &[&Path], scratch: &Path) -> String {
    let output = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .env("HF_HOME", scratch.join("hf"))
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("pyarrow ok"), "{stdout}");
    println!("{stdout}");
    stdout
}

/// `distillery run DEFINITION --run-dir RUN --plain`, which must succeed.
pub(crate) fn run_definition(definition: &Path, run: &Path) -> Output {
    run_ok(&[
        "run",
        definition.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--plain",
    ])
}

pub(crate) fn manifest(run: &Path) -> Manifest {
    RunDir::open(run).unwrap().manifest().unwrap()
}

/// Every row (accepted and rejected) in the run's shards, checked for duplicates.
pub(crate) fn rows(run: &Path) -> Vec<Generation> {
    let rows: Vec<Generation> = distillery_store::read_generations(run, Which::All)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let keys: BTreeSet<(String, u32)> = rows
        .iter()
        .map(|r| (r.id.clone(), r.sample_index))
        .collect();
    assert_eq!(keys.len(), rows.len(), "a generation was written twice");
    rows
}

/// What a row says, without how long it took to get it.
pub(crate) fn meaning(
    rows: &[Generation],
) -> BTreeSet<(String, u32, String, Option<String>, bool)> {
    rows.iter()
        .map(|r| {
            (
                r.id.clone(),
                r.sample_index,
                r.content.clone(),
                r.reasoning.clone(),
                r.accepted,
            )
        })
        .collect()
}

/// `distillery mock-teacher` replaying GSM8K on a free port, in its own process so its request
/// counts span every session of a run; killed when dropped.
pub(crate) struct MockProcess {
    child: Child,
    pub base_url: String,
}

impl MockProcess {
    /// Seed 5, plus `settings` (e.g. `["--accuracy", "0.5"]`).
    pub(crate) fn start(settings: &[&str]) -> Self {
        Self::replaying(&gsm8k(), settings)
    }

    /// Replaying `dataset` (with `--question-field` and the like in `settings` when its fields
    /// are not GSM8K's).
    pub(crate) fn replaying(dataset: &Path, settings: &[&str]) -> Self {
        let mut child = distillery()
            .args(["mock-teacher", "--listen", "127.0.0.1:0", "--seed", "5"])
            .arg("--dataset")
            .arg(dataset)
            .args(settings)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("http://"), "mock teacher said {line:?}");
        Self {
            child,
            base_url: line.trim().to_owned(),
        }
    }

    /// Requests seen per question.
    pub(crate) fn requests(&self) -> HashMap<String, u64> {
        self.stats()["requests_per_prompt"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(q, n)| (q.clone(), n.as_u64().unwrap()))
            .collect()
    }

    /// `GET /v1/mock/stats`: what the simulator served.
    pub(crate) fn stats(&self) -> serde_json::Value {
        let authority = self
            .base_url
            .trim_start_matches("http://")
            .trim_end_matches("/v1");
        let mut stream = TcpStream::connect(authority).unwrap();
        write!(
            stream,
            "GET /v1/mock/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str(body).unwrap()
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

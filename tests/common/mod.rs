//! Helpers shared by the end-to-end tests: the binary, the checkout, run directories and the
//! mock teacher in its own process. Each test binary uses a different subset of them.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use distillery_store::{Generation, Manifest, RunDir, RunStatus, Which};
use tempfile::TempDir;

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

/// The first `count` lines of the GSM8K test set, one JSON row each.
pub(crate) fn gsm8k_lines(count: usize) -> Vec<String> {
    std::fs::read_to_string(gsm8k())
        .unwrap()
        .lines()
        .take(count)
        .map(str::to_owned)
        .collect()
}

/// A scratch folder, the definition `define` writes into it, and where its run goes (`run`
/// inside it). Keep the folder alive for as long as the test uses the paths.
pub(crate) fn scratch_run(define: impl FnOnce(&Path) -> PathBuf) -> (TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let definition = define(dir.path());
    let run = dir.path().join("run");
    (dir, definition, run)
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
    succeeds(distillery().args(args))
}

/// Runs `command` to the end; it must succeed (what it printed is shown when not).
pub(crate) fn succeeds(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `distillery run DEFINITION --run-dir RUN --plain`, not yet started: add what a test needs.
pub(crate) fn run_command(definition: &Path, run: &Path) -> Command {
    let mut command = distillery();
    command
        .arg("run")
        .arg(definition)
        .arg("--run-dir")
        .arg(run)
        .arg("--plain");
    command
}

/// [`run_command`] with `extra` arguments, run to the end whatever its exit code.
pub(crate) fn run_output(definition: &Path, run: &Path, extra: &[&str]) -> Output {
    run_command(definition, run).args(extra).output().unwrap()
}

/// [`run_command`] on a disk that fills after `bytes` bytes: it must fail.
pub(crate) fn run_until_disk_full(definition: &Path, run: &Path, bytes: &str) -> Output {
    let output = run_output(definition, run, &["--simulate-disk-full-after", bytes]);
    assert!(!output.status.success());
    output
}

/// [`run_command`] started with a five-second grace period to drain in, stderr piped.
pub(crate) fn spawn_with_grace(definition: &Path, run: &Path) -> Child {
    run_command(definition, run)
        .args(["--grace-secs", "5"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` (`INT`, `TERM`) to `child` with `kill`, which must succeed.
pub(crate) fn send_signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// `distillery export RUN --out OUT EXTRA…`, which must succeed.
pub(crate) fn export_ok(run: &Path, out: &Path, extra: &[&str]) -> Output {
    succeeds(
        distillery()
            .arg("export")
            .arg(run)
            .arg("--out")
            .arg(out)
            .args(extra),
    )
}

/// `distillery resume RUN --plain`, not yet started.
pub(crate) fn resume_command(run: &Path) -> Command {
    let mut command = distillery();
    command.arg("resume").arg(run).arg("--plain");
    command
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
    succeeds(&mut run_command(definition, run))
}

/// `distillery resume RUN --plain`, which must complete the run: all `prompts` done, two rows
/// each.
pub(crate) fn resume_completes(run: &Path, prompts: u64) {
    succeeds(&mut resume_command(run));
    let manifest = manifest(run);
    assert_eq!(manifest.status, RunStatus::Completed);
    assert_eq!(manifest.counts.prompts_done, prompts);
    assert_eq!(rows(run).len() as u64, 2 * prompts);
}

/// Starts `command` with its output thrown away.
pub(crate) fn spawn_quiet(command: &mut Command) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A xorshift generator: random moments to kill a process at, the same in every test run.
pub(crate) struct XorShift(pub u64);

impl XorShift {
    /// The next number below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// Sleeps `least_ms` plus up to `spread_ms` more milliseconds, at random.
    pub(crate) fn pause(&mut self, least_ms: u64, spread_ms: u64) {
        std::thread::sleep(Duration::from_millis(least_ms + self.below(spread_ms)));
    }
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

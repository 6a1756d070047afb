//! End-to-end pipeline throughput, peak memory and in-flight utilisation against the mock
//! teacher.
//!
//! Run with `cargo bench -p distillery-pipeline --bench pipeline` (or `make bench`). Each figure
//! is printed with its ratio to a baseline and, when `DISTILLERY_BENCH_JSON` names a file,
//! appended to it as one JSON object (see `benches/report.rs` at the workspace root).
//!
//! What runs: a synthetic GSM8K-style source of 100,000 rows (question + solution ending in
//! `#### N`) is written to a temp dir. For each measurement the bench starts two child
//! processes, both this same executable in another role:
//!
//! - the mock teacher (`distillery_mock::MockServer`, what `distillery mock-teacher` serves),
//!   replaying that file as its data set, so every prompt finds its reference solution;
//! - the pipeline, `distillery_pipeline::start` with the options `distillery run --plain`
//!   uses, on a definition with `teacher.kind = "openai"` pointed at the mock's URL.
//!
//! So a measurement covers the real path (source read, dispatcher, HTTP client with streaming,
//! verification, WAL group commit, Parquet shard cuts, manifest) and the peak RSS of the
//! pipeline process alone (`wait4` rusage of that child): the mock, which keeps per-question
//! attempt counts and the whole data set, lives in its own process and is not counted. With
//! `DISTILLERY_BENCH_BIN=target/release/distillery` the pipeline child is that binary instead
//! (`distillery run DEF --run-dir DIR --plain`); the default runs the library entry point so
//! that `cargo bench` never measures a stale binary.
//!
//! Figures (n = 1 sample per prompt, concurrency 64, math + format checks, keep the default all_correct):
//! 1. generations/s at zero mock latency for 10k and 100k prompts, wall clock from starting
//!    the pipeline process to its exit (includes the row count pass and the last shard cut);
//! 2. peak RSS of the pipeline process for each size: it must stay flat from 10k to 100k;
//! 3. in-flight utilisation: mock latency 50 ms (no jitter), concurrency 64, 2,000 prompts;
//!    ideal = concurrency / latency = 1,280 requests/s; achieved = prompts / the run's own
//!    elapsed time (manifest `elapsed_secs`, from the first dispatch to the final commit).

// The pipeline child's rusage comes from wait4.
#![allow(unsafe_code)]

#[path = "../../../benches/report.rs"]
mod report;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use report::{Better, Figure};

/// Baselines, first measured with this bench on the development machine (2-vCPU AMD EPYC
/// cloud VM, 23 GB, bench profile), mock teacher and pipeline sharing the 2 cores.
const BASELINE_GEN_PER_S_10K: f64 = 9_480.0;
const BASELINE_GEN_PER_S_100K: f64 = 10_200.0;
const BASELINE_RSS_MIB_10K: f64 = 42.6;
const BASELINE_RSS_MIB_100K: f64 = 54.7;
const BASELINE_UTILISATION: f64 = 0.86;

const ROWS: usize = 100_000;
const CONCURRENCY: u32 = 64;
const SAMPLES: u32 = 1;
const UTIL_LATENCY_MS: f64 = 50.0;
const UTIL_PROMPTS: usize = 2_000;
/// A run that takes longer than this is stuck: the bench fails rather than hang `make bench`.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

const ROLE_ENV: &str = "DISTILLERY_BENCH_ROLE";

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("mock") => mock_role(),
        Ok("pipeline") => pipeline_role(),
        _ => parent(),
    }
}

// ---------------------------------------------------------------------------------------------
// The measuring process.

fn parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("gsm8k-synthetic.jsonl");
    write_source(&source, ROWS).expect("write the synthetic source");

    let mut figures = Vec::new();
    let mut rss = Vec::new();
    for (size, figure, rss_figure, baseline, rss_baseline) in [
        (
            10_000,
            "generations_per_s_10k",
            "peak_rss_10k",
            BASELINE_GEN_PER_S_10K,
            BASELINE_RSS_MIB_10K,
        ),
        (
            100_000,
            "generations_per_s_100k",
            "peak_rss_100k",
            BASELINE_GEN_PER_S_100K,
            BASELINE_RSS_MIB_100K,
        ),
    ] {
        let run = measure(dir.path(), &source, size, 0.0, &format!("zero-{size}"));
        let generations = run.manifest.counts.generations as f64;
        assert_eq!(
            run.manifest.counts.prompts_done, size as u64,
            "every prompt should be done"
        );
        let per_s = generations / run.wall_secs;
        let note = format!(
            "{size} prompts, n={SAMPLES}, concurrency {CONCURRENCY}, zero-latency mock; \
             {:.1} s wall, {:.1} s in the pipeline, {:.1}% accepted",
            run.wall_secs,
            run.manifest.elapsed_secs,
            100.0 * run.manifest.counts.accepted as f64 / generations.max(1.0)
        );
        figures.push(
            Figure::new("pipeline", figure, per_s, "gen/s", Better::Higher)
                .baseline(baseline)
                .note(note),
        );
        figures.push(
            Figure::new(
                "pipeline",
                rss_figure,
                run.peak_rss_mib,
                "MiB",
                Better::Lower,
            )
            .baseline(rss_baseline)
            .note(format!("peak RSS of the pipeline process, {size} prompts")),
        );
        rss.push(run.peak_rss_mib);
    }
    figures.push(
        Figure::new(
            "pipeline",
            "peak_rss_growth_10k_to_100k",
            rss[1] / rss[0],
            "x",
            Better::Lower,
        )
        .baseline(BASELINE_RSS_MIB_100K / BASELINE_RSS_MIB_10K)
        .note("peak RSS at 100k / at 10k prompts; flat memory is 1.0"),
    );

    let run = measure(
        dir.path(),
        &source,
        UTIL_PROMPTS,
        UTIL_LATENCY_MS,
        "latency",
    );
    let ideal = f64::from(CONCURRENCY) / (UTIL_LATENCY_MS / 1000.0);
    let achieved = run.manifest.counts.prompts_done as f64 / run.manifest.elapsed_secs;
    figures.push(
        Figure::new(
            "pipeline",
            "inflight_utilisation",
            achieved / ideal,
            "achieved/ideal",
            Better::Higher,
        )
        .baseline(BASELINE_UTILISATION)
        .note(format!(
            "{UTIL_PROMPTS} prompts, mock latency {UTIL_LATENCY_MS} ms, concurrency \
             {CONCURRENCY}: {achieved:.0} of an ideal {ideal:.0} requests/s"
        )),
    );

    // What storing the teacher's top-8 log-probabilities costs per generated token (issue 20's
    // target: at most 32 bytes). The mock tokenizes by words here (no tokenizer.json).
    let run = measure_with(
        dir.path(),
        &source,
        LOGPROB_PROMPTS,
        0.0,
        "logprobs",
        "top_logprobs = 8",
    );
    let footprint = run.logprobs.expect("the shards hold the column");
    assert!(
        footprint.rows > 0,
        "no accepted row kept its log-probabilities"
    );
    figures.push(
        Figure::new(
            "pipeline",
            "logprob_bytes_per_token_k8",
            footprint.bytes_per_token(),
            "bytes/token",
            Better::Lower,
        )
        .baseline(32.0)
        .note(format!(
            "top_logprobs = 8, {LOGPROB_PROMPTS} prompts: {} accepted rows, {} generated \
             tokens, compressed column bytes in the shards; baseline: issue 20's target",
            footprint.rows, footprint.tokens
        )),
    );

    report::report(&figures);
}

/// Prompts of the log-probability footprint run.
const LOGPROB_PROMPTS: usize = 2_000;

/// What one pipeline run measured.
struct Run {
    wall_secs: f64,
    peak_rss_mib: f64,
    manifest: distillery_store::Manifest,
    /// The stored log-probabilities' footprint, when the run captured them.
    logprobs: Option<distillery_store::logprobs::Footprint>,
}

/// Starts a mock teacher, runs the pipeline on the first `prompts` rows of `source` against it,
/// and stops the mock.
fn measure(dir: &Path, source: &Path, prompts: usize, latency_ms: f64, label: &str) -> Run {
    measure_with(dir, source, prompts, latency_ms, label, "")
}

/// [`measure`] with extra `[teacher]` lines in the definition.
fn measure_with(
    dir: &Path,
    source: &Path,
    prompts: usize,
    latency_ms: f64,
    label: &str,
    teacher_extra: &str,
) -> Run {
    let mut mock = Mock::start(source, latency_ms);
    let run_dir = dir.join(format!("run-{label}"));
    let definition = dir.join(format!("{label}.toml"));
    std::fs::write(
        &definition,
        definition_text(source, prompts, &mock.base_url, teacher_extra),
    )
    .expect("write the definition");
    let log = dir.join(format!("{label}.log"));

    let mut command = match std::env::var_os("DISTILLERY_BENCH_BIN") {
        Some(bin) => {
            let mut command = Command::new(bin);
            command.arg("run");
            command
        }
        None => {
            let mut command = Command::new(std::env::current_exe().expect("own path"));
            command.env(ROLE_ENV, "pipeline");
            command
        }
    };
    command
        .arg(&definition)
        .arg("--run-dir")
        .arg(&run_dir)
        .arg("--plain")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let started = Instant::now();
    let child = command.spawn().expect("start the pipeline");
    let (status, peak_rss_mib) = wait_with_rusage(child, RUN_TIMEOUT);
    let wall_secs = started.elapsed().as_secs_f64();
    mock.stop();
    if status.is_none_or(|code| code != 0) {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("the pipeline run `{label}` failed ({status:?}):\n{log}");
    }
    let manifest = distillery_store::RunDir::open(&run_dir)
        .and_then(|run| run.manifest())
        .expect("read the manifest");
    let shards: Vec<std::path::PathBuf> = std::fs::read_dir(run_dir.join("shards"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let logprobs = if teacher_extra.contains("top_logprobs") {
        distillery_store::logprobs::footprint(&shards).expect("read the shards")
    } else {
        None
    };
    // The shards of the big run are a few hundred MB of temp space; free them now.
    let _ = std::fs::remove_dir_all(&run_dir);
    Run {
        wall_secs,
        peak_rss_mib,
        manifest,
        logprobs,
    }
}

/// Waits for `child` with `wait4`, which returns the child's own resource usage (its peak RSS
/// in KiB on Linux), not the maximum over every child this process has had.
fn wait_with_rusage(child: Child, timeout: Duration) -> (Option<i32>, f64) {
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + timeout;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; wait4 fills it in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own child, not yet reaped (std's Child is never waited on).
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            return (code, usage.ru_maxrss as f64 / 1024.0);
        }
        assert!(
            reaped == 0,
            "wait4 failed: {}",
            std::io::Error::last_os_error()
        );
        if Instant::now() > deadline {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the pipeline run did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn definition_text(source: &Path, prompts: usize, base_url: &str, teacher_extra: &str) -> String {
    format!(
        r#"name = "bench"

[source]
path = "{source}"
prompt_field = "question"
answer_field = "answer"
answer_extract = "gsm8k"
limit = {prompts}

[teacher]
kind = "openai"
base_url = "{base_url}"
model = "distillery-mock-r1"
n = {SAMPLES}
concurrency = {CONCURRENCY}
timeout_secs = 30
retries = 2
{teacher_extra}

[verify]
math = true
format = true
"#,
        source = source.display()
    )
}

/// GSM8K-style rows: a one-line question (the mock matches a prompt to its row by a line of
/// the prompt) and a solution with calculator annotations ending in `#### N`.
fn write_source(path: &Path, rows: usize) -> std::io::Result<()> {
    const NAMES: [&str; 8] = [
        "Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Ken", "Tina",
    ];
    const ITEMS: [&str; 6] = ["clips", "apples", "stickers", "books", "pencils", "cookies"];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..rows {
        let name = NAMES[i % NAMES.len()];
        let item = ITEMS[(i / NAMES.len()) % ITEMS.len()];
        let a = 12 + (i * 7919) % 500;
        let b = 2 + (i * 104_729) % 9;
        let c = 3 + (i * 31) % 40;
        let (ab, total) = (a * b, a * b + c);
        let question = format!(
            "Problem {i}: {name} had {a} {item} on Monday and got {b} times as many by Friday. \
             Then a friend gave {name} {c} more {item}. How many {item} does {name} have now?"
        );
        let answer = format!(
            "By Friday {name} had {a} * {b} = <<{a}*{b}={ab}>>{ab} {item}.\n\
             With the friend's gift that is {ab} + {c} = <<{ab}+{c}={total}>>{total} {item}.\n\
             #### {total}"
        );
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "question": question, "answer": answer }),
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// The mock teacher in a child process of its own.
struct Mock {
    child: Child,
    base_url: String,
}

impl Mock {
    fn start(dataset: &Path, latency_ms: f64) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .env(ROLE_ENV, "mock")
            .arg(dataset)
            .arg(latency_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the mock teacher");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("mock stdout"))
            .read_line(&mut line)
            .expect("read the mock's address");
        let base_url = line.trim().to_owned();
        assert!(
            base_url.starts_with("http://"),
            "the mock teacher did not start: {line:?}"
        );
        Self { child, base_url }
    }

    /// Closing its stdin tells the mock to shut down.
    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if self.child.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The child roles.

/// `mock DATASET LATENCY_MS`: serves until its stdin closes (so it never outlives the bench).
fn mock_role() {
    let args: Vec<String> = std::env::args().collect();
    let dataset = PathBuf::from(&args[1]);
    let latency_ms: f64 = args[2].parse().expect("latency in ms");
    let settings = distillery_spec::mock::MockSettings {
        accuracy: 0.8,
        latency_ms,
        latency_jitter_ms: 0.0,
        seed: 7,
        ..Default::default()
    };
    let data = distillery_mock::MockDataset::load(&dataset, "question", "answer")
        .expect("load the mock's data set");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let server = distillery_mock::MockServer::builder(settings, "distillery-mock-r1")
            .dataset(data)
            .start(([127, 0, 0, 1], 0).into())
            .await
            .expect("start the mock teacher");
        println!("{}", server.base_url());
        std::io::stdout().flush().expect("stdout");
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = closed_tx.send(());
        });
        server
            .run_until(async {
                let _ = closed_rx.await;
            })
            .await
            .expect("mock teacher");
    });
}

/// `pipeline DEF --run-dir DIR --plain`: what `distillery run` does, through the library.
fn pipeline_role() {
    let args: Vec<String> = std::env::args().collect();
    let definition = PathBuf::from(&args[1]);
    let run_dir = PathBuf::from(&args[3]);
    let options = distillery_pipeline::RunOptions {
        display: distillery_pipeline::Display::Lines,
        ..Default::default()
    };
    let existing = distillery_pipeline::Existing::Refuse;
    match distillery_pipeline::start(&definition, Some(run_dir), None, existing, &options) {
        Ok(end) if end.stopped.is_none() => {}
        Ok(end) => {
            eprintln!("run stopped: {:?}", end.stopped);
            std::process::exit(1);
        }
        Err(error) => {
            eprintln!("run failed: {error}");
            std::process::exit(1);
        }
    }
}

//! `run`, `resume` and `status`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use distillery_pipeline::{Display, Existing, RunEnd, RunOptions};
use distillery_spec::ShardRequest;
use distillery_store::shard_set::{self, ShardProblem};
use distillery_store::{RunDir, RunStatus};

#[derive(Debug, clap::Args)]
pub(crate) struct Common {
    /// Seconds that in-flight requests may still finish after Ctrl-C.
    #[arg(long, default_value_t = 30.0)]
    grace_secs: f64,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9184).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Log lines instead of a progress bar, even on a terminal.
    #[arg(long)]
    plain: bool,
    /// Threads verifying answers (default: one per core).
    #[arg(long, default_value_t = 0)]
    verifier_threads: usize,
    /// Stop taking new prompts after this many, as Ctrl-C would (for demos and tests).
    #[arg(long, hide = true)]
    stop_after: Option<u64>,
    /// Fault injection for tests: fail WAL writes as a full disk would after this many bytes.
    #[arg(long, hide = true)]
    simulate_disk_full_after: Option<u64>,
}

impl Common {
    fn options(&self) -> anyhow::Result<RunOptions> {
        anyhow::ensure!(
            self.grace_secs.is_finite() && self.grace_secs >= 0.0,
            "--grace-secs must be a number of seconds, got {}",
            self.grace_secs
        );
        Ok(RunOptions {
            grace: Duration::from_secs_f64(self.grace_secs),
            display: if self.plain {
                Display::Lines
            } else {
                Display::Auto
            },
            metrics: self.metrics,
            verifier_threads: self.verifier_threads,
            stop_after: self.stop_after,
            simulate_disk_full_after: self.simulate_disk_full_after,
            mock: Some(std::sync::Arc::new(super::mock_teacher::BuiltInMock)),
        })
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  distillery run pipelines/gsm8k-vllm.toml
  distillery run pipelines/gsm8k-vllm.toml --shard 2/8          # runs/gsm8k-vllm/shard-2-of-8/
  distillery run DEF --shard auto --resume                      # in a Slurm array task
  distillery run DEF --shard auto --shards 8 --resume           # in a Kubernetes Indexed Job")]
pub(crate) struct RunArgs {
    /// Pipeline definition (TOML).
    pipeline: PathBuf,
    /// Run directory; defaults to `<output.dir>/<name>`. With --shard, the directory that holds
    /// the shards' directories (`shard-I-of-N`).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Run only shard I of N (0-based) of the prompts, chosen by a hash of each prompt's stable
    /// id, into `<run dir>/shard-I-of-N`; `auto` takes I and N from a Slurm array task
    /// (SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT or MIN/MAX) or a Kubernetes Indexed Job
    /// (JOB_COMPLETION_INDEX, with --shards N).
    #[arg(long, value_name = "I/N|auto")]
    shard: Option<ShardRequest>,
    /// The number of shards for `--shard auto` in a Kubernetes Indexed Job (its `completions`);
    /// in a Slurm array it must agree with the array's size.
    #[arg(long, value_name = "N", requires = "shard")]
    shards: Option<u32>,
    /// Continue the run if its directory already holds one (as `distillery resume` would; a
    /// changed definition or another shard is refused), so that a task the scheduler restarts
    /// picks up where it stopped.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ResumeArgs {
    /// The run directory, e.g. runs/gsm8k-mock.
    run_dir: PathBuf,
    /// Continue under this (edited) definition instead of the frozen copy; only changes to
    /// concurrency, rate limits, timeouts, retries and shard sizes are accepted without --force.
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// Accept any change of definition, or continue over shards that were lost (their
    /// prompts with no rows left are asked again).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  distillery status runs/gsm8k-vllm
  distillery status runs/gsm8k-vllm            # the shards' parent: every shard-I-of-N in it
  distillery status runs/gsm8k-vllm/shard-*    # the same, as a list

Over shards the exit code is 0 when every shard is there, ran the same definition and
completed, 3 when some are missing or not finished, 1 when they ran different definitions,
split the prompts differently or one is given twice.")]
pub(crate) struct StatusArgs {
    /// A run directory, or the shards of a run: their directories, or the one holding them.
    #[arg(required = true, value_name = "RUN_DIR")]
    run_dirs: Vec<PathBuf>,
    /// Print the manifest as JSON (over shards: every shard's manifest and the problems).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let options = args.common.options()?;
    let shard = args
        .shard
        .map(|request| request.resolve(args.shards))
        .transpose()?;
    let existing = if args.resume {
        Existing::Resume
    } else {
        Existing::Refuse
    };
    let end = distillery_pipeline::start(&args.pipeline, args.run_dir, shard, existing, &options)
        .with_context(|| format!("cannot run {}", args.pipeline.display()))?;
    Ok(conclude(&end))
}

pub(crate) fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let options = args.common.options()?;
    let end = distillery_pipeline::resume(
        &args.run_dir,
        args.pipeline.as_deref(),
        args.force,
        &options,
    )
    .with_context(|| format!("cannot resume {}", args.run_dir.display()))?;
    Ok(conclude(&end))
}

/// Failures listed by `status` (all of them are in failures.jsonl).
const FAILURES_SHOWN: usize = 5;

pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    match args.run_dirs.as_slice() {
        [one] if RunDir::is_run_dir(one) => status_of_run(one, args.json),
        many => status_of_shards(many, args.json),
    }
}

fn status_of_shards(inputs: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let paths = shard_set::expand(inputs)?;
    for path in &paths {
        anyhow::ensure!(
            RunDir::is_run_dir(path),
            "{} is not a run directory, nor a directory holding shard directories (shard-I-of-N)",
            path.display()
        );
    }
    let sets = shard_set::shard_sets(&paths)?;
    let unsharded: Vec<&PathBuf> = paths
        .iter()
        .filter(|p| !sets.iter().any(|s| s.members.iter().any(|m| m.path == **p)))
        .collect();
    if let Some(run) = unsharded.first() {
        anyhow::bail!(
            "{} is not a shard (it was run without --shard); `distillery status` takes one run, or the shards of runs",
            run.display()
        );
    }
    let problems: Vec<&ShardProblem> = sets.iter().flat_map(|s| &s.problems).collect();
    if json {
        let sets: Vec<serde_json::Value> = sets
            .iter()
            .map(|set| {
                serde_json::json!({
                    "name": set.name,
                    "shards": set.members.iter().map(|m| &m.manifest).collect::<Vec<_>>(),
                    "problems": set.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        super::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({ "sets": sets }))?
        ))?;
    } else {
        let now = distillery_store::now_ms();
        let text: Vec<String> = sets
            .iter()
            .map(|set| distillery_pipeline::status::set_report(set, now))
            .collect();
        super::out(&text.join("\n"))?;
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else if problems.iter().all(|p| p.is_incompleteness()) {
        ExitCode::from(EXIT_INCOMPLETE)
    } else {
        ExitCode::FAILURE
    })
}

fn status_of_run(path: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let run_dir =
        RunDir::open(path).with_context(|| format!("{} is not a run directory", path.display()))?;
    let manifest = run_dir.manifest()?;
    if json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&manifest)?))?;
    } else {
        let mut text = distillery_pipeline::status::report(&manifest, distillery_store::now_ms());
        let failures = run_dir.failures()?;
        if !failures.is_empty() {
            text.push_str(&format!(
                "failures   {} prompt(s) without an answer (failures.jsonl); `distillery resume` asks them again\n",
                failures.len()
            ));
            for failure in failures.iter().take(FAILURES_SHOWN) {
                text.push_str(&format!(
                    "  {} (row {}): {}: {}\n",
                    failure.id, failure.source_row, failure.reason, failure.detail
                ));
            }
            if failures.len() > FAILURES_SHOWN {
                text.push_str(&format!(
                    "  … and {} more\n",
                    failures.len() - FAILURES_SHOWN
                ));
            }
        }
        super::out(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code of a run that ended with prompts the teacher gave up on (status `incomplete`).
pub(crate) const EXIT_INCOMPLETE: u8 = 3;

/// Prints the outcome. The exit code tells a script what happened: 0 only when the run
/// completed (every prompt accounted for), 3 when it is incomplete, 130 (Ctrl-C) or 143
/// (SIGTERM) when interrupted, 1 when it failed.
fn conclude(end: &RunEnd) -> ExitCode {
    eprint!(
        "{}",
        distillery_pipeline::status::report(&end.manifest, distillery_store::now_ms())
    );
    let counts = &end.manifest.counts;
    match end.manifest.status {
        RunStatus::Completed => ExitCode::SUCCESS,
        RunStatus::Interrupted => ExitCode::from(
            end.signal()
                .map_or(130, |signal| signal.exit_code())
                .clamp(0, 255) as u8,
        ),
        RunStatus::Incomplete => {
            let reasons: Vec<String> = counts
                .unfinished_by_reason
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect();
            let total = counts
                .prompts_total
                .map_or_else(|| "?".to_owned(), |t| t.to_string());
            eprintln!(
                "error: the run is incomplete: {} of {total} prompts done, {} without an answer ({}); see failures.jsonl; `distillery resume` asks them again",
                counts.prompts_done,
                counts.prompts_unfinished,
                if reasons.is_empty() {
                    "not reached".to_owned()
                } else {
                    reasons.join(", ")
                }
            );
            ExitCode::from(EXIT_INCOMPLETE)
        }
        RunStatus::Failed | RunStatus::Running => {
            match &end.stopped {
                Some(reason) => eprintln!("error: {reason}"),
                None => eprintln!("error: the run failed"),
            }
            ExitCode::FAILURE
        }
    }
}

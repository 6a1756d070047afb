//! Starting, resuming and wiring a run.

use std::collections::{HashSet, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use distillery_source::SourceReader;
use distillery_spec::{Pipeline, Shard};
use distillery_store::{EndpointConcurrency, Manifest, RunDir, RunStatus, WriterOptions};
use distillery_teacher::TeacherStats;

use tokio::sync::oneshot;

use crate::PipelineError;
use crate::actors::{
    Dispatcher, Interrupt, RunEnd, StopSignal, TeacherWorker, Verifier, Writer, WriterError,
};
use crate::credits::Credits;
use crate::error::RunDirConflict;
use crate::grade::{Grader, RunContext};
use crate::metrics::{RunMetrics, Sources};
use crate::progress::{Display, Progress, Reporter};
use crate::teacher::{MockLauncher, RunTeacher};

/// How a run is carried out (not what it computes: that is the definition).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// After Ctrl-C, how long in-flight requests may still finish.
    pub grace: Duration,
    pub display: Display,
    pub metrics: Option<SocketAddr>,
    /// Verifier threads; 0 means one per core.
    pub verifier_threads: usize,
    /// Stop taking new prompts after this many have been dispatched (tests and demos use it to
    /// interrupt a run at a known point).
    pub stop_after: Option<u64>,
    /// Fault injection for tests: WAL writes fail with "No space left on device" once a
    /// segment would exceed this many bytes.
    pub simulate_disk_full_after: Option<u64>,
    /// Starts the built-in mock teacher for definitions that ask for it; without one, such a
    /// definition is refused.
    pub mock: Option<Arc<dyn MockLauncher>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            display: Display::Auto,
            metrics: None,
            verifier_threads: 0,
            stop_after: None,
            simulate_disk_full_after: None,
            mock: None,
        }
    }
}

/// What `start` does with a run directory that already holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Existing {
    /// Refuse it: `distillery resume` continues a run.
    #[default]
    Refuse,
    /// Continue it as `resume` would with this definition (a scheduler that restarts a task
    /// runs the same command again), refusing a run of another shard or an unsafe change.
    Resume,
}

/// Starts a new run of the definition at `definition`. With a shard, the run covers only that
/// shard's prompts and its directory is `shard-I-of-N` inside `run_dir` (default
/// `<output.dir>/<name>`), so every shard's command line can be the same.
pub fn start(
    definition: &Path,
    run_dir: Option<PathBuf>,
    shard: Option<Shard>,
    existing: Existing,
    options: &RunOptions,
) -> Result<RunEnd, PipelineError> {
    let pipeline = Pipeline::from_file(definition)?;
    let text =
        std::fs::read_to_string(definition).map_err(|source| distillery_spec::SpecError::Read {
            path: definition.to_owned(),
            source,
        })?;
    let base = run_dir.unwrap_or_else(|| pipeline.output.dir.join(&pipeline.name));
    let run_path = match shard {
        Some(shard) if RunDir::is_run_dir(&base) => {
            return Err(PipelineError::RunExists(RunDirConflict::ShardInRunDir {
                dir: base,
                shard,
            }));
        }
        Some(shard) => base.join(shard.dir_name()),
        None if !RunDir::is_run_dir(&base)
            && distillery_store::shard_set::expand(std::slice::from_ref(&base))?
                != [base.clone()] =>
        {
            return Err(PipelineError::RunExists(RunDirConflict::HoldsShards {
                dir: base,
            }));
        }
        None => base,
    };
    // A directory left by a start that failed before anything was written (an older version,
    // or a crash at the wrong moment) is started again; one with data is resumed instead.
    let mut lock = None;
    if RunDir::is_run_dir(&run_path) {
        let existing_run = RunDir::open(&run_path)?;
        lock = Some(existing_run.lock()?);
        if existing_run.holds_data()? {
            let recorded = existing_run.manifest()?.shard;
            if recorded != shard {
                return Err(PipelineError::RunExists(RunDirConflict::OtherShard {
                    dir: run_path,
                    recorded,
                    requested: shard,
                }));
            }
            if existing == Existing::Resume {
                drop(lock);
                tracing::info!("{} holds this run already: resuming it", run_path.display());
                return resume(&run_path, Some(definition), false, options);
            }
            return Err(PipelineError::RunExists(RunDirConflict::HoldsRun {
                dir: run_path,
            }));
        }
        existing_run.clear_empty_run()?;
    }
    // Everything that can fail before the first request fails here, before the run directory
    // exists: a missing API key or an unreadable source leaves nothing behind.
    let prepared = Prepared::new(&pipeline, shard, options)?;
    let now = distillery_store::now_ms();
    // Shards started in the same millisecond must not share a run id: rows name their run.
    let run_id = match shard {
        Some(shard) => format!("{}-{}-{now}", pipeline.name, shard.dir_name()),
        None => format!("{}-{now}", pipeline.name),
    };
    let mut manifest = Manifest::new(&run_id, &pipeline.name, &text, env!("CARGO_PKG_VERSION"));
    manifest.shard = shard;
    let absolute = std::fs::canonicalize(definition).unwrap_or_else(|_| definition.to_owned());
    manifest.definition_path = Some(absolute.display().to_string());
    let run_dir = RunDir::create(&run_path, &text, &manifest)?;
    let lock = match lock {
        Some(lock) => lock,
        None => run_dir.lock()?,
    };
    match shard {
        Some(shard) => tracing::info!("run `{run_id}` (shard {shard}) in {}", run_path.display()),
        None => tracing::info!("run `{run_id}` in {}", run_path.display()),
    }
    execute(
        pipeline,
        prepared,
        &text,
        run_dir,
        lock,
        manifest,
        Resumed::default(),
        options,
    )
}

/// What a resumed run starts from.
#[derive(Debug, Default)]
struct Resumed {
    done_ids: HashSet<String>,
    quarantined_rows: HashSet<u64>,
    failures: Vec<distillery_store::FailureEntry>,
}

/// The parts of a run that can fail before it sends anything: the teacher (API keys, the
/// local model, the mock's dataset) and the source.
struct Prepared {
    teacher: RunTeacher,
    total: u64,
    source: SourceReader,
}

impl Prepared {
    fn new(
        pipeline: &Pipeline,
        shard: Option<Shard>,
        options: &RunOptions,
    ) -> Result<Self, PipelineError> {
        let teacher = RunTeacher::build(pipeline, shard, options.mock.as_deref())?;
        let total = count_rows(pipeline, shard)?;
        let source = SourceReader::open(&pipeline.source)?.shard(shard);
        Ok(Self {
            teacher,
            total,
            source,
        })
    }
}

/// Continues a run. With `definition`, the run continues under that (changed) definition if
/// the change is safe, or if `force`.
pub fn resume(
    run_path: &Path,
    definition: Option<&Path>,
    force: bool,
    options: &RunOptions,
) -> Result<RunEnd, PipelineError> {
    let run_dir = RunDir::open(run_path)?;
    let lock = run_dir.lock()?;
    let frozen = run_dir.frozen_definition()?;
    let mut manifest = run_dir.manifest()?;
    // A shard resumes as the shard it started as: its directory holds that shard's rows.
    let shard = manifest.shard;
    let original_path = manifest
        .definition_path
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| run_path.join(distillery_store::run_dir::PIPELINE_FILE));
    // Relative paths in the frozen copy resolve against where the definition was.
    let base_dir = original_path.parent().unwrap_or(Path::new(".")).to_owned();
    let frozen_pipeline = Pipeline::parse(&frozen, &original_path, &base_dir)?;
    let mut prepared_early = None;
    let (pipeline, text) = match definition {
        None => (frozen_pipeline, frozen),
        Some(path) => {
            // Resolved, so that `--pipeline edited.toml` and the absolute path the run was
            // started with name the same files.
            let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            let changed = Pipeline::from_file(path)?;
            let changes = unsafe_changes(&frozen_pipeline, &changed);
            if !changes.is_empty() {
                if !force {
                    return Err(PipelineError::UnsafeChange { changes });
                }
                tracing::warn!(
                    "resuming with a changed definition (--force):\n{}",
                    changes.join("\n")
                );
            }
            let text = std::fs::read_to_string(path).map_err(|source| {
                distillery_spec::SpecError::Read {
                    path: path.to_owned(),
                    source,
                }
            })?;
            prepared_early = Some(Prepared::new(&changed, shard, options)?);
            run_dir.refreeze(&text)?;
            manifest.config_hash = distillery_store::config_hash(&text);
            let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
            manifest.definition_path = Some(absolute.display().to_string());
            (changed, text)
        }
    };
    // Fails (missing key, unreadable source) before the run is touched.
    let prepared = match prepared_early {
        Some(prepared) => prepared,
        None => Prepared::new(&pipeline, shard, options)?,
    };
    // Every shard the run cut must still be there, whole and unchanged: a resume over a lost
    // or changed shard would call the run complete with rows missing or wrong.
    let listed = std::mem::take(&mut manifest.shards);
    let changed = run_dir.verify_shard_checksums(&listed)?;
    if !changed.is_empty() && !force {
        return Err(PipelineError::Damaged { problems: changed });
    }
    let mut recovered = run_dir.recover()?;
    let mut problems = changed;
    problems.extend(run_dir.check_listed_shards(&listed, &mut recovered.shards));
    // Done-ness is per (prompt, sample): every sample of a prompt is written in one record,
    // so a prompt with some but not all of them lost a shard the manifest did not list yet.
    let samples = pipeline.teacher.samples_per_prompt.get();
    let short = recovered.short_prompts(samples);
    if !short.is_empty() {
        const SHOWN: usize = 10;
        let mut lines: Vec<String> = short
            .iter()
            .take(SHOWN)
            .map(|(id, count)| {
                format!(
                    "prompt {id}: {count} of its {samples} samples are in {}",
                    run_dir.shards_dir().display()
                )
            })
            .collect();
        if short.len() > SHOWN {
            lines.push(format!("… and {} more prompts", short.len() - SHOWN));
        }
        problems.push(format!(
            "{} prompt(s) have samples missing (a shard holding them is lost):\n{}",
            short.len(),
            lines.join("\n")
        ));
    }
    if !problems.is_empty() {
        if !force {
            return Err(PipelineError::Damaged { problems });
        }
        tracing::warn!(
            "resuming over damaged data (--force):\n{}",
            problems.join("\n")
        );
    }
    for torn in &recovered.torn {
        tracing::info!("recovered from an interrupted write: {torn:?}");
    }
    if !recovered.recut.is_empty() {
        tracing::info!(
            "finished {} shard cut(s) left by the previous session",
            recovered.recut.len()
        );
    }
    manifest.counts = recovered.counts;
    manifest.tokens = recovered.tokens;
    manifest.shards = recovered.shards;
    manifest.status = RunStatus::Running;
    tracing::info!(
        "resuming `{}`: {} prompts already done{}",
        manifest.run_id,
        recovered.done_ids.len(),
        match recovered.failures.len() {
            0 => String::new(),
            n => format!(", {n} that failed before asked again"),
        }
    );
    execute(
        pipeline,
        prepared,
        &text,
        run_dir,
        lock,
        manifest,
        Resumed {
            done_ids: recovered.done_ids,
            quarantined_rows: recovered.quarantined_rows,
            failures: recovered.failures,
        },
        options,
    )
}

/// Differences between two definitions that would change what rows mean (see
/// [`Pipeline::meaning`]: what only tunes the run is left out), one line per field.
pub fn unsafe_changes(before: &Pipeline, after: &Pipeline) -> Vec<String> {
    let flat = |pipeline: &Pipeline| {
        let mut out = Vec::new();
        flatten(
            "",
            &serde_json::to_value(pipeline.meaning()).unwrap_or_default(),
            &mut out,
        );
        out.into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (left, right) = (flat(before), flat(after));
    let keys: std::collections::BTreeSet<_> = left.keys().chain(right.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (a, b) = (left.get(key), right.get(key));
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
            (a != b).then(|| format!("  {key}: {} → {}", show(a), show(b)))
        })
        .collect()
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), value, out);
            }
        }
        serde_json::Value::String(text) if is_path_field(prefix) => {
            // Compared resolved: `src.jsonl` next to the definition and its absolute path
            // are the same file.
            let resolved = std::fs::canonicalize(text)
                .or_else(|_| std::path::absolute(text))
                .map_or_else(|_| text.clone(), |p| p.display().to_string());
            out.push((
                prefix.to_owned(),
                serde_json::Value::String(resolved).to_string(),
            ));
        }
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// Fields of a definition that hold file paths.
fn is_path_field(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    matches!(last, "path" | "dataset" | "checkpoint" | "tokenizer")
}

#[allow(clippy::too_many_arguments)]
fn execute(
    pipeline: Pipeline,
    prepared: Prepared,
    text: &str,
    run_dir: RunDir,
    lock: distillery_store::RunLock,
    mut manifest: Manifest,
    resumed: Resumed,
    options: &RunOptions,
) -> Result<RunEnd, PipelineError> {
    manifest.counts.prompts_total = Some(prepared.total);
    let result = execute_locked(
        pipeline,
        prepared,
        text,
        run_dir.clone(),
        manifest,
        resumed,
        options,
    );
    if let Err(error) = &result {
        // Whatever stopped the run before its actors could, the manifest must not say
        // "running": mark it failed (resume continues it once the cause is fixed).
        if let Ok(mut current) = run_dir.manifest()
            && current.status == RunStatus::Running
        {
            current.status = RunStatus::Failed;
            current.updated_at_ms = distillery_store::now_ms();
            if let Err(write) = run_dir.write_manifest(&current) {
                tracing::warn!("cannot mark the run failed after `{error}`: {write}");
            }
        }
    }
    drop(lock);
    result
}

fn execute_locked(
    pipeline: Pipeline,
    prepared: Prepared,
    text: &str,
    run_dir: RunDir,
    mut manifest: Manifest,
    resumed: Resumed,
    options: &RunOptions,
) -> Result<RunEnd, PipelineError> {
    let Prepared {
        teacher,
        total,
        source,
    } = prepared;
    let Resumed {
        done_ids,
        quarantined_rows,
        failures,
    } = resumed;
    let pipeline = Arc::new(pipeline);
    let teacher = Arc::new(teacher);
    manifest.counts.set_unfinished(&failures);
    run_dir.write_manifest(&manifest)?;

    let mut writer_options = WriterOptions::from_output(&pipeline.output);
    writer_options
        .footer_metadata
        .push(("distillery.run_id".into(), manifest.run_id.clone()));
    if let Some(shard) = manifest.shard {
        writer_options
            .footer_metadata
            .push(("distillery.shard".into(), shard.to_string()));
    }
    let mut shards = run_dir.writer(writer_options)?;
    if let Some(bytes) = options.simulate_disk_full_after {
        shards.simulate_disk_full_after(bytes);
    }
    let stop_after = options.stop_after;

    let progress = Arc::new(Progress::default());
    progress.prompts_total.store(total, Ordering::Relaxed);
    progress.publish(&manifest);
    let stats: Arc<dyn Fn() -> TeacherStats + Send + Sync> = {
        let teacher = Arc::clone(&teacher);
        Arc::new(move || teacher.stats())
    };
    let endpoint_limits: Arc<dyn Fn() -> Vec<EndpointConcurrency> + Send + Sync> = {
        let teacher = Arc::clone(&teacher);
        Arc::new(move || teacher.endpoint_limits())
    };
    let metrics = Arc::new(RunMetrics::new(Sources {
        progress: Arc::clone(&progress),
        teacher: Arc::clone(&stats),
        endpoints: Arc::clone(&endpoint_limits),
    }));
    // Bound now, so that a taken port fails the run before it sends anything.
    let metrics_listener = match options.metrics {
        Some(address) => {
            let listener = TcpListener::bind(address)
                .and_then(|listener| listener.local_addr().map(|bound| (listener, bound)))
                .map_err(|source| PipelineError::Metrics { address, source })?;
            tracing::info!("Prometheus metrics at http://{}/metrics", listener.1);
            Some(listener)
        }
        None => None,
    };
    let _reporter = Reporter::start(Arc::clone(&progress), stats, options.display);

    let context = Arc::new(RunContext {
        run_id: manifest.run_id.clone(),
        pipeline: pipeline.name.clone(),
        config_hash: distillery_store::config_hash(text),
        source_path: pipeline.source.path.display().to_string(),
    });
    let grader = Arc::new(
        Grader::new(&pipeline.verify, &pipeline.source.prompt_field)
            .with_assistant_format(pipeline.prompt.assistant_format),
    );
    let verifier_threads = match options.verifier_threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    // A sandbox mostly waits on its child process: the pool has a thread for every sandbox
    // `[verify.code] parallel` allows, and the grader's slots keep them to that number.
    let verifier_threads = verifier_threads.max(grader.code_parallelism().unwrap_or(0));
    let window = teacher.capacity().max(1);
    let elapsed_before = manifest.elapsed_secs;
    let pricing = pipeline.teacher.pricing;
    let samples = pipeline.teacher.samples_per_prompt;
    let until_correct = pipeline.teacher.until_correct;
    let length = crate::truncation::LengthPolicy::from_pipeline(&pipeline);
    let grace = options.grace;

    let system = actix::System::new();
    let end = system.block_on(async move {
        if let Some((listener, address)) = metrics_listener
            && let Err(source) = Arc::clone(&metrics).serve(listener)
        {
            tracing::warn!("cannot serve metrics on {address}: {source}");
        }
        let (done_tx, done_rx) = oneshot::channel();
        let writer_arbiter = Arbiter::new();
        let worker_arbiters: Vec<Arbiter> = (0..worker_threads()).map(|_| Arbiter::new()).collect();
        let dispatcher = Dispatcher::create(|ctx| {
            let dispatcher = ctx.address();
            let writer_progress = Arc::clone(&progress);
            let writer = Writer::start_in_arbiter(&writer_arbiter.handle(), {
                let dispatcher = dispatcher.clone();
                move |_| Writer {
                    run_dir,
                    shards: Some(shards),
                    manifest,
                    dispatcher,
                    progress: writer_progress,
                    pricing,
                    elapsed_before,
                    started: Instant::now(),
                    pending_credits: Vec::new(),
                    pending_rows: Vec::new(),
                    pending_quarantine: Vec::new(),
                    commit_scheduled: false,
                    failed: false,
                    unfinished: failures
                        .into_iter()
                        .map(|failure| (failure.id.clone(), failure))
                        .collect(),
                    endpoints: endpoint_limits,
                }
            });
            let verifiers = {
                let writer = writer.clone();
                let dispatcher = dispatcher.clone();
                SyncArbiter::start(verifier_threads, move || Verifier {
                    grader: Arc::clone(&grader),
                    context: Arc::clone(&context),
                    writer: writer.clone(),
                    dispatcher: dispatcher.clone(),
                    until_correct,
                })
            };
            let workers = worker_arbiters
                .iter()
                .map(|arbiter| {
                    let (teacher, verifiers, dispatcher) =
                        (Arc::clone(&teacher), verifiers.clone(), dispatcher.clone());
                    let metrics = Arc::clone(&metrics);
                    TeacherWorker::start_in_arbiter(&arbiter.handle(), move |_| TeacherWorker {
                        teacher,
                        samples,
                        length,
                        until_correct,
                        verifiers,
                        dispatcher,
                        metrics,
                    })
                })
                .collect();
            Dispatcher {
                pipeline: Arc::clone(&pipeline),
                source: Some(source),
                done_ids,
                quarantined_rows,
                workers,
                writer,
                requests: Credits::new(window),
                // Enough slack for verification and group commit not to starve the teacher.
                prompts: Credits::new(window * 2 + 64),
                again: VecDeque::new(),
                grace,
                progress: Arc::clone(&progress),
                done: Some(done_tx),
                next_worker: 0,
                dispatched: 0,
                stop_after,
                stopping: None,
            }
        });
        let interrupt = dispatcher.clone();
        actix::spawn(async move {
            // SIGTERM (Docker, systemd, Kubernetes, Slurm) drains like Ctrl-C.
            let mut signals = Signals::new();
            if let Some(signal) = signals.next().await {
                interrupt.do_send(Interrupt(signal));
                if let Some(signal) = signals.next().await {
                    // The WAL is consistent at every moment; a resume picks up from here.
                    eprintln!("second {}: stopping now", signal.name());
                    std::process::exit(signal.exit_code());
                }
            }
        });
        let end = done_rx.await;
        writer_arbiter.stop();
        for arbiter in worker_arbiters {
            arbiter.stop();
        }
        end
    });
    // A dropped sender means the dispatcher died without finishing: the writer never heard.
    end.unwrap_or(Err(WriterError::Closed))
        .map_err(PipelineError::Writer)
}

/// Ctrl-C and SIGTERM, as they arrive.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| tracing::warn!("cannot handle SIGTERM: {e}"))
                .ok(),
        }
    }

    /// The next signal; `None` when no signal can be received any more.
    async fn next(&mut self) -> Option<StopSignal> {
        #[cfg(unix)]
        let terminate = async {
            match &mut self.terminate {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<Option<()>>();
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.ok().map(|()| StopSignal::Interrupt),
            Some(()) = terminate => Some(StopSignal::Terminate),
        }
    }
}

/// Event loops for teacher requests: the work per request is small (parsing a response), so
/// two threads keep thousands of requests in flight.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

/// Rows in the source (after `limit`) of the shard, for the progress bar and the ETA.
fn count_rows(pipeline: &Pipeline, shard: Option<Shard>) -> Result<u64, PipelineError> {
    let mut count = 0;
    for item in SourceReader::open(&pipeline.source)?.shard(shard) {
        // Quarantined rows count too: they are prompts the run accounts for.
        let _row_or_quarantined = item?;
        count += 1;
    }
    Ok(count)
}

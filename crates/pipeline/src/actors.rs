//! The actors: a dispatcher that reads the source and keeps the teacher busy, teacher workers
//! that make requests, a pool of verifiers on their own threads, and a writer that makes
//! results durable.
//!
//! Memory stays flat because every prompt between the source and a durable write holds a
//! [`Credit`] of the run's prompt pool, and every request in the teacher one of its request
//! pool (see [`crate::credits`]): no mailbox can hold more prompts than the pool allows,
//! however large the source is. A slow verifier or disk therefore slows the dispatcher, not
//! the other way round.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use distillery_source::SourceReader;
use distillery_spec::{Pipeline, UntilCorrect};
use distillery_store::LengthHandling;
use distillery_store::record::{FailureEntry, Generation, QuarantineEntry};
use distillery_store::{Manifest, RunDir, RunStatus, ShardWriter, now_ms};
use distillery_teacher::{TeacherError, TeacherRequest};
use tokio::sync::oneshot;

use crate::credits::{Credit, Credits};
use crate::grade::{Grader, RunContext};
use crate::job::PromptJob;
use crate::metrics::RunMetrics;
use crate::progress::Progress;
use crate::teacher::RunTeacher;
use crate::truncation::{self, LengthPolicy};

/// How a run ended.
#[derive(Debug)]
pub struct RunEnd {
    pub manifest: Manifest,
    /// Why the run stopped early, when it did not complete.
    pub stopped: Option<StopReason>,
}

impl RunEnd {
    /// The signal that interrupted the run, if one did.
    pub fn signal(&self) -> Option<StopSignal> {
        match self.stopped {
            Some(StopReason::Interrupted(signal)) => Some(signal),
            _ => None,
        }
    }
}

/// Why a run stopped before every prompt was asked.
#[derive(Debug, thiserror::Error)]
pub enum StopReason {
    #[error("interrupted by {}", .0.name())]
    Interrupted(StopSignal),
    #[error("cannot read the source: {0}")]
    Source(#[source] distillery_store::StoreError),
    /// An error every later request would get too (a refused key, an unknown model).
    #[error(transparent)]
    Teacher(TeacherError),
    #[error("{0}; the run is resumable once the problem is fixed")]
    Writer(#[source] WriterError),
}

/// Why the writer could not make rows durable or finish the run.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Store(#[from] distillery_store::StoreError),
    #[error("the writer is closed")]
    Closed,
    #[error("the writer stopped: {0}")]
    Gone(#[from] actix::MailboxError),
}

/// A signal that drains the run: no new prompts, in-flight ones get the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// Ctrl-C (SIGINT), or `--stop-after`.
    Interrupt,
    /// SIGTERM, as Docker, systemd, Kubernetes and Slurm send.
    Terminate,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "Ctrl-C",
            Self::Terminate => "SIGTERM",
        }
    }

    /// What a shell reports for a process the signal ended: 128 + the signal's number.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// Ask the teacher for (more) samples of a prompt.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Ask {
    pub job: PromptJob,
    pub round: Round,
    /// The prompt's place between the source and the WAL.
    pub credit: Credit,
    /// The request's place in the teacher.
    pub slot: Credit,
}

/// Which request of a prompt this is: `until_correct` asks a prompt again, round after round,
/// until enough of its samples are verified or `max_samples` are drawn. The rows of earlier
/// rounds travel with the prompt and reach the writer together with the last round's, so the
/// WAL holds every sample of a prompt in one record or none of them (a resume then asks an
/// interrupted prompt again from its first sample: never more, never fewer samples).
#[derive(Debug, Default)]
pub(crate) struct Round {
    /// 0 for the first request of a prompt.
    pub number: u32,
    /// The graded rows of the earlier rounds.
    pub prior: Vec<Generation>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Verify {
    job: PromptJob,
    completion: distillery_teacher::Completion,
    round: Round,
    /// How the length limit treated each sample of `completion`.
    length: Vec<LengthHandling>,
    credit: Credit,
}

/// From a verifier: the prompt needs another round (`until_correct`).
#[derive(Message)]
#[rtype(result = "()")]
struct Again {
    job: PromptJob,
    round: Round,
    credit: Credit,
}

#[derive(Message)]
#[rtype(result = "()")]
struct TeacherAnswered;

#[derive(Message)]
#[rtype(result = "()")]
struct TeacherFailed {
    job: PromptJob,
    error: TeacherError,
    credit: Credit,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Record {
    rows: Vec<Generation>,
    credit: Credit,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Quarantine(QuarantineEntry, Credit);

/// A prompt the teacher gave up on: recorded in failures.jsonl, asked again by a resume.
#[derive(Message)]
#[rtype(result = "()")]
struct Failure(FailureEntry);

/// From the writer: prompts are now durable, and their credits back in the pool.
#[derive(Message)]
#[rtype(result = "()")]
struct Durable;

#[derive(Message)]
#[rtype(result = "()")]
struct WriterFailed(WriterError);

#[derive(Message)]
#[rtype(result = "Result<Manifest, WriterError>")]
struct Finish {
    status: RunStatus,
}

/// Ctrl-C or SIGTERM: stop taking prompts, give in-flight ones the grace period.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Interrupt(pub StopSignal);

// ---------------------------------------------------------------------------------------------
// Dispatcher

pub(crate) struct Dispatcher {
    pub pipeline: Arc<Pipeline>,
    pub source: Option<SourceReader>,
    /// Prompts already durable in the run (resume): never asked again.
    pub done_ids: HashSet<String>,
    /// Source rows already in quarantine.jsonl (resume).
    pub quarantined_rows: HashSet<u64>,
    pub workers: Vec<Addr<TeacherWorker>>,
    pub writer: Addr<Writer>,
    /// Prompts between the source and a durable write.
    pub prompts: Credits,
    /// Requests in the teacher (it takes this many at once).
    pub requests: Credits,
    /// `until_correct` rounds waiting for a place in the teacher; served before new prompts.
    pub again: VecDeque<(PromptJob, Round, Credit)>,
    pub grace: Duration,
    pub progress: Arc<Progress>,
    pub done: Option<oneshot::Sender<Result<RunEnd, WriterError>>>,
    pub next_worker: usize,
    /// Prompts sent to the teacher in this session.
    pub dispatched: u64,
    /// Behave as if interrupted once this many prompts were sent.
    pub stop_after: Option<u64>,
    pub stopping: Option<StopReason>,
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.fill(ctx);
    }
}

impl Dispatcher {
    fn fill(&mut self, ctx: &mut Context<Self>) {
        // `done` is gone once the run is finishing (and `stopping` handed to its end).
        while self.stopping.is_none() && self.done.is_some() {
            let Some(slot) = self.requests.take() else {
                break;
            };
            if let Some((job, round, credit)) = self.again.pop_front() {
                self.ask(job, round, credit, slot);
                continue;
            }
            let Some(credit) = self.prompts.take() else {
                break;
            };
            let Some(source) = self.source.as_mut() else {
                break;
            };
            let item = match source.next() {
                None => {
                    self.source = None;
                    break;
                }
                Some(Err(error)) => {
                    self.stop(ctx, StopReason::Source(error));
                    return;
                }
                Some(Ok(item)) => item,
            };
            match item {
                Ok(row) if self.done_ids.contains(&row.id) => {
                    self.progress.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Ok(row) => match PromptJob::from_row(row, &self.pipeline) {
                    Ok(job) => {
                        self.ask(job, Round::default(), credit, slot);
                        self.dispatched += 1;
                        if self
                            .stop_after
                            .is_some_and(|limit| self.dispatched >= limit)
                        {
                            self.stop(ctx, StopReason::Interrupted(StopSignal::Interrupt));
                        }
                    }
                    Err(entry) => self.quarantine(*entry, credit),
                },
                Err(entry) if self.quarantined_rows.contains(&entry.source_row) => {}
                Err(entry) => self.quarantine(entry, credit),
            }
        }
        self.finish_if_idle(ctx);
    }

    /// Hands a prompt to the next teacher worker.
    fn ask(&mut self, job: PromptJob, round: Round, credit: Credit, slot: Credit) {
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker = self.next_worker.wrapping_add(1);
        worker.do_send(Ask {
            job,
            round,
            credit,
            slot,
        });
        self.publish_in_flight();
    }

    fn publish_in_flight(&self) {
        self.progress
            .in_flight
            .store(self.requests.in_use(), Ordering::Relaxed);
    }

    fn quarantine(&mut self, entry: QuarantineEntry, credit: Credit) {
        tracing::warn!(
            "quarantined {} row {}: {} ({})",
            entry.source_path,
            entry.source_row,
            entry.detail,
            entry.reason
        );
        self.writer.do_send(Quarantine(entry, credit));
    }

    fn stop(&mut self, ctx: &mut Context<Self>, stop: StopReason) {
        if self.stopping.is_some() || self.done.is_none() {
            return;
        }
        let grace = match &stop {
            StopReason::Interrupted(signal) => {
                tracing::warn!(
                    "{}: no new prompts; waiting up to {:?} for {} in flight",
                    signal.name(),
                    self.grace,
                    self.requests.in_use()
                );
                self.grace
            }
            reason => {
                tracing::error!("stopping: {reason}");
                Duration::ZERO
            }
        };
        self.stopping = Some(stop);
        // After the grace period whatever is still in flight is abandoned: those prompts are
        // not in the WAL, so a resume asks for them again.
        ctx.run_later(grace, |act, ctx| act.finish(ctx));
        self.finish_if_idle(ctx);
    }

    fn finish_if_idle(&mut self, ctx: &mut Context<Self>) {
        let drained = self.source.is_none() || self.stopping.is_some();
        if drained && self.requests.in_use() == 0 && self.prompts.in_use() == 0 {
            self.finish(ctx);
        }
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        let Some(done) = self.done.take() else {
            return;
        };
        let stopped = self.stopping.take();
        let status = match &stopped {
            None => RunStatus::Completed,
            Some(StopReason::Interrupted(_)) => RunStatus::Interrupted,
            Some(_) => RunStatus::Failed,
        };
        self.writer
            .send(Finish { status })
            .into_actor(self)
            .map(move |result, _act, ctx| {
                let end = result
                    .map_err(WriterError::from)
                    .and_then(|finished| finished)
                    .map(|manifest| RunEnd { manifest, stopped });
                let _ = done.send(end);
                ctx.stop();
            })
            .wait(ctx);
    }
}

impl Handler<TeacherAnswered> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: TeacherAnswered, ctx: &mut Context<Self>) {
        self.publish_in_flight();
        self.fill(ctx);
    }
}

impl Handler<TeacherFailed> for Dispatcher {
    type Result = ();

    fn handle(&mut self, failed: TeacherFailed, ctx: &mut Context<Self>) {
        self.publish_in_flight();
        let TeacherFailed { job, error, credit } = failed;
        match error {
            error if error.is_fatal() => {
                drop(credit);
                self.stop(ctx, StopReason::Teacher(error));
            }
            error if error.is_rejection() => {
                // The teacher will never answer this prompt (e.g. longer than its context):
                // it is done, with the reason on record.
                self.quarantine(
                    QuarantineEntry {
                        id: Some(job.id),
                        source_path: self.pipeline.source.path.display().to_string(),
                        source_row: job.row_number,
                        reason: "teacher.rejected".into(),
                        detail: error.to_string(),
                        raw: None,
                    },
                    credit,
                );
            }
            error => {
                // Out of retries: not done, so a resume asks again. The failure is on record
                // (failures.jsonl) and keeps the run from being called completed.
                drop(credit);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "prompt {} (row {}) failed: {error}; `distillery resume` will retry it",
                    job.id,
                    job.row_number
                );
                self.writer.do_send(Failure(FailureEntry {
                    reason: failure_reason(&error).to_owned(),
                    detail: error.to_string(),
                    id: job.id,
                    source_path: self.pipeline.source.path.display().to_string(),
                    source_row: job.row_number,
                    at_ms: now_ms(),
                }));
            }
        }
        self.fill(ctx);
    }
}

impl Handler<Again> for Dispatcher {
    type Result = ();

    fn handle(&mut self, Again { job, round, credit }: Again, ctx: &mut Context<Self>) {
        if self.stopping.is_some() {
            // Abandoned with its earlier rounds: nothing of it is in the WAL, so a resume asks
            // for it again from its first sample.
            drop(credit);
            self.finish_if_idle(ctx);
            return;
        }
        self.again.push_back((job, round, credit));
        self.fill(ctx);
    }
}

impl Handler<Durable> for Dispatcher {
    type Result = ();

    fn handle(&mut self, Durable: Durable, ctx: &mut Context<Self>) {
        self.fill(ctx);
    }
}

impl Handler<WriterFailed> for Dispatcher {
    type Result = ();

    fn handle(&mut self, WriterFailed(error): WriterFailed, ctx: &mut Context<Self>) {
        self.stop(ctx, StopReason::Writer(error));
    }
}

impl Handler<Interrupt> for Dispatcher {
    type Result = ();

    fn handle(&mut self, Interrupt(signal): Interrupt, ctx: &mut Context<Self>) {
        self.stop(ctx, StopReason::Interrupted(signal));
    }
}

/// The machine-readable reason of a failure in failures.jsonl.
fn failure_reason(error: &TeacherError) -> &'static str {
    match error {
        TeacherError::Exhausted { .. } => "teacher.retries_exhausted",
        TeacherError::Generation { .. } => "teacher.generation_failed",
        _ => "teacher.error",
    }
}

// ---------------------------------------------------------------------------------------------
// Teacher workers: each owns an event loop (an arbiter) on which its requests run.

pub(crate) struct TeacherWorker {
    pub teacher: Arc<RunTeacher>,
    pub samples: std::num::NonZeroU32,
    pub length: LengthPolicy,
    pub until_correct: Option<UntilCorrect>,
    pub verifiers: Addr<Verifier>,
    pub dispatcher: Addr<Dispatcher>,
    pub metrics: Arc<RunMetrics>,
}

impl Actor for TeacherWorker {
    type Context = Context<Self>;
}

impl Handler<Ask> for TeacherWorker {
    type Result = ();

    fn handle(
        &mut self,
        Ask {
            job,
            round,
            credit,
            slot,
        }: Ask,
        _ctx: &mut Context<Self>,
    ) {
        let teacher = Arc::clone(&self.teacher);
        let verifiers = self.verifiers.clone();
        let dispatcher = self.dispatcher.clone();
        let metrics = Arc::clone(&self.metrics);
        let drawn = round.prior.len() as u32;
        // A round asks for `n` samples, or for what `max_samples` leaves.
        let samples = match self.until_correct {
            Some(until) => std::num::NonZeroU32::new(
                self.samples
                    .get()
                    .min(until.max_samples.get().saturating_sub(drawn)),
            )
            .unwrap_or(std::num::NonZeroU32::MIN),
            None => self.samples,
        };
        let mut request = TeacherRequest::new(job.messages(), samples);
        // A later round must draw new samples from a server that seeds its sampling.
        request.seed = (round.number > 0).then(|| i64::from(round.number) << 32);
        let length = self.length;
        actix::spawn(async move {
            let answered = match teacher.complete(&request).await {
                Ok(mut completion) => truncation::handle(
                    &teacher,
                    length,
                    &request.messages,
                    round.number,
                    request.seed,
                    &mut completion,
                )
                .await
                .map(|handled| (completion, handled)),
                Err(error) => Err(error),
            };
            // The teacher is done with the request: its place goes back before the dispatcher
            // hears, so it can fill it.
            drop(slot);
            match answered {
                Ok((mut completion, length)) => {
                    metrics.observe(&completion);
                    // Sample indices go on from the earlier rounds': (id, index) stays unique.
                    for sample in &mut completion.samples {
                        sample.index += drawn;
                    }
                    dispatcher.do_send(TeacherAnswered);
                    verifiers.do_send(Verify {
                        job,
                        completion,
                        round,
                        length,
                        credit,
                    });
                }
                Err(error) => dispatcher.do_send(TeacherFailed { job, error, credit }),
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Verifiers: a pool of threads, since checks are CPU work (and the code sandbox blocks).

pub(crate) struct Verifier {
    pub grader: Arc<Grader>,
    pub context: Arc<RunContext>,
    pub writer: Addr<Writer>,
    pub dispatcher: Addr<Dispatcher>,
    pub until_correct: Option<UntilCorrect>,
}

impl Actor for Verifier {
    type Context = SyncContext<Self>;
}

impl Handler<Verify> for Verifier {
    type Result = ();

    fn handle(&mut self, verify: Verify, _ctx: &mut SyncContext<Self>) {
        let Verify {
            job,
            completion,
            round,
            length,
            credit,
        } = verify;
        let mut rows = self
            .grader
            .grade(&job, &completion, &self.context, now_ms());
        for (row, length) in rows.iter_mut().zip(length) {
            row.length = length;
        }
        let Round { number, mut prior } = round;
        prior.extend(rows);
        if let Some(until) = self.until_correct {
            let verified = prior.iter().filter(|row| passed_every_check(row)).count();
            if verified < until.verified.get() as usize
                && prior.len() < until.max_samples.get() as usize
            {
                self.dispatcher.do_send(Again {
                    job,
                    round: Round {
                        number: number + 1,
                        prior,
                    },
                    credit,
                });
                return;
            }
        }
        self.writer.do_send(Record {
            rows: prior,
            credit,
        });
    }
}

/// A verified sample: every check passed (the keep policy aside).
fn passed_every_check(row: &Generation) -> bool {
    row.checks
        .iter()
        .filter(|check| check.check != "keep")
        .all(|check| check.passed)
}

// ---------------------------------------------------------------------------------------------
// Writer: WAL with group commit, shard cuts, the manifest. Runs on its own thread so that
// fsync never stalls the network.

pub(crate) struct Writer {
    pub run_dir: RunDir,
    pub shards: Option<ShardWriter>,
    pub manifest: Manifest,
    pub dispatcher: Addr<Dispatcher>,
    pub progress: Arc<Progress>,
    pub pricing: Option<distillery_spec::Pricing>,
    /// Elapsed seconds of earlier sessions of this run.
    pub elapsed_before: f64,
    pub started: Instant,
    /// The credits of the prompts buffered for the next commit: given back once it is durable.
    pub pending_credits: Vec<Credit>,
    pub pending_rows: Vec<Generation>,
    pub pending_quarantine: Vec<QuarantineEntry>,
    pub commit_scheduled: bool,
    pub failed: bool,
    /// Prompts whose last attempt failed and that have no durable answer, by id.
    pub unfinished: BTreeMap<String, FailureEntry>,
    /// Where the teacher endpoints' adaptive concurrency stands, for the manifest.
    pub endpoints: Arc<dyn Fn() -> Vec<distillery_store::EndpointConcurrency> + Send + Sync>,
}

/// Prompts buffered before a commit is forced; otherwise commits happen every few ms.
const GROUP_COMMIT_PROMPTS: usize = 256;
const GROUP_COMMIT_DELAY: Duration = Duration::from_millis(5);
const MANIFEST_EVERY: Duration = Duration::from_secs(2);

impl Actor for Writer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(MANIFEST_EVERY, |act, _| {
            if !act.failed {
                act.refresh_manifest();
                if let Err(error) = act.run_dir.write_manifest(&act.manifest) {
                    tracing::warn!("cannot update the manifest: {error}");
                }
            }
        });
    }
}

impl Writer {
    fn schedule_commit(&mut self, ctx: &mut Context<Self>) {
        if self.pending_credits.len() >= GROUP_COMMIT_PROMPTS {
            self.commit();
        } else if !self.commit_scheduled {
            self.commit_scheduled = true;
            ctx.run_later(GROUP_COMMIT_DELAY, |act, _| {
                act.commit_scheduled = false;
                act.commit();
            });
        }
    }

    /// One write + fsync for everything buffered, then the dispatcher hears it is durable.
    fn commit(&mut self) {
        if self.failed || self.pending_credits.is_empty() {
            return;
        }
        if let Err(error) = self.try_commit() {
            self.failed = true;
            self.dispatcher.do_send(WriterFailed(error));
            return;
        }
        let rows = std::mem::take(&mut self.pending_rows);
        self.count(&rows);
        if !self.unfinished.is_empty() {
            for row in &rows {
                self.unfinished.remove(&row.id);
            }
        }
        let quarantined = std::mem::take(&mut self.pending_quarantine);
        let counts = &mut self.manifest.counts;
        for entry in &quarantined {
            if let Some(id) = &entry.id {
                self.unfinished.remove(id);
            }
            counts.quarantined += 1;
            counts.prompts_done += 1;
            if !entry.reason.starts_with("source.") {
                counts.prompts_failed += 1;
            }
        }
        self.progress.publish(&self.manifest);
        self.pending_credits.clear();
        self.dispatcher.do_send(Durable);
    }

    fn try_commit(&mut self) -> Result<(), WriterError> {
        let shards = self.shards.as_mut().ok_or(WriterError::Closed)?;
        if !self.pending_rows.is_empty() {
            shards
                .append(&self.pending_rows)
                .and_then(|()| shards.commit())?;
        }
        if !self.pending_quarantine.is_empty() {
            self.run_dir.quarantine_many(&self.pending_quarantine)?;
        }
        if let Some(cut) = shards.cut_if_due()? {
            tracing::debug!("cut shard {} ({} accepted)", cut.index, cut.accepted_rows);
            self.manifest.shards.push(cut);
        }
        Ok(())
    }

    fn count(&mut self, rows: &[Generation]) {
        // Every sample of a prompt arrives in one record: the rows of a prompt are together.
        for problem in rows.chunk_by(|a, b| a.id == b.id) {
            let mut tally = distillery_store::difficulty::ProblemTally::default();
            for row in problem {
                tally.add(
                    row.source.level.as_deref(),
                    row.accepted,
                    row.reject_reason.as_deref(),
                    row.length.truncations,
                );
            }
            tally.record(&mut self.manifest.counts.by_difficulty);
        }
        let counts = &mut self.manifest.counts;
        let tokens = &mut self.manifest.tokens;
        let mut prompt_seen: Option<&str> = None;
        for row in rows {
            counts.generations += 1;
            if row.accepted {
                counts.accepted += 1;
            } else {
                counts.rejected += 1;
                let reason = row.reject_reason.clone().unwrap_or_default();
                *counts.rejected_by_reason.entry(reason).or_default() += 1;
            }
            // Prompt tokens are per request: count them once per prompt.
            if prompt_seen != Some(row.id.as_str()) {
                prompt_seen = Some(row.id.as_str());
                counts.prompts_done += 1;
                tokens.prompt += row.prompt_tokens;
            }
            tokens.completion += row.completion_tokens;
            tokens.reasoning += row.reasoning_tokens;
            tokens.estimated |= row.tokens_estimated;
        }
    }

    fn refresh_manifest(&mut self) {
        self.manifest.endpoints = (self.endpoints)();
        self.manifest
            .counts
            .set_unfinished(self.unfinished.values());
        self.manifest.updated_at_ms = now_ms();
        self.manifest.elapsed_secs = self.elapsed_before + self.started.elapsed().as_secs_f64();
        self.manifest.cost_usd = self.pricing.map(|p| {
            (self.manifest.tokens.prompt as f64 * p.input_per_mtok
                + self.manifest.tokens.completion as f64 * p.output_per_mtok)
                / 1e6
        });
    }
}

impl Handler<Record> for Writer {
    type Result = ();

    fn handle(&mut self, Record { rows, credit }: Record, ctx: &mut Context<Self>) {
        if self.shards.is_none() {
            return; // finished: what arrives now was abandoned and will be asked again
        }
        self.pending_rows.extend(rows);
        self.pending_credits.push(credit);
        self.schedule_commit(ctx);
    }
}

impl Handler<Quarantine> for Writer {
    type Result = ();

    fn handle(&mut self, Quarantine(entry, credit): Quarantine, ctx: &mut Context<Self>) {
        if self.shards.is_none() {
            return;
        }
        self.pending_quarantine.push(entry);
        self.pending_credits.push(credit);
        self.schedule_commit(ctx);
    }
}

impl Handler<Failure> for Writer {
    type Result = ();

    fn handle(&mut self, Failure(entry): Failure, _ctx: &mut Context<Self>) {
        if self.shards.is_none() || self.failed {
            return;
        }
        if let Err(error) = self.run_dir.record_failures(std::slice::from_ref(&entry)) {
            self.failed = true;
            self.dispatcher.do_send(WriterFailed(error.into()));
            return;
        }
        self.unfinished.insert(entry.id.clone(), entry);
    }
}

impl Handler<Finish> for Writer {
    type Result = Result<Manifest, WriterError>;

    fn handle(&mut self, Finish { status }: Finish, _ctx: &mut Context<Self>) -> Self::Result {
        self.commit();
        let shards = self.shards.take().ok_or(WriterError::Closed)?;
        if self.failed {
            // The WAL holds everything committed; a resume cuts it into shards.
            drop(shards);
        } else {
            match shards.finish() {
                Ok(cuts) => self.manifest.shards.extend(cuts),
                Err(error) => {
                    self.failed = true;
                    tracing::error!("cannot cut the last shard: {error}");
                }
            }
        }
        self.refresh_manifest();
        let counts = &self.manifest.counts;
        let all_done = counts
            .prompts_total
            .is_none_or(|total| counts.prompts_done >= total);
        self.manifest.status = match status {
            _ if self.failed => RunStatus::Failed,
            // Completed means every prompt is accounted for, nothing less.
            RunStatus::Completed if !self.unfinished.is_empty() || !all_done => {
                RunStatus::Incomplete
            }
            status => status,
        };
        if !self.failed {
            // failures.jsonl now holds exactly the failures not made good.
            let mut left: Vec<FailureEntry> = self.unfinished.values().cloned().collect();
            left.sort_by_key(|f| f.source_row);
            self.run_dir.rewrite_failures(&left)?;
        }
        self.progress.publish(&self.manifest);
        self.run_dir.write_manifest(&self.manifest)?;
        Ok(self.manifest.clone())
    }
}

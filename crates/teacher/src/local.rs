//! A local Qwen2/Llama checkpoint as the teacher.
//!
//! Generation blocks the thread it runs on, so the model lives on one dedicated OS thread and
//! the async side only renders and tokenizes prompts, queues them and awaits the answer. The
//! `n` samples of a request are `n` sequences, and a request is answered once all of its
//! samples are done.
//!
//! On the CPU, `distillery-infer`'s engine generates with continuous batching: up to
//! `batch_size` sequences decode together, a request joins at the next step after it
//! arrives, and a finished sequence's slot is refilled at once. On a GPU, candle's model
//! generates `batch_size` sequences at a time, a batch after another.
//!
//! Every sample has its own sampler, seeded from the base seed, the prompt's tokens and the
//! sample index, so the same prompt gets the same samples whatever it is batched with, and a
//! resumed run asks again for exactly what an uninterrupted one would have got.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use distillery_infer::{BatchLimits, Batcher, Engine, Request};
use distillery_model::{
    ChatTemplate, ChatTurn, Checkpoint, DeviceSpec, GenerateOptions, Generated, Model, OpenDevice,
    Precision, PrecisionDType, RowOptions, TokenBytes,
};
use distillery_spec::Sampling;
use tokenizers::Tokenizer;
use tokio::sync::oneshot;

use crate::{
    Completion, FinishReason, Message, Role, Sample, Teacher, TeacherError, TeacherRequest,
    TeacherStats, TokenLogprob, Usage, reasoning,
};

/// How a [`LocalTeacher`] generates.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalOptions {
    /// Sequences generated together (a request's `n` samples count as `n`).
    pub batch_size: usize,
    /// `max_tokens` (cut to what the model's context leaves after the prompt), `temperature`
    /// (0 is greedy) and `top_p`.
    pub sampling: Sampling,
    /// Base seed of every sample's sampler.
    pub seed: u64,
    /// How long the generation thread waits for more requests to fill a batch before it starts
    /// one that is not full: long enough for concurrent callers to arrive together, short next
    /// to a generation.
    pub linger: Duration,
    /// Where the model runs (`cuda` needs a build with `--features cuda`).
    pub device: DeviceSpec,
    /// Weights and activations in f32 or bf16.
    pub precision: Precision,
    /// Run a GGUF file in its quantized blocks (on the CPU) instead of dequantizing it to f32:
    /// a quarter of the memory at 4 bits and several times the speed, since decoding is bound
    /// by reading the weights.
    pub quantized: bool,
    /// Record the top-k log-probabilities of every generated token (`[teacher] top_logprobs`),
    /// in the form the OpenAI-compatible backend produces: the model's own distribution (the
    /// log-softmax of its logits, not tempered), as vLLM and llama.cpp's server report it.
    pub top_logprobs: Option<std::num::NonZeroU8>,
}

impl LocalOptions {
    /// `batch_size` sequences at a time with the R1 recipe's sampling (temperature 0.6, top-p
    /// 0.95), at most 4096 new tokens, seed 0.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            sampling: Sampling {
                max_tokens: std::num::NonZeroU32::new(4096).expect("non-zero"),
                temperature: distillery_spec::R1_TEMPERATURE,
                top_p: distillery_spec::R1_TOP_P,
            },
            seed: 0,
            linger: Duration::from_millis(5),
            device: DeviceSpec::Cpu,
            precision: Precision::F32,
            quantized: false,
            top_logprobs: None,
        }
    }

    /// The options a pipeline definition asks for.
    pub fn from_spec(
        teacher: &distillery_spec::Teacher,
        local: &distillery_spec::LocalModel,
    ) -> Self {
        Self {
            sampling: teacher.sampling,
            device: local.device,
            precision: local.dtype,
            quantized: local.quantized,
            seed: local.seed,
            top_logprobs: teacher.top_logprobs,
            ..Self::new(local.batch_size.get() as usize)
        }
    }
}

/// A teacher that runs a checkpoint in this process. Build it with [`LocalTeacher::load`] (or
/// [`LocalTeacher::with_options`]) and ask it through the [`Teacher`] trait; concurrent
/// `complete` calls are batched together. Dropping it stops the generation thread (a batch
/// in progress is abandoned at its next token).
pub struct LocalTeacher {
    name: String,
    endpoint: String,
    tokenizer: Tokenizer,
    /// The bytes of each token, for the log-probabilities' tokens.
    token_bytes: TokenBytes,
    template: ChatTemplate,
    context: usize,
    vocab_size: usize,
    options: LocalOptions,
    jobs: Option<mpsc::Sender<Job>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for LocalTeacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTeacher")
            .field("endpoint", &self.endpoint)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    completions: AtomicU64,
    in_flight: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    /// Forward passes (steps of the continuous batcher, or whole batches on a GPU).
    steps: AtomicU64,
    /// The most sequences generated together so far.
    peak_batch: AtomicU64,
    /// Tests: the generation thread panics at its next batch.
    #[cfg(test)]
    panic_next_batch: AtomicBool,
}

/// One request on its way through the generation thread.
struct Job {
    prompt: Vec<u32>,
    rows: Vec<RowOptions>,
    results: Vec<Option<Generated>>,
    /// Rows before this one have been put in a batch.
    next: usize,
    finished: usize,
    failed: Option<String>,
    /// When the first token of any of its rows was sampled.
    first_token: Option<Instant>,
    reply: oneshot::Sender<Result<Answer, String>>,
}

/// A finished request: its rows' tokens, and when its first token was sampled.
struct Answer {
    generated: Vec<Generated>,
    first_token: Option<Instant>,
}

impl LocalTeacher {
    /// Loads the checkpoint at `path` (a Hugging Face directory or a `.gguf` file) on the CPU
    /// in f32 and starts its generation thread; `batch_size` sequences are generated together,
    /// with the defaults of [`LocalOptions::new`]. Blocks while the weights load: in async
    /// code, call it from `spawn_blocking`.
    pub fn load(path: &Path, batch_size: usize) -> Result<Self, TeacherError> {
        Self::with_options(path, LocalOptions::new(batch_size))
    }

    /// As [`Self::load`], with every option given.
    pub fn with_options(path: &Path, options: LocalOptions) -> Result<Self, TeacherError> {
        let load_error = |message: String| TeacherError::Load {
            path: path.to_owned(),
            message,
        };
        if options.batch_size == 0 {
            return Err(load_error("batch_size must be at least 1".into()));
        }
        let Sampling {
            temperature, top_p, ..
        } = options.sampling;
        if !(temperature >= 0.0 && top_p > 0.0 && top_p <= 1.0) {
            return Err(load_error(format!(
                "temperature must be >= 0 and top_p in (0, 1], got {temperature} and {top_p}"
            )));
        }
        if !path.exists() {
            return Err(load_error(
                "no such file or directory (expected a Hugging Face checkpoint directory or a \
                 .gguf file)"
                    .into(),
            ));
        }
        let device = options
            .device
            .open()
            .map_err(|e| load_error(e.to_string()))?;
        let dtype = options.precision.dtype();
        let checkpoint = if options.quantized {
            Checkpoint::load_quantized(path, &device, dtype)
        } else {
            Checkpoint::load(path, &device, dtype)
        }
        .map_err(|e| load_error(e.to_string()))?;
        let template = checkpoint
            .compile_chat_template()
            .map_err(|e| load_error(e.to_string()))?;
        if template.is_fallback {
            tracing::warn!(checkpoint = %path.display(), "no chat template; prompting in ChatML");
        }
        let generate = GenerateOptions {
            max_new_tokens: options.sampling.max_tokens.get() as usize,
            temperature,
            top_p,
            seed: options.seed,
            stop_token_ids: checkpoint.eos_token_ids(),
            top_logprobs: options.top_logprobs.map_or(0, |k| usize::from(k.get())),
        };
        if generate.stop_token_ids.is_empty() {
            tracing::warn!(checkpoint = %path.display(), "no EOS token: every sample runs to max_tokens");
        }
        let backend = if device.is_cpu() {
            let engine =
                Engine::from_checkpoint(&checkpoint).map_err(|e| load_error(e.to_string()))?;
            let limits = BatchLimits::new(options.batch_size);
            let batcher = Batcher::new(Arc::new(engine), generate.clone(), limits)
                .map_err(|e| load_error(e.to_string()))?;
            Backend::Engine(batcher)
        } else {
            Backend::Candle(checkpoint.model().map_err(|e| load_error(e.to_string()))?)
        };
        let name = model_name(path);
        let endpoint = format!("local:{}", path.display());
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (jobs, queue) = mpsc::channel();
        let thread = {
            let generator = Generator {
                options: generate,
                batch_size: options.batch_size,
                linger: options.linger,
                stop: Arc::clone(&stop),
                counters: Arc::clone(&counters),
            };
            std::thread::Builder::new()
                .name("local-teacher".into())
                .spawn(move || generator.run(backend, &queue))
                .map_err(|e| load_error(format!("cannot start the generation thread: {e}")))?
        };
        tracing::info!(
            "local teacher {name} loaded from {} ({} layers, context {}, batch {})",
            path.display(),
            checkpoint.config.num_hidden_layers,
            checkpoint.config.max_position_embeddings,
            options.batch_size
        );
        Ok(Self {
            name,
            endpoint,
            context: checkpoint.config.max_position_embeddings,
            vocab_size: checkpoint.config.vocab_size,
            token_bytes: TokenBytes::new(&checkpoint.tokenizer),
            tokenizer: checkpoint.tokenizer,
            template,
            options,
            jobs: Some(jobs),
            stop,
            thread: Some(thread),
            counters,
        })
    }

    /// Requests worth keeping in flight: enough that the next batch is queued while one runs.
    pub fn capacity(&self) -> usize {
        self.options.batch_size * 2
    }

    /// The model's name as it appears in rows: the checkpoint's file stem or directory name.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    pub fn options(&self) -> &LocalOptions {
        &self.options
    }

    pub fn stats(&self) -> TeacherStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        TeacherStats {
            attempts: load(&c.requests),
            completions: load(&c.completions),
            in_flight: load(&c.in_flight),
            prompt_tokens: load(&c.prompt_tokens),
            completion_tokens: load(&c.completion_tokens),
            ..TeacherStats::default()
        }
    }

    /// Forward passes so far: decoding steps on the CPU, whole batches on a GPU.
    pub fn steps(&self) -> u64 {
        self.counters.steps.load(Ordering::Relaxed)
    }

    /// The most sequences generated together so far.
    pub fn peak_batch(&self) -> u64 {
        self.counters.peak_batch.load(Ordering::Relaxed)
    }

    fn rejected(&self, message: String) -> TeacherError {
        TeacherError::PromptRejected {
            teacher: self.endpoint.clone(),
            message,
        }
    }

    fn stopped(&self) -> TeacherError {
        TeacherError::Stopped {
            teacher: self.endpoint.clone(),
        }
    }

    /// The prompt as the model sees it: the chat template with the generation prompt.
    fn encode(&self, messages: &[Message]) -> Result<Vec<u32>, TeacherError> {
        let text = self
            .template
            .render(messages, true, "the prompt")
            .map_err(|e| self.rejected(e.to_string()))?;
        let ids = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| self.rejected(format!("cannot tokenize it: {e}")))?
            .get_ids()
            .to_vec();
        if ids.is_empty() {
            return Err(self.rejected("it renders to no tokens".into()));
        }
        if ids.len() >= self.context {
            return Err(self.rejected(format!(
                "it has {} tokens and the model's context is {}",
                ids.len(),
                self.context
            )));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(self.rejected(format!(
                "the tokenizer gave id {bad}, outside the model's vocabulary of {}",
                self.vocab_size
            )));
        }
        Ok(ids)
    }

    /// The bytes token `id` stands for; a model whose vocabulary is bigger than its tokenizer's
    /// has ids the tokenizer cannot spell, which stand for no text.
    fn bytes_of(&self, id: u32) -> Vec<u8> {
        self.token_bytes
            .bytes(id)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn sample(&self, index: u32, generated: Generated) -> (Sample, u64, u64) {
        let Generated {
            mut tokens,
            finish,
            logprobs: mut token_logprobs,
        } = generated;
        let completion_tokens = tokens.len() as u64;
        let finish_reason = match finish {
            distillery_model::FinishReason::Stop => {
                // The EOS token ends the answer; it is not part of it (nor of its
                // log-probabilities, which spell the text).
                tokens.pop();
                token_logprobs.truncate(tokens.len());
                FinishReason::Stop
            }
            distillery_model::FinishReason::Length => FinishReason::Length,
        };
        // Special tokens stay: `<think>` is one in many tokenizers, and the reasoning split
        // needs it.
        let text = self.tokenizer.decode(&tokens, false).unwrap_or_else(|e| {
            tracing::warn!("cannot decode a sample of {}: {e}", self.name);
            String::new()
        });
        let split = reasoning::split(None, &text);
        let reasoning_tokens = split.reasoning.as_deref().map_or(0, |r| {
            self.tokenizer
                .encode(r, false)
                .map_or(0, |e| e.len() as u64)
                .min(completion_tokens)
        });
        let logprobs = self.options.top_logprobs.map(|_| {
            tokens
                .iter()
                .zip(token_logprobs)
                .map(|(&id, lp)| TokenLogprob {
                    token: self.bytes_of(id),
                    logprob: lp.logprob,
                    top: lp
                        .top
                        .into_iter()
                        .map(|(id, logprob)| (self.bytes_of(id), logprob))
                        .collect(),
                })
                .collect()
        });
        let sample = Sample {
            index,
            reasoning: split.reasoning,
            content: split.content,
            reasoning_source: split.source,
            finish_reason,
            logprobs,
        };
        (sample, completion_tokens, reasoning_tokens)
    }
}

impl Teacher for LocalTeacher {
    async fn complete(&self, request: &TeacherRequest) -> Result<Completion, TeacherError> {
        let started = Instant::now();
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if request.prefill.is_some() {
            return Err(TeacherError::Generation {
                teacher: self.endpoint.clone(),
                message: "the local teacher cannot continue a partial answer; re-ask instead \
                          (`on_truncated = \"reask\"`)"
                    .into(),
            });
        }
        let prompt = self.encode(&request.messages)?;
        let samples = request.samples.get();
        let room = self.context - prompt.len();
        let max_tokens = request
            .max_tokens
            .unwrap_or(self.options.sampling.max_tokens);
        let max_new_tokens = (max_tokens.get() as usize).min(room);
        // A request's own seed draws other samples of the same prompt (until_correct's rounds).
        let base_seed = match request.seed {
            None => self.options.seed,
            // Every bit of the request's seed counts (until_correct's rounds differ above bit 32).
            Some(seed) => sample_seed(
                self.options.seed ^ (seed as u64).rotate_left(17),
                &[],
                u32::MAX,
            ),
        };
        let rows = (0..samples)
            .map(|index| RowOptions {
                seed: sample_seed(base_seed, &prompt, index),
                max_new_tokens,
            })
            .collect();
        let prompt_tokens = prompt.len() as u64;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            prompt,
            rows,
            results: vec![None; samples as usize],
            next: 0,
            finished: 0,
            failed: None,
            first_token: None,
            reply,
        };
        let _in_flight = InFlight::enter(&self.counters.in_flight);
        self.jobs
            .as_ref()
            .ok_or_else(|| self.stopped())?
            .send(job)
            .map_err(|_| self.stopped())?;
        let Answer {
            generated,
            first_token,
        } = answer
            .await
            .map_err(|_| self.stopped())?
            .map_err(|message| TeacherError::Generation {
                teacher: self.endpoint.clone(),
                message,
            })?;
        let mut usage = Usage {
            // Counted once for all samples, as the chat-completions API does.
            prompt_tokens,
            ..Usage::default()
        };
        let mut out = Vec::with_capacity(generated.len());
        for (index, generated) in generated.into_iter().enumerate() {
            let (sample, completion, reasoning) = self.sample(index as u32, generated);
            usage.completion_tokens += completion;
            usage.reasoning_tokens += reasoning;
            out.push(sample);
        }
        let c = &self.counters;
        c.completions.fetch_add(1, Ordering::Relaxed);
        c.prompt_tokens
            .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        c.completion_tokens
            .fetch_add(usage.completion_tokens, Ordering::Relaxed);
        Ok(Completion {
            samples: out,
            usage,
            model: self.name.clone(),
            endpoint: self.endpoint.clone(),
            attempts: 1,
            latency: started.elapsed(),
            first_token: first_token.map(|t| t.saturating_duration_since(started)),
        })
    }
}

impl Drop for LocalTeacher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the queue wakes the thread if it is waiting for work.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ChatTurn for Message {
    fn role(&self) -> &str {
        match self.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    fn content(&self) -> &str {
        &self.content
    }
}

struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What generates on the generation thread.
enum Backend {
    /// The CPU engine, continuously batched.
    Engine(Batcher<RowTag>),
    /// candle's model on a GPU, a batch at a time.
    Candle(Model),
}

/// A sequence in the batcher: its request's number and its sample index.
type RowTag = (u64, usize);

/// The generation thread's state.
struct Generator {
    options: GenerateOptions,
    batch_size: usize,
    linger: Duration,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Generator {
    fn run(self, backend: Backend, incoming: &mpsc::Receiver<Job>) {
        match backend {
            Backend::Engine(batcher) => self.run_continuous(batcher, incoming),
            Backend::Candle(model) => self.run_batches(&model, incoming),
        }
    }

    fn count_step(&self, sequences: usize) {
        self.counters.steps.fetch_add(1, Ordering::Relaxed);
        self.counters
            .peak_batch
            .fetch_max(sequences as u64, Ordering::Relaxed);
        #[cfg(test)]
        if self.counters.panic_next_batch.load(Ordering::Relaxed) {
            panic!("generation thread panic (test)");
        }
    }

    /// Continuous batching: every step takes in what has arrived, and answers each request
    /// as its last sample finishes.
    fn run_continuous(&self, mut batcher: Batcher<RowTag>, incoming: &mpsc::Receiver<Job>) {
        let mut jobs: HashMap<u64, Job> = HashMap::new();
        let mut queue: VecDeque<Job> = VecDeque::new();
        let mut next_id = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            if batcher.is_idle() {
                // Nothing to do: sleep until a request comes, then let the ones sent with it
                // arrive so that they start together.
                match incoming.recv() {
                    Ok(job) => queue.push_back(job),
                    Err(_) => return,
                }
                if !self.fill(&mut queue, incoming) {
                    return;
                }
            } else {
                queue.extend(incoming.try_iter());
            }
            for mut job in queue.drain(..) {
                let id = next_id;
                next_id += 1;
                for (r, row) in job.rows.iter().enumerate() {
                    let request = Request {
                        tag: (id, r),
                        prompt: job.prompt.clone(),
                        row: *row,
                    };
                    if let Err(error) = batcher.submit(request) {
                        job.failed = Some(error.to_string());
                        break;
                    }
                }
                match job.failed.take() {
                    Some(message) => {
                        batcher.cancel(|tag| tag.0 == id);
                        let _ = job.reply.send(Err(message));
                    }
                    None => {
                        jobs.insert(id, job);
                    }
                }
            }
            // Nobody waits for these any more (the caller gave up): do not spend time on them.
            let before = jobs.len();
            jobs.retain(|_, job| !job.reply.is_closed());
            if jobs.len() < before {
                batcher.cancel(|tag| !jobs.contains_key(&tag.0));
            }
            if batcher.is_idle() {
                continue;
            }
            let step = batcher.step(|event| {
                if let Some(job) = jobs.get_mut(&event.tag.0) {
                    job.first_token.get_or_insert_with(Instant::now);
                }
            });
            self.count_step(batcher.running().max(1));
            match step {
                Ok(finished) => {
                    for done in finished {
                        let (id, r) = done.tag;
                        let Some(job) = jobs.get_mut(&id) else {
                            continue;
                        };
                        job.results[r] = Some(done.generated);
                        job.finished += 1;
                        if job.finished == job.rows.len() {
                            let job = jobs.remove(&id).expect("present");
                            let _ = job.reply.send(Ok(Answer {
                                generated: job.results.into_iter().flatten().collect(),
                                first_token: job.first_token,
                            }));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!("local generation failed: {error}");
                    batcher.drain();
                    for (_, job) in jobs.drain() {
                        let _ = job.reply.send(Err(error.to_string()));
                    }
                }
            }
        }
    }

    /// A batch at a time: up to `batch_size` sequences start together and the next batch
    /// starts when they have all finished.
    fn run_batches(&self, model: &Model, incoming: &mpsc::Receiver<Job>) {
        let mut queue: VecDeque<Job> = VecDeque::new();
        while !self.stop.load(Ordering::Relaxed) {
            if queue.is_empty() {
                match incoming.recv() {
                    Ok(job) => queue.push_back(job),
                    Err(_) => return,
                }
            }
            if !self.fill(&mut queue, incoming) {
                return;
            }
            // Nobody waits for these any more (the caller gave up): do not spend time on them.
            queue.retain(|job| !job.reply.is_closed());
            if queue.is_empty() {
                continue;
            }
            self.run_batch(model, &mut queue);
            let mut waiting = VecDeque::with_capacity(queue.len());
            for mut job in queue.drain(..) {
                if let Some(message) = job.failed.take() {
                    let _ = job.reply.send(Err(message));
                } else if job.finished == job.rows.len() {
                    let results = job.results.into_iter().flatten().collect();
                    let _ = job.reply.send(Ok(Answer {
                        generated: results,
                        first_token: job.first_token,
                    }));
                } else {
                    waiting.push_back(job);
                }
            }
            queue = waiting;
        }
    }

    /// Takes what has arrived, waiting up to `linger` for a full batch. False when the teacher
    /// is gone.
    fn fill(&self, queue: &mut VecDeque<Job>, incoming: &mpsc::Receiver<Job>) -> bool {
        let deadline = Instant::now() + self.linger;
        loop {
            while let Ok(job) = incoming.try_recv() {
                queue.push_back(job);
            }
            let pending: usize = queue.iter().map(|j| j.rows.len() - j.next).sum();
            let now = Instant::now();
            if pending >= self.batch_size || now >= deadline {
                return true;
            }
            match incoming.recv_timeout(deadline - now) {
                Ok(job) => queue.push_back(job),
                Err(mpsc::RecvTimeoutError::Timeout) => return true,
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Generates the next `batch_size` rows, first come first served.
    fn run_batch(&self, model: &Model, queue: &mut VecDeque<Job>) {
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(self.batch_size);
        for (j, job) in queue.iter_mut().enumerate() {
            while job.next < job.rows.len() && picks.len() < self.batch_size {
                picks.push((j, job.next));
                job.next += 1;
            }
            if picks.len() == self.batch_size {
                break;
            }
        }
        let prompts: Vec<Vec<u32>> = picks
            .iter()
            .map(|&(j, _)| queue[j].prompt.clone())
            .collect();
        let rows: Vec<RowOptions> = picks.iter().map(|&(j, r)| queue[j].rows[r]).collect();
        let mut jobs_in_batch: Vec<usize> = picks.iter().map(|&(j, _)| j).collect();
        jobs_in_batch.dedup();
        self.count_step(picks.len());
        let mut first_tokens: Vec<Option<Instant>> = vec![None; picks.len()];
        let result = {
            let queue = &*queue;
            model.generate_rows(&prompts, &rows, &self.options, |event| {
                first_tokens[event.index].get_or_insert_with(Instant::now);
                let abandoned = jobs_in_batch.iter().all(|&j| queue[j].reply.is_closed());
                if abandoned || self.stop.load(Ordering::Relaxed) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        };
        match result {
            Ok(generated) => {
                for (((j, r), generated), first) in
                    picks.into_iter().zip(generated).zip(first_tokens)
                {
                    let job = &mut queue[j];
                    job.results[r] = Some(generated);
                    job.finished += 1;
                    job.first_token = match (job.first_token, first) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            Err(error) => {
                tracing::warn!("local generation failed: {error}");
                for j in jobs_in_batch {
                    queue[j].failed = Some(error.to_string());
                }
            }
        }
    }
}

/// The checkpoint's name in rows: `SmolLM2-135M-Instruct.Q4_1` for a GGUF file, the directory
/// name for a Hugging Face checkpoint.
fn model_name(path: &Path) -> String {
    let name = if path.is_file() {
        path.file_stem()
    } else {
        path.file_name()
    };
    name.map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A sample's seed: the base seed, the prompt and the sample index mixed (SplitMix64), so it
/// does not depend on the order or company in which prompts arrive.
fn sample_seed(base: u64, prompt: &[u32], index: u32) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut h = mix(base);
    for &token in prompt {
        h = mix(h ^ u64::from(token));
    }
    mix(h ^ mix(u64::from(index) ^ 0x5851_F42D_4C95_7F2D))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::path::PathBuf;

    use distillery_model::{
        Arch, Config, TINY_VOCAB_SIZE, chatml_tokenizer_config, random_varmap, save_checkpoint,
        tiny_tokenizer,
    };

    use super::*;

    /// A really tiny random Qwen2 checkpoint (one layer, hidden 32) with the tiny tokenizer and
    /// its ChatML template. `eos` are its stop tokens (none: every sample runs to max_tokens).
    fn checkpoint(dir: &Path, context: usize, eos: Vec<u32>) -> PathBuf {
        let cfg = Config {
            vocab_size: TINY_VOCAB_SIZE,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            max_position_embeddings: context,
            eos_token_ids: eos.clone(),
            ..Config::tiny(Arch::Qwen2)
        };
        // std 0.1: logits distinct enough that batch shapes cannot flip a choice.
        let varmap = random_varmap(
            &cfg,
            3,
            0.1,
            &candle_core::Device::Cpu,
            candle_core::DType::F32,
        )
        .unwrap();
        let mut tokenizer_config = chatml_tokenizer_config();
        if eos.is_empty() {
            tokenizer_config["eos_token"] = serde_json::Value::Null;
        }
        let path = dir.join("tiny");
        save_checkpoint(
            &path,
            &cfg,
            &varmap,
            &tiny_tokenizer().unwrap(),
            &tokenizer_config,
        )
        .unwrap();
        path
    }

    fn options(batch_size: usize, max_tokens: u32, temperature: f64) -> LocalOptions {
        LocalOptions {
            sampling: Sampling {
                max_tokens: NonZeroU32::new(max_tokens).unwrap(),
                temperature,
                top_p: 1.0,
            },
            // Long enough that requests made together always meet in one batch.
            linger: Duration::from_millis(100),
            ..LocalOptions::new(batch_size)
        }
    }

    /// A teacher over a fresh checkpoint without EOS (samples run to `max_tokens`).
    fn teacher(
        batch_size: usize,
        max_tokens: u32,
        temperature: f64,
    ) -> (tempfile::TempDir, LocalTeacher) {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint(dir.path(), 256, Vec::new());
        let teacher =
            LocalTeacher::with_options(&path, options(batch_size, max_tokens, temperature))
                .unwrap();
        (dir, teacher)
    }

    fn ask(question: &str, n: u32) -> TeacherRequest {
        TeacherRequest {
            max_tokens: None,
            seed: None,
            prefill: None,
            messages: vec![Message::new(Role::User, question)],
            samples: NonZeroU32::new(n).unwrap(),
        }
    }

    /// Asks `teacher` for `n` answers to `question`.
    async fn asked(
        teacher: &LocalTeacher,
        question: &str,
        n: u32,
    ) -> Result<Completion, TeacherError> {
        teacher.complete(&ask(question, n)).await
    }

    fn texts(completion: &Completion) -> Vec<String> {
        completion
            .samples
            .iter()
            .map(|s| format!("{:?}|{}", s.reasoning, s.content))
            .collect()
    }

    #[tokio::test]
    async fn concurrent_requests_are_batched_together() {
        let (_dir, teacher) = teacher(8, 4, 0.0);
        let questions = ["one", "two plus two", "three", "4 * 4"];
        let (a, b, c, d) = tokio::join!(
            asked(&teacher, questions[0], 2),
            asked(&teacher, questions[1], 2),
            asked(&teacher, questions[2], 2),
            asked(&teacher, questions[3], 2),
        );
        for completion in [a, b, c, d] {
            let completion = completion.unwrap();
            assert_eq!(completion.samples.len(), 2);
            assert_eq!(
                completion
                    .samples
                    .iter()
                    .map(|s| s.index)
                    .collect::<Vec<_>>(),
                [0, 1]
            );
            assert!(completion.endpoint.starts_with("local:"));
            assert_eq!(completion.model, "tiny");
        }
        // Sent together, they decode together: 8 sequences in one step.
        assert_eq!(teacher.peak_batch(), 8);
        let stats = teacher.stats();
        assert_eq!(stats.completions, 4);
        assert_eq!(stats.in_flight, 0);
        assert_eq!(stats.completion_tokens, 4 * 2 * 4);
    }

    /// `top_logprobs = 4`: every generated token with its log-probability and the 4 most
    /// likely tokens, spelling the sample's text, equal to a direct forward pass's log-softmax
    /// (the raw distribution, although sampled at temperature 0.8).
    #[tokio::test]
    async fn top_logprobs_are_the_models_own_and_spell_the_text() {
        use candle_core::{IndexOp, Tensor};

        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint(dir.path(), 256, Vec::new());
        let teacher = LocalTeacher::with_options(
            &path,
            LocalOptions {
                top_logprobs: std::num::NonZeroU8::new(4),
                ..options(4, 12, 0.8)
            },
        )
        .unwrap();
        let request = ask("Janet has 3 eggs.", 3);
        let completion = teacher.complete(&request).await.unwrap();
        let prompt = teacher.encode(&request.messages).unwrap();
        let checkpoint =
            Checkpoint::load(&path, &candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
        let model = checkpoint.model().unwrap();
        for sample in &completion.samples {
            let logprobs = sample
                .logprobs
                .as_ref()
                .expect("log-probabilities asked for");
            assert_eq!(logprobs.len(), 12);
            let spelled: Vec<u8> = logprobs.iter().flat_map(|t| t.token.clone()).collect();
            // A random model writes stray bytes; the decoder replaces them as lossy UTF-8 does.
            let split = reasoning::split(None, &String::from_utf8_lossy(&spelled));
            assert_eq!(
                (&split.reasoning, &split.content),
                (&sample.reasoning, &sample.content)
            );
            for t in logprobs {
                assert!(t.logprob <= 0.0);
                assert_eq!(t.top.len(), 4);
                assert!(t.top.windows(2).all(|w| w[0].1 >= w[1].1), "{t:?}");
                assert!(t.top.iter().all(|(_, lp)| *lp <= 0.0));
                // The sampled token is no likelier than the most likely one.
                assert!(t.logprob <= t.top[0].1 + 1e-6);
            }
            // By hand: a forward pass over prompt + generated tokens.
            let generated: Vec<u32> = logprobs
                .iter()
                .map(|t| teacher.token_bytes.id(&t.token).unwrap())
                .collect();
            let mut seq = prompt.clone();
            seq.extend(&generated);
            let input = Tensor::new(seq.as_slice(), &candle_core::Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = model.forward(&input, None).unwrap();
            for position in [0, 5, 11] {
                let row = logits
                    .i((0, prompt.len() - 1 + position))
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let norm = max + row.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
                let row: Vec<f32> = row.iter().map(|l| l - norm).collect();
                let t = &logprobs[position];
                let id = generated[position] as usize;
                assert!(
                    (t.logprob - row[id]).abs() < 1e-4,
                    "{} vs {}",
                    t.logprob,
                    row[id]
                );
                let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert!((t.top[0].1 - best).abs() < 1e-4);
                let top_id = teacher.token_bytes.id(&t.top[0].0).unwrap() as usize;
                assert!((row[top_id] - best).abs() < 1e-4);
            }
        }
        // Without top_logprobs, none.
        let (_plain_dir, plain) = self::tests::teacher(4, 4, 0.8);
        let completion = plain.complete(&ask("Janet has 3 eggs.", 1)).await.unwrap();
        assert!(completion.samples[0].logprobs.is_none());
    }

    /// A sample that ends on EOS: the stop token is not in the text, nor in its logprobs.
    #[tokio::test]
    async fn an_eos_token_has_no_log_probability_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint(dir.path(), 256, (0..TINY_VOCAB_SIZE as u32).collect());
        let teacher = LocalTeacher::with_options(
            &path,
            LocalOptions {
                top_logprobs: std::num::NonZeroU8::new(2),
                ..options(4, 50, 1.0)
            },
        )
        .unwrap();
        let completion = asked(&teacher, "hi", 1).await.unwrap();
        assert_eq!(completion.samples[0].finish_reason, FinishReason::Stop);
        assert_eq!(completion.samples[0].logprobs, Some(Vec::new()));
    }

    #[tokio::test]
    async fn a_request_bigger_than_a_batch_is_answered_whole() {
        let (_dir, teacher) = teacher(2, 3, 1.0);
        let completion = asked(&teacher, "many", 5).await.unwrap();
        assert_eq!(completion.samples.len(), 5);
        assert_eq!(completion.usage.completion_tokens, 15);
        assert_eq!(teacher.peak_batch(), 2);
    }

    /// Continuous batching: a short request sent beside a long one is answered while the long
    /// one still decodes (its slot is refilled), and neither waits for the other to start.
    #[tokio::test]
    async fn a_short_request_finishes_while_a_long_one_decodes() {
        let (_dir, teacher) = teacher(2, 200, 1.0);
        let long = ask("a long answer", 1);
        let short = TeacherRequest {
            max_tokens: NonZeroU32::new(2),
            ..ask("short", 1)
        };
        let steps_at = |teacher: &LocalTeacher| teacher.steps();
        let (long, (short, short_done_at)) = tokio::join!(teacher.complete(&long), async {
            let answer = teacher.complete(&short).await;
            (answer, steps_at(&teacher))
        });
        assert_eq!(long.unwrap().usage.completion_tokens, 200);
        assert_eq!(short.unwrap().usage.completion_tokens, 2);
        assert!(
            short_done_at < 20,
            "the short answer came after {short_done_at} steps"
        );
        assert_eq!(teacher.peak_batch(), 2);
    }

    #[tokio::test]
    async fn greedy_is_deterministic() {
        let (_dir, teacher) = teacher(4, 6, 0.0);
        let first = teacher
            .complete(&ask("Janet has 3 eggs.", 2))
            .await
            .unwrap();
        let again = teacher
            .complete(&ask("Janet has 3 eggs.", 2))
            .await
            .unwrap();
        assert_eq!(texts(&first), texts(&again));
        assert_eq!(
            first.samples[0],
            Sample {
                index: 0,
                ..first.samples[1].clone()
            }
        );
    }

    #[tokio::test]
    async fn sampled_answers_differ_and_do_not_depend_on_the_batch() {
        let (_dir, teacher) = teacher(8, 8, 1.0);
        let alone = teacher
            .complete(&ask("Janet has 3 eggs.", 3))
            .await
            .unwrap();
        let alone = texts(&alone);
        assert!(
            alone[0] != alone[1] || alone[1] != alone[2],
            "the samples of one request should differ: {alone:?}"
        );
        let (together, _, _) = tokio::join!(
            asked(&teacher, "Janet has 3 eggs.", 3),
            asked(&teacher, "Something else entirely", 2),
            asked(&teacher, "And a third", 1),
        );
        assert_eq!(texts(&together.unwrap()), alone);
        assert!(
            teacher.peak_batch() >= 3,
            "{} together",
            teacher.peak_batch()
        );

        // Another base seed samples differently.
        let path = teacher.endpoint.trim_start_matches("local:").to_owned();
        let other = LocalTeacher::with_options(
            Path::new(&path),
            LocalOptions {
                seed: 1,
                ..options(8, 8, 1.0)
            },
        )
        .unwrap();
        let reseeded = asked(&other, "Janet has 3 eggs.", 3).await.unwrap();
        assert_ne!(texts(&reseeded), alone);
    }

    #[tokio::test]
    async fn a_request_seed_draws_other_samples_and_max_tokens_is_honoured() {
        let (_dir, teacher) = teacher(8, 8, 1.0);
        let first = texts(&asked(&teacher, "Janet has 3 eggs.", 2).await.unwrap());
        let round = |seed: i64| {
            let mut request = ask("Janet has 3 eggs.", 2);
            request.seed = Some(seed);
            request
        };
        // until_correct's rounds differ above bit 32: each is its own draw, and repeatable.
        let second = texts(&teacher.complete(&round(1 << 32)).await.unwrap());
        let third = texts(&teacher.complete(&round(2 << 32)).await.unwrap());
        assert_ne!(second, first);
        assert_ne!(third, second);
        assert_eq!(
            texts(&teacher.complete(&round(1 << 32)).await.unwrap()),
            second
        );
        // A re-ask may ask for more (or fewer) tokens than the definition's max_tokens.
        let mut short = ask("Janet has 3 eggs.", 1);
        short.max_tokens = NonZeroU32::new(3);
        let short = teacher.complete(&short).await.unwrap();
        assert_eq!(short.usage.completion_tokens, 3);
        assert_eq!(short.samples[0].finish_reason, FinishReason::Length);
        // A continuation is refused in words: the local teacher cannot continue a message.
        let mut cont = ask("Janet has 3 eggs.", 1);
        cont.prefill = Some("<think>\nJanet".into());
        let error = teacher.complete(&cont).await.unwrap_err().to_string();
        assert!(error.contains("cannot continue"), "{error}");
    }

    #[tokio::test]
    async fn max_tokens_ends_with_length_and_usage_counts_tokens() {
        let (_dir, teacher) = teacher(4, 7, 1.0);
        let question = "Natalia sold clips to 48 of her friends.";
        let completion = asked(&teacher, question, 3).await.unwrap();
        for sample in &completion.samples {
            assert_eq!(sample.finish_reason, FinishReason::Length);
        }
        assert_eq!(completion.usage.completion_tokens, 3 * 7);
        let rendered = format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n");
        let prompt_tokens = tiny_tokenizer()
            .unwrap()
            .encode(rendered.as_str(), false)
            .unwrap()
            .len() as u64;
        assert_eq!(completion.usage.prompt_tokens, prompt_tokens);
        assert_eq!(teacher.stats().prompt_tokens, prompt_tokens);
    }

    #[tokio::test]
    async fn eos_ends_a_sample_with_stop_and_is_not_in_the_text() {
        let dir = tempfile::tempdir().unwrap();
        // Every token is a stop token: each sample is one EOS.
        let path = checkpoint(dir.path(), 256, (0..TINY_VOCAB_SIZE as u32).collect());
        let teacher = LocalTeacher::with_options(&path, options(4, 50, 1.0)).unwrap();
        let completion = asked(&teacher, "hi", 2).await.unwrap();
        for sample in &completion.samples {
            assert_eq!(sample.finish_reason, FinishReason::Stop);
            assert_eq!(sample.content, "");
            assert_eq!(sample.reasoning, None);
        }
        assert_eq!(completion.usage.completion_tokens, 2);
    }

    #[tokio::test]
    async fn an_over_long_prompt_is_rejected_and_the_others_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint(dir.path(), 64, Vec::new());
        let teacher = LocalTeacher::with_options(&path, options(4, 100, 0.0)).unwrap();
        let long = "1 2 3 4 5 6 7 8 9 ".repeat(10);
        let (short, too_long, other) = tokio::join!(
            asked(&teacher, "short", 1),
            asked(&teacher, &long, 1),
            asked(&teacher, "also short", 2),
        );
        let error = too_long.unwrap_err();
        assert!(
            matches!(error, TeacherError::PromptRejected { .. }),
            "{error:?}"
        );
        assert!(error.is_rejection() && !error.is_fatal());
        assert!(error.to_string().contains("context is 64"), "{error}");
        let short = short.unwrap();
        // max_tokens is cut to what the context leaves after the prompt.
        let room = 64 - short.usage.prompt_tokens;
        assert_eq!(short.usage.completion_tokens, room);
        assert_eq!(other.unwrap().samples.len(), 2);
    }

    #[test]
    fn a_missing_checkpoint_is_a_load_error_naming_it() {
        let path = Path::new("/nonexistent/models/teacher.gguf");
        let error = LocalTeacher::load(path, 4).unwrap_err();
        assert!(matches!(error, TeacherError::Load { .. }), "{error:?}");
        assert!(error.is_fatal());
        assert!(
            error
                .to_string()
                .contains("/nonexistent/models/teacher.gguf"),
            "{error}"
        );

        let dir = tempfile::tempdir().unwrap();
        let error = LocalTeacher::load(dir.path(), 4).unwrap_err();
        assert!(matches!(error, TeacherError::Load { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains(&dir.path().display().to_string()),
            "{error}"
        );
    }

    #[tokio::test]
    async fn dropping_the_teacher_with_a_request_in_flight_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint(dir.path(), 4096, Vec::new());
        let teacher = Arc::new(LocalTeacher::with_options(&path, options(2, 4000, 1.0)).unwrap());
        let asking = {
            let teacher = Arc::clone(&teacher);
            tokio::spawn(async move { asked(&teacher, "go on forever", 2).await })
        };
        // Let the batch start, then walk away from it.
        while teacher.steps() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        asking.abort();
        assert!(asking.await.unwrap_err().is_cancelled());
        let started = Instant::now();
        drop(Arc::into_inner(teacher).expect("the aborted task let go of the teacher"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "dropping took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_panicking_generation_thread_answers_stopped() {
        let (_dir, teacher) = teacher(4, 4, 0.0);
        asked(&teacher, "fine", 1).await.unwrap();
        teacher
            .counters
            .panic_next_batch
            .store(true, Ordering::Relaxed);
        let error = asked(&teacher, "boom", 1).await.unwrap_err();
        assert!(matches!(error, TeacherError::Stopped { .. }), "{error:?}");
        assert!(error.is_fatal());
        // Later requests get the same answer rather than waiting forever.
        let error = asked(&teacher, "again", 1).await.unwrap_err();
        assert!(matches!(error, TeacherError::Stopped { .. }), "{error:?}");
    }

    #[test]
    fn sample_seeds_mix_seed_prompt_and_index() {
        let base = sample_seed(0, &[1, 2, 3], 0);
        assert_eq!(base, sample_seed(0, &[1, 2, 3], 0));
        assert_ne!(base, sample_seed(1, &[1, 2, 3], 0));
        assert_ne!(base, sample_seed(0, &[1, 2, 4], 0));
        assert_ne!(base, sample_seed(0, &[1, 2, 3], 1));
    }
}

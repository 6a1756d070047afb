//! The OpenAI-compatible teacher.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use distillery_spec::{Endpoint, Sampling};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::http::{HttpStatusError, StatusCheckingService};
use crate::limits::TokenBucket;
use crate::reasoning;
use crate::wire::{
    ChatChunk, ChatRequest, ChatResponse, StreamOptions, WireLogprobs, WireMessage, WireUsage,
};
use crate::{
    Completion, FinishReason, Sample, Teacher, TeacherError, TeacherRequest, TokenLogprob, Usage,
};

/// How requests are made, common to every endpoint.
#[derive(Debug, Clone)]
pub struct TeacherOptions {
    pub sampling: Sampling,
    /// Whole-request limit without streaming; longest silence within a stream with it.
    pub timeout: Duration,
    pub retries: u32,
    pub stream: bool,
    pub backoff: Backoff,
    /// Ask for the top-k log-probabilities of every generated token.
    pub top_logprobs: Option<u8>,
}

impl TeacherOptions {
    pub fn from_spec(teacher: &distillery_spec::Teacher) -> Self {
        Self {
            sampling: teacher.sampling,
            timeout: teacher.timeout,
            retries: teacher.retries,
            stream: teacher.stream,
            backoff: Backoff::default(),
            top_logprobs: teacher.top_logprobs.map(|k| k.get()),
        }
    }
}

/// Counters since the teacher was built, for progress displays and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TeacherStats {
    pub attempts: u64,
    pub retries: u64,
    pub completions: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
    pub malformed: u64,
    pub in_flight: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    retries: AtomicU64,
    completions: AtomicU64,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    timeouts: AtomicU64,
    connection_errors: AtomicU64,
    malformed: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct EndpointState {
    base_url: String,
    model: String,
    client: Client<OpenAIConfig>,
    concurrency: u32,
    /// Requests allowed in flight now: adapts between 1 and `concurrency` (AIMD). When the
    /// server cuts streams or answers 429/503 under load, it halves; every `limit` answers
    /// without trouble, it grows by one.
    limit: AtomicU32,
    /// Successes since the limit last grew.
    calm: AtomicU32,
    /// Bumped by each back-off: failures of requests sent before it belong to the same
    /// overload and do not halve the limit again.
    epoch: AtomicU64,
    in_flight: AtomicU32,
    requests: Option<TokenBucket>,
    tokens: Option<TokenBucket>,
    /// Set when the server answered 429 with `Retry-After`: nobody sends before then.
    paused_until: Mutex<Option<Instant>>,
    /// The server sent a response without `usage` (llama.cpp's Python server ignores
    /// `stream_options.include_usage`): said once, since token counts will read 0.
    warned_no_usage: AtomicBool,
    /// The server sent no log-probabilities although they were asked for: said once.
    warned_no_logprobs: AtomicBool,
}

/// A teacher behind one or several OpenAI-compatible endpoints that share the load.
pub struct OpenAiTeacher {
    endpoints: Vec<EndpointState>,
    admission: Semaphore,
    /// Woken when a slot frees or a limit grows.
    released: tokio::sync::Notify,
    options: TeacherOptions,
    counters: Counters,
}

/// Where an endpoint's adaptive concurrency stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointLimit {
    pub base_url: String,
    /// The configured concurrency (the most the limit grows to).
    pub concurrency: u32,
    /// Requests allowed in flight now.
    pub limit: u32,
    /// Times the limit was halved.
    pub backoffs: u64,
}

impl std::fmt::Debug for OpenAiTeacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately no client or config: they hold the API key.
        let urls: Vec<&str> = self.endpoints.iter().map(|e| e.base_url.as_str()).collect();
        f.debug_struct("OpenAiTeacher")
            .field("endpoints", &urls)
            .finish_non_exhaustive()
    }
}

/// Why one HTTP attempt failed.
enum AttemptError {
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Stop(TeacherError),
}

impl OpenAiTeacher {
    /// Builds clients for `endpoints`, reading each API key from the environment variable the
    /// definition names.
    pub fn new(endpoints: &[Endpoint], options: TeacherOptions) -> Result<Self, TeacherError> {
        Self::with_key_lookup(endpoints, options, |variable| std::env::var(variable).ok())
    }

    /// As [`Self::new`], reading keys through `lookup` instead of the process environment.
    pub fn with_key_lookup(
        endpoints: &[Endpoint],
        options: TeacherOptions,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TeacherError> {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| TeacherError::Client(e.to_string()))?;
        let mut states = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let api_key = match &endpoint.api_key_env {
                Some(variable) => match lookup(variable) {
                    Some(key) if !key.trim().is_empty() => key.trim().to_owned(),
                    _ => {
                        return Err(TeacherError::MissingApiKey {
                            variable: variable.clone(),
                            endpoint: endpoint.base_url.clone(),
                        });
                    }
                },
                // Local servers (vLLM, llama.cpp) usually need none; send an empty bearer.
                None => String::new(),
            };
            let config = OpenAIConfig::new()
                .with_api_base(endpoint.base_url.clone())
                .with_api_key(api_key);
            let client = Client::with_config(config)
                .with_http_service(StatusCheckingService::new(http.clone()));
            let limits = endpoint.limits;
            states.push(EndpointState {
                base_url: endpoint.base_url.clone(),
                model: endpoint.model.clone(),
                client,
                concurrency: limits.concurrency.get(),
                limit: AtomicU32::new(limits.concurrency.get()),
                calm: AtomicU32::new(0),
                epoch: AtomicU64::new(0),
                in_flight: AtomicU32::new(0),
                requests: limits
                    .requests_per_minute
                    .map(|rpm| TokenBucket::per_minute(f64::from(rpm.get()), 1.0)),
                tokens: limits
                    .tokens_per_minute
                    .map(|tpm| TokenBucket::per_minute(tpm.get() as f64, 1.0)),
                paused_until: Mutex::new(None),
                warned_no_usage: AtomicBool::new(false),
                warned_no_logprobs: AtomicBool::new(false),
            });
        }
        if states.is_empty() {
            return Err(TeacherError::Client("no endpoints configured".into()));
        }
        let capacity: u32 = states.iter().map(|e| e.concurrency).sum();
        Ok(Self {
            endpoints: states,
            admission: Semaphore::new(capacity as usize),
            released: tokio::sync::Notify::new(),
            options,
            counters: Counters::default(),
        })
    }

    /// Requests that may be in flight at once, over all endpoints.
    pub fn capacity(&self) -> usize {
        self.endpoints.iter().map(|e| e.concurrency as usize).sum()
    }

    pub fn stats(&self) -> TeacherStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TeacherStats {
            attempts: load(&c.attempts),
            retries: load(&c.retries),
            completions: load(&c.completions),
            rate_limited: load(&c.rate_limited),
            server_errors: load(&c.server_errors),
            timeouts: load(&c.timeouts),
            connection_errors: load(&c.connection_errors),
            malformed: load(&c.malformed),
            in_flight: self
                .endpoints
                .iter()
                .map(|e| u64::from(e.in_flight.load(Ordering::Relaxed)))
                .sum(),
            prompt_tokens: load(&c.prompt_tokens),
            completion_tokens: load(&c.completion_tokens),
        }
    }

    /// Each endpoint's adaptive concurrency: where it stands now.
    pub fn endpoint_limits(&self) -> Vec<EndpointLimit> {
        self.endpoints
            .iter()
            .map(|e| EndpointLimit {
                base_url: e.base_url.clone(),
                concurrency: e.concurrency,
                limit: e.limit.load(Ordering::Relaxed),
                backoffs: e.epoch.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Takes a slot on the least loaded endpoint, waiting while all are full.
    async fn acquire_slot(&self) -> Slot<'_> {
        // The semaphore holds one permit per configured slot of every endpoint; an endpoint
        // that backed off below its concurrency leaves permit holders waiting here.
        let permit = self.admission.acquire().await;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let best = self
                .endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.in_flight.load(Ordering::Acquire) < e.limit.load(Ordering::Acquire)
                })
                .min_by(|(_, a), (_, b)| load_share(a).total_cmp(&load_share(b)));
            if let Some((index, endpoint)) = best {
                let limit = endpoint.limit.load(Ordering::Acquire);
                let taken = endpoint
                    .in_flight
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < limit).then_some(n + 1)
                    })
                    .is_ok();
                if taken {
                    return Slot {
                        endpoint: &self.endpoints[index],
                        released: &self.released,
                        epoch: endpoint.epoch.load(Ordering::Acquire),
                        _permit: permit.ok(),
                    };
                }
                continue;
            }
            released.await;
        }
    }

    /// An answer came back without trouble: additive increase, one per `limit` answers.
    fn calm(&self, endpoint: &EndpointState) {
        let limit = endpoint.limit.load(Ordering::Acquire);
        if limit >= endpoint.concurrency {
            return;
        }
        if endpoint.calm.fetch_add(1, Ordering::AcqRel) + 1 >= limit {
            endpoint.calm.store(0, Ordering::Release);
            let _ = endpoint
                .limit
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                    (l < endpoint.concurrency).then_some(l + 1)
                });
            self.released.notify_waiters();
        }
    }

    /// The server is overloaded (cut a stream, 429, 503): multiplicative decrease, once per
    /// overload (failures of requests sent before the last back-off do not count again).
    fn overloaded(&self, endpoint: &EndpointState, sent_in_epoch: u64) {
        if endpoint
            .epoch
            .compare_exchange(
                sent_in_epoch,
                sent_in_epoch + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return;
        }
        endpoint.calm.store(0, Ordering::Release);
        let before = endpoint
            .limit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                Some((l / 2).max(1))
            })
            .unwrap_or(1);
        tracing::debug!(
            endpoint = %endpoint.base_url,
            "overloaded: concurrency {before} -> {}",
            (before / 2).max(1)
        );
    }

    async fn admit(&self, endpoint: &EndpointState, prompt_tokens_estimate: f64) {
        loop {
            let paused = *lock(&endpoint.paused_until);
            match paused {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        if let Some(bucket) = &endpoint.requests {
            bucket.acquire(1.0).await;
        }
        if let Some(bucket) = &endpoint.tokens {
            bucket.acquire(prompt_tokens_estimate).await;
        }
    }

    async fn attempt(
        &self,
        endpoint: &EndpointState,
        request: &TeacherRequest,
        samples: u32,
        first_token: &mut Option<Instant>,
    ) -> Result<(Vec<Sample>, Usage, String), AttemptError> {
        let options = &self.options;
        let body = ChatRequest {
            model: &endpoint.model,
            messages: WireMessage::of(&request.messages, request.prefill.as_deref()),
            max_tokens: request
                .max_tokens
                .unwrap_or(options.sampling.max_tokens)
                .get(),
            temperature: options.sampling.temperature,
            top_p: options.sampling.top_p,
            n: samples,
            stream: options.stream,
            stream_options: options.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            logprobs: options.top_logprobs.map(|_| true),
            top_logprobs: options.top_logprobs,
            seed: request.seed,
            continue_final_message: request.prefill.is_some(),
            add_generation_prompt: request.prefill.as_ref().map(|_| false),
        };
        let chat = endpoint.client.chat();
        let mut choices: BTreeMap<u32, ChoiceText> = BTreeMap::new();
        let mut usage = None;
        let mut model = None;
        if options.stream {
            let mut stream = self
                .within_timeout(chat.create_stream_byot::<_, ChatChunk>(&body))
                .await?
                .map_err(|e| self.classify(endpoint, e))?;
            loop {
                let Some(chunk) = self.within_timeout(stream.next()).await? else {
                    break;
                };
                let chunk = chunk.map_err(|e| self.classify(endpoint, e))?;
                model = model.or(chunk.model);
                usage = chunk.usage.or(usage);
                for choice in chunk.choices {
                    let text = self.choice_slot(&mut choices, choice.index, samples)?;
                    let delta = choice.delta;
                    let generated = [&delta.reasoning_content, &delta.reasoning, &delta.content]
                        .iter()
                        .any(|text| text.as_deref().is_some_and(|t| !t.is_empty()));
                    if generated && first_token.is_none() {
                        *first_token = Some(Instant::now());
                    }
                    if let Some(r) = delta.reasoning_content.or(delta.reasoning) {
                        text.reasoning.get_or_insert_with(String::new).push_str(&r);
                    }
                    if let Some(c) = delta.content {
                        text.content.push_str(&c);
                    }
                    if let Some(logprobs) = choice.logprobs {
                        text.add_logprobs(logprobs);
                    }
                    if choice.finish_reason.is_some() {
                        text.finish_reason = choice.finish_reason;
                    }
                }
            }
        } else {
            let response: ChatResponse = self
                .within_timeout(chat.create_byot(&body))
                .await?
                .map_err(|e| self.classify(endpoint, e))?;
            model = response.model;
            usage = response.usage;
            for choice in response.choices {
                let text = self.choice_slot(&mut choices, choice.index, samples)?;
                if text.finish_reason.is_some() {
                    return Err(self.malformed(format!("choice {} appears twice", choice.index)));
                }
                let message = choice.message;
                text.reasoning = message.reasoning_content.or(message.reasoning);
                text.content = message.content.unwrap_or_default();
                if let Some(logprobs) = choice.logprobs {
                    text.add_logprobs(logprobs);
                }
                text.finish_reason = Some(choice.finish_reason.unwrap_or_else(|| "stop".into()));
            }
        }
        let mut out = Vec::with_capacity(choices.len());
        for (index, text) in choices {
            let Some(finish_reason) = text.finish_reason else {
                // The stream ended (cleanly or not) before this choice finished.
                bump(&self.counters.connection_errors);
                return Err(AttemptError::Retry {
                    reason: format!("the response ended before choice {index} finished"),
                    retry_after: None,
                });
            };
            let split = reasoning::split(text.reasoning.as_deref(), &text.content);
            let logprobs = match (options.top_logprobs, text.logprobs) {
                (Some(_), None) => {
                    if !endpoint.warned_no_logprobs.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "{} sent no log-probabilities although top_logprobs was asked for; \
                             its rows carry none (vLLM, SGLang and llama.cpp's server send them)",
                            endpoint.base_url
                        );
                    }
                    None
                }
                (Some(k), Some(mut tokens)) => {
                    // llama.cpp's server (llama-cpp-python) appends the sampled token to
                    // `top_logprobs` when it is not among the k most likely, and nothing
                    // promises the order: keep the k most likely, most likely first.
                    for token in &mut tokens {
                        token.top.sort_by(|a, b| b.1.total_cmp(&a.1));
                        token.top.truncate(usize::from(k));
                    }
                    Some(tokens)
                }
                (None, _) => None,
            };
            out.push(Sample {
                index,
                reasoning: split.reasoning,
                content: split.content,
                reasoning_source: split.source,
                finish_reason: FinishReason::from(finish_reason),
                logprobs,
            });
        }
        if usage.is_none() && !endpoint.warned_no_usage.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{} sends no token usage{}: token counts are estimated from the text ({} \
                 characters a token) and marked as estimated",
                endpoint.base_url,
                if options.stream {
                    " in streamed responses (try stream = false)"
                } else {
                    ""
                },
                Usage::CHARS_PER_TOKEN
            );
        }
        let usage = usage.map(Usage::from).unwrap_or_else(|| {
            Usage::estimate(
                request.messages.iter().map(|m| m.content.as_str()),
                out.iter()
                    .map(|s| (s.reasoning.as_deref(), s.content.as_str())),
            )
        });
        Ok((out, usage, model.unwrap_or_else(|| endpoint.model.clone())))
    }

    fn choice_slot<'m>(
        &self,
        choices: &'m mut BTreeMap<u32, ChoiceText>,
        index: u32,
        samples: u32,
    ) -> Result<&'m mut ChoiceText, AttemptError> {
        if index >= samples {
            return Err(self.malformed(format!(
                "choice index {index} but only {samples} samples were asked for"
            )));
        }
        Ok(choices.entry(index).or_default())
    }

    fn malformed(&self, reason: String) -> AttemptError {
        bump(&self.counters.malformed);
        AttemptError::Retry {
            reason: format!("malformed response: {reason}"),
            retry_after: None,
        }
    }

    async fn within_timeout<F: std::future::Future>(
        &self,
        future: F,
    ) -> Result<F::Output, AttemptError> {
        tokio::time::timeout(self.options.timeout, future)
            .await
            .map_err(|_| {
                bump(&self.counters.timeouts);
                AttemptError::Retry {
                    reason: format!("no answer within {:?}", self.options.timeout),
                    retry_after: None,
                }
            })
    }

    fn classify(&self, endpoint: &EndpointState, error: OpenAIError) -> AttemptError {
        let retry = |reason: String| AttemptError::Retry {
            reason,
            retry_after: None,
        };
        match error {
            OpenAIError::Boxed(boxed) => match boxed.downcast::<HttpStatusError>() {
                Ok(status) => self.classify_status(endpoint, &status),
                Err(other) => {
                    bump(&self.counters.connection_errors);
                    retry(other.to_string())
                }
            },
            OpenAIError::ApiError(api) => self.classify_status(
                endpoint,
                &HttpStatusError {
                    status: api.status_code.as_u16(),
                    retry_after: None,
                    body: api.api_error.message,
                },
            ),
            OpenAIError::Reqwest(e) => {
                if e.is_timeout() {
                    bump(&self.counters.timeouts);
                } else {
                    bump(&self.counters.connection_errors);
                }
                retry(format!("connection: {}", error_chain(&e)))
            }
            OpenAIError::JSONDeserialize(e, _) => self.malformed(e.to_string()),
            OpenAIError::StreamError(e) => {
                bump(&self.counters.connection_errors);
                retry(format!("stream: {e}"))
            }
            other => AttemptError::Stop(TeacherError::Client(other.to_string())),
        }
    }

    fn classify_status(&self, endpoint: &EndpointState, error: &HttpStatusError) -> AttemptError {
        let endpoint_url = endpoint.base_url.clone();
        match error.status {
            429 => {
                bump(&self.counters.rate_limited);
                if let Some(after) = error.retry_after {
                    let until = Instant::now() + after;
                    let mut paused = lock(&endpoint.paused_until);
                    if paused.is_none_or(|p| p < until) {
                        *paused = Some(until);
                    }
                }
                AttemptError::Retry {
                    reason: format!("rate limited (429): {}", error.message()),
                    retry_after: error.retry_after,
                }
            }
            408 | 409 | 425 | 500..=599 => {
                bump(&self.counters.server_errors);
                AttemptError::Retry {
                    reason: format!("HTTP {}: {}", error.status, error.message()),
                    retry_after: error.retry_after,
                }
            }
            400 | 413 | 422 => AttemptError::Stop(TeacherError::Rejected {
                endpoint: endpoint_url,
                status: error.status,
                message: error.message(),
            }),
            status => AttemptError::Stop(TeacherError::Fatal {
                endpoint: endpoint_url,
                status,
                message: error.message(),
                hint: match status {
                    401 | 403 => {
                        " (check the API key in the environment variable the definition names)"
                    }
                    404 => {
                        " (check the model name and that base_url ends where the API starts, e.g. …/v1)"
                    }
                    _ => "",
                },
            }),
        }
    }
}

impl Teacher for OpenAiTeacher {
    async fn complete(&self, request: &TeacherRequest) -> Result<Completion, TeacherError> {
        let wanted = request.samples.get();
        let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
        let prompt_estimate = (prompt_chars / 4 + 8) as f64;
        let started = Instant::now();
        let mut samples: Vec<Sample> = Vec::with_capacity(wanted as usize);
        let mut usage = Usage::default();
        let mut model = String::new();
        let mut endpoint_url = String::new();
        let mut attempts = 0u32;
        let mut failures = 0u32;
        let mut first_token: Option<Instant> = None;
        // Servers that ignore `n` (deepseek-reasoner returns one choice) are asked again for
        // the rest; the new samples are numbered after the ones already in hand.
        while (samples.len() as u32) < wanted {
            let slot = self.acquire_slot().await;
            let endpoint = slot.endpoint;
            self.admit(endpoint, prompt_estimate).await;
            attempts += 1;
            bump(&self.counters.attempts);
            let remaining = wanted - samples.len() as u32;
            let mut attempt_first_token = None;
            match self
                .attempt(endpoint, request, remaining, &mut attempt_first_token)
                .await
            {
                Ok((mut got, got_usage, got_model)) => {
                    first_token = first_token.or(attempt_first_token);
                    if let Some(bucket) = &endpoint.tokens {
                        bucket.charge(got_usage.completion_tokens as f64);
                    }
                    if got.is_empty() {
                        failures += 1;
                        bump(&self.counters.malformed);
                        self.check_budget(failures, attempts, "the response had no choices")?;
                        drop(slot);
                        self.pause_before_retry(failures, None).await;
                        continue;
                    }
                    self.calm(endpoint);
                    let offset = samples.len() as u32;
                    for (i, sample) in got.iter_mut().enumerate() {
                        sample.index = offset + i as u32;
                    }
                    samples.append(&mut got);
                    usage += got_usage;
                    model = got_model;
                    endpoint_url = endpoint.base_url.clone();
                }
                Err(AttemptError::Stop(error)) => return Err(error),
                Err(AttemptError::Retry {
                    reason,
                    retry_after,
                }) => {
                    failures += 1;
                    if is_overload(&reason) {
                        self.overloaded(endpoint, slot.epoch);
                    }
                    self.check_budget(failures, attempts, &reason)?;
                    tracing::debug!(endpoint = %endpoint.base_url, attempt = attempts, %reason, "retrying");
                    drop(slot);
                    self.pause_before_retry(failures, retry_after).await;
                }
            }
        }
        bump(&self.counters.completions);
        self.counters
            .prompt_tokens
            .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        self.counters
            .completion_tokens
            .fetch_add(usage.completion_tokens, Ordering::Relaxed);
        Ok(Completion {
            samples,
            usage,
            model,
            endpoint: endpoint_url,
            attempts,
            latency: started.elapsed(),
            first_token: first_token.map(|t| t.duration_since(started)),
        })
    }
}

impl OpenAiTeacher {
    fn check_budget(&self, failures: u32, attempts: u32, reason: &str) -> Result<(), TeacherError> {
        if failures > self.options.retries {
            return Err(TeacherError::Exhausted {
                attempts,
                last_error: reason.to_owned(),
            });
        }
        bump(&self.counters.retries);
        Ok(())
    }

    async fn pause_before_retry(&self, failures: u32, retry_after: Option<Duration>) {
        let delay = self
            .options
            .backoff
            .delay(failures - 1, retry_after, rand::random::<f64>());
        tokio::time::sleep(delay).await;
    }
}

struct Slot<'a> {
    endpoint: &'a EndpointState,
    released: &'a tokio::sync::Notify,
    /// The endpoint's back-off epoch when the request was sent.
    epoch: u64,
    _permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.released.notify_waiters();
    }
}

/// Whether a retryable failure says the server is overloaded (as opposed to a bad answer):
/// 429, 502-504, a dropped connection or cut stream, no answer in time.
fn is_overload(reason: &str) -> bool {
    reason.starts_with("rate limited (429)")
        || reason.starts_with("HTTP 502")
        || reason.starts_with("HTTP 503")
        || reason.starts_with("HTTP 504")
        || reason.starts_with("connection:")
        || reason.starts_with("stream:")
        || reason.starts_with("no answer within")
        || reason.starts_with("the response ended before")
}

#[derive(Default)]
struct ChoiceText {
    reasoning: Option<String>,
    content: String,
    finish_reason: Option<String>,
    /// `None` until the server sends a `logprobs` object for this choice.
    logprobs: Option<Vec<TokenLogprob>>,
}

impl ChoiceText {
    /// Appends a response's or a chunk's token log-probabilities, in generation order.
    fn add_logprobs(&mut self, logprobs: WireLogprobs) {
        let tokens = self.logprobs.get_or_insert_with(Vec::new);
        let bytes =
            |token: String, bytes: Option<Vec<u8>>| bytes.unwrap_or_else(|| token.into_bytes());
        for entry in logprobs.into_tokens() {
            tokens.push(TokenLogprob {
                token: bytes(entry.token, entry.bytes),
                logprob: entry.logprob as f32,
                top: entry
                    .top_logprobs
                    .into_iter()
                    .map(|t| (bytes(t.token, t.bytes), t.logprob as f32))
                    .collect(),
            });
        }
    }
}

impl From<WireUsage> for Usage {
    fn from(wire: WireUsage) -> Self {
        Self {
            prompt_tokens: wire.prompt_tokens,
            completion_tokens: wire.completion_tokens,
            reasoning_tokens: wire
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            estimated: false,
        }
    }
}

fn load_share(endpoint: &EndpointState) -> f64 {
    f64::from(endpoint.in_flight.load(Ordering::Relaxed)) / f64::from(endpoint.concurrency)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// reqwest's top-level message ("error sending request") hides the cause; show the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

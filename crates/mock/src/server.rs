//! The HTTP side: routes, request handling, and the server's lifecycle.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use distillery_spec::AssistantFormat;
use distillery_spec::mock::MockSettings;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::dataset::MockDataset;
use crate::error::MockError;
use crate::faults::{Fault, PromptLedger};
use crate::hash::{Domain, Draws, fnv1a};
use crate::logprobs::Splitter;
use crate::pacing::{Shutdown, paced_body, reset_schedule, sample_latency, stream_schedule};
use crate::stats::{Counters, MockStats};
use crate::trace::{Sample, SamplePlan, Solution};
use crate::wire::{self, ChatRequest, Envelope, LogprobRequest, ModelCard, Usage};

/// Most choices one request may ask for.
const MAX_CHOICES: u32 = 16;
use distillery_spec::MAX_TOP_LOGPROBS;

/// How long a shutdown waits for open responses before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Configures a [`MockServer`] before it starts.
#[derive(Debug, Clone)]
pub struct MockServerBuilder {
    settings: MockSettings,
    model: String,
    dataset: Option<MockDataset>,
    api_key: Option<ApiKey>,
    interrupt_above: Option<usize>,
    stream_usage: bool,
}

impl MockServerBuilder {
    pub fn new(settings: MockSettings, model: impl Into<String>) -> Self {
        Self {
            settings,
            model: model.into(),
            dataset: None,
            api_key: None,
            interrupt_above: None,
            stream_usage: true,
        }
    }

    /// Replays this data set instead of loading `settings.dataset`.
    pub fn dataset(mut self, dataset: MockDataset) -> Self {
        self.dataset = Some(dataset);
        self
    }

    /// Behaves like llama.cpp's server under load: a request that arrives while `k` requests
    /// are open interrupts the running ones (streams are cut, waiting whole responses get 503).
    pub fn interrupt_above(mut self, k: usize) -> Self {
        self.interrupt_above = Some(k);
        self
    }

    /// Like llama-cpp-python's server: streamed responses carry no `usage`, whatever
    /// `stream_options.include_usage` asks (whole responses still do).
    pub fn without_stream_usage(mut self) -> Self {
        self.stream_usage = false;
        self
    }

    /// Refuses requests without `Authorization: Bearer <key>` (401, `invalid_api_key`).
    pub fn require_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey(key.into()));
        self
    }

    /// Validates the settings, loads the data set (unless one was given), binds `addr` (port 0
    /// picks a free port) and starts serving in the background.
    pub async fn start(self, addr: SocketAddr) -> Result<MockServer, MockError> {
        let problems = self.settings.problems();
        if !problems.is_empty() {
            let problems: Vec<String> = problems
                .iter()
                .map(|(field, problem)| format!("{field}: {problem}"))
                .collect();
            return Err(MockError::InvalidSettings(problems.join("; ")));
        }
        let dataset = match (self.dataset, &self.settings.dataset) {
            (Some(dataset), _) => dataset,
            (None, Some(path)) => {
                let path = path.clone();
                let question_field = self.settings.question_field.clone();
                let answer_field = self.settings.answer_field.clone();
                tokio::task::spawn_blocking(move || {
                    MockDataset::load(&path, &question_field, &answer_field)
                })
                .await
                .map_err(|error| {
                    MockError::Serve(format!("loading the data set failed: {error}"))
                })??
            }
            (None, None) => {
                tracing::warn!("mock teacher has no data set: every prompt gets a made-up answer");
                MockDataset::empty()
            }
        };

        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MockError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| MockError::Bind { addr, source })?;
        // Streamed chunks are small; Nagle's algorithm would hold them back.
        let listener = listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::trace!(%error, "cannot set TCP_NODELAY");
            }
        });

        let splitter = Splitter::load(self.settings.tokenizer.as_deref())?;
        let shared = Arc::new(Shared {
            splitter,
            stall: Duration::try_from_secs_f64(self.settings.faults.stall_secs)
                .unwrap_or(Duration::ZERO),
            settings: self.settings,
            model: self.model,
            api_key: self.api_key,
            dataset,
            counters: Counters::default(),
            ledger: PromptLedger::default(),
            next_id: AtomicU64::new(1),
            shutdown: Shutdown::default(),
            started: unix_now(),
            interrupter: self
                .interrupt_above
                .map(|k| Arc::new(crate::pacing::Interrupter::new(k))),
            stream_usage: self.stream_usage,
        });
        let stopped = shared.shutdown.listener().wait();
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        });
        tracing::info!(
            %local_addr,
            model = %shared.model,
            rows = shared.dataset.len(),
            "mock teacher (a simulator) listening"
        );
        Ok(MockServer {
            local_addr,
            shared,
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the server; [`MockServer::shutdown`] also waits for
/// it to finish.
#[derive(Debug)]
pub struct MockServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl MockServer {
    pub fn builder(settings: MockSettings, model: impl Into<String>) -> MockServerBuilder {
        MockServerBuilder::new(settings, model)
    }

    /// Starts a server replaying `settings.dataset` (or, without one, making answers up).
    pub async fn start(
        settings: MockSettings,
        model: String,
        addr: SocketAddr,
    ) -> Result<Self, MockError> {
        MockServerBuilder::new(settings, model).start(addr).await
    }

    /// Starts a server replaying `dataset`; `settings.dataset` is ignored.
    pub async fn start_with_dataset(
        settings: MockSettings,
        model: String,
        dataset: MockDataset,
        addr: SocketAddr,
    ) -> Result<Self, MockError> {
        MockServerBuilder::new(settings, model)
            .dataset(dataset)
            .start(addr)
            .await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The OpenAI base URL, e.g. `http://127.0.0.1:8089/v1`. A wildcard bind address is given
    /// as loopback, which is where a local client reaches it.
    pub fn base_url(&self) -> String {
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/v1", SocketAddr::new(ip, self.local_addr.port()))
    }

    /// The model name requests must use.
    pub fn model(&self) -> &str {
        &self.shared.model
    }

    pub fn stats(&self) -> MockStats {
        self.shared.counters.snapshot(&self.shared.ledger)
    }

    /// Requests seen so far for `question` (cheaper than a whole [`MockServer::stats`]).
    pub fn attempts(&self, question: &str) -> u32 {
        self.shared
            .ledger
            .attempts(question, fnv1a(question.as_bytes()))
    }

    /// Stops accepting connections, ends stalled and paced responses, and waits (a few seconds
    /// at most) for the server to finish.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.trigger();
        if let Some(task) = self.task.take() {
            // The server's own error, if any, no longer matters to a caller shutting it down.
            let _ = finish(task).await;
        }
    }

    /// Serves until `signal` completes, then shuts down. Returns early with an error if the
    /// server stops by itself.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), MockError> {
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        tokio::select! {
            () = signal => {
                self.shared.shutdown.trigger();
                finish(task).await
            }
            result = &mut task => flatten(result),
        }
    }

    /// Serves until Ctrl-C, then shuts down: what `distillery mock-teacher` awaits.
    pub async fn serve_forever(self) -> Result<(), MockError> {
        self.run_until(async {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::warn!(%error, "cannot listen for Ctrl-C; serving until stopped");
                std::future::pending::<()>().await;
            }
        })
        .await
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shared.shutdown.trigger();
    }
}

/// Waits for the server task, giving up (and aborting it) after [`SHUTDOWN_GRACE`].
async fn finish(mut task: JoinHandle<io::Result<()>>) -> Result<(), MockError> {
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
        Ok(result) => flatten(result),
        Err(_) => {
            task.abort();
            Ok(())
        }
    }
}

fn flatten(result: Result<io::Result<()>, tokio::task::JoinError>) -> Result<(), MockError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(MockError::Serve(error.to_string())),
        Err(error) => Err(MockError::Serve(error.to_string())),
    }
}

/// State shared by every request.
#[derive(Debug)]
struct Shared {
    settings: MockSettings,
    model: String,
    api_key: Option<ApiKey>,
    dataset: MockDataset,
    counters: Counters,
    ledger: PromptLedger,
    next_id: AtomicU64,
    shutdown: Shutdown,
    stall: Duration,
    /// Unix time the server started, shown as the model's `created`.
    started: u64,
    interrupter: Option<Arc<crate::pacing::Interrupter>>,
    /// Whether streamed responses may carry `usage`.
    stream_usage: bool,
    /// How text is cut into tokens for `logprobs`.
    splitter: Splitter,
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}", get(retrieve_model))
        .route("/v1/mock/stats", get(stats))
        .fallback(unknown_route)
        .with_state(shared)
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.counters.request();
    let request = match shared
        .check_key(&headers)
        .and_then(|()| shared.parse_request(&body))
    {
        Ok(request) => request,
        Err(refusal) => {
            shared.counters.rejected();
            return refusal.into_response();
        }
    };
    shared.answer(&request).await
}

async fn list_models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = shared.check_key(&headers) {
        return refusal.into_response();
    }
    let card = ModelCard::new(&shared.model, shared.started);
    json_response(StatusCode::OK, wire::model_list_json(card))
}

async fn retrieve_model(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Response {
    if let Err(refusal) = shared.check_key(&headers) {
        return refusal.into_response();
    }
    if model != shared.model {
        return Refusal::model_not_found(&model).into_response();
    }
    let card = ModelCard::new(&shared.model, shared.started);
    json_response(StatusCode::OK, wire::model_json(card))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.counters.snapshot(&shared.ledger);
    match serde_json::to_vec(&stats) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(error) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot serialise the stats: {error}"),
            "server_error",
            None,
        ),
    }
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        &format!("Unknown request URL: {method} {}", uri.path()),
        "invalid_request_error",
        Some("unknown_url"),
    )
}

impl Shared {
    /// `Ok` when no key is required or the request carries it. The key is never echoed.
    fn check_key(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.api_key else {
            return Ok(());
        };
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim());
        let message = match given {
            Some(key) if key == expected.0 => return Ok(()),
            Some(_) => "Incorrect API key provided.",
            None => "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
        };
        Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            code: Some("invalid_api_key"),
        })
    }

    fn parse_request(&self, body: &[u8]) -> Result<ChatRequest, Refusal> {
        let request: ChatRequest = serde_json::from_slice(body)
            .map_err(|error| Refusal::invalid(format!("Invalid request body: {error}")))?;
        if request.model != self.model {
            return Err(Refusal::model_not_found(&request.model));
        }
        if !(1..=MAX_CHOICES).contains(&request.n.unwrap_or(1)) {
            return Err(Refusal::invalid(format!(
                "`n` must be between 1 and {MAX_CHOICES}"
            )));
        }
        if request.max_tokens() == Some(0) {
            return Err(Refusal::invalid("`max_tokens` must be at least 1"));
        }
        if request.last_user_text().is_none() {
            return Err(Refusal::invalid("`messages` must contain a user message"));
        }
        if request.top_logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(Refusal::invalid(format!(
                "`top_logprobs` must be at most {MAX_TOP_LOGPROBS}"
            )));
        }
        Ok(request)
    }

    async fn answer(&self, request: &ChatRequest) -> Response {
        let settings = &self.settings;
        let open = self.interrupter.as_ref().map(|i| i.open());
        let prompt = request.last_user_text().unwrap_or_default();
        let row = self.dataset.find(&prompt);
        // Attempts, samples and faults are keyed by the question, whatever template wraps it.
        let key = row.map_or(prompt.as_ref(), |row| row.question.as_str());
        let prompt_hash = fnv1a(key.as_bytes());
        let made_up;
        let code = row.and_then(|row| row.code.as_ref());
        let solution = match row {
            Some(row) => &row.solution,
            None => {
                self.counters.unmatched();
                made_up = Solution::made_up(settings.seed, prompt_hash);
                &made_up
            }
        };
        let attempt = self
            .ledger
            .record_attempt(key, prompt_hash, &settings.faults, settings.seed);
        if let Some(fault) = attempt.fault {
            self.counters.fault(fault);
            tracing::debug!(?fault, attempt = attempt.number, "injecting a fault");
            if let Some(response) = self.error_fault(fault) {
                return response;
            }
        }

        let whole = |plan: &SamplePlan| {
            let mut sample = match code {
                Some(code) => crate::code::build(code, plan),
                None => Sample::build(solution, plan),
            };
            if settings.assistant_format == Some(AssistantFormat::Tagged) {
                sample.tag_answer();
            }
            sample
        };
        let continuation = request.continuation();
        let samples: Vec<Sample> = (0..request.n.unwrap_or(1))
            .map(|index| {
                let mut sample = match &continuation {
                    Some(partial) => {
                        self.counters.continuation();
                        continue_answer(partial, prompt_hash, request.seed, settings, &whole)
                    }
                    None => whole(&SamplePlan::draw(
                        settings,
                        prompt_hash,
                        request.seed,
                        index,
                    )),
                };
                if let Some(max_tokens) = request.max_tokens() {
                    sample.limit_tokens(max_tokens);
                }
                sample
            })
            .collect();
        if attempt.fault.is_none() {
            self.counters.success(&samples);
        }
        let usage = Usage::new(request.prompt_tokens(), &samples);
        let mut latency_draws = Draws::new(
            Domain::Latency,
            &[settings.seed, prompt_hash, u64::from(attempt.number)],
        );
        let latency = sample_latency(
            settings.latency_ms,
            settings.latency_jitter_ms,
            &mut latency_draws,
        );
        let id = format!(
            "chatcmpl-mock-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let envelope = Envelope {
            id: &id,
            created: unix_now(),
            model: &self.model,
        };
        let delivery = Delivery {
            latency,
            fault: attempt.fault,
        };
        let logprobs = request.logprobs().map(|k| LogprobRequest {
            splitter: &self.splitter,
            k,
            seed: settings.seed ^ prompt_hash,
        });
        if request.streams() {
            let usage = (request.include_usage() && self.stream_usage).then_some(&usage);
            self.streamed(envelope, &samples, usage, delivery, open, logprobs)
        } else {
            self.whole(envelope, &samples, &usage, delivery, open, logprobs)
                .await
        }
    }

    /// An SSE response. Latency, stalls and resets are applied while the body is sent.
    fn streamed(
        &self,
        envelope: Envelope<'_>,
        samples: &[Sample],
        usage: Option<&Usage>,
        delivery: Delivery,
        open: Option<crate::pacing::OpenRequest>,
        logprobs: Option<LogprobRequest<'_>>,
    ) -> Response {
        let malformed = delivery.fault == Some(Fault::Malformed);
        let events = wire::completion_events(
            envelope,
            samples,
            self.settings.reasoning_style,
            usage,
            malformed,
            logprobs,
        );
        let paced = !delivery.latency.is_zero()
            || matches!(delivery.fault, Some(Fault::Reset | Fault::Stall));
        let body = if paced {
            let steps = stream_schedule(
                &events.event_ends,
                delivery.latency,
                delivery.fault,
                self.stall,
            );
            paced_body(
                Bytes::from(events.bytes),
                steps,
                self.shutdown.listener(),
                open,
            )
        } else {
            Body::from(events.bytes)
        };
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// A `chat.completion` JSON response, sent after the whole latency (and any stall).
    async fn whole(
        &self,
        envelope: Envelope<'_>,
        samples: &[Sample],
        usage: &Usage,
        delivery: Delivery,
        mut open: Option<crate::pacing::OpenRequest>,
        logprobs: Option<LogprobRequest<'_>>,
    ) -> Response {
        let mut wait = delivery.latency;
        if delivery.fault == Some(Fault::Stall) {
            wait += self.stall;
        }
        if !wait.is_zero() {
            let cut = async {
                match open.as_mut() {
                    Some(open) => open.cut().await,
                    None => std::future::pending().await,
                }
            };
            let mut shutdown = self.shutdown.listener();
            tokio::select! {
                alive = shutdown.sleep(wait) => if !alive {
                    return error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The mock teacher is shutting down.",
                        "server_error",
                        None,
                    );
                },
                () = cut => {
                    return error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Interrupted by a newer request.",
                        "server_error",
                        None,
                    );
                }
            }
        }
        let mut body = wire::completion_json(
            envelope,
            samples,
            self.settings.reasoning_style,
            usage,
            logprobs,
        );
        match delivery.fault {
            Some(Fault::Malformed) => {
                // Any proper prefix of a JSON object is invalid JSON.
                body.truncate(body.len() / 2);
                json_response(StatusCode::OK, body)
            }
            Some(Fault::Reset) => {
                // The announced length is the full body's, so the client knows it was cut.
                let len = body.len();
                let steps = reset_schedule(len);
                let mut response = Response::new(paced_body(
                    Bytes::from(body),
                    steps,
                    self.shutdown.listener(),
                    None,
                ));
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                response
            }
            _ => json_response(StatusCode::OK, body),
        }
    }

    /// The response of a fault that replaces the completion with an error status; `None` for
    /// the faults that damage the delivery of a completion instead.
    fn error_fault(&self, fault: Fault) -> Option<Response> {
        match fault {
            Fault::RateLimit => Some(self.rate_limited()),
            Fault::ServerError => Some(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server had an error while processing your request \
                 (simulated by distillery-mock).",
                "server_error",
                None,
            )),
            Fault::Reset | Fault::Stall | Fault::Malformed => None,
        }
    }

    fn rate_limited(&self) -> Response {
        let seconds = self.settings.faults.retry_after_secs;
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Rate limit reached (simulated by distillery-mock). Please try again in {seconds}s."
            ),
            "rate_limit_error",
            Some("rate_limit_exceeded"),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
        response
    }
}

/// How a response's bytes leave the server.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    latency: Duration,
    fault: Option<Fault>,
}

/// The key clients must send. Its `Debug` is redacted so a logged server or builder does not
/// leak it.
#[derive(Clone)]
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A request refused before any work is done; always an `invalid_request_error`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: Cow<'static, str>,
    code: Option<&'static str>,
}

impl Refusal {
    fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            code: None,
        }
    }

    fn model_not_found(model: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist").into(),
            code: Some("model_not_found"),
        }
    }

    fn into_response(self) -> Response {
        error_response(
            self.status,
            &self.message,
            "invalid_request_error",
            self.code,
        )
    }
}

/// The rest of the answer `partial` begins: the whole sample (of this prompt and request seed,
/// without the truncation the plan may draw: a continuation runs until it ends or meets
/// `max_tokens`) whose text `partial` is the start of, from `partial` on. A partial answer
/// no sample of the simulator begins with is finished with the first sample's conclusion.
fn continue_answer(
    partial: &str,
    prompt_hash: u64,
    seed: Option<i64>,
    settings: &MockSettings,
    whole: &dyn Fn(&SamplePlan) -> Sample,
) -> Sample {
    let plan = |index| {
        let mut plan = SamplePlan::draw(settings, prompt_hash, seed, index);
        plan.truncate_at = None;
        plan
    };
    for index in 0..MAX_CHOICES {
        if let Some(rest) = whole(&plan(index)).rest_after(partial) {
            return rest;
        }
    }
    let mut sample = whole(&plan(0));
    if partial.contains("</think>") {
        sample.reasoning.clear();
        sample.content.clear();
        sample.continues = crate::trace::Continues::Answer;
    } else {
        let conclusion = sample
            .reasoning
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        sample.reasoning = format!("\n{conclusion}");
        sample.continues = crate::trace::Continues::Reasoning;
    }
    sample
}

fn error_response(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    json_response(status, wire::error_json(message, kind, code))
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

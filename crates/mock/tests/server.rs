//! The simulator over real HTTP: a server on port 0, driven with reqwest, replaying GSM8K.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use distillery_mock::{MockDataset, MockError, MockServer, MockStats};
use distillery_spec::mock::{FaultRates, MockSettings, ReasoningStyle};
use serde_json::{Value, json};

const MODEL: &str = "deepseek-reasoner";
const INSTRUCTION: &str = "Please reason step by step, and put your final answer within \\boxed{}.";
const CHINESE: &str = "让我们再检查一下这个计算";

fn gsm8k_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/gsm8k/test.jsonl")
}

/// The first `count` GSM8K test rows as (question, final answer).
fn gsm8k(count: usize) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(gsm8k_path()).expect("the GSM8K test set is in the repository");
    text.lines()
        .take(count)
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("a JSON row");
            let question = row["question"].as_str().expect("a question").to_owned();
            let answer = row["answer"].as_str().expect("an answer");
            let final_answer = answer
                .rsplit_once("#### ")
                .expect("a GSM8K answer")
                .1
                .trim()
                .to_owned();
            (question, final_answer)
        })
        .collect()
}

fn prompt(question: &str) -> String {
    format!("{question}\n{INSTRUCTION}")
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Settings replaying GSM8K with every sample right and nothing random switched on.
fn exact() -> MockSettings {
    MockSettings {
        dataset: Some(gsm8k_path()),
        accuracy: 1.0,
        ..MockSettings::default()
    }
}

async fn start(settings: MockSettings) -> MockServer {
    MockServer::start(settings, MODEL.to_owned(), local())
        .await
        .expect("the mock server starts")
}

/// Every reasoning style the simulator can answer in.
const STYLES: [ReasoningStyle; 3] = [
    ReasoningStyle::ReasoningContent,
    ReasoningStyle::Reasoning,
    ReasoningStyle::ThinkTags,
];

/// A server with [`exact`] settings answering in `style`.
async fn start_in_style(style: ReasoningStyle) -> MockServer {
    start(MockSettings {
        reasoning_style: style,
        ..exact()
    })
    .await
}

/// A server with [`exact`] settings and the given fault rates.
async fn start_with_faults(faults: FaultRates) -> MockServer {
    start(MockSettings { faults, ..exact() }).await
}

fn client() -> reqwest::Client {
    client_with_timeout(None)
}

fn client_with_timeout(timeout: Option<Duration>) -> reqwest::Client {
    // reqwest is built without a TLS crypto provider and wants one even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder();
    let builder = match timeout {
        Some(timeout) => builder.timeout(timeout),
        None => builder,
    };
    builder.build().expect("a reqwest client")
}

fn request(question: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt(question)},
        ],
        "temperature": 0.6,
        "top_p": 0.95,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn post(client: &reqwest::Client, server: &MockServer, body: &Value) -> reqwest::Response {
    client
        .post(format!("{}/chat/completions", server.base_url()))
        .json(body)
        .send()
        .await
        .expect("the request reaches the server")
}

/// `GET {base_url}{path}`, which must reach the server.
async fn get(client: &reqwest::Client, server: &MockServer, path: &str) -> reqwest::Response {
    client
        .get(format!("{}{path}", server.base_url()))
        .send()
        .await
        .expect("sent")
}

/// A streamed request for `question`, without usage.
fn streaming(question: &str) -> Value {
    request(question, json!({"stream": true}))
}

/// Posts [`streaming`]`(question)` with a fresh client and returns the response unread.
async fn post_streaming(server: &MockServer, question: &str) -> reqwest::Response {
    post(&client(), server, &streaming(question)).await
}

async fn post_json(server: &MockServer, body: &Value) -> Value {
    let response = post(&client(), server, body).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("a JSON completion")
}

/// The `data:` payloads of an SSE body.
fn sse_data(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            event
                .strip_prefix("data: ")
                .expect("every event is a data line")
        })
        .collect()
}

/// A streamed completion folded back into messages, per choice index.
#[derive(Debug, Default, PartialEq)]
struct Folded {
    content: String,
    reasoning_content: String,
    reasoning: String,
    finish_reason: Option<String>,
    role: Option<String>,
}

fn fold_stream(chunks: &[Value]) -> HashMap<u64, Folded> {
    let mut choices: HashMap<u64, Folded> = HashMap::new();
    for chunk in chunks {
        for choice in chunk["choices"].as_array().expect("choices") {
            let folded = choices
                .entry(choice["index"].as_u64().expect("an index"))
                .or_default();
            let delta = &choice["delta"];
            folded.content += delta["content"].as_str().unwrap_or("");
            folded.reasoning_content += delta["reasoning_content"].as_str().unwrap_or("");
            folded.reasoning += delta["reasoning"].as_str().unwrap_or("");
            if let Some(role) = delta["role"].as_str() {
                folded.role = Some(role.to_owned());
            }
            if let Some(finish) = choice["finish_reason"].as_str() {
                folded.finish_reason = Some(finish.to_owned());
            }
        }
    }
    choices
}

/// How the first choice of a folded stream finished.
fn first_finish_reason(chunks: &[Value]) -> Option<String> {
    fold_stream(chunks)[&0].finish_reason.clone()
}

/// Streams a request and returns its parsed chunks (without `[DONE]`, which must end it).
async fn stream(server: &MockServer, body: &Value) -> Vec<Value> {
    let response = post(&client(), server, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let text = response.text().await.expect("a complete stream");
    let data = sse_data(&text);
    assert_eq!(data.last(), Some(&"[DONE]"));
    data[..data.len() - 1]
        .iter()
        .map(|data| serde_json::from_str(data).expect("every chunk is JSON"))
        .collect()
}

async fn fetch_stats(server: &MockServer) -> MockStats {
    let stats: MockStats = client()
        .get(format!("{}/mock/stats", server.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON");
    stats
}

#[tokio::test]
async fn non_streaming_answers_replay_gsm8k_in_each_style() {
    let (question, answer) = gsm8k(1).remove(0);
    for style in STYLES {
        let server = start_in_style(style).await;
        let completion = post_json(&server, &request(&question, json!({}))).await;

        assert_eq!(completion["object"], "chat.completion");
        assert_eq!(completion["model"], MODEL);
        assert!(
            completion["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("chatcmpl-mock-"))
        );
        assert!(
            completion["created"]
                .as_u64()
                .is_some_and(|created| created > 1_600_000_000)
        );
        let choices = completion["choices"].as_array().expect("choices");
        assert_eq!(choices.len(), 1);
        assert_eq!(choices[0]["index"], 0);
        assert_eq!(choices[0]["finish_reason"], "stop");
        let message = &choices[0]["message"];
        assert_eq!(message["role"], "assistant");
        let content = message["content"].as_str().expect("content");
        assert!(
            content.ends_with(&format!("**Final Answer**\n\\boxed{{{answer}}}")),
            "{content}"
        );

        let reasoning = match style {
            ReasoningStyle::ReasoningContent => {
                assert!(message.get("reasoning").is_none());
                message["reasoning_content"]
                    .as_str()
                    .expect("reasoning_content")
                    .to_owned()
            }
            ReasoningStyle::Reasoning => {
                assert!(message.get("reasoning_content").is_none());
                message["reasoning"].as_str().expect("reasoning").to_owned()
            }
            ReasoningStyle::ThinkTags => {
                assert!(
                    message.get("reasoning").is_none()
                        && message.get("reasoning_content").is_none()
                );
                let inner = content.strip_prefix("<think>\n").expect("an opening tag");
                inner
                    .split_once("\n</think>\n\n")
                    .expect("a closing tag")
                    .0
                    .to_owned()
            }
        };
        // The real first GSM8K row: Janet's ducks, annotations stripped.
        assert!(
            reasoning.contains("Janet sells 16 - 3 - 4 = 9 duck eggs a day."),
            "{reasoning}"
        );
        assert!(!reasoning.contains("<<"));
        assert!(reasoning.ends_with(&format!("So the answer is {answer}.")));

        let usage = &completion["usage"];
        let prompt_tokens = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
        let completion_tokens = usage["completion_tokens"]
            .as_u64()
            .expect("completion_tokens");
        let reasoning_tokens = usage["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .expect("reasoning_tokens");
        assert!(prompt_tokens > 40, "{usage}");
        assert_eq!(
            reasoning_tokens,
            (reasoning.chars().count() as u64).div_ceil(4)
        );
        assert!(completion_tokens > reasoning_tokens, "{usage}");
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(prompt_tokens + completion_tokens)
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn streams_rebuild_the_non_streaming_message_in_each_style() {
    let (question, _) = gsm8k(2).remove(1);
    for style in STYLES {
        let server = start_in_style(style).await;
        let whole = post_json(&server, &request(&question, json!({}))).await;
        let chunks = stream(
            &server,
            &request(
                &question,
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ),
        )
        .await;

        assert!(
            chunks.len() > 10,
            "one chunk per few words, got {}",
            chunks.len()
        );
        assert!(
            chunks
                .iter()
                .all(|chunk| chunk["object"] == "chat.completion.chunk")
        );
        assert!(chunks.iter().all(|chunk| chunk["id"] == chunks[0]["id"]));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");

        let usage_chunk = chunks.last().expect("a usage chunk");
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(usage_chunk["usage"], whole["usage"]);

        let folded = fold_stream(&chunks);
        assert_eq!(folded.len(), 1);
        let streamed = &folded[&0];
        let message = &whole["choices"][0]["message"];
        assert_eq!(streamed.role.as_deref(), Some("assistant"));
        assert_eq!(streamed.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            streamed.content,
            message["content"].as_str().expect("content")
        );
        assert_eq!(
            streamed.reasoning_content,
            message["reasoning_content"].as_str().unwrap_or("")
        );
        assert_eq!(
            streamed.reasoning,
            message["reasoning"].as_str().unwrap_or("")
        );
        match style {
            ReasoningStyle::ReasoningContent => assert!(!streamed.reasoning_content.is_empty()),
            ReasoningStyle::Reasoning => assert!(!streamed.reasoning.is_empty()),
            ReasoningStyle::ThinkTags => assert!(streamed.content.starts_with("<think>\n")),
        }

        // Without include_usage, no usage chunk.
        let plain = stream(&server, &streaming(&question)).await;
        assert!(plain.iter().all(|chunk| chunk.get("usage").is_none()));
        server.shutdown().await;
    }
}

#[tokio::test]
async fn n_gives_distinct_deterministic_choices() {
    let (question, answer) = gsm8k(1).remove(0);
    let server = start(MockSettings {
        accuracy: 0.5,
        seed: 3,
        ..exact()
    })
    .await;
    let body = request(&question, json!({"n": 8}));
    let first = post_json(&server, &body).await;
    let choices = first["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 8);
    let indexes: BTreeSet<u64> = choices.iter().filter_map(|c| c["index"].as_u64()).collect();
    assert_eq!(indexes, (0..8).collect());
    let boxed: Vec<&str> = choices
        .iter()
        .map(|c| c["message"]["content"].as_str().expect("content"))
        .collect();
    let right = boxed
        .iter()
        .filter(|c| c.ends_with(&format!("\\boxed{{{answer}}}")))
        .count();
    assert!(
        right > 0 && right < 8,
        "accuracy 0.5 over 8 samples gave {right} right"
    );

    // A retry is answered with exactly the same samples.
    let again = post_json(&server, &body).await;
    assert_eq!(again["choices"], first["choices"]);
    assert_ne!(again["id"], first["id"]);

    // n = 3, streamed: three choices, each finished.
    let chunks = stream(
        &server,
        &request(&question, json!({"n": 3, "stream": true})),
    )
    .await;
    let folded = fold_stream(&chunks);
    assert_eq!(
        folded.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1, 2])
    );
    assert!(
        folded
            .values()
            .all(|choice| choice.finish_reason.as_deref() == Some("stop"))
    );
    for (index, choice) in &folded {
        let whole = &first["choices"][*index as usize]["message"];
        assert_eq!(choice.content, whole["content"].as_str().expect("content"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_seed_varies_the_samples() {
    let (question, _) = gsm8k(1).remove(0);
    let server = start(MockSettings {
        accuracy: 0.5,
        ..exact()
    })
    .await;
    let mut contents = BTreeSet::new();
    for seed in 0..12 {
        let completion = post_json(&server, &request(&question, json!({"seed": seed}))).await;
        contents.insert(
            completion["choices"][0]["message"]["content"]
                .as_str()
                .map(str::to_owned),
        );
    }
    assert!(
        contents.len() > 1,
        "different request seeds gave identical samples"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_model_is_404_in_openai_shape() {
    let server = start(exact()).await;
    let mut body = request("What is 2+2?", json!({}));
    body["model"] = json!("gpt-unknown");
    let response = post(&client(), &server, &body).await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("an error body");
    assert_eq!(
        error,
        json!({"error": {
            "message": "The model `gpt-unknown` does not exist",
            "type": "invalid_request_error",
            "param": null,
            "code": "model_not_found",
        }})
    );
    let stats = server.stats();
    assert_eq!((stats.total_requests, stats.rejected_requests), (1, 1));
    assert!(stats.requests_per_prompt.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn a_required_api_key_is_checked() {
    let server = MockServer::builder(exact(), MODEL)
        .require_api_key("sk-right")
        .start(local())
        .await
        .expect("starts");
    let client = client();
    let url = format!("{}/chat/completions", server.base_url());
    let body = request("What is 2+2?", json!({}));

    for key in [None, Some("sk-wrong")] {
        let mut builder = client.post(&url).json(&body);
        if let Some(key) = key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.expect("sent");
        assert_eq!(response.status(), 401, "key {key:?}");
        let error: Value = response.json().await.expect("an error body");
        assert_eq!(error["error"]["code"], "invalid_api_key");
        assert!(
            !error.to_string().contains("sk-wrong"),
            "the key is not echoed"
        );
    }
    let response = client
        .post(&url)
        .bearer_auth("sk-right")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);

    let models = get(&client, &server, "/models").await;
    assert_eq!(models.status(), 401);
    server.shutdown().await;
}

#[tokio::test]
async fn models_say_it_is_a_simulator() {
    let server = start(exact()).await;
    let client = client();
    let list: Value = get(&client, &server, "/models")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], MODEL);
    assert_eq!(list["data"][0]["owned_by"], "distillery-mock (simulator)");

    let one = get(&client, &server, &format!("/models/{MODEL}")).await;
    assert_eq!(one.status(), 200);
    let missing = get(&client, &server, "/models/other").await;
    assert_eq!(missing.status(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_400() {
    let server = start(exact()).await;
    let client = client();
    let url = format!("{}/chat/completions", server.base_url());
    let not_json = client
        .post(&url)
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(not_json.status(), 400);
    let error: Value = not_json.json().await.expect("an error body");
    assert_eq!(error["error"]["type"], "invalid_request_error");

    for extra in [json!({"n": 17}), json!({"n": 0}), json!({"max_tokens": 0})] {
        let response = post(&client, &server, &request("What is 2+2?", extra.clone())).await;
        assert_eq!(response.status(), 400, "{extra}");
    }
    let no_user = json!({"model": MODEL, "messages": [{"role": "system", "content": "hi"}]});
    assert_eq!(post(&client, &server, &no_user).await.status(), 400);
    assert_eq!(server.stats().rejected_requests, 5);
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limits_carry_retry_after_until_the_fault_cap() {
    let (question, answer) = gsm8k(1).remove(0);
    let server = start_with_faults(FaultRates {
        rate_limit: 1.0,
        retry_after_secs: 7,
        max_faults_per_prompt: 2,
        ..FaultRates::default()
    })
    .await;
    let client = client();
    let body = request(&question, json!({}));
    for attempt in 0..2 {
        let response = post(&client, &server, &body).await;
        assert_eq!(response.status(), 429, "attempt {attempt}");
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("7")
        );
        let error: Value = response.json().await.expect("an error body");
        assert_eq!(error["error"]["type"], "rate_limit_error");
    }
    // The cap is reached: this prompt now always succeeds.
    for _ in 0..3 {
        let response = post(&client, &server, &body).await;
        assert_eq!(response.status(), 200);
        let completion: Value = response.json().await.expect("a completion");
        let content = completion["choices"][0]["message"]["content"]
            .as_str()
            .expect("content");
        assert!(content.ends_with(&format!("\\boxed{{{answer}}}")));
    }
    let stats = server.stats();
    assert_eq!(stats.faults.rate_limit, 2);
    assert_eq!(stats.faults.total(), 2);
    assert_eq!(stats.successful_responses, 3);
    assert_eq!(stats.attempts(&question), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_500() {
    let server = start_with_faults(FaultRates {
        server_error: 1.0,
        max_faults_per_prompt: 1,
        ..FaultRates::default()
    })
    .await;
    let body = request("What is 2+2?", json!({}));
    let response = post(&client(), &server, &body).await;
    assert_eq!(response.status(), 500);
    let error: Value = response.json().await.expect("an error body");
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(post(&client(), &server, &body).await.status(), 200);
    assert_eq!(server.stats().faults.server_error, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_are_not_json() {
    let (question, _) = gsm8k(1).remove(0);
    let server = start_with_faults(FaultRates {
        malformed: 1.0,
        max_faults_per_prompt: 2,
        ..FaultRates::default()
    })
    .await;
    let response = post(&client(), &server, &request(&question, json!({}))).await;
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("a complete body");
    assert!(body.starts_with(b"{\"id\":\"chatcmpl-mock-"));
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    let response = post_streaming(&server, &question).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("a complete stream");
    let data = sse_data(&text);
    let broken = data
        .iter()
        .filter(|data| **data != "[DONE]" && serde_json::from_str::<Value>(data).is_err())
        .count();
    assert_eq!(broken, 1, "{text}");
    assert_eq!(server.stats().faults.malformed, 2);
    assert_eq!(server.stats().successful_responses, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn resets_cut_the_response_short() {
    let (question, _) = gsm8k(1).remove(0);
    let server = start_with_faults(FaultRates {
        reset: 1.0,
        max_faults_per_prompt: 2,
        ..FaultRates::default()
    })
    .await;
    // Non-streaming: the status and a Content-Length arrive, then the body breaks off.
    let response = post(&client(), &server, &request(&question, json!({}))).await;
    assert_eq!(response.status(), 200);
    let announced = response.content_length().expect("a Content-Length");
    assert!(announced > 100);
    assert!(
        response.bytes().await.is_err(),
        "a cut body must be an error"
    );

    // Streaming: a couple of events, then the connection drops.
    let mut response = post_streaming(&server, &question).await;
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("the stream ended cleanly after {} bytes", received.len()),
            Err(error) => break error,
        }
    };
    assert!(
        error.is_body() || error.is_decode() || error.is_request(),
        "{error:?}"
    );
    let text = String::from_utf8_lossy(&received);
    assert!(!text.contains("[DONE]"));
    assert!(sse_data(&text).len() <= 2, "{text}");

    // The cap is reached: the next attempt completes.
    let chunks = stream(&server, &streaming(&question)).await;
    assert_eq!(first_finish_reason(&chunks).as_deref(), Some("stop"));
    assert_eq!(server.stats().faults.reset, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn stalls_outlast_a_short_client_timeout() {
    let (question, _) = gsm8k(1).remove(0);
    let server = start_with_faults(FaultRates {
        stall: 1.0,
        stall_secs: 1.0,
        max_faults_per_prompt: 2,
        ..FaultRates::default()
    })
    .await;
    let impatient = client_with_timeout(Some(Duration::from_millis(200)));
    let error = impatient
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&request(&question, json!({})))
        .send()
        .await
        .expect_err("the stalled response outlasts the timeout");
    assert!(error.is_timeout(), "{error:?}");

    // Streaming: the first chunks come before the stall, the rest after it.
    let started = Instant::now();
    let mut response = post_streaming(&server, &question).await;
    let first = response
        .chunk()
        .await
        .expect("a first chunk")
        .expect("not the end");
    assert!(first.starts_with(b"data: "));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("the stream resumes") {
        rest.extend_from_slice(&chunk);
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));

    // Both faults spent: no more stalls for this prompt.
    let started = Instant::now();
    post_json(&server, &request(&question, json!({}))).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(server.stats().faults.stall, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn truncation_finishes_with_length() {
    let (question, answer) = gsm8k(1).remove(0);
    let server = start(MockSettings {
        truncation_rate: 1.0,
        ..exact()
    })
    .await;
    let completion = post_json(&server, &request(&question, json!({"n": 2}))).await;
    for choice in completion["choices"].as_array().expect("choices") {
        assert_eq!(choice["finish_reason"], "length");
        assert_eq!(choice["message"]["content"], "");
        let reasoning = choice["message"]["reasoning_content"]
            .as_str()
            .expect("reasoning");
        assert!(reasoning.starts_with("Okay") || reasoning.starts_with("Alright"));
        assert!(!reasoning.contains(&format!("answer is {answer}")));
    }
    let chunks = stream(&server, &streaming(&question)).await;
    assert_eq!(first_finish_reason(&chunks).as_deref(), Some("length"));
    let stats = server.stats();
    assert_eq!((stats.samples, stats.truncated_samples), (3, 3));
    server.shutdown().await;
}

#[tokio::test]
async fn max_tokens_cuts_the_completion() {
    let (question, _) = gsm8k(1).remove(0);
    let server = start(exact()).await;
    for field in ["max_tokens", "max_completion_tokens"] {
        let completion = post_json(&server, &request(&question, json!({ field: 20 }))).await;
        assert_eq!(
            completion["choices"][0]["finish_reason"], "length",
            "{field}"
        );
        assert_eq!(completion["usage"]["completion_tokens"], 20, "{field}");
        assert!(
            !completion["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .contains("boxed")
        );
    }
    let roomy = post_json(&server, &request(&question, json!({"max_tokens": 4096}))).await;
    assert_eq!(roomy["choices"][0]["finish_reason"], "stop");
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_answers_and_language_mixing_are_injected_and_counted() {
    let rows = gsm8k(5);
    let server = start(MockSettings {
        accuracy: 0.0,
        language_mix_rate: 1.0,
        ..exact()
    })
    .await;
    for (question, answer) in &rows {
        let completion = post_json(&server, &request(question, json!({}))).await;
        let message = &completion["choices"][0]["message"];
        let content = message["content"].as_str().expect("content");
        let boxed = content
            .rsplit_once("\\boxed{")
            .expect("a boxed answer")
            .1
            .trim_end_matches('}');
        assert_ne!(boxed, answer);
        assert!(
            boxed.parse::<f64>().is_ok(),
            "a plausible number, got {boxed}"
        );
        let reasoning = message["reasoning_content"].as_str().expect("reasoning");
        assert!(reasoning.ends_with(&format!("So the answer is {boxed}.")));
        assert!(reasoning.contains(CHINESE));
    }
    let stats = server.stats();
    assert_eq!(stats.wrong_answer_samples, 5);
    assert_eq!(stats.language_mixed_samples, 5);
    assert_eq!(stats.unmatched_requests, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn stats_count_requests_per_prompt() {
    let rows = gsm8k(3);
    let server = start(exact()).await;
    let client = client();
    for (question, times) in [(&rows[0].0, 2), (&rows[1].0, 1)] {
        for _ in 0..times {
            assert_eq!(
                post(&client, &server, &request(question, json!({})))
                    .await
                    .status(),
                200
            );
        }
    }
    let unmatched = "Name a number between 10 and 999.";
    let made_up = post_json(&server, &request(unmatched, json!({}))).await;
    let content = made_up["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(content.contains("\\boxed{"));

    let stats = fetch_stats(&server).await;
    assert_eq!(stats, server.stats());
    assert_eq!(stats.total_requests, 4);
    assert_eq!(stats.successful_responses, 4);
    assert_eq!(stats.unmatched_requests, 1);
    assert_eq!(stats.attempts(&rows[0].0), 2);
    assert_eq!(stats.attempts(&rows[1].0), 1);
    assert_eq!(stats.attempts(&rows[2].0), 0);
    assert_eq!(stats.attempts(&prompt(unmatched)), 1);
    assert_eq!(stats.requests_per_prompt.len(), 3);
    assert_eq!(server.attempts(&rows[0].0), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn latency_is_simulated() {
    let (question, _) = gsm8k(1).remove(0);
    let server = start(MockSettings {
        latency_ms: 150.0,
        ..exact()
    })
    .await;
    let started = Instant::now();
    post_json(&server, &request(&question, json!({}))).await;
    let whole = started.elapsed();
    assert!(whole >= Duration::from_millis(150), "{whole:?}");

    let started = Instant::now();
    let mut response = post_streaming(&server, &question).await;
    let mut chunks = 0;
    let mut first_at = None;
    while let Some(_chunk) = response.chunk().await.expect("a chunk") {
        chunks += 1;
        first_at.get_or_insert_with(|| started.elapsed());
    }
    let total = started.elapsed();
    let first_at = first_at.expect("some chunks");
    assert!(
        first_at >= Duration::from_millis(30) && first_at < total,
        "{first_at:?} of {total:?}"
    );
    assert!(total >= Duration::from_millis(150), "{total:?}");
    assert!(
        chunks > 2,
        "the stream arrives in several parts, got {chunks}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_stall() {
    let (question, _) = gsm8k(1).remove(0);
    let server = start_with_faults(FaultRates {
        stall: 1.0,
        stall_secs: 60.0,
        ..FaultRates::default()
    })
    .await;
    let mut response = post_streaming(&server, &question).await;
    response.chunk().await.expect("a first chunk");
    let started = Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn in_memory_data_sets_work_too() {
    let dataset = MockDataset::from_rows([("What is 6 times 7?", "6*7=<<6*7=42>>42\n#### 42")]);
    let server = MockServer::start_with_dataset(
        MockSettings {
            accuracy: 1.0,
            ..MockSettings::default()
        },
        MODEL.to_owned(),
        dataset,
        local(),
    )
    .await
    .expect("starts");
    let completion = post_json(&server, &request("What is 6 times 7?", json!({}))).await;
    let message = &completion["choices"][0]["message"];
    assert!(
        message["content"]
            .as_str()
            .is_some_and(|c| c.ends_with("\\boxed{42}"))
    );
    assert!(
        message["reasoning_content"]
            .as_str()
            .is_some_and(|r| r.contains("6*7=42\n"))
    );
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_data_sets_and_settings_are_refused_at_start() {
    let mut file = tempfile::NamedTempFile::new().expect("a temp file");
    writeln!(file, "{{\"question\": \"a\", \"answer\": \"#### 1\"}}").expect("written");
    writeln!(file, "{{\"question\": \"b\"}}").expect("written");
    let settings = MockSettings {
        dataset: Some(file.path().to_owned()),
        ..MockSettings::default()
    };
    match MockServer::start(settings, MODEL.to_owned(), local()).await {
        Err(MockError::BadRow {
            path,
            line,
            message,
        }) => {
            assert_eq!(path, file.path());
            assert_eq!(line, 2);
            assert_eq!(message, "missing field `answer`");
        }
        other => panic!("expected a bad row, got {other:?}"),
    }

    let settings = MockSettings {
        accuracy: 1.5,
        ..MockSettings::default()
    };
    let error = MockServer::start(settings, MODEL.to_owned(), local())
        .await
        .expect_err("accuracy above 1");
    assert!(
        matches!(&error, MockError::InvalidSettings(message) if message.contains("accuracy")),
        "{error}"
    );
}

#[tokio::test]
async fn the_api_key_does_not_leak_through_debug() {
    let server = MockServer::builder(exact(), MODEL)
        .require_api_key("sk-secret-value")
        .start(local())
        .await
        .expect("starts");
    assert!(!format!("{server:?}").contains("sk-secret-value"));
    server.shutdown().await;
}

//! The OpenAI-compatible client against the mock teacher: every reasoning style, streaming
//! and not, n > 1, and every fault the mock can inject.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;

use distillery_mock::{MockDataset, MockServer};
use distillery_spec::{Endpoint, FaultRates, Limits, MockSettings, ReasoningStyle, Sampling};
use distillery_teacher::{
    Backoff, Completion, FinishReason, Message, OpenAiTeacher, ReasoningSource, Role, Teacher,
    TeacherError, TeacherOptions, TeacherRequest,
};

const MODEL: &str = "mock-r1";

fn dataset(rows: usize) -> MockDataset {
    MockDataset::from_rows((0..rows).map(|i| {
        (
            format!("Problem {i}: what is {i} plus {i}?"),
            format!(
                "Add them: {i} + {i} = <<{i}+{i}={}>>{}.\n#### {}",
                2 * i,
                2 * i,
                2 * i
            ),
        )
    }))
}

fn request(i: usize, samples: u32) -> TeacherRequest {
    TeacherRequest {
        max_tokens: None,
        seed: None,
        prefill: None,
        messages: vec![Message::new(
            Role::User,
            format!(
                "Problem {i}: what is {i} plus {i}?\nPlease reason step by step, and put your final answer within \\boxed{{}}."
            ),
        )],
        samples: NonZeroU32::new(samples).unwrap(),
    }
}

async fn start(settings: MockSettings, rows: usize) -> MockServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    MockServer::start_with_dataset(settings, MODEL.into(), dataset(rows), addr)
        .await
        .expect("mock starts")
}

fn endpoint(server: &MockServer, concurrency: u32) -> Endpoint {
    Endpoint {
        base_url: server.base_url(),
        model: MODEL.into(),
        api_key_env: None,
        limits: Limits {
            concurrency: NonZeroU32::new(concurrency).unwrap(),
            requests_per_minute: None,
            tokens_per_minute: None,
        },
    }
}

fn options(stream: bool, retries: u32, timeout: Duration) -> TeacherOptions {
    TeacherOptions {
        sampling: Sampling {
            max_tokens: NonZeroU32::new(4096).unwrap(),
            temperature: 0.6,
            top_p: 0.95,
        },
        timeout,
        retries,
        stream,
        backoff: Backoff {
            base: Duration::from_millis(2),
            max: Duration::from_millis(20),
        },
        top_logprobs: None,
    }
}

fn teacher(endpoints: &[Endpoint], stream: bool, retries: u32) -> OpenAiTeacher {
    OpenAiTeacher::new(endpoints, options(stream, retries, Duration::from_secs(5))).unwrap()
}

fn settings(style: ReasoningStyle) -> MockSettings {
    MockSettings {
        accuracy: 1.0,
        reasoning_style: style,
        seed: 11,
        ..MockSettings::default()
    }
}

fn assert_whole(completion: &Completion, samples: u32) {
    let indexes: BTreeSet<u32> = completion.samples.iter().map(|s| s.index).collect();
    assert_eq!(indexes, (0..samples).collect(), "every sample exactly once");
}

/// `top_logprobs = 8`: every sample comes back with one entry per generated token, whose
/// bytes spell exactly what the sample says (reasoning, then content), chosen token first,
/// streamed or not, whatever the reasoning style.
#[tokio::test]
async fn top_logprobs_come_back_consistent_with_the_text() {
    for style in [
        ReasoningStyle::ReasoningContent,
        ReasoningStyle::Reasoning,
        ReasoningStyle::ThinkTags,
    ] {
        let server = start(settings(style), 5).await;
        for stream in [false, true] {
            let mut options = options(stream, 0, Duration::from_secs(5));
            options.top_logprobs = Some(8);
            let teacher = OpenAiTeacher::new(&[endpoint(&server, 4)], options).unwrap();
            let completion = teacher.complete(&request(2, 2)).await.unwrap();
            for sample in &completion.samples {
                let tokens = sample.logprobs.as_ref().expect("log-probabilities");
                let spelled =
                    String::from_utf8(tokens.iter().flat_map(|t| t.token.clone()).collect())
                        .unwrap();
                let reasoning = sample.reasoning.as_deref().unwrap();
                let expected = match style {
                    ReasoningStyle::ThinkTags => {
                        format!("<think>\n{reasoning}\n</think>\n\n{}", sample.content)
                    }
                    _ => format!("{reasoning}{}", sample.content),
                };
                assert_eq!(spelled, expected, "{style:?} stream={stream}");
                for t in tokens {
                    assert_eq!(t.top.len(), 8);
                    assert_eq!(t.top[0].0, t.token);
                    assert!(t.logprob < 0.0 && t.logprob > -0.7);
                }
            }
        }
        // Without the option nothing is asked and nothing comes back.
        let completion = teacher(&[endpoint(&server, 4)], true, 0)
            .complete(&request(2, 1))
            .await
            .unwrap();
        assert!(completion.samples[0].logprobs.is_none());
    }
}

#[tokio::test]
async fn every_reasoning_style_streaming_and_not_with_n_samples() {
    for style in [
        ReasoningStyle::ReasoningContent,
        ReasoningStyle::Reasoning,
        ReasoningStyle::ThinkTags,
    ] {
        let server = start(settings(style), 5).await;
        for stream in [false, true] {
            let teacher = teacher(&[endpoint(&server, 4)], stream, 0);
            let completion = teacher.complete(&request(3, 3)).await.unwrap();
            assert_whole(&completion, 3);
            assert_eq!(completion.model, MODEL);
            assert_eq!(completion.endpoint, server.base_url());
            assert_eq!(completion.attempts, 1);
            assert!(completion.usage.prompt_tokens > 0);
            assert!(
                completion.usage.reasoning_tokens > 0,
                "{style:?} stream={stream}"
            );
            assert!(completion.usage.completion_tokens > completion.usage.reasoning_tokens);
            for sample in &completion.samples {
                let reasoning = sample.reasoning.as_deref().unwrap_or_default();
                assert!(
                    reasoning.contains("3 + 3 = 6"),
                    "{style:?} stream={stream}: {reasoning}"
                );
                assert!(!reasoning.contains("<think>") && !sample.content.contains("</think>"));
                assert!(sample.content.contains("\\boxed{6}"), "{}", sample.content);
                assert_eq!(sample.finish_reason, FinishReason::Stop);
                let expected = match style {
                    ReasoningStyle::ThinkTags => ReasoningSource::ThinkTags,
                    _ => ReasoningSource::Field,
                };
                assert_eq!(sample.reasoning_source, expected);
            }
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn streaming_and_plain_requests_give_the_same_samples() {
    let server = start(settings(ReasoningStyle::ThinkTags), 5).await;
    let plain = teacher(&[endpoint(&server, 2)], false, 0);
    let streaming = teacher(&[endpoint(&server, 2)], true, 0);
    let a = plain.complete(&request(2, 4)).await.unwrap();
    let b = streaming.complete(&request(2, 4)).await.unwrap();
    assert_eq!(a.samples, b.samples);
    assert_eq!(a.usage, b.usage);
}

/// Heavy faults of every kind: every prompt still completes with every sample exactly once,
/// and the samples are the ones a fault-free server gives.
#[tokio::test]
async fn survives_every_fault_without_losing_or_doubling_samples() {
    const PROMPTS: usize = 40;
    let clean = start(settings(ReasoningStyle::ReasoningContent), PROMPTS).await;
    let faulty_settings = MockSettings {
        faults: FaultRates {
            rate_limit: 0.12,
            retry_after_secs: 0,
            server_error: 0.12,
            reset: 0.12,
            stall: 0.08,
            stall_secs: 3.0,
            malformed: 0.12,
            max_faults_per_prompt: 4,
        },
        ..settings(ReasoningStyle::ReasoningContent)
    };
    for stream in [false, true] {
        let faulty = start(faulty_settings.clone(), PROMPTS).await;
        let reference = teacher(&[endpoint(&clean, 8)], stream, 0);
        let client = Arc::new(
            OpenAiTeacher::new(
                &[endpoint(&faulty, 8)],
                options(stream, 6, Duration::from_millis(800)),
            )
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for i in 0..PROMPTS {
            let client = Arc::clone(&client);
            tasks.push(tokio::spawn(async move {
                client.complete(&request(i, 2)).await
            }));
        }
        let mut retried = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            let got = task
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("prompt {i}: {e}"));
            assert_whole(&got, 2);
            let want = reference.complete(&request(i, 2)).await.unwrap();
            assert_eq!(got.samples, want.samples, "prompt {i} stream={stream}");
            retried += usize::from(got.attempts > 1);
        }
        let mock = faulty.stats();
        let faults = &mock.faults;
        assert!(
            faults.rate_limit > 0
                && faults.server_error > 0
                && faults.reset > 0
                && faults.stall > 0
                && faults.malformed > 0,
            "every fault kind was injected: {faults:?}"
        );
        let stats = client.stats();
        assert_eq!(stats.completions, PROMPTS as u64);
        assert_eq!(
            stats.attempts, mock.total_requests,
            "each attempt reached the server once"
        );
        assert_eq!(stats.retries, stats.attempts - PROMPTS as u64);
        assert!(retried > 0 && stats.rate_limited > 0 && stats.timeouts > 0 && stats.malformed > 0);
        assert_eq!(stats.in_flight, 0);
        faulty.shutdown().await;
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = start(
        MockSettings {
            faults: FaultRates {
                rate_limit: 1.0,
                retry_after_secs: 1,
                max_faults_per_prompt: 1,
                ..FaultRates::default()
            },
            ..settings(ReasoningStyle::ReasoningContent)
        },
        3,
    )
    .await;
    let teacher = teacher(&[endpoint(&server, 1)], false, 3);
    let completion = teacher.complete(&request(1, 1)).await.unwrap();
    assert_eq!(completion.attempts, 2);
    assert!(
        completion.latency >= Duration::from_secs(1),
        "waited {:?}, Retry-After said 1 s",
        completion.latency
    );
    assert_eq!(teacher.stats().rate_limited, 1);
}

#[tokio::test]
async fn retries_run_out_with_a_clear_error() {
    let server = start(
        MockSettings {
            faults: FaultRates {
                server_error: 1.0,
                max_faults_per_prompt: 100,
                ..FaultRates::default()
            },
            ..settings(ReasoningStyle::ReasoningContent)
        },
        3,
    )
    .await;
    let teacher = teacher(&[endpoint(&server, 1)], true, 2);
    let error = teacher.complete(&request(1, 1)).await.unwrap_err();
    assert!(!error.is_fatal(), "one prompt failing does not stop a run");
    match error {
        TeacherError::Exhausted {
            attempts,
            last_error,
        } => {
            assert_eq!(attempts, 3);
            assert!(last_error.contains("HTTP 500"), "{last_error}");
        }
        other => panic!("expected Exhausted, got {other}"),
    }
    assert_eq!(server.stats().total_requests, 3);
}

#[tokio::test]
async fn unknown_model_stops_at_once() {
    let server = start(settings(ReasoningStyle::ReasoningContent), 3).await;
    let mut wrong = endpoint(&server, 1);
    wrong.model = "no-such-model".into();
    let error = teacher(&[wrong], false, 5)
        .complete(&request(1, 1))
        .await
        .unwrap_err();
    assert!(error.is_fatal());
    let text = error.to_string();
    assert!(
        text.contains("HTTP 404") && text.contains("no-such-model"),
        "{text}"
    );
    assert_eq!(
        server.stats().total_requests,
        1,
        "a fatal error is not retried"
    );
}

#[tokio::test]
async fn a_refused_key_stops_and_is_never_shown() {
    const KEY: &str = "sk-test-0123456789abcdef";
    let server = MockServer::builder(settings(ReasoningStyle::ReasoningContent), MODEL)
        .dataset(dataset(3))
        .require_api_key(KEY)
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut with_key = endpoint(&server, 1);
    with_key.api_key_env = Some("DISTILLERY_TEST_KEY".into());
    let opts = || options(false, 5, Duration::from_secs(5));

    let good =
        OpenAiTeacher::with_key_lookup(&[with_key.clone()], opts(), |_| Some(KEY.into())).unwrap();
    assert!(!format!("{good:?}").contains(KEY));
    good.complete(&request(1, 1)).await.unwrap();

    let bad = OpenAiTeacher::with_key_lookup(&[with_key.clone()], opts(), |_| {
        Some("sk-wrong-key-000".into())
    })
    .unwrap();
    let error = bad.complete(&request(1, 1)).await.unwrap_err();
    assert!(error.is_fatal());
    let text = error.to_string();
    assert!(
        text.contains("HTTP 401") && text.contains("API key"),
        "{text}"
    );
    assert!(!text.contains("sk-wrong-key-000") && !text.contains(KEY));

    let missing = OpenAiTeacher::with_key_lookup(&[with_key], opts(), |_| None).unwrap_err();
    assert!(missing.is_fatal());
    assert!(
        missing
            .to_string()
            .contains("DISTILLERY_TEST_KEY is not set"),
        "{missing}"
    );
}

#[tokio::test]
async fn several_endpoints_share_the_load() {
    let a = start(settings(ReasoningStyle::ReasoningContent), 30).await;
    let b = start(settings(ReasoningStyle::ReasoningContent), 30).await;
    let client = Arc::new(teacher(&[endpoint(&a, 3), endpoint(&b, 3)], true, 0));
    assert_eq!(client.capacity(), 6);
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.complete(&request(i, 1)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let (on_a, on_b) = (a.stats().total_requests, b.stats().total_requests);
    assert_eq!(on_a + on_b, 30);
    assert!(on_a >= 5 && on_b >= 5, "load was shared: {on_a} and {on_b}");
}

#[tokio::test]
async fn requests_per_minute_is_enforced() {
    let server = start(settings(ReasoningStyle::ReasoningContent), 20).await;
    let mut limited = endpoint(&server, 20);
    limited.limits.requests_per_minute = NonZeroU32::new(600); // 10/s, burst of 10
    limited.limits.tokens_per_minute = NonZeroU64::new(10_000_000);
    let client = Arc::new(teacher(&[limited], false, 0));
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.complete(&request(i, 1)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // 10 at once, then 10 more at 10/s: at least 0.9 s.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn truncated_samples_report_length() {
    let server = start(
        MockSettings {
            truncation_rate: 1.0,
            ..settings(ReasoningStyle::ThinkTags)
        },
        3,
    )
    .await;
    for stream in [false, true] {
        let completion = teacher(&[endpoint(&server, 1)], stream, 0)
            .complete(&request(1, 2))
            .await
            .unwrap();
        assert_whole(&completion, 2);
        for sample in completion.samples {
            assert_eq!(sample.finish_reason, FinishReason::Length);
            assert!(!sample.content.contains("\\boxed"), "{}", sample.content);
        }
    }
}

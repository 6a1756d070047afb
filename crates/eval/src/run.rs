//! Asking the model every problem and scoring the answers, many requests in flight at once.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;

use distillery_teacher::{Teacher, TeacherRequest, Usage};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::benchmark::Problem;
use crate::score::{REQUEST_FAILED, REQUEST_REJECTED, SAMPLE_MISSING, SampleScore, Scorer};

#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Samples asked per problem (the `n` of pass@k).
    pub samples: NonZeroU32,
    /// Problems in flight at once. A local model batches the requests it has waiting, so this
    /// is also its largest batch.
    pub concurrency: NonZeroUsize,
}

/// One problem's outcome: every sample's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemResult {
    pub id: String,
    pub row: u64,
    pub prompt: String,
    pub reference: Option<String>,
    /// Samples asked for; samples that never arrived count as wrong.
    pub n: u32,
    pub correct: u32,
    /// Ordered by sample index, `n` of them.
    pub samples: Vec<SampleScore>,
    /// Why the request failed, when it did.
    pub error: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    pub latency_ms: u64,
    /// Time to the first generated token, when the answer was streamed or generated locally.
    #[serde(default)]
    pub first_token_ms: Option<u64>,
}

/// Asks `teacher` every problem, `options.concurrency` at a time, and scores the answers.
/// Results come back in problem order whatever order the answers arrive in, and `on_result`
/// sees each as it is scored (for progress). A request that fails after its retries marks
/// that problem's samples failed; a fatal teacher error (bad key, unknown model) stops it all.
pub async fn evaluate<T: Teacher>(
    teacher: &T,
    problems: &[Problem],
    scorer: Arc<Scorer>,
    options: EvalOptions,
    mut on_result: impl FnMut(&ProblemResult),
) -> Result<Vec<ProblemResult>, EvalError> {
    let asks = problems.iter().enumerate().map(|(position, problem)| {
        let scorer = scorer.clone();
        async move {
            let result = ask(teacher, problem, scorer, options.samples).await;
            (position, result)
        }
    });
    let mut answers = futures::stream::iter(asks).buffer_unordered(options.concurrency.get());
    let mut results: Vec<Option<ProblemResult>> = vec![None; problems.len()];
    while let Some((position, result)) = answers.next().await {
        let result = result?;
        on_result(&result);
        results[position] = Some(result);
    }
    Ok(results.into_iter().flatten().collect())
}

async fn ask<T: Teacher>(
    teacher: &T,
    problem: &Problem,
    scorer: Arc<Scorer>,
    samples: NonZeroU32,
) -> Result<ProblemResult, EvalError> {
    let n = samples.get();
    let request = TeacherRequest::new(problem.messages(), samples);
    let mut result = ProblemResult {
        id: problem.id.clone(),
        row: problem.row,
        prompt: problem.prompt.clone(),
        reference: problem.reference.clone(),
        n,
        correct: 0,
        samples: Vec::new(),
        error: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        reasoning_tokens: 0,
        latency_ms: 0,
        first_token_ms: None,
    };
    match teacher.complete(&request).await {
        Ok(completion) => {
            let Usage {
                prompt_tokens,
                completion_tokens,
                reasoning_tokens,
                ..
            } = completion.usage;
            result.prompt_tokens = prompt_tokens;
            result.completion_tokens = completion_tokens;
            result.reasoning_tokens = reasoning_tokens;
            result.latency_ms = millis(completion.latency);
            result.first_token_ms = completion.first_token.map(millis);
            let mut answers = completion.samples;
            answers.sort_by_key(|sample| sample.index);
            answers.dedup_by_key(|sample| sample.index);
            answers.retain(|sample| sample.index < n);
            let owned = problem.clone();
            // Code answers run in a child process, and even math grading is CPU work: keep
            // both off the threads that drive the requests.
            let scored = tokio::task::spawn_blocking(move || {
                answers
                    .iter()
                    .map(|sample| scorer.score(&owned, sample))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| EvalError::Scoring {
                id: problem.id.clone(),
                message: e.to_string(),
            })?;
            let mut scored = scored.into_iter().peekable();
            for index in 0..n {
                match scored.next_if(|s| s.index == index) {
                    Some(score) => result.samples.push(score),
                    None => result.samples.push(SampleScore::failed(
                        index,
                        SAMPLE_MISSING,
                        "the server returned fewer samples than asked for",
                    )),
                }
            }
        }
        Err(error) if error.is_fatal() => return Err(error.into()),
        Err(error) => {
            let code = if error.is_rejection() {
                REQUEST_REJECTED
            } else {
                REQUEST_FAILED
            };
            let message = error.to_string();
            tracing::warn!(id = %problem.id, "no answer: {message}");
            result.samples = (0..n)
                .map(|index| SampleScore::failed(index, code, message.clone()))
                .collect();
            result.error = Some(message);
        }
    }
    result.correct = result.samples.iter().filter(|s| s.correct).count() as u32;
    Ok(result)
}

/// A duration in whole milliseconds, saturating.
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use distillery_teacher::{Completion, FinishReason, ReasoningSource, Sample, TeacherError};
    use distillery_verify::math;

    use super::*;
    use crate::benchmark::Check;
    use crate::report::{EvalSettings, Report};

    fn settings(samples: u32) -> EvalSettings {
        EvalSettings {
            benchmark: "fake".into(),
            source: "memory".into(),
            model: "fake".into(),
            backend: "openai".into(),
            endpoint: None,
            samples,
            limit: None,
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 16,
            seed: 0,
            template: "{question}".into(),
            system: None,
            distillery_version: "test".into(),
        }
    }

    /// Answers `\boxed{<problem number>}` for even sample indices and a wrong number for odd
    /// ones; problem "fail" gets a retryable error, problem "fatal" a fatal one.
    struct Fake {
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl Teacher for Fake {
        async fn complete(&self, request: &TeacherRequest) -> Result<Completion, TeacherError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let prompt = &request.messages.last().unwrap().content;
            if prompt == "fail" {
                return Err(TeacherError::Exhausted {
                    attempts: 3,
                    last_error: "HTTP 500".into(),
                });
            }
            if prompt == "reject" {
                return Err(TeacherError::Rejected {
                    endpoint: "memory".into(),
                    status: 400,
                    message: "prompt too long".into(),
                });
            }
            if prompt == "fatal" {
                return Err(TeacherError::Client("broken".into()));
            }
            let samples = (0..request.samples.get())
                .rev()
                .filter(|i| prompt != "short" || *i == 0)
                .map(|index| Sample {
                    logprobs: None,
                    index,
                    reasoning: None,
                    content: if index % 2 == 0 {
                        format!("\\boxed{{{}}}", prompt.len())
                    } else {
                        "\\boxed{-1}".into()
                    },
                    reasoning_source: ReasoningSource::Absent,
                    finish_reason: FinishReason::Stop,
                })
                .collect();
            Ok(Completion {
                samples,
                usage: Usage {
                    prompt_tokens: 3,
                    completion_tokens: 7,
                    reasoning_tokens: 0,
                    estimated: false,
                },
                model: "fake".into(),
                endpoint: "memory".into(),
                attempts: 1,
                latency: Duration::from_millis(5),
                first_token: Some(Duration::from_millis(2)),
            })
        }
    }

    fn problem(prompt: &str) -> Problem {
        Problem {
            id: prompt.into(),
            row: 0,
            prompt: prompt.into(),
            system: None,
            reference: Some(prompt.len().to_string()),
            check: Check::Math(math::Reference::new(&prompt.len().to_string())),
        }
    }

    fn options(samples: u32, concurrency: usize) -> EvalOptions {
        EvalOptions {
            samples: NonZeroU32::new(samples).unwrap(),
            concurrency: NonZeroUsize::new(concurrency).unwrap(),
        }
    }

    fn fake() -> Fake {
        Fake {
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scores_in_problem_order_with_bounded_concurrency() {
        let teacher = fake();
        let problems: Vec<Problem> = ["a", "bb", "fail", "short", "eeeee", "ffffff", "g"]
            .iter()
            .map(|p| problem(p))
            .collect();
        let mut seen = 0;
        let results = evaluate(
            &teacher,
            &problems,
            Arc::new(Scorer::default()),
            options(4, 3),
            |_| seen += 1,
        )
        .await
        .unwrap();
        assert_eq!(seen, problems.len());
        assert!(teacher.most_in_flight.load(Ordering::SeqCst) <= 3);
        let ids: Vec<&str> = results.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "bb", "fail", "short", "eeeee", "ffffff", "g"]);
        let a = &results[0];
        assert_eq!((a.n, a.correct), (4, 2));
        let indices: Vec<u32> = a.samples.iter().map(|s| s.index).collect();
        assert_eq!(indices, [0, 1, 2, 3]);
        assert_eq!(a.samples[1].verdict, "math.wrong_answer");
        assert_eq!(a.completion_tokens, 7);

        let failed = &results[2];
        assert_eq!((failed.n, failed.correct), (4, 0));
        assert!(failed.samples.iter().all(|s| s.verdict == REQUEST_FAILED));
        assert!(failed.error.as_deref().unwrap().contains("HTTP 500"));

        let short = &results[3];
        assert_eq!((short.n, short.correct), (4, 1));
        assert_eq!(short.samples[3].verdict, SAMPLE_MISSING);

        // 11 of 28 samples right; every problem but "fail" solved at least once.
        let report = Report::new(settings(4), &results, 1.0);
        assert_eq!(report.pass_at_1, 11.0 / 28.0);
        assert!(report.summary_line().starts_with("pass@1 0.3929 ± "));
        assert!(report.summary_line().ends_with(" (11/28)"));
        assert_eq!(report.pass_at_k.keys().copied().collect::<Vec<_>>(), [1, 4]);
        assert!((report.pass_at_k[&4] - 6.0 / 7.0).abs() < 1e-12);
        assert_eq!(report.failures[REQUEST_FAILED], 4);
        assert_eq!(report.failures[SAMPLE_MISSING], 3);
        assert_eq!(report.failures["math.wrong_answer"], 10);
        assert_eq!(report.request_errors, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn greedy_single_samples_score_exactly() {
        // One sample each: "a" and "ccc" right (index 0 is right), "reject" refused.
        let problems = vec![problem("a"), problem("reject"), problem("ccc")];
        let results = evaluate(
            &fake(),
            &problems,
            Arc::new(Scorer::default()),
            options(1, 8),
            |_| {},
        )
        .await
        .unwrap();
        let report = Report::new(settings(1), &results, 1.0);
        assert_eq!(report.pass_at_1, 2.0 / 3.0);
        assert_eq!(report.pass_at_k.len(), 1);
        let rejected = &results[1].samples[0];
        assert_eq!(rejected.verdict, REQUEST_REJECTED);
        assert!(!rejected.correct);
        assert!(
            rejected
                .detail
                .as_deref()
                .unwrap()
                .contains("prompt too long"),
            "{rejected:?}"
        );
        assert_eq!(report.failures[REQUEST_REJECTED], 1);
        assert_eq!(results[2].samples[0].extracted.as_deref(), Some("3"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fatal_error_stops_the_evaluation() {
        let problems = vec![problem("a"), problem("fatal"), problem("c")];
        let error = evaluate(
            &fake(),
            &problems,
            Arc::new(Scorer::default()),
            options(1, 1),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(error, EvalError::Teacher(_)), "{error}");
    }
}

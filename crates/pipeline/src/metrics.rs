//! The run's Prometheus metrics, kept and encoded by `prometheus-client` and served by axum on
//! the run's own runtime (`--metrics ADDR`, path `/metrics`).
//!
//! Counts the run already keeps (progress, the teacher client's counters, each endpoint's
//! adaptive concurrency) are read at scrape time by a collector; request latency and time to
//! first token are histograms per endpoint, observed as completions arrive.

use std::fmt;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use distillery_store::EndpointConcurrency;
use distillery_teacher::{Completion, TeacherStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::progress::Progress;

/// Seconds: 50 ms to about 27 minutes, doubling (a reasoning trace can take many minutes).
const LATENCY_BUCKETS: (f64, f64, u16) = (0.05, 2.0, 16);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

type ByEndpoint = Family<EndpointLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    let (start, factor, count) = LATENCY_BUCKETS;
    Histogram::new(exponential_buckets(start, factor, count))
}

/// What the collector reads at scrape time.
pub(crate) struct Sources {
    pub progress: Arc<Progress>,
    pub teacher: Arc<dyn Fn() -> TeacherStats + Send + Sync>,
    pub endpoints: Arc<dyn Fn() -> Vec<EndpointConcurrency> + Send + Sync>,
}

/// The metrics of one run.
pub(crate) struct RunMetrics {
    registry: Registry,
    request_seconds: ByEndpoint,
    first_token_seconds: ByEndpoint,
}

impl fmt::Debug for RunMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunMetrics").finish_non_exhaustive()
    }
}

impl RunMetrics {
    pub(crate) fn new(sources: Sources) -> Self {
        let mut registry = Registry::with_prefix("distillery");
        let request_seconds = ByEndpoint::new_with_constructor(latency_histogram);
        let first_token_seconds = ByEndpoint::new_with_constructor(latency_histogram);
        registry.register(
            "teacher_request_seconds",
            "Seconds from a request's first attempt to its last byte, retries included, by endpoint",
            request_seconds.clone(),
        );
        registry.register(
            "teacher_first_token_seconds",
            "Seconds from a request's first attempt to its first generated token (streamed or local answers only), by endpoint",
            first_token_seconds.clone(),
        );
        registry.register_collector(Box::new(RunCollector(sources)));
        Self {
            registry,
            request_seconds,
            first_token_seconds,
        }
    }

    /// Records how long a completion took.
    pub(crate) fn observe(&self, completion: &Completion) {
        let label = EndpointLabel {
            endpoint: completion.endpoint.clone(),
        };
        self.request_seconds
            .get_or_create(&label)
            .observe(completion.latency.as_secs_f64());
        if let Some(first) = completion.first_token {
            self.first_token_seconds
                .get_or_create(&label)
                .observe(first.as_secs_f64());
        }
    }

    /// The Prometheus text exposition format (0.0.4) of every metric.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Serves `/metrics` on `listener` until the run's runtime stops. Call from within it.
    pub(crate) fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        use axum::routing::get;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = axum::Router::new().route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&self);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.text(),
                    )
                }
            }),
        );
        actix::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!("the metrics endpoint stopped: {error}");
            }
        });
        Ok(())
    }
}

/// Reads the run's own counters at scrape time.
struct RunCollector(Sources);

impl fmt::Debug for RunCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunCollector").finish_non_exhaustive()
    }
}

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Sources {
            progress,
            teacher,
            endpoints,
        } = &self.0;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let teacher = teacher();
        let counters = [
            (
                "prompts_done",
                "Prompts whose rows (or failure) are durable",
                load(&progress.prompts_done),
            ),
            (
                "generations_accepted",
                "Samples that passed every check",
                load(&progress.accepted),
            ),
            (
                "generations_rejected",
                "Samples rejected by a check",
                load(&progress.rejected),
            ),
            (
                "prompts_quarantined",
                "Source rows set aside as unusable",
                load(&progress.quarantined),
            ),
            (
                "prompts_failed",
                "Prompts the teacher did not answer after its retries",
                load(&progress.failed),
            ),
            (
                "teacher_attempts",
                "HTTP attempts, retries included",
                teacher.attempts,
            ),
            (
                "teacher_retries",
                "Attempts that were retries",
                teacher.retries,
            ),
            (
                "teacher_rate_limited",
                "Answers of HTTP 429",
                teacher.rate_limited,
            ),
            (
                "teacher_server_errors",
                "Answers of HTTP 5xx",
                teacher.server_errors,
            ),
            (
                "teacher_timeouts",
                "Attempts that timed out",
                teacher.timeouts,
            ),
            (
                "teacher_prompt_tokens",
                "Prompt tokens the teacher reported",
                teacher.prompt_tokens,
            ),
            (
                "teacher_completion_tokens",
                "Completion tokens the teacher reported",
                teacher.completion_tokens,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let in_flight = ConstGauge::new(progress.in_flight.load(Ordering::Relaxed) as i64);
        in_flight.encode(encoder.encode_descriptor(
            "requests_in_flight",
            "Requests sent to the teacher and not yet answered",
            None,
            in_flight.metric_type(),
        )?)?;

        let endpoints = endpoints();
        by_endpoint(
            &mut encoder,
            "endpoint_concurrency_limit",
            "Requests an endpoint may have in flight now (adaptive, at most its configured concurrency)",
            &endpoints,
            |e| ConstGauge::new(i64::from(e.limit)),
        )?;
        by_endpoint(
            &mut encoder,
            "endpoint_backoffs",
            "Times an endpoint's concurrency was cut after 429s or errors",
            &endpoints,
            |e| ConstCounter::new(e.backoffs),
        )?;
        Ok(())
    }
}

/// One metric with a value per endpoint, labelled `endpoint`.
fn by_endpoint<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    endpoints: &[EndpointConcurrency],
    value: impl Fn(&EndpointConcurrency) -> M,
) -> fmt::Result {
    let Some(first) = endpoints.first() else {
        return Ok(());
    };
    let mut family = encoder.encode_descriptor(name, help, None, value(first).metric_type())?;
    for endpoint in endpoints {
        let label = EndpointLabel {
            endpoint: endpoint.base_url.clone(),
        };
        value(endpoint).encode(family.encode_family(&label)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn metrics() -> (RunMetrics, Arc<Progress>) {
        let progress = Arc::new(Progress::default());
        let metrics = RunMetrics::new(Sources {
            progress: Arc::clone(&progress),
            teacher: Arc::new(|| TeacherStats {
                retries: 3,
                ..TeacherStats::default()
            }),
            endpoints: Arc::new(|| {
                vec![EndpointConcurrency {
                    base_url: "http://a:8000/v1".into(),
                    concurrency: 16,
                    limit: 12,
                    backoffs: 2,
                }]
            }),
        });
        (metrics, progress)
    }

    fn completion(endpoint: &str, secs: f64, first: Option<f64>) -> Completion {
        Completion {
            samples: Vec::new(),
            usage: Default::default(),
            model: "m".into(),
            endpoint: endpoint.into(),
            attempts: 1,
            latency: Duration::from_secs_f64(secs),
            first_token: first.map(Duration::from_secs_f64),
        }
    }

    #[test]
    fn every_metric_has_help_and_type_and_counts_are_live() {
        let (metrics, progress) = metrics();
        progress.accepted.store(7, Ordering::Relaxed);
        let text = metrics.text();
        assert!(
            text.contains(
                "# HELP distillery_generations_accepted_total Samples that passed every check\n\
                 # TYPE distillery_generations_accepted_total counter\n\
                 distillery_generations_accepted_total 7\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("distillery_teacher_retries_total 3\n"),
            "{text}"
        );
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(helps, names.len(), "{text}");
        // The histograms appear once they have an endpoint (see the next test).
        assert_eq!(names.len(), 15, "{text}");
        progress.accepted.store(8, Ordering::Relaxed);
        assert!(
            metrics
                .text()
                .contains("distillery_generations_accepted_total 8\n")
        );
    }

    #[test]
    fn endpoints_are_labelled_and_latency_is_a_histogram_per_endpoint() {
        let (metrics, _) = metrics();
        metrics.observe(&completion("http://a:8000/v1", 0.3, Some(0.1)));
        metrics.observe(&completion("http://a:8000/v1", 3.0, Some(0.2)));
        metrics.observe(&completion("http://b:8000/v1", 90.0, None));
        let text = metrics.text();
        for line in [
            "distillery_endpoint_concurrency_limit{endpoint=\"http://a:8000/v1\"} 12",
            "distillery_endpoint_backoffs_total{endpoint=\"http://a:8000/v1\"} 2",
            "# TYPE distillery_teacher_request_seconds histogram",
            "distillery_teacher_request_seconds_count{endpoint=\"http://a:8000/v1\"} 2",
            "distillery_teacher_request_seconds_sum{endpoint=\"http://a:8000/v1\"} 3.3",
            "distillery_teacher_request_seconds_count{endpoint=\"http://b:8000/v1\"} 1",
            "distillery_teacher_request_seconds_bucket{endpoint=\"http://a:8000/v1\",le=\"0.4\"} 1",
            "distillery_teacher_first_token_seconds_count{endpoint=\"http://a:8000/v1\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // A completion that arrived in one piece has no first-token time.
        assert!(
            !text.contains("distillery_teacher_first_token_seconds_count{endpoint=\"http://b"),
            "{text}"
        );
    }
}

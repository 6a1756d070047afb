//! What an evaluation writes: `report.json` (the figures) and `problems.parquet` (one row per
//! problem with every sample's verdict), and the summary printed at the end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use distillery_source::RawRows;
use distillery_spec::SourceFormat;
use distillery_store::shard::AtomicParquet;
use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::passk::{mean_pass_at_k, reported_ks};
use crate::run::ProblemResult;
use crate::score::PASS;

pub const REPORT_FILE: &str = "report.json";
pub const PROBLEMS_FILE: &str = "problems.parquet";
/// Footer key of `problems.parquet` holding the run's settings as JSON.
pub const FOOTER_KEY: &str = "distillery.eval";

/// How the evaluation was run: everything needed to run it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    pub benchmark: String,
    /// The benchmark file that was read.
    pub source: String,
    pub model: String,
    /// `openai` (an endpoint) or `local` (a checkpoint run in-process).
    pub backend: String,
    pub endpoint: Option<String>,
    /// Samples per problem.
    pub samples: u32,
    pub limit: Option<u64>,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    pub seed: u64,
    /// The prompt template and system prompt the problems were asked with.
    pub template: String,
    pub system: Option<String>,
    pub distillery_version: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenTotals {
    pub prompt: u64,
    pub completion: u64,
    pub reasoning: u64,
    /// Completion tokens per sample, on average.
    pub completion_mean: f64,
    /// Completion tokens per second of the whole evaluation.
    pub completion_per_sec: f64,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub settings: EvalSettings,
    pub problems: u64,
    pub pass_at_1: f64,
    /// Standard error of pass@1 over problems: the standard deviation of the problems' pass
    /// rates (correct / samples) over the square root of their number, as the R1 report's
    /// pass@1 (the mean over k samples) is quoted.
    pub pass_at_1_stderr: f64,
    /// pass@k by the unbiased estimator, for k in 1, 5, 10, 20, 50, … up to `samples`.
    pub pass_at_k: BTreeMap<u32, f64>,
    pub correct_samples: u64,
    pub total_samples: u64,
    /// Problems with at least one correct sample.
    pub solved: u64,
    /// Wrong samples by reason code (`math.wrong_answer`, `length.truncated`, `request.failed`…).
    pub failures: BTreeMap<String, u64>,
    /// Problems whose request failed after its retries (their samples count as wrong).
    pub request_errors: u64,
    pub tokens: TokenTotals,
    pub elapsed_secs: f64,
    /// Latency, time to first token, decode speed and memory, as the R1 distillation
    /// write-ups tabulate them for a teacher and its students.
    #[serde(default)]
    pub deployment: Deployment,
}

/// The median and the 95th percentile of a per-request figure (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
}

impl Percentiles {
    fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank =
            |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Some(Percentiles {
            p50: rank(0.5),
            p95: rank(0.95),
        })
    }
}

/// Serving figures of the evaluated model, per request (a problem's `samples` answers), from the
/// client's side: queueing behind other requests counts, as it does for a user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Request latency, milliseconds (requests that answered).
    pub latency_ms: Option<Percentiles>,
    /// Time to the first generated token, milliseconds; known for a local model and a
    /// streamed endpoint.
    pub first_token_ms: Option<Percentiles>,
    /// Completion tokens per second after the first token, per request (all of a request's
    /// samples together); known with the time to first token.
    pub decode_tokens_per_s: Option<Percentiles>,
    /// This process's peak resident memory, MiB: the model's for a local model, only the
    /// client's for an endpoint.
    pub peak_rss_mib: Option<f64>,
}

impl Deployment {
    pub fn new(results: &[ProblemResult]) -> Self {
        let answered: Vec<&ProblemResult> = results.iter().filter(|r| r.error.is_none()).collect();
        let decode = answered
            .iter()
            .filter_map(|r| {
                let decode_ms = r.latency_ms.checked_sub(r.first_token_ms?)?;
                (decode_ms > 0 && r.completion_tokens > 0)
                    .then(|| r.completion_tokens as f64 * 1000.0 / decode_ms as f64)
            })
            .collect();
        Deployment {
            latency_ms: Percentiles::of(answered.iter().map(|r| r.latency_ms as f64).collect()),
            first_token_ms: Percentiles::of(
                answered
                    .iter()
                    .filter_map(|r| r.first_token_ms)
                    .map(|ms| ms as f64)
                    .collect(),
            ),
            decode_tokens_per_s: Percentiles::of(decode),
            peak_rss_mib: peak_rss_mib(),
        }
    }

    /// `latency p50 … · first token … · decode … · peak memory …`, what is known.
    fn line(&self) -> String {
        let mut parts = Vec::new();
        let pair = |p: &Percentiles, unit: &str| {
            format!("p50 {:.0} {unit}, p95 {:.0} {unit}", p.p50, p.p95)
        };
        if let Some(p) = &self.latency_ms {
            parts.push(format!("latency {}", pair(p, "ms")));
        }
        if let Some(p) = &self.first_token_ms {
            parts.push(format!("first token {}", pair(p, "ms")));
        }
        if let Some(p) = &self.decode_tokens_per_s {
            parts.push(format!("decode {}", pair(p, "tokens/s")));
        }
        if let Some(mib) = self.peak_rss_mib {
            parts.push(format!("peak memory {mib:.0} MiB (this process)"));
        }
        if parts.is_empty() {
            "no request answered".into()
        } else {
            parts.join(" · ")
        }
    }
}

/// The process's peak resident set (VmHWM), on Linux.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Standard error of the mean of per-problem pass rates (0 with fewer than two problems).
fn standard_error(counts: &[(u32, u32)]) -> f64 {
    let rates: Vec<f64> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|&(n, c)| f64::from(c.min(n)) / f64::from(n))
        .collect();
    let len = rates.len() as f64;
    if rates.len() < 2 {
        return 0.0;
    }
    let mean = rates.iter().sum::<f64>() / len;
    let variance = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (len - 1.0);
    (variance / len).sqrt()
}

impl Report {
    pub fn new(settings: EvalSettings, results: &[ProblemResult], elapsed_secs: f64) -> Self {
        let counts: Vec<(u32, u32)> = results.iter().map(|r| (r.n, r.correct)).collect();
        let pass_at_k: BTreeMap<u32, f64> = reported_ks(settings.samples)
            .into_iter()
            .filter_map(|k| Some((k, mean_pass_at_k(&counts, k)?)))
            .collect();
        let mut failures = BTreeMap::new();
        for sample in results.iter().flat_map(|r| &r.samples) {
            if sample.verdict != PASS {
                *failures.entry(sample.verdict.clone()).or_insert(0) += 1;
            }
        }
        let total_samples: u64 = results.iter().map(|r| u64::from(r.n)).sum();
        let completion: u64 = results.iter().map(|r| r.completion_tokens).sum();
        Self {
            problems: results.len() as u64,
            pass_at_1: pass_at_k.get(&1).copied().unwrap_or(0.0),
            pass_at_1_stderr: standard_error(&counts),
            pass_at_k,
            correct_samples: results.iter().map(|r| u64::from(r.correct)).sum(),
            total_samples,
            solved: results.iter().filter(|r| r.correct > 0).count() as u64,
            failures,
            request_errors: results.iter().filter(|r| r.error.is_some()).count() as u64,
            tokens: TokenTotals {
                prompt: results.iter().map(|r| r.prompt_tokens).sum(),
                completion,
                reasoning: results.iter().map(|r| r.reasoning_tokens).sum(),
                completion_mean: if total_samples == 0 {
                    0.0
                } else {
                    completion as f64 / total_samples as f64
                },
                completion_per_sec: if elapsed_secs > 0.0 {
                    completion as f64 / elapsed_secs
                } else {
                    0.0
                },
            },
            elapsed_secs,
            deployment: Deployment::new(results),
            settings,
        }
    }

    /// The first line of the summary, for people and scripts alike:
    /// `pass@1 0.4150 ± 0.0348 (83/200)`, with the standard error over problems and the counts
    /// of correct samples out of all samples.
    pub fn summary_line(&self) -> String {
        format!(
            "pass@1 {:.4} ± {:.4} ({}/{})",
            self.pass_at_1, self.pass_at_1_stderr, self.correct_samples, self.total_samples
        )
    }

    /// The rest of the summary, one figure per line: pass@k for k > 1, problems solved,
    /// failures by reason, tokens, time, and what was run.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        for (k, value) in self.pass_at_k.iter().filter(|(k, _)| **k != 1) {
            rows.push((format!("pass@{k}"), format!("{value:.4}")));
        }
        rows.push((
            "solved".into(),
            format!("{}/{} problems at least once", self.solved, self.problems),
        ));
        let mut failures: Vec<(&String, &u64)> = self.failures.iter().collect();
        failures.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        rows.push((
            "failures".into(),
            if failures.is_empty() {
                "none".into()
            } else {
                failures
                    .iter()
                    .map(|(reason, count)| format!("{reason} {count}"))
                    .collect::<Vec<_>>()
                    .join(" · ")
            },
        ));
        rows.push((
            "tokens".into(),
            format!(
                "prompt {} · completion {} ({:.0} per sample) · {:.1} tokens/s",
                self.tokens.prompt,
                self.tokens.completion,
                self.tokens.completion_mean,
                self.tokens.completion_per_sec
            ),
        ));
        rows.push(("elapsed".into(), format!("{:.1} s", self.elapsed_secs)));
        rows.push(("serving".into(), self.deployment.line()));
        let s = &self.settings;
        rows.push((
            "run".into(),
            format!(
                "{} ({}): {} problems × {} sample{}, model {}, temperature {}, top-p {}, max tokens {}",
                s.benchmark,
                s.source,
                self.problems,
                s.samples,
                if s.samples == 1 { "" } else { "s" },
                s.model,
                s.temperature,
                s.top_p,
                s.max_tokens
            ),
        ));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(key, value)| format!("{key:<width$}  {value}\n"))
            .collect()
    }

    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
            op: "read",
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| EvalError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Writes the report as pretty JSON, whole or not at all (temporary name, then rename).
    pub fn write(&self, path: &Path) -> Result<(), EvalError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| EvalError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        text.push('\n');
        let tmp = distillery_store::shard::tmp_path(path);
        let io = |op| {
            move |source| EvalError::Io {
                op,
                path: path.to_owned(),
                source,
            }
        };
        std::fs::write(&tmp, text).map_err(io("write"))?;
        std::fs::rename(&tmp, path).map_err(io("rename into place"))
    }
}

fn sample_fields() -> Fields {
    Fields::from(vec![
        Field::new("index", DataType::Int32, false),
        Field::new("correct", DataType::Boolean, false),
        Field::new("verdict", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, true),
        Field::new("extracted", DataType::Utf8, true),
        Field::new("finish_reason", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("reasoning", DataType::Utf8, true),
    ])
}

fn samples_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(sample_fields()), false))
}

/// The schema of `problems.parquet`.
pub fn problems_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("row", DataType::Int64, false),
        Field::new("prompt", DataType::Utf8, false),
        Field::new("reference", DataType::Utf8, true),
        Field::new("n", DataType::Int32, false),
        Field::new("correct", DataType::Int32, false),
        Field::new("pass_at_1", DataType::Float64, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("prompt_tokens", DataType::Int64, false),
        Field::new("completion_tokens", DataType::Int64, false),
        Field::new("reasoning_tokens", DataType::Int64, false),
        Field::new("latency_ms", DataType::Int64, false),
        Field::new("first_token_ms", DataType::Int64, true),
        Field::new("samples", DataType::List(samples_item()), false),
    ]))
}

fn int64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn int32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn to_batch(results: &[ProblemResult]) -> Result<RecordBatch, EvalError> {
    let strings = |f: &dyn Fn(&ProblemResult) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(results.iter().map(f)))
    };
    let int64s = |f: &dyn Fn(&ProblemResult) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            results.iter().map(|r| int64(f(r))),
        ))
    };
    let int32s = |f: &dyn Fn(&ProblemResult) -> u32| -> ArrayRef {
        Arc::new(Int32Array::from_iter_values(
            results.iter().map(|r| int32(f(r))),
        ))
    };
    let all = || results.iter().flat_map(|r| r.samples.iter());
    let sample_columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(all().map(|s| int32(s.index)))),
        Arc::new(all().map(|s| Some(s.correct)).collect::<BooleanArray>()),
        Arc::new(StringArray::from_iter_values(all().map(|s| &s.verdict))),
        Arc::new(all().map(|s| s.detail.as_deref()).collect::<StringArray>()),
        Arc::new(
            all()
                .map(|s| s.extracted.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(StringArray::from_iter_values(
            all().map(|s| &s.finish_reason),
        )),
        Arc::new(StringArray::from_iter_values(all().map(|s| &s.content))),
        Arc::new(
            all()
                .map(|s| s.reasoning.as_deref())
                .collect::<StringArray>(),
        ),
    ];
    let samples = StructArray::try_new(sample_fields(), sample_columns, None)?;
    let offsets = OffsetBuffer::<i32>::from_lengths(results.iter().map(|r| r.samples.len()));
    let samples = ListArray::try_new(samples_item(), offsets, Arc::new(samples), None)?;
    let columns: Vec<ArrayRef> = vec![
        strings(&|r| &r.id),
        int64s(&|r| r.row),
        strings(&|r| &r.prompt),
        Arc::new(
            results
                .iter()
                .map(|r| r.reference.as_deref())
                .collect::<StringArray>(),
        ),
        int32s(&|r| r.n),
        int32s(&|r| r.correct),
        Arc::new(Float64Array::from_iter_values(results.iter().map(|r| {
            if r.n == 0 {
                0.0
            } else {
                f64::from(r.correct) / f64::from(r.n)
            }
        }))),
        Arc::new(
            results
                .iter()
                .map(|r| r.error.as_deref())
                .collect::<StringArray>(),
        ),
        int64s(&|r| r.prompt_tokens),
        int64s(&|r| r.completion_tokens),
        int64s(&|r| r.reasoning_tokens),
        int64s(&|r| r.latency_ms),
        Arc::new(
            results
                .iter()
                .map(|r| r.first_token_ms.map(int64))
                .collect::<Int64Array>(),
        ),
        Arc::new(samples),
    ];
    Ok(RecordBatch::try_new(problems_schema(), columns)?)
}

/// Writes `problems.parquet` (ZSTD, atomically), the settings as JSON in its footer.
pub fn write_problems(
    path: &Path,
    results: &[ProblemResult],
    settings: &EvalSettings,
) -> Result<(), EvalError> {
    let footer = serde_json::to_string(settings).map_err(|e| EvalError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut file =
        AtomicParquet::create(path, problems_schema(), &[(FOOTER_KEY.to_owned(), footer)])?;
    for chunk in results.chunks(512) {
        file.write_batch(&to_batch(chunk)?)?;
    }
    file.finish()?;
    Ok(())
}

/// Reads `problems.parquet` back, in file order.
pub fn read_problems(path: &Path) -> Result<Vec<ProblemResult>, EvalError> {
    let mut out = Vec::new();
    for item in RawRows::open(path, SourceFormat::Parquet)? {
        let (row, value) = item?;
        let value = value.map_err(|entry| EvalError::Read {
            path: path.to_owned(),
            message: entry.detail,
        })?;
        let result = serde_json::from_value(value).map_err(|e| EvalError::Read {
            path: path.to_owned(),
            message: format!("row {row}: {e}"),
        })?;
        out.push(result);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::SampleScore;

    fn settings(samples: u32) -> EvalSettings {
        EvalSettings {
            benchmark: "gsm8k".into(),
            source: "datasets/gsm8k/test.jsonl".into(),
            model: "m".into(),
            backend: "openai".into(),
            endpoint: Some("http://127.0.0.1:1/v1".into()),
            samples,
            limit: Some(2),
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 100,
            seed: 3,
            template: "{question}".into(),
            system: None,
            distillery_version: "0.1.0".into(),
        }
    }

    fn sample(index: u32, verdict: &str) -> SampleScore {
        SampleScore {
            index,
            correct: verdict == PASS,
            verdict: verdict.into(),
            detail: (verdict != PASS).then(|| "why".into()),
            extracted: index.is_multiple_of(2).then(|| "42".into()),
            finish_reason: "stop".into(),
            content: format!("answer {index}"),
            reasoning: (index == 0).then(|| "hmm".into()),
        }
    }

    fn result(id: &str, verdicts: &[&str]) -> ProblemResult {
        let samples: Vec<SampleScore> = verdicts
            .iter()
            .enumerate()
            .map(|(i, v)| sample(i as u32, v))
            .collect();
        ProblemResult {
            id: id.into(),
            row: 7,
            prompt: format!("What is {id}?"),
            reference: Some("42".into()),
            n: samples.len() as u32,
            correct: samples.iter().filter(|s| s.correct).count() as u32,
            samples,
            error: None,
            prompt_tokens: 10,
            completion_tokens: 50,
            reasoning_tokens: 20,
            latency_ms: 9,
            first_token_ms: None,
        }
    }

    fn results() -> Vec<ProblemResult> {
        let mut failed = result(
            "c",
            &[
                "request.failed",
                "request.failed",
                "request.failed",
                "request.failed",
                "request.failed",
            ],
        );
        failed.error = Some("gave up".into());
        vec![
            result("a", &[PASS, PASS, "math.wrong_answer", PASS, PASS]),
            result(
                "b",
                &[
                    "math.no_answer",
                    PASS,
                    "length.truncated",
                    "math.wrong_answer",
                    "math.wrong_answer",
                ],
            ),
            failed,
        ]
    }

    #[test]
    fn serving_figures_are_nearest_rank_percentiles_of_the_answered_requests() {
        // Latencies 100..=2000 ms in steps of 100; the first token at a tenth of each.
        let mut results: Vec<ProblemResult> = (1..=20u64)
            .map(|i| ProblemResult {
                latency_ms: 100 * i,
                first_token_ms: Some(10 * i),
                completion_tokens: 90 * i,
                ..result(&format!("p{i}"), &[PASS])
            })
            .collect();
        let mut failed = result("x", &[PASS]);
        failed.error = Some("timeout".into());
        failed.latency_ms = 1_000_000;
        results.push(failed);
        let d = Deployment::new(&results);
        assert_eq!(
            d.latency_ms,
            Some(Percentiles {
                p50: 1000.0,
                p95: 1900.0
            })
        );
        assert_eq!(
            d.first_token_ms,
            Some(Percentiles {
                p50: 100.0,
                p95: 190.0
            })
        );
        // 90·i tokens in 90·i ms after the first token: 1000 tokens/s for every request.
        assert_eq!(
            d.decode_tokens_per_s,
            Some(Percentiles {
                p50: 1000.0,
                p95: 1000.0
            })
        );
        assert!(d.peak_rss_mib.is_some_and(|m| m > 0.0));
        let line = d.line();
        assert!(line.contains("latency p50 1000 ms, p95 1900 ms"), "{line}");
        assert!(line.contains("first token p50 100 ms"), "{line}");

        // A server that answered in one piece: no first token, so no decode speed either.
        let whole: Vec<ProblemResult> = results[..3]
            .iter()
            .map(|r| ProblemResult {
                first_token_ms: None,
                ..r.clone()
            })
            .collect();
        let d = Deployment::new(&whole);
        assert_eq!((d.first_token_ms, d.decode_tokens_per_s), (None, None));
        assert_eq!(
            d.latency_ms,
            Some(Percentiles {
                p50: 200.0,
                p95: 300.0
            })
        );
    }

    #[test]
    fn report_figures() {
        let report = Report::new(settings(5), &results(), 2.5);
        assert_eq!(report.problems, 3);
        assert_eq!(report.correct_samples, 5);
        assert_eq!(report.total_samples, 15);
        assert_eq!(report.solved, 2);
        assert_eq!(report.request_errors, 1);
        assert!((report.pass_at_1 - 5.0 / 15.0).abs() < 1e-12);
        // Rates 0.8, 0.2 and 0: sample variance 0.52/3, over 3 problems.
        assert!((report.pass_at_1_stderr - (0.52f64 / 9.0).sqrt()).abs() < 1e-12);
        assert_eq!(report.pass_at_k.keys().copied().collect::<Vec<_>>(), [1, 5]);
        // k = n = 5: a problem with any correct sample passes.
        assert!((report.pass_at_k[&5] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(report.failures["math.wrong_answer"], 3);
        assert_eq!(report.failures["request.failed"], 5);
        assert_eq!(report.failures["length.truncated"], 1);
        assert!(!report.failures.contains_key(PASS));
        assert_eq!(report.tokens.completion, 150);
        assert!((report.tokens.completion_mean - 10.0).abs() < 1e-12);

        assert!((report.tokens.completion_per_sec - 60.0).abs() < 1e-12);

        assert!(report.pass_at_1_stderr > 0.0);
        assert_eq!(
            report.summary_line(),
            format!("pass@1 0.3333 ± {:.4} (5/15)", report.pass_at_1_stderr)
        );
        let table = report.table();
        assert!(table.starts_with("pass@5    0.6667\n"), "{table}");
        assert!(
            table.contains("solved    2/3 problems at least once"),
            "{table}"
        );
        assert!(
            table.contains("request.failed 5 · math.wrong_answer 3"),
            "{table}"
        );
        assert!(table.contains("60.0 tokens/s"), "{table}");
    }

    #[test]
    fn report_json_round_trips_with_flat_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REPORT_FILE);
        let report = Report::new(settings(5), &results(), 1.0);
        report.write(&path).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["benchmark"], "gsm8k");
        assert_eq!(json["samples"], 5);
        assert!((json["pass_at_1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!(json["pass_at_k"]["5"].is_f64());
        assert_eq!(json["failures"]["request.failed"], 5);
        assert_eq!(json["tokens"]["completion"], 150);
        assert_eq!(Report::read(&path).unwrap(), report);
    }

    #[test]
    fn problems_parquet_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROBLEMS_FILE);
        let results = results();
        write_problems(&path, &results, &settings(5)).unwrap();
        assert_eq!(read_problems(&path).unwrap(), results);
        let footer = distillery_store::shard::footer_metadata(&path).unwrap();
        assert!(
            footer
                .iter()
                .any(|(k, v)| k == FOOTER_KEY && v.contains("gsm8k"))
        );
        let (schema, rows) = distillery_store::shard::file_schema(&path).unwrap();
        assert_eq!(rows, 3);
        assert!(schema.field_with_name("pass_at_1").is_ok());
    }
}

//! `distillery eval`: a model's pass@1 (and pass@k) on a benchmark, scored by the verifiers
//! that build the training data, asked with the prompt the pipeline sends.
//!
//! MODEL is a local checkpoint (Hugging Face directory or `.gguf`, run in-process) or, with
//! `--base-url`, a model served by an OpenAI-compatible endpoint. Writes `report.json` and
//! `problems.parquet` to `--out` and prints the summary on stdout, its first line
//! `pass@1 <score> (<correct>/<samples>)`.

use std::io::IsTerminal;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use distillery_eval::{
    Benchmark, BenchmarkConfig, EvalOptions, EvalSettings, Overrides, PROBLEMS_FILE, Problem,
    ProblemResult, REPORT_FILE, Report, SandboxLimits, Scorer, TaskKind,
};
use distillery_spec::{
    AnswerExtract, Backend, Endpoint, Limits, LocalModel, R1_TEMPERATURE, R1_TOP_P, Sampling,
};
use distillery_teacher::{AnyTeacher, Teacher};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Sequences a local model generates together unless told otherwise.
const LOCAL_BATCH: NonZeroU32 = NonZeroU32::new(32).expect("non-zero");
/// Requests in flight to an endpoint unless told otherwise (a pipeline's default).
const ENDPOINT_CONCURRENCY: usize = 16;
/// New tokens per sample unless told otherwise: the R1 recipe's budget for an endpoint, less
/// for a checkpoint generating on the CPU.
const ENDPOINT_MAX_TOKENS: u32 = 32_768;
const LOCAL_MAX_TOKENS: u32 = 2048;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A local checkpoint (Hugging Face directory or .gguf file), or with --base-url the
    /// model's name on that endpoint.
    #[arg(value_name = "MODEL")]
    model: String,
    /// gsm8k, math500, humaneval, or a JSONL/JSON/Parquet file of problems.
    #[arg(long, value_name = "NAME_OR_FILE")]
    benchmark: String,
    /// The first N problems only.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Samples per problem: pass@1 is their mean, and pass@k is reported for k up to this.
    #[arg(long, value_name = "K", default_value_t = NonZeroU32::MIN)]
    samples: NonZeroU32,
    /// Where report.json and problems.parquet go [default: evals/<model>-<benchmark>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Problems in flight at once [default: 16 for an endpoint, twice the batch for a local
    /// model].
    #[arg(long, value_name = "C")]
    concurrency: Option<NonZeroUsize>,
    /// New tokens per sample at most [default: 32768 for an endpoint, 2048 for a local model].
    #[arg(long, value_name = "T")]
    max_tokens: Option<NonZeroU32>,
    /// Sampling temperature [default: 0 (greedy) with one sample, else 0.6 as R1 recommends].
    #[arg(long, value_name = "X")]
    temperature: Option<f64>,
    /// Nucleus sampling [default: 1 with one sample, else 0.95 as R1 recommends].
    #[arg(long, value_name = "P")]
    top_p: Option<f64>,
    /// Seed of a local model's samplers (the same seed gives the same samples).
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Local model: sequences generated together.
    #[arg(long, value_name = "B", default_value_t = LOCAL_BATCH)]
    batch_size: NonZeroU32,
    /// An OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) serving MODEL.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Environment variable holding the endpoint's API key.
    #[arg(long, value_name = "VAR", requires = "base_url")]
    api_key_env: Option<String>,
    /// Endpoint: seconds of silence (streamed: between two chunks; with --no-stream: the whole
    /// request) before the request is retried.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    timeout_secs: f64,
    /// Endpoint: ask for the whole answer at once instead of streaming it (the time to first
    /// token and the decode speed are then unknown).
    #[arg(long, requires = "base_url")]
    no_stream: bool,
    /// Code benchmarks: seconds of wall-clock (and CPU) time a candidate's tests may take.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    code_timeout_secs: f64,
    /// Endpoint: retries of a failed request before the problem counts as failed.
    #[arg(long, value_name = "N", default_value_t = 8)]
    retries: u32,
    /// Where gsm8k, math500 and humaneval are looked for.
    #[arg(long, value_name = "DIR", default_value = "datasets")]
    datasets_dir: PathBuf,
    /// The field holding the problem [default: guessed: question, problem, prompt, …].
    #[arg(long, value_name = "FIELD")]
    prompt_field: Option<String>,
    /// The field holding the reference answer [default: guessed: answer, final_answer,
    /// solution].
    #[arg(long, value_name = "FIELD")]
    answer_field: Option<String>,
    /// How the reference is read from the answer field [default: gsm8k when the first row's
    /// answer holds `####`, else verbatim].
    #[arg(long, value_enum)]
    answer_extract: Option<ExtractArg>,
    /// The field holding a stable problem id [default: id, unique_id or task_id if present,
    /// else a hash of the row].
    #[arg(long, value_name = "FIELD")]
    id_field: Option<String>,
    /// The user turn with `{field}` placeholders [default: as the pipeline:
    /// "{question}\nPlease reason step by step, and put your final answer within \boxed{}."].
    #[arg(long)]
    template: Option<String>,
    /// A system prompt (R1 is best asked without one, the pipeline's default).
    #[arg(long)]
    system: Option<String>,
    /// The answer layout the default math prompt asks for, as the pipeline's
    /// `[prompt] assistant_format`: `tagged` asks for `<think>` then `<answer>` tags (a student
    /// trained on tagged traces is asked what it learnt) [default: r1].
    #[arg(long, value_enum)]
    assistant_format: Option<FormatArg>,
    /// Log lines instead of a progress bar, even on a terminal.
    #[arg(long)]
    plain: bool,
    /// Local model: run a GGUF file in its quantized blocks (on the CPU) instead of
    /// dequantized: a quarter of the memory at 4 bits; faster for Q4_0, Q8_0 and K-quants,
    /// slower for Q4_1 and Q5 (candle has no SIMD kernel for them).
    #[arg(long, conflicts_with = "base_url")]
    quantized: bool,
    /// Where a local model runs, and its precision.
    #[command(flatten)]
    placement: super::Placement,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExtractArg {
    Verbatim,
    Gsm8k,
    Boxed,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    R1,
    Tagged,
}

impl From<FormatArg> for distillery_spec::AssistantFormat {
    fn from(value: FormatArg) -> Self {
        match value {
            FormatArg::R1 => Self::R1,
            FormatArg::Tagged => Self::Tagged,
        }
    }
}

impl From<ExtractArg> for AnswerExtract {
    fn from(value: ExtractArg) -> Self {
        match value {
            ExtractArg::Verbatim => Self::Verbatim,
            ExtractArg::Gsm8k => Self::Gsm8k,
            ExtractArg::Boxed => Self::Boxed,
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.placement.apply_threads();
    let samples = args.samples.get();
    let temperature = args
        .temperature
        .unwrap_or(if samples == 1 { 0.0 } else { R1_TEMPERATURE });
    let top_p = args
        .top_p
        .unwrap_or(if samples == 1 { 1.0 } else { R1_TOP_P });
    anyhow::ensure!(
        temperature.is_finite() && temperature >= 0.0,
        "--temperature must be 0 or more, got {temperature}"
    );
    anyhow::ensure!(
        top_p > 0.0 && top_p <= 1.0,
        "--top-p must be in (0, 1], got {top_p}"
    );
    anyhow::ensure!(
        args.timeout_secs.is_finite() && args.timeout_secs > 0.0,
        "--timeout-secs must be a positive number of seconds, got {}",
        args.timeout_secs
    );
    let code_timeout = Duration::try_from_secs_f64(args.code_timeout_secs)
        .ok()
        .filter(|timeout| !timeout.is_zero())
        .with_context(|| {
            format!(
                "--code-timeout-secs must be a positive number of seconds, got {}",
                args.code_timeout_secs
            )
        })?;
    let local = args.base_url.is_none();
    if local {
        let path = Path::new(&args.model);
        anyhow::ensure!(
            path.exists(),
            "model {} does not exist: give a Hugging Face checkpoint directory or a .gguf \
             file, or with --base-url the name of a model an OpenAI-compatible endpoint serves",
            path.display()
        );
    }

    let benchmark = Benchmark::parse(&args.benchmark);
    let overrides = Overrides {
        prompt_field: args.prompt_field.clone(),
        answer_field: args.answer_field.clone(),
        answer_extract: args.answer_extract.map(Into::into),
        id_field: args.id_field.clone(),
        template: args.template.clone(),
        system: args.system.clone(),
        assistant_format: args.assistant_format.map(Into::into),
        limit: args.limit,
    };
    let config = BenchmarkConfig::resolve(&benchmark, &args.datasets_dir, &overrides)
        .with_context(|| format!("cannot use the benchmark {}", args.benchmark))?;
    let problems = config
        .load()
        .with_context(|| format!("cannot read the benchmark {}", args.benchmark))?;
    let scorer = Arc::new(Scorer::new(SandboxLimits {
        wall_time: code_timeout,
        cpu_time: code_timeout,
        ..SandboxLimits::default()
    }));
    if matches!(config.task, TaskKind::Code { .. }) {
        anyhow::ensure!(
            scorer.sandbox().python().is_some(),
            "{} is a code benchmark and its answers run in Python, but no python3 was found on PATH",
            config.name
        );
    }

    let sampling = Sampling {
        max_tokens: args.max_tokens.unwrap_or_else(|| {
            NonZeroU32::new(if local {
                LOCAL_MAX_TOKENS
            } else {
                ENDPOINT_MAX_TOKENS
            })
            .expect("non-zero")
        }),
        temperature,
        top_p,
    };
    let mut settings = EvalSettings {
        benchmark: config.name.clone(),
        source: config.source.path.display().to_string(),
        model: args.model.clone(),
        backend: if local { "local" } else { "openai" }.into(),
        endpoint: args.base_url.clone(),
        samples,
        limit: args.limit,
        temperature,
        top_p,
        max_tokens: sampling.max_tokens.get(),
        seed: args.seed,
        template: config.template.as_str().to_owned(),
        system: config.system.clone(),
        distillery_version: env!("CARGO_PKG_VERSION").to_owned(),
    };

    // The flags, written as the `[teacher]` of a definition: one way to build a teacher for
    // `run` and `eval` alike.
    let endpoint_concurrency = args
        .concurrency
        .unwrap_or(NonZeroUsize::new(ENDPOINT_CONCURRENCY).expect("non-zero"));
    let backend = match &args.base_url {
        Some(base_url) => Backend::Openai {
            endpoints: vec![Endpoint {
                base_url: base_url.clone(),
                model: args.model.clone(),
                api_key_env: args.api_key_env.clone(),
                limits: Limits {
                    concurrency: NonZeroU32::try_from(endpoint_concurrency)
                        .unwrap_or(NonZeroU32::MAX),
                    requests_per_minute: None,
                    tokens_per_minute: None,
                },
            }],
        },
        None => Backend::Local(LocalModel {
            checkpoint: PathBuf::from(&args.model),
            batch_size: args.batch_size,
            seed: args.seed,
            device: args.placement.device,
            dtype: args.placement.dtype,
            quantized: args.quantized,
        }),
    };
    let spec = distillery_spec::Teacher {
        backend,
        sampling,
        samples_per_prompt: NonZeroU32::MIN,
        timeout: Duration::from_secs_f64(args.timeout_secs),
        retries: args.retries,
        stream: !args.no_stream,
        top_logprobs: None,
        pricing: None,
        until_correct: None,
    };
    if local {
        tracing::info!("loading {}", args.model);
    }
    // A local model loads here, before the runtime starts.
    let teacher = AnyTeacher::from_spec(&spec, None).with_context(|| match &args.base_url {
        Some(base_url) => format!("cannot set up the endpoint {base_url}"),
        None => format!("cannot load the model {}", args.model),
    })?;
    let concurrency = if let Some(name) = teacher.local_model_name() {
        settings.model = name.to_owned();
        settings.endpoint = Some(format!("local:{}", args.model));
        args.concurrency
            .or(NonZeroUsize::new(teacher.capacity()))
            .unwrap_or(NonZeroUsize::MIN)
    } else {
        endpoint_concurrency
    };
    let (results, elapsed) = ask_all(
        &teacher,
        &problems,
        scorer,
        samples,
        concurrency,
        args.plain,
    )?;

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&settings.model, &settings.benchmark));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the output directory {}", out.display()))?;
    let report = Report::new(settings.clone(), &results, elapsed);
    let report_path = out.join(REPORT_FILE);
    let problems_path = out.join(PROBLEMS_FILE);
    distillery_eval::write_problems(&problems_path, &results, &settings)
        .with_context(|| format!("cannot write {}", problems_path.display()))?;
    report
        .write(&report_path)
        .with_context(|| format!("cannot write {}", report_path.display()))?;

    crate::outln!("{}", report.summary_line())?;
    super::out(&report.table())?;
    crate::outln!("report    {}", report_path.display())?;
    crate::outln!("problems  {}", problems_path.display())?;

    // A run where nothing came back measured the connection, not the model: say so.
    if report.request_errors == report.problems
        && let Some(error) = results.iter().rev().find_map(|r| r.error.as_deref())
    {
        anyhow::bail!("no request succeeded, so pass@1 measures nothing; the last error: {error}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `evals/<model>-<benchmark>`, the model reduced to its last path component and to
/// characters safe in a file name.
fn default_out(model: &str, benchmark: &str) -> PathBuf {
    let model = model.trim_end_matches(['/', '\\']);
    let model = model.rsplit(['/', '\\']).next().unwrap_or(model);
    let model = model.strip_suffix(".gguf").unwrap_or(model);
    let safe: String = format!("{model}-{benchmark}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    Path::new("evals").join(safe)
}

/// Asks every problem with a progress display on stderr; the results and the seconds taken.
fn ask_all<T: Teacher>(
    teacher: &T,
    problems: &[Problem],
    scorer: Arc<Scorer>,
    samples: u32,
    concurrency: NonZeroUsize,
    plain: bool,
) -> anyhow::Result<(Vec<ProblemResult>, f64)> {
    let options = EvalOptions {
        samples: NonZeroU32::new(samples).context("--samples must be at least 1")?,
        concurrency,
    };
    let total = problems.len();
    tracing::info!(
        "{total} problems × {samples} sample{}, {} in flight",
        if samples == 1 { "" } else { "s" },
        concurrency
    );
    let mut progress = Progress::new(total as u64, plain || !std::io::stderr().is_terminal());
    let started = Instant::now();
    let results = super::runtime()?.block_on(distillery_eval::evaluate(
        teacher,
        problems,
        scorer,
        options,
        |result| progress.record(result),
    ))?;
    progress.finish();
    Ok((results, started.elapsed().as_secs_f64()))
}

/// Problems done, pass@1 so far and tokens/s: a bar on a terminal, a line every few seconds
/// otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    correct: u64,
    samples: u64,
    tokens: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(total: u64, plain: bool) -> Self {
        let bar = (!plain).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} problems (eta {eta})\n{msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            total,
            done: 0,
            correct: 0,
            samples: 0,
            tokens: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn record(&mut self, result: &ProblemResult) {
        self.done += 1;
        self.correct += u64::from(result.correct);
        self.samples += u64::from(result.n);
        self.tokens += result.completion_tokens;
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done);
                bar.set_message(self.line());
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(5) {
                    self.last_line = Instant::now();
                    eprintln!(
                        "eval: {}/{} problems · {}",
                        self.done,
                        self.total,
                        self.line()
                    );
                }
            }
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "pass@1 so far {:.4} ({}/{}) · {:.1} tokens/s",
            if self.samples == 0 {
                0.0
            } else {
                self.correct as f64 / self.samples as f64
            },
            self.correct,
            self.samples,
            self.tokens as f64 / secs
        )
    }

    fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(self.line()),
            None => eprintln!(
                "eval: {}/{} problems · {}",
                self.done,
                self.total,
                self.line()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::default_out;
    use std::path::Path;

    #[test]
    fn default_out_dir_names_model_and_benchmark() {
        assert_eq!(
            default_out("runs/student/final/", "gsm8k"),
            Path::new("evals/final-gsm8k")
        );
        assert_eq!(
            default_out("models/smollm2/model.gguf", "arith"),
            Path::new("evals/model-arith")
        );
        assert_eq!(
            default_out("deepseek-ai/DeepSeek R1", "math500"),
            Path::new("evals/DeepSeek_R1-math500")
        );
    }
}

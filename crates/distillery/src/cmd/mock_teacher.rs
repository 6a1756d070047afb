use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use distillery_mock::{MockDataset, MockServer};
use distillery_pipeline::{MockLaunchError, MockLauncher, ServedMock};
use distillery_source::SourceReader;
use distillery_spec::{
    AssistantFormat, Backend, Endpoint, FaultRates, MockSettings, MockTask, Pipeline,
    ReasoningStyle,
};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// JSONL/JSON data set whose reference solutions are replayed (GSM8K layout by default).
    #[arg(long, default_value = "datasets/gsm8k/test.jsonl")]
    dataset: PathBuf,
    #[arg(long, default_value = "question")]
    question_field: String,
    #[arg(long, default_value = "answer")]
    answer_field: String,
    /// What the teacher writes: worked math ending in \boxed{}, or Python in a fenced block
    /// [default: code for rows with an `entry_point`, `test` or `test_list` field, else math].
    #[arg(long, value_enum)]
    task: Option<TaskArg>,
    /// Model name the server answers to.
    #[arg(long, default_value = "distillery-mock-r1")]
    model: String,
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer <key>`, the key read from this environment variable.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Share of samples that end with the right answer.
    #[arg(long, default_value_t = 0.8)]
    accuracy: f64,
    /// Mean latency of a whole response.
    #[arg(long, default_value_t = 0.0)]
    latency_ms: f64,
    #[arg(long, default_value_t = 0.0)]
    latency_jitter_ms: f64,
    /// Share of samples whose reasoning drifts into Chinese.
    #[arg(long, default_value_t = 0.0)]
    language_mix_rate: f64,
    /// Share of samples cut off with finish_reason "length".
    #[arg(long, default_value_t = 0.0)]
    truncation_rate: f64,
    #[arg(long, value_enum, default_value_t = StyleArg::ReasoningContent)]
    reasoning_style: StyleArg,
    /// `r1`: the answer as free text after the reasoning; `tagged`: in `<answer>…</answer>`.
    #[arg(long, value_enum, default_value_t = FormatArg::R1)]
    assistant_format: FormatArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A tokenizer.json to cut the text into tokens with when a request asks for
    /// `logprobs` (default: words, digits and single characters).
    #[arg(long, value_name = "TOKENIZER_JSON")]
    tokenizer: Option<std::path::PathBuf>,
    /// Share of attempts answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    rate_limit: f64,
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Share of attempts answered 500.
    #[arg(long, default_value_t = 0.0)]
    server_error: f64,
    /// Share of attempts whose connection is dropped mid-response.
    #[arg(long, default_value_t = 0.0)]
    reset: f64,
    /// Share of attempts that stall for --stall-secs.
    #[arg(long, default_value_t = 0.0)]
    stall: f64,
    #[arg(long, default_value_t = 30.0)]
    stall_secs: f64,
    /// Share of attempts answered 200 with a body that is not JSON.
    #[arg(long, default_value_t = 0.0)]
    malformed: f64,
    /// Faults per prompt after which every attempt succeeds.
    #[arg(long, default_value_t = 3)]
    max_faults_per_prompt: u32,
    /// Like llama.cpp's server under load: a request that arrives while K are open
    /// interrupts the running ones (streams are cut, waiting responses get 503).
    #[arg(long, value_name = "K")]
    interrupt_above: Option<usize>,
    /// Like llama-cpp-python's server: streamed responses carry no token usage.
    #[arg(long)]
    no_stream_usage: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TaskArg {
    Math,
    Code,
}

impl From<TaskArg> for MockTask {
    fn from(task: TaskArg) -> Self {
        match task {
            TaskArg::Math => Self::Math,
            TaskArg::Code => Self::Code,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    R1,
    Tagged,
}

impl From<FormatArg> for AssistantFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::R1 => Self::R1,
            FormatArg::Tagged => Self::Tagged,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StyleArg {
    ReasoningContent,
    Reasoning,
    ThinkTags,
}

impl From<StyleArg> for ReasoningStyle {
    fn from(style: StyleArg) -> Self {
        match style {
            StyleArg::ReasoningContent => Self::ReasoningContent,
            StyleArg::Reasoning => Self::Reasoning,
            StyleArg::ThinkTags => Self::ThinkTags,
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = MockSettings {
        dataset: Some(args.dataset.clone()),
        question_field: args.question_field.clone(),
        answer_field: args.answer_field.clone(),
        task: args.task.map(Into::into),
        accuracy: args.accuracy,
        latency_ms: args.latency_ms,
        latency_jitter_ms: args.latency_jitter_ms,
        language_mix_rate: args.language_mix_rate,
        truncation_rate: args.truncation_rate,
        reasoning_style: args.reasoning_style.into(),
        assistant_format: Some(args.assistant_format.into()),
        seed: args.seed,
        faults: FaultRates {
            rate_limit: args.rate_limit,
            retry_after_secs: args.retry_after_secs,
            server_error: args.server_error,
            reset: args.reset,
            stall: args.stall,
            stall_secs: args.stall_secs,
            malformed: args.malformed,
            max_faults_per_prompt: args.max_faults_per_prompt,
        },
        tokenizer: args.tokenizer.clone(),
    };
    let problems = settings.problems();
    if !problems.is_empty() {
        let list: Vec<String> = problems
            .into_iter()
            .map(|(field, message)| format!("  --{}: {message}", field.replace(['.', '_'], "-")))
            .collect();
        anyhow::bail!("invalid mock teacher settings:\n{}", list.join("\n"));
    }
    let dataset = MockDataset::load_as(
        &args.dataset,
        &args.question_field,
        &args.answer_field,
        settings.task,
    )
    .with_context(|| format!("cannot load the data set {}", args.dataset.display()))?;
    let api_key = match &args.api_key_env {
        Some(variable) => Some(
            std::env::var(variable)
                .with_context(|| format!("--api-key-env names {variable}, which is not set"))?,
        ),
        None => None,
    };
    let problem_count = dataset.len();
    let code_rows = dataset.code_rows();
    super::runtime()?.block_on(async {
        let mut builder = MockServer::builder(settings, args.model.clone()).dataset(dataset);
        if let Some(key) = api_key {
            builder = builder.require_api_key(key);
        }
        if let Some(k) = args.interrupt_above {
            builder = builder.interrupt_above(k);
        }
        if args.no_stream_usage {
            builder = builder.without_stream_usage();
        }
        let server = builder
            .start(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        // The first stdout line is the base URL, so scripts and tests can read it.
        println!("{}", server.base_url());
        tracing::info!(
            model = %args.model,
            "mock teacher (a simulator, not a model) serving {} problems ({} of them code) from {}; \
             Ctrl-C stops it",
            problem_count,
            code_rows,
            args.dataset.display(),
        );
        server
            .serve_forever()
            .await
            .context("mock teacher stopped")?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Starts the mock teacher for runs whose definition says `kind = "mock"`: the pipeline asks
/// it through [`MockLauncher`] and speaks to the simulator over HTTP like any endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BuiltInMock;

impl MockLauncher for BuiltInMock {
    fn launch(&self, pipeline: &Pipeline) -> Result<ServedMock, MockLaunchError> {
        let Backend::Mock {
            model,
            limits,
            settings,
        } = &pipeline.teacher.backend
        else {
            return Err("the definition does not ask for the mock teacher".into());
        };
        let dataset = match &settings.dataset {
            Some(path) if *path == pipeline.source.path => dataset_from_source(pipeline)?,
            Some(path) => MockDataset::load_as(
                path,
                &settings.question_field,
                &settings.answer_field,
                settings.task,
            )?,
            None => MockDataset::empty(),
        };
        // Its own threads, so that the simulator never competes with the pipeline's actors for
        // their event loops.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mock-teacher")
            .enable_all()
            .build()?;
        let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
        // Unless told otherwise, the simulator answers in the format the prompt asks for.
        let mut settings = settings.clone();
        settings
            .assistant_format
            .get_or_insert(pipeline.prompt.assistant_format);
        let server = runtime.block_on(MockServer::start_with_dataset(
            settings,
            model.clone(),
            dataset,
            any_port,
        ))?;
        tracing::info!(
            "mock teacher (a simulator) at {} answers as `{model}`",
            server.base_url()
        );
        let endpoint = Endpoint {
            base_url: server.base_url(),
            model: model.clone(),
            api_key_env: None,
            limits: *limits,
        };
        Ok(ServedMock {
            endpoint,
            guard: Box::new((runtime, server)),
        })
    }
}

/// The mock's reference solutions read from the run's own source, through the same reader as
/// the run: any format it reads works, and rows it quarantines are left out here rather than
/// stopping the simulator.
fn dataset_from_source(pipeline: &Pipeline) -> Result<MockDataset, MockLaunchError> {
    let source = &pipeline.source;
    let mut rows = Vec::new();
    for item in SourceReader::open(source)? {
        let Ok(row) = item? else {
            continue;
        };
        let answer = source
            .answer_field
            .as_ref()
            .and_then(|field| row.fields.get(field))
            .map(|value| match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            });
        if let (Some(question), Some(answer)) = (row.prompt(source), answer) {
            rows.push((question.into_owned(), answer));
        }
    }
    let code = matches!(
        &pipeline.teacher.backend,
        Backend::Mock { settings, .. } if settings.task == Some(MockTask::Code)
    );
    Ok(if code {
        MockDataset::from_code_rows(rows)
    } else {
        MockDataset::from_rows(rows)
    })
}

//! The teacher a definition names, built and ready: an OpenAI-compatible client, pointed at the
//! remote endpoints or at the built-in mock teacher started in this process, or a local
//! checkpoint run in this process.

use std::net::SocketAddr;

use distillery_mock::{MockDataset, MockServer};
use distillery_spec::{Backend, Endpoint, MockTask, Pipeline, Shard};
use distillery_store::SourceReader;
use distillery_teacher::{
    Completion, LocalOptions, LocalTeacher, OpenAiTeacher, Teacher, TeacherError, TeacherOptions,
    TeacherRequest, TeacherStats,
};

use crate::PipelineError;

/// The teacher of a run, and whatever must live as long as it.
pub struct RunTeacher {
    client: Client,
    /// The mock server and the runtime it runs on, when the definition asks for the mock.
    _mock: Option<(tokio::runtime::Runtime, MockServer)>,
}

// One per run, behind an Arc: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Remote(OpenAiTeacher),
    Local(LocalTeacher),
}

impl RunTeacher {
    /// The teacher of a run, or of one shard of it: a shard asks only its share of the
    /// definition's endpoints (see [`Shard::share`]), so N shards listing the same endpoints
    /// spread over them instead of all asking every one.
    pub fn build(pipeline: &Pipeline, shard: Option<Shard>) -> Result<Self, PipelineError> {
        distillery_teacher::install_tls_provider();
        let options = TeacherOptions::from_spec(&pipeline.teacher);
        match &pipeline.teacher.backend {
            Backend::Openai { endpoints } => {
                let endpoints = match shard {
                    Some(shard) => {
                        let share = shard.share(endpoints);
                        if share.len() < endpoints.len() {
                            let urls: Vec<&str> =
                                share.iter().map(|e| e.base_url.as_str()).collect();
                            tracing::info!(
                                "shard {shard} asks {} of the {} endpoints: {}",
                                share.len(),
                                endpoints.len(),
                                urls.join(", ")
                            );
                        }
                        share
                    }
                    None => endpoints.clone(),
                };
                Ok(Self {
                    client: Client::Remote(OpenAiTeacher::new(&endpoints, options)?),
                    _mock: None,
                })
            }
            Backend::Mock {
                model,
                limits,
                settings,
            } => {
                let dataset = match &settings.dataset {
                    Some(path) if *path == pipeline.source.path => {
                        mock_dataset_from_source(pipeline)?
                    }
                    Some(path) => MockDataset::load_as(
                        path,
                        &settings.question_field,
                        &settings.answer_field,
                        settings.task,
                    )
                    .map_err(|e| PipelineError::Mock(e.to_string()))?,
                    None => MockDataset::empty(),
                };
                // Its own threads, so that the simulator never competes with the pipeline's
                // actors for their event loops.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("mock-teacher")
                    .enable_all()
                    .build()
                    .map_err(|e| PipelineError::Mock(e.to_string()))?;
                let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
                // Unless told otherwise, the simulator answers in the format the prompt asks for.
                let mut settings = settings.clone();
                settings
                    .assistant_format
                    .get_or_insert(pipeline.prompt.assistant_format);
                let server = runtime
                    .block_on(MockServer::start_with_dataset(
                        settings,
                        model.clone(),
                        dataset,
                        any_port,
                    ))
                    .map_err(|e| PipelineError::Mock(e.to_string()))?;
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
                Ok(Self {
                    client: Client::Remote(OpenAiTeacher::new(&[endpoint], options)?),
                    _mock: Some((runtime, server)),
                })
            }
            Backend::Local(local) => {
                // Loads the weights (seconds for a real checkpoint); the run has not started
                // its event loops yet, so blocking here holds nothing up.
                let options = LocalOptions::from_spec(&pipeline.teacher, local);
                let teacher = LocalTeacher::with_options(&local.checkpoint, options)?;
                Ok(Self {
                    client: Client::Local(teacher),
                    _mock: None,
                })
            }
        }
    }

    /// Requests the teacher accepts at once: the dispatcher keeps this many in flight.
    pub fn capacity(&self) -> usize {
        match &self.client {
            Client::Remote(client) => client.capacity(),
            Client::Local(teacher) => teacher.capacity(),
        }
    }

    /// Each endpoint's adaptive concurrency (none for a local teacher).
    pub fn endpoint_limits(&self) -> Vec<distillery_store::EndpointConcurrency> {
        match &self.client {
            Client::Remote(client) => client
                .endpoint_limits()
                .into_iter()
                .map(|e| distillery_store::EndpointConcurrency {
                    base_url: e.base_url,
                    concurrency: e.concurrency,
                    limit: e.limit,
                    backoffs: e.backoffs,
                })
                .collect(),
            Client::Local(_) => Vec::new(),
        }
    }

    pub fn stats(&self) -> TeacherStats {
        match &self.client {
            Client::Remote(client) => client.stats(),
            Client::Local(teacher) => teacher.stats(),
        }
    }

    pub async fn complete(&self, request: &TeacherRequest) -> Result<Completion, TeacherError> {
        match &self.client {
            Client::Remote(client) => client.complete(request).await,
            Client::Local(teacher) => teacher.complete(request).await,
        }
    }
}

/// The mock's reference solutions read from the run's own source, through the same reader as
/// the run: any format it reads works, and rows it quarantines are left out here rather than
/// stopping the simulator.
fn mock_dataset_from_source(pipeline: &Pipeline) -> Result<MockDataset, PipelineError> {
    let source = &pipeline.source;
    let reader = SourceReader::open(source).map_err(|e| PipelineError::Mock(e.to_string()))?;
    let mut rows = Vec::new();
    for item in reader {
        let Ok(row) = item.map_err(|e| PipelineError::Mock(e.to_string()))? else {
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

//! The teacher a definition names, built and ready (by [`AnyTeacher::from_spec`]): an
//! OpenAI-compatible client pointed at the remote endpoints or at the built-in mock teacher the
//! command line started (through a [`MockLauncher`]), or a local checkpoint run in this
//! process.

use std::fmt;

use distillery_spec::{Backend, Endpoint, Pipeline, Shard};
use distillery_teacher::{
    AnyTeacher, Completion, Teacher, TeacherError, TeacherRequest, TeacherStats,
};

use crate::PipelineError;

/// Starts the built-in mock teacher for a run that asks for it (`kind = "mock"`). The command
/// line implements it: the pipeline speaks to the simulator over HTTP like any endpoint and
/// never links it.
pub trait MockLauncher: Send + Sync + fmt::Debug {
    /// Starts the simulator `pipeline` describes. It serves until the guard is dropped.
    fn launch(&self, pipeline: &Pipeline) -> Result<ServedMock, MockLaunchError>;
}

/// A started mock teacher: where it listens, and what keeps it running.
pub struct ServedMock {
    pub endpoint: Endpoint,
    pub guard: Box<dyn Send + Sync>,
}

/// Why the mock teacher could not start (its dataset, its port, its runtime).
pub type MockLaunchError = Box<dyn std::error::Error + Send + Sync>;

/// The teacher of a run, and whatever must live as long as it.
pub struct RunTeacher {
    client: AnyTeacher,
    /// The mock teacher, when the definition asks for it.
    _mock: Option<Box<dyn Send + Sync>>,
}

impl RunTeacher {
    /// The teacher of a run, or of one shard of it: a shard asks only its share of the
    /// definition's endpoints (see [`Shard::share`]), so N shards listing the same endpoints
    /// spread over them instead of all asking every one.
    pub fn build(
        pipeline: &Pipeline,
        shard: Option<Shard>,
        mock: Option<&dyn MockLauncher>,
    ) -> Result<Self, PipelineError> {
        let mut spec = pipeline.teacher.clone();
        let mut served = None;
        match &mut spec.backend {
            Backend::Openai { endpoints } => {
                if let Some(shard) = shard {
                    let share = shard.share(endpoints);
                    if share.len() < endpoints.len() {
                        let urls: Vec<&str> = share.iter().map(|e| e.base_url.as_str()).collect();
                        tracing::info!(
                            "shard {shard} asks {} of the {} endpoints: {}",
                            share.len(),
                            endpoints.len(),
                            urls.join(", ")
                        );
                    }
                    *endpoints = share;
                }
            }
            Backend::Mock { .. } => {
                let launcher = mock.ok_or(PipelineError::Teacher(TeacherError::NotServed))?;
                let started = launcher.launch(pipeline).map_err(PipelineError::Mock)?;
                served = Some((started.endpoint, started.guard));
            }
            // Loads the weights in `from_spec` (seconds for a real checkpoint); the run has not
            // started its event loops yet, so blocking there holds nothing up.
            Backend::Local(_) => {}
        }
        let (endpoint, guard) = served.unzip();
        Ok(Self {
            client: AnyTeacher::from_spec(&spec, endpoint)?,
            _mock: guard,
        })
    }

    /// Requests the teacher accepts at once: the dispatcher keeps this many in flight.
    pub fn capacity(&self) -> usize {
        self.client.capacity()
    }

    /// Each endpoint's adaptive concurrency (none for a local teacher).
    pub fn endpoint_limits(&self) -> Vec<distillery_store::EndpointConcurrency> {
        self.client
            .endpoint_limits()
            .into_iter()
            .map(|e| distillery_store::EndpointConcurrency {
                base_url: e.base_url,
                concurrency: e.concurrency,
                limit: e.limit,
                backoffs: e.backoffs,
            })
            .collect()
    }

    pub fn stats(&self) -> TeacherStats {
        self.client.stats()
    }

    pub async fn complete(&self, request: &TeacherRequest) -> Result<Completion, TeacherError> {
        self.client.complete(request).await
    }
}

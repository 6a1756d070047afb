//! The choice of backend: the teacher a definition (or `eval`'s flags, written as one) names,
//! built. The pipeline and `eval` both come through here, so a new backend or option is wired
//! once.

use distillery_spec::{Backend, Endpoint};

use crate::{
    Completion, EndpointLimit, OpenAiTeacher, Teacher, TeacherError, TeacherOptions,
    TeacherRequest, TeacherStats,
};
#[cfg(feature = "local")]
use crate::{LocalOptions, LocalTeacher};

/// A built teacher of any backend.
// One per run, behind an Arc: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyTeacher {
    /// An OpenAI-compatible client over one or several endpoints.
    Remote(OpenAiTeacher),
    /// A checkpoint run in this process.
    #[cfg(feature = "local")]
    Local(LocalTeacher),
}

impl AnyTeacher {
    /// The teacher `spec` names. `kind = "mock"` is served by whoever started the simulator
    /// (the CLI), which passes its endpoint as `served`; this crate never starts it. A local
    /// model loads here, blocking for as long as its weights take.
    pub fn from_spec(
        spec: &distillery_spec::Teacher,
        served: Option<Endpoint>,
    ) -> Result<Self, TeacherError> {
        crate::install_tls_provider();
        let options = TeacherOptions::from_spec(spec);
        match (&spec.backend, served) {
            (Backend::Openai { endpoints }, _) => {
                Ok(Self::Remote(OpenAiTeacher::new(endpoints, options)?))
            }
            (Backend::Mock { .. }, Some(endpoint)) => {
                Ok(Self::Remote(OpenAiTeacher::new(&[endpoint], options)?))
            }
            (Backend::Mock { .. }, None) => Err(TeacherError::NotServed),
            #[cfg(feature = "local")]
            (Backend::Local(local), _) => Ok(Self::Local(LocalTeacher::with_options(
                &local.checkpoint,
                LocalOptions::from_spec(spec, local),
            )?)),
            #[cfg(not(feature = "local"))]
            (Backend::Local(local), _) => Err(TeacherError::LocalNotBuilt {
                path: local.checkpoint.clone(),
            }),
        }
    }

    /// Requests the teacher takes at once: callers keep this many in flight.
    pub fn capacity(&self) -> usize {
        match self {
            Self::Remote(client) => client.capacity(),
            #[cfg(feature = "local")]
            Self::Local(teacher) => teacher.capacity(),
        }
    }

    /// Each endpoint's adaptive concurrency (none for a local teacher).
    pub fn endpoint_limits(&self) -> Vec<EndpointLimit> {
        match self {
            Self::Remote(client) => client.endpoint_limits(),
            #[cfg(feature = "local")]
            Self::Local(_) => Vec::new(),
        }
    }

    pub fn stats(&self) -> TeacherStats {
        match self {
            Self::Remote(client) => client.stats(),
            #[cfg(feature = "local")]
            Self::Local(teacher) => teacher.stats(),
        }
    }

    /// The local model's name (from its checkpoint), or `None` for endpoints, whose model is
    /// what the caller asked for.
    pub fn local_model_name(&self) -> Option<&str> {
        match self {
            Self::Remote(_) => None,
            #[cfg(feature = "local")]
            Self::Local(teacher) => Some(teacher.model_name()),
        }
    }
}

impl Teacher for AnyTeacher {
    async fn complete(&self, request: &TeacherRequest) -> Result<Completion, TeacherError> {
        match self {
            Self::Remote(client) => client.complete(request).await,
            #[cfg(feature = "local")]
            Self::Local(teacher) => teacher.complete(request).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use distillery_spec::{Limits, MockSettings, Sampling};

    use super::*;

    fn spec(backend: Backend) -> distillery_spec::Teacher {
        distillery_spec::Teacher {
            backend,
            sampling: Sampling {
                max_tokens: NonZeroU32::new(16).unwrap(),
                temperature: 0.6,
                top_p: 0.95,
            },
            samples_per_prompt: NonZeroU32::MIN,
            timeout: Duration::from_secs(5),
            retries: 0,
            stream: false,
            top_logprobs: None,
            pricing: None,
            until_correct: None,
        }
    }

    #[test]
    fn a_mock_nobody_serves_is_an_error_not_a_hang() {
        let mock = spec(Backend::Mock {
            model: "mock-r1".into(),
            limits: Limits {
                concurrency: NonZeroU32::MIN,
                requests_per_minute: None,
                tokens_per_minute: None,
            },
            settings: MockSettings::default(),
        });
        let error = AnyTeacher::from_spec(&mock, None).err().expect("an error");
        assert!(matches!(error, TeacherError::NotServed), "{error:?}");
        assert!(error.is_fatal());
    }

    #[test]
    fn a_served_mock_is_an_endpoint_like_any_other() {
        let mock = spec(Backend::Mock {
            model: "mock-r1".into(),
            limits: Limits {
                concurrency: NonZeroU32::new(3).unwrap(),
                requests_per_minute: None,
                tokens_per_minute: None,
            },
            settings: MockSettings::default(),
        });
        let endpoint = Endpoint {
            base_url: "http://127.0.0.1:9/v1".into(),
            model: "mock-r1".into(),
            api_key_env: None,
            limits: Limits {
                concurrency: NonZeroU32::new(3).unwrap(),
                requests_per_minute: None,
                tokens_per_minute: None,
            },
        };
        let teacher = AnyTeacher::from_spec(&mock, Some(endpoint)).unwrap();
        assert_eq!(teacher.capacity(), 3);
        assert_eq!(teacher.endpoint_limits().len(), 1);
        assert_eq!(teacher.local_model_name(), None);
    }
}

//! Chat templates live in `distillery-model` (the local teacher renders prompts with them too);
//! re-exported here so training code keeps its paths.

pub use distillery_model::{
    CHATML_FALLBACK_TEMPLATE as CHATML_TEMPLATE, ChatTemplate, ChatTurn, TemplateError,
};

use crate::error::TrainError;

impl From<TemplateError> for TrainError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Template {
                source_name,
                message,
            } => TrainError::Template {
                source_name,
                message,
            },
            TemplateError::Render { origin, message } => TrainError::Render { origin, message },
            TemplateError::Read { path, message } => TrainError::Json { path, message },
        }
    }
}

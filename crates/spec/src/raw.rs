//! The definition exactly as written: every field optional, unknown keys rejected.
//! Validation (in `validate.rs`) turns it into the typed [`crate::Pipeline`].

use serde::Deserialize;

use crate::mock::MockSettings;
use crate::{AnswerExtract, KeepPolicy, SourceFormat, TeacherKind};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPipeline {
    pub name: Option<String>,
    pub source: Option<RawSource>,
    pub prompt: Option<RawPrompt>,
    pub teacher: Option<RawTeacher>,
    pub verify: Option<RawVerify>,
    pub output: Option<RawOutput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    pub path: Option<String>,
    pub format: Option<SourceFormat>,
    pub id_field: Option<String>,
    pub prompt_field: Option<String>,
    pub answer_field: Option<String>,
    pub answer_extract: Option<AnswerExtract>,
    pub solution_field: Option<String>,
    pub problem_type_field: Option<String>,
    pub level_field: Option<String>,
    pub origin_field: Option<String>,
    pub limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrompt {
    pub system: Option<String>,
    pub template: Option<String>,
    pub assistant_format: Option<crate::AssistantFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTeacher {
    pub kind: Option<TeacherKind>,
    pub model: Option<String>,
    pub api_key_env: Option<String>,
    pub base_url: Option<String>,
    pub endpoints: Option<Vec<RawEndpoint>>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub n: Option<i64>,
    pub concurrency: Option<i64>,
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub timeout_secs: Option<f64>,
    pub retries: Option<i64>,
    pub stream: Option<bool>,
    pub top_logprobs: Option<i64>,
    pub until_correct: Option<i64>,
    pub max_samples: Option<i64>,
    pub input_cost_per_mtok: Option<f64>,
    pub output_cost_per_mtok: Option<f64>,
    pub local: Option<RawLocal>,
    pub mock: Option<MockSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key_env: Option<String>,
    pub concurrency: Option<i64>,
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocal {
    pub checkpoint: Option<String>,
    pub batch_size: Option<i64>,
    pub seed: Option<u64>,
    pub device: Option<crate::DeviceSpec>,
    pub dtype: Option<crate::Precision>,
    pub quantized: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    pub math: Option<bool>,
    pub format: Option<bool>,
    pub max_mixed_script_ratio: Option<f64>,
    pub max_completion_tokens: Option<i64>,
    pub max_repetition_ratio: Option<f64>,
    pub keep: Option<KeepPolicy>,
    pub on_truncated: Option<crate::OnTruncated>,
    pub truncation_budget_tokens: Option<i64>,
    pub code: Option<RawCode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCode {
    pub tests_field: Option<String>,
    pub entry_point_field: Option<String>,
    pub setup_field: Option<String>,
    pub parallel: Option<i64>,
    pub timeout_secs: Option<f64>,
    pub memory_mb: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutput {
    pub dir: Option<String>,
    pub shard_rows: Option<i64>,
    pub shard_interval_secs: Option<f64>,
}

//! From the raw definition to a typed [`Pipeline`], collecting every problem with its place.

use std::num::{NonZeroU8, NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::locate::{FieldPath, Locator, Position};
use crate::raw::{RawCode, RawEndpoint, RawPipeline, RawSource, RawTeacher, RawVerify};
use crate::{
    AnswerExtract, AssistantFormat, Backend, CodeCheck, Diagnostic, Endpoint, KeepPolicy, Limits,
    LocalModel, MAX_SAMPLES_PER_PROBLEM, MAX_TOP_LOGPROBS, MockTask, OnTruncated, Output, Pipeline,
    Pricing, Prompt, R1_TEMPERATURE, R1_TOP_P, Sampling, Source, SourceFormat, Teacher,
    TeacherKind, Template, UntilCorrect, Verify,
};

const DEFAULT_MAX_TOKENS: u32 = 32_768;
const DEFAULT_CONCURRENCY: u32 = 16;
const DEFAULT_TIMEOUT_SECS: f64 = 600.0;
const DEFAULT_RETRIES: u32 = 8;
const DEFAULT_MOCK_MODEL: &str = "distillery-mock-r1";

pub(crate) fn parse(
    text: &str,
    base_dir: &Path,
    files: FileCheck,
) -> Result<Pipeline, Vec<Diagnostic>> {
    let locator = Locator::new(text);
    let (raw, mut problems) = deserialize(text, &locator);
    let Some(raw) = raw else {
        return Err(problems);
    };
    let mut checker = Checker {
        text,
        locator,
        problems: Vec::new(),
    };
    let pipeline = checker.pipeline(raw, base_dir);
    if let (FileCheck::Exist, Some(pipeline)) = (files, &pipeline) {
        checker.files_exist(pipeline);
    }
    // A key whose value had the wrong type was left out to find the other problems; what the
    // checks then say about it ("is required") repeats the type error.
    let reported: Vec<String> = problems.iter().map(|p| p.path.to_string()).collect();
    checker
        .problems
        .retain(|p| !reported.contains(&p.path.to_string()));
    problems.append(&mut checker.problems);
    problems.sort_by_key(|p| p.position.map(|p| (p.line, p.column)));
    match pipeline {
        Some(pipeline) if problems.is_empty() => Ok(pipeline),
        _ => Err(problems),
    }
}

/// Whether validation looks at the files a definition names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileCheck {
    Exist,
    Skip,
}

/// Deserialises the raw definition. serde stops at the first unknown key or wrong type; so
/// that one run reports every misspelt key and every bad value, a single-line `key = value`
/// that is unknown or has a value of the wrong type is commented out and deserialisation
/// tried again. Any other error ends the attempt with what was found.
fn deserialize(text: &str, locator: &Locator) -> (Option<RawPipeline>, Vec<Diagnostic>) {
    const MAX_UNKNOWN_KEYS: usize = 50;
    let mut problems = Vec::new();
    let mut current = text.to_owned();
    loop {
        let error = match toml::from_str::<RawPipeline>(&current) {
            Ok(raw) => return (Some(raw), problems),
            Err(error) => error,
        };
        let at = error.span().map(|span| span.start);
        problems.push(Diagnostic {
            path: at.map_or_else(FieldPath::root, |offset| locator.path_at(offset)),
            position: at.map(|offset| Position::of_offset(text, offset)),
            message: error.message().trim().to_owned(),
        });
        if problems.len() >= MAX_UNKNOWN_KEYS {
            return (None, problems);
        }
        let next = at.and_then(|offset| {
            if error.message().starts_with("unknown field") {
                comment_out_key_line(&current, offset)
            } else {
                // A wrong type or value: the span is the value's; its line must be `key = value`.
                let start = current[..offset].rfind('\n').map_or(0, |i| i + 1);
                let before = current[start..offset].trim_end();
                let key = before.strip_suffix('=')?.trim();
                let is_key = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"'));
                if !is_key {
                    return None;
                }
                let key_at = start + (current[start..].len() - current[start..].trim_start().len());
                comment_out_key_line(&current, key_at)
            }
        });
        match next {
            Some(next) => current = next,
            None => return (None, problems),
        }
    }
}

/// `text` with the line holding the key at `offset` commented out, when that line is a whole
/// `key = value` (a key at the start of the line whose value ends on the same line).
fn comment_out_key_line(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    if !text[start..offset].trim().is_empty() {
        return None;
    }
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[start..end];
    // A value that opens a multi-line array, table or string cannot be cut off safely.
    let (_, value) = line.split_once('=')?;
    let value = value.trim();
    let opens_block = value.starts_with("\"\"\"")
        || value.starts_with("'''")
        || (value.starts_with('[') && !value.contains(']'))
        || (value.starts_with('{') && !value.contains('}'));
    if opens_block {
        return None;
    }
    // Overwrite the key's first character rather than insert one, so that offsets in the
    // rest of the text, and so the positions of later errors, stay those of the original.
    let key_len = text[offset..].chars().next()?.len_utf8();
    Some(format!("{}#{}", &text[..offset], &text[offset + key_len..]))
}

struct Checker<'a> {
    text: &'a str,
    locator: Locator<'a>,
    problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        let position = self
            .locator
            .span_of(&path)
            .map(|span| Position::of_offset(self.text, span.start));
        self.problems.push(Diagnostic {
            path,
            position,
            message: message.into(),
        });
    }

    fn required<T>(&mut self, value: Option<T>, path: FieldPath, what: &str) -> Option<T> {
        if value.is_none() {
            self.error(path, format!("is required: {what}"));
        }
        value
    }

    fn count(&mut self, value: Option<i64>, default: u32, path: FieldPath) -> NonZeroU32 {
        let fallback = NonZeroU32::new(default).unwrap_or(NonZeroU32::MIN);
        match value {
            None => fallback,
            Some(v) => match u32::try_from(v).ok().and_then(NonZeroU32::new) {
                Some(v) => v,
                None => {
                    self.error(
                        path,
                        format!("must be a whole number from 1 to {}, got {v}", u32::MAX),
                    );
                    fallback
                }
            },
        }
    }

    fn optional_count(&mut self, value: Option<i64>, path: FieldPath) -> Option<NonZeroU32> {
        value.map(|v| self.count(Some(v), 1, path))
    }

    fn optional_count_u64(&mut self, value: Option<i64>, path: FieldPath) -> Option<NonZeroU64> {
        let v = value?;
        let parsed = u64::try_from(v).ok().and_then(NonZeroU64::new);
        if parsed.is_none() {
            self.error(
                path,
                format!("must be a whole number of at least 1, got {v}"),
            );
        }
        parsed
    }

    fn ratio(&mut self, value: Option<f64>, path: FieldPath) -> Option<f64> {
        let v = value?;
        if !(v > 0.0 && v <= 1.0) {
            self.error(
                path,
                format!("must be a share above 0 and at most 1, got {v}"),
            );
        }
        Some(v)
    }

    fn seconds(&mut self, value: Option<f64>, default: f64, path: FieldPath) -> Duration {
        let secs = value.unwrap_or(default);
        match Duration::try_from_secs_f64(secs) {
            Ok(duration) if secs > 0.0 => duration,
            _ => {
                self.error(
                    path,
                    format!("must be a positive number of seconds, got {secs}"),
                );
                Duration::from_secs_f64(default)
            }
        }
    }

    fn identifier(&mut self, value: Option<String>, path: FieldPath) -> Option<String> {
        let value = value?;
        if value.trim().is_empty() {
            self.error(path, "must not be empty");
        }
        Some(value)
    }

    fn pipeline(&mut self, raw: RawPipeline, base_dir: &Path) -> Option<Pipeline> {
        let root = FieldPath::root();
        let name = match raw.name {
            Some(name) if is_run_name(&name) => Some(name),
            Some(name) => {
                self.error(
                    root.key("name"),
                    format!(
                        "`{name}` cannot name a run directory: use letters, digits, `-`, `_` and `.`"
                    ),
                );
                None
            }
            None => {
                self.error(
                    root.key("name"),
                    "is required: the run's name, e.g. `gsm8k-r1`",
                );
                None
            }
        };
        let source = self.required(raw.source, root.key("source"), "a [source] table");
        let source = source.and_then(|source| self.source(source, base_dir));
        let teacher = self.required(raw.teacher, root.key("teacher"), "a [teacher] table");
        let teacher = teacher.and_then(|teacher| self.teacher(teacher, source.as_ref(), base_dir));
        let prompt = self.prompt(raw.prompt.unwrap_or_default(), source.as_ref());
        let budget_given = raw
            .verify
            .as_ref()
            .is_some_and(|v| v.truncation_budget_tokens.is_some());
        let mut verify = self.verify(raw.verify.unwrap_or_default(), source.as_ref());
        if let Some(teacher) = &teacher {
            self.cross_check(teacher, &mut verify, budget_given);
        }
        // A mock teacher answers a code run with code unless told otherwise.
        let teacher = teacher.map(|mut teacher| {
            if let Backend::Mock { settings, .. } = &mut teacher.backend
                && settings.task.is_none()
            {
                settings.task = Some(if verify.code.is_some() {
                    MockTask::Code
                } else {
                    MockTask::Math
                });
            }
            teacher
        });
        let output = self.output(raw.output.unwrap_or_default());
        Some(Pipeline {
            name: name?,
            source: source?,
            prompt: prompt?,
            teacher: teacher?,
            verify,
            output,
        })
    }

    /// What `[teacher]` and `[verify]` say together: the truncation budget against
    /// `max_tokens`, `until_correct` against the keep policy, continuation against the backend.
    fn cross_check(&mut self, teacher: &Teacher, verify: &mut Verify, budget_given: bool) {
        let at = FieldPath::root().key("verify");
        let max_tokens = teacher.sampling.max_tokens;
        if budget_given {
            if verify.on_truncated != OnTruncated::Reject
                && verify.truncation_budget_tokens <= max_tokens
            {
                self.error(
                    at.key("truncation_budget_tokens"),
                    format!(
                        "must be more than teacher.max_tokens ({max_tokens}): the first request \
                         already spends that much, so nothing would be left to continue or \
                         re-ask with, got {}",
                        verify.truncation_budget_tokens
                    ),
                );
            }
        } else {
            verify.truncation_budget_tokens =
                NonZeroU32::new(max_tokens.get().saturating_mul(4)).unwrap_or(max_tokens);
        }
        if verify.on_truncated == OnTruncated::Continue && teacher.kind() == TeacherKind::Local {
            self.error(
                at.key("on_truncated"),
                "\"continue\" needs a server that continues an assistant message; the local \
                 teacher does not: use \"reask\"",
            );
        }
        if let Some(until) = teacher.until_correct
            && until.verified.get() > 1
            && verify.keep == KeepPolicy::FirstCorrect
        {
            self.error(
                FieldPath::root().key("teacher").key("until_correct"),
                format!(
                    "asks for {} verified samples per problem, but verify.keep = \
                     \"first_correct\" accepts one: use \"all_correct\" or until_correct = 1",
                    until.verified
                ),
            );
        }
    }

    fn source(&mut self, raw: RawSource, base_dir: &Path) -> Option<Source> {
        let at = FieldPath::root().key("source");
        let path = self.required(
            raw.path,
            at.key("path"),
            "the JSONL, JSON or Parquet file of prompts",
        );
        let path = path.map(|path| base_dir.join(path));
        let format = match (raw.format, &path) {
            (Some(format), _) => Some(format),
            (None, Some(path)) => {
                let format = SourceFormat::from_extension(path);
                if format.is_none() {
                    self.error(
                        at.key("path"),
                        format!(
                            "cannot tell the format of {} from its extension; set source.format to \"jsonl\", \"json\" or \"parquet\"",
                            path.display()
                        ),
                    );
                }
                format
            }
            (None, None) => None,
        };
        let prompt_field = self.required(
            raw.prompt_field,
            at.key("prompt_field"),
            "the field of each row that holds the problem, e.g. \"question\"",
        );
        let prompt_field = self.identifier(prompt_field, at.key("prompt_field"));
        let id_field = self.identifier(raw.id_field, at.key("id_field"));
        let answer_field = self.identifier(raw.answer_field, at.key("answer_field"));
        if raw.answer_extract.is_some() && answer_field.is_none() {
            self.error(
                at.key("answer_extract"),
                "needs source.answer_field to read from",
            );
        }
        let metadata = crate::SourceMetadata {
            solution_field: self.identifier(raw.solution_field, at.key("solution_field")),
            problem_type_field: self
                .identifier(raw.problem_type_field, at.key("problem_type_field")),
            level_field: self.identifier(raw.level_field, at.key("level_field")),
            origin_field: self.identifier(raw.origin_field, at.key("origin_field")),
        };
        if raw.limit == Some(0) {
            self.error(
                at.key("limit"),
                "must be at least 1 (leave it out to use every row)",
            );
        }
        Some(Source {
            path: path?,
            format: format?,
            id_field,
            prompt_field: prompt_field?,
            answer_field,
            answer_extract: raw.answer_extract.unwrap_or(AnswerExtract::Verbatim),
            metadata,
            limit: raw.limit,
        })
    }

    fn prompt(&mut self, raw: crate::raw::RawPrompt, source: Option<&Source>) -> Option<Prompt> {
        let at = FieldPath::root().key("prompt");
        let assistant_format = raw.assistant_format.unwrap_or_default();
        let template = match raw.template {
            Some(text) => {
                let template = Template::parse(&text);
                if template.fields().next().is_none() {
                    self.error(
                        at.key("template"),
                        "has no `{field}` placeholder, so every prompt would be the same",
                    );
                }
                template
            }
            None => match assistant_format {
                AssistantFormat::R1 => Template::r1_math(&source?.prompt_field),
                AssistantFormat::Tagged => Template::r1_tagged(&source?.prompt_field),
            },
        };
        Some(Prompt {
            system: raw.system,
            template,
            assistant_format,
        })
    }

    fn teacher(
        &mut self,
        raw: RawTeacher,
        source: Option<&Source>,
        base_dir: &Path,
    ) -> Option<Teacher> {
        let at = FieldPath::root().key("teacher");
        let kind = raw.kind.unwrap_or(TeacherKind::Openai);
        let limits = Limits {
            concurrency: self.count(raw.concurrency, DEFAULT_CONCURRENCY, at.key("concurrency")),
            requests_per_minute: self
                .optional_count(raw.requests_per_minute, at.key("requests_per_minute")),
            tokens_per_minute: self
                .optional_count_u64(raw.tokens_per_minute, at.key("tokens_per_minute")),
        };
        let api_key_env = self.env_var_name(raw.api_key_env.clone(), at.key("api_key_env"));

        for (present, key) in [
            (
                raw.base_url.is_some() || raw.endpoints.is_some(),
                "base_url",
            ),
            (raw.local.is_some(), "local"),
            (raw.mock.is_some(), "mock"),
        ] {
            let allowed = matches!(
                (kind, key),
                (TeacherKind::Openai, "base_url")
                    | (TeacherKind::Local, "local")
                    | (TeacherKind::Mock, "mock")
            );
            if present && !allowed {
                let key = if key == "base_url" && raw.base_url.is_none() {
                    "endpoints"
                } else {
                    key
                };
                self.error(
                    at.key(key),
                    format!(
                        "does not apply to a teacher of kind \"{}\"",
                        kind_name(kind)
                    ),
                );
            }
        }

        let backend = match kind {
            TeacherKind::Openai => {
                let endpoints = self.endpoints(&raw, api_key_env, limits);
                Some(Backend::Openai { endpoints })
            }
            TeacherKind::Local => {
                let local = self.required(
                    raw.local,
                    at.key("local"),
                    "a [teacher.local] table with the checkpoint",
                );
                local.and_then(|local| {
                    let at = at.key("local");
                    let checkpoint = self.required(
                        local.checkpoint,
                        at.key("checkpoint"),
                        "a Hugging Face checkpoint directory or a GGUF file",
                    );
                    let batch_size = self.count(local.batch_size, 8, at.key("batch_size"));
                    Some(Backend::Local(LocalModel {
                        checkpoint: base_dir.join(checkpoint?),
                        batch_size,
                        seed: local.seed.unwrap_or(0),
                        device: local.device.unwrap_or_default(),
                        dtype: local.dtype.unwrap_or_default(),
                        quantized: local.quantized.unwrap_or(false),
                    }))
                })
            }
            TeacherKind::Mock => {
                let mut settings = raw.mock.unwrap_or_default();
                for (field, message) in settings.problems() {
                    let mut path = at.key("mock");
                    for part in field.split('.') {
                        path = path.key(part);
                    }
                    self.error(path, message);
                }
                settings.dataset = match settings.dataset.take() {
                    Some(dataset) => Some(base_dir.join(dataset)),
                    None => source.map(|source| source.path.clone()),
                };
                settings.tokenizer = settings.tokenizer.take().map(|t| base_dir.join(t));
                Some(Backend::Mock {
                    model: raw.model.unwrap_or_else(|| DEFAULT_MOCK_MODEL.to_owned()),
                    limits,
                    settings,
                })
            }
        };

        let max_tokens = self.count(raw.max_tokens, DEFAULT_MAX_TOKENS, at.key("max_tokens"));
        let temperature = raw.temperature.unwrap_or(R1_TEMPERATURE);
        if !(0.0..=2.0).contains(&temperature) {
            self.error(
                at.key("temperature"),
                format!("must be between 0 and 2, got {temperature}"),
            );
        }
        let top_p = raw.top_p.unwrap_or(R1_TOP_P);
        if !(top_p > 0.0 && top_p <= 1.0) {
            self.error(
                at.key("top_p"),
                format!("must be above 0 and at most 1, got {top_p}"),
            );
        }
        let samples_per_prompt = self.count(raw.n, 1, at.key("n"));
        if samples_per_prompt.get() > 128 {
            self.error(
                at.key("n"),
                format!("must be at most 128 samples per prompt, got {samples_per_prompt}"),
            );
        }
        let retries = match raw.retries {
            None => DEFAULT_RETRIES,
            Some(v @ 0..=100) => v as u32,
            Some(v) => {
                self.error(at.key("retries"), format!("must be from 0 to 100, got {v}"));
                DEFAULT_RETRIES
            }
        };
        let top_logprobs = match raw.top_logprobs {
            None => None,
            Some(k) => match u8::try_from(k).ok().and_then(NonZeroU8::new) {
                Some(k) if k.get() <= MAX_TOP_LOGPROBS => Some(k),
                _ => {
                    self.error(
                        at.key("top_logprobs"),
                        format!(
                            "must be a whole number from 1 to {MAX_TOP_LOGPROBS} (alternatives \
                             per generated token), got {k}"
                        ),
                    );
                    None
                }
            },
        };
        let until_correct =
            self.until_correct((raw.until_correct, raw.max_samples), samples_per_prompt);
        let timeout = self.seconds(
            raw.timeout_secs,
            DEFAULT_TIMEOUT_SECS,
            at.key("timeout_secs"),
        );
        let pricing = match (raw.input_cost_per_mtok, raw.output_cost_per_mtok) {
            (None, None) => None,
            (input, output) => {
                for (value, key) in [
                    (input, "input_cost_per_mtok"),
                    (output, "output_cost_per_mtok"),
                ] {
                    if value.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
                        self.error(
                            at.key(key),
                            "must be a non-negative price in dollars per million tokens",
                        );
                    }
                }
                Some(Pricing {
                    input_per_mtok: input.unwrap_or(0.0),
                    output_per_mtok: output.unwrap_or(0.0),
                })
            }
        };
        Some(Teacher {
            backend: backend?,
            sampling: Sampling {
                max_tokens,
                temperature,
                top_p,
            },
            samples_per_prompt,
            timeout,
            retries,
            stream: raw.stream.unwrap_or(true),
            top_logprobs,
            until_correct,
            pricing,
        })
    }

    /// `until_correct = k` and `max_samples`: k verified samples wanted, at most `max_samples`
    /// drawn (default `max(n, 4k)`), at least `n` and `k`.
    fn until_correct(
        &mut self,
        raw: (Option<i64>, Option<i64>),
        n: NonZeroU32,
    ) -> Option<UntilCorrect> {
        let at = FieldPath::root().key("teacher");
        let (until_correct, raw_max_samples) = raw;
        let verified = self.optional_count(until_correct, at.key("until_correct"));
        let max_samples = self.optional_count(raw_max_samples, at.key("max_samples"));
        let Some(verified) = verified else {
            if max_samples.is_some() {
                self.error(
                    at.key("max_samples"),
                    "applies with teacher.until_correct (the samples a problem may take to reach \
                     that many verified ones)",
                );
            }
            return None;
        };
        let max_samples = max_samples.unwrap_or_else(|| {
            let default = verified
                .get()
                .saturating_mul(4)
                .max(n.get())
                .min(MAX_SAMPLES_PER_PROBLEM);
            NonZeroU32::new(default).unwrap_or(NonZeroU32::MIN)
        });
        let path = if raw_max_samples.is_some() {
            at.key("max_samples")
        } else {
            at.key("until_correct")
        };
        if max_samples.get() > MAX_SAMPLES_PER_PROBLEM {
            self.error(
                path.clone(),
                format!(
                    "must be at most {MAX_SAMPLES_PER_PROBLEM} samples per problem, got {max_samples}"
                ),
            );
        }
        if max_samples < verified {
            self.error(
                path.clone(),
                format!(
                    "max_samples ({max_samples}) is fewer than until_correct ({verified}): a \
                     problem could never reach that many verified samples"
                ),
            );
        }
        if max_samples < n {
            self.error(
                path,
                format!("max_samples ({max_samples}) must be at least teacher.n ({n})"),
            );
        }
        Some(UntilCorrect {
            verified,
            max_samples,
        })
    }

    fn endpoints(
        &mut self,
        raw: &RawTeacher,
        api_key_env: Option<String>,
        limits: Limits,
    ) -> Vec<Endpoint> {
        let at = FieldPath::root().key("teacher");
        let written: Vec<(FieldPath, RawEndpoint)> = match (&raw.base_url, &raw.endpoints) {
            (Some(_), Some(_)) => {
                self.error(
                    at.key("endpoints"),
                    "give either teacher.base_url (one endpoint) or [[teacher.endpoints]], not both",
                );
                return Vec::new();
            }
            (Some(base_url), None) => vec![(
                at.clone(),
                RawEndpoint {
                    base_url: Some(base_url.clone()),
                    ..RawEndpoint::default()
                },
            )],
            (None, Some(endpoints)) if !endpoints.is_empty() => endpoints
                .iter()
                .enumerate()
                .map(|(i, endpoint)| {
                    (
                        at.key("endpoints").index(i),
                        RawEndpoint {
                            base_url: endpoint.base_url.clone(),
                            model: endpoint.model.clone(),
                            api_key_env: endpoint.api_key_env.clone(),
                            concurrency: endpoint.concurrency,
                            requests_per_minute: endpoint.requests_per_minute,
                            tokens_per_minute: endpoint.tokens_per_minute,
                        },
                    )
                })
                .collect(),
            _ => {
                self.error(
                    at.key("base_url"),
                    "is required for an OpenAI-compatible teacher (or give [[teacher.endpoints]]), e.g. \"https://api.deepseek.com\"",
                );
                return Vec::new();
            }
        };
        let mut endpoints = Vec::with_capacity(written.len());
        for (path, endpoint) in written {
            let base_url = endpoint.base_url.unwrap_or_default();
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                self.error(
                    path.key("base_url"),
                    format!("must be an http:// or https:// URL, got \"{base_url}\""),
                );
            }
            let model = endpoint.model.or_else(|| raw.model.clone());
            if model.is_none() {
                self.error(
                    path.key("model"),
                    "is required: the model name the endpoint serves, e.g. \"deepseek-reasoner\"",
                );
            }
            let endpoint_key = self.env_var_name(endpoint.api_key_env, path.key("api_key_env"));
            let endpoint_limits = Limits {
                concurrency: match endpoint.concurrency {
                    Some(_) => self.count(
                        endpoint.concurrency,
                        DEFAULT_CONCURRENCY,
                        path.key("concurrency"),
                    ),
                    None => limits.concurrency,
                },
                requests_per_minute: self
                    .optional_count(
                        endpoint.requests_per_minute,
                        path.key("requests_per_minute"),
                    )
                    .or(limits.requests_per_minute),
                tokens_per_minute: self
                    .optional_count_u64(endpoint.tokens_per_minute, path.key("tokens_per_minute"))
                    .or(limits.tokens_per_minute),
            };
            endpoints.push(Endpoint {
                base_url: base_url.trim_end_matches('/').to_owned(),
                model: model.unwrap_or_default(),
                api_key_env: endpoint_key.or_else(|| api_key_env.clone()),
                limits: endpoint_limits,
            });
        }
        endpoints
    }

    fn env_var_name(&mut self, value: Option<String>, path: FieldPath) -> Option<String> {
        let name = value?;
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            // Never echo the value: it may be a key pasted in by mistake.
            let hint = if name.starts_with("sk-") || name.len() > 40 {
                "; it looks like a key itself: put the key in an environment variable and name the variable here"
            } else {
                ""
            };
            self.error(
                path,
                format!("must name an environment variable (letters, digits and `_`){hint}"),
            );
            return None;
        }
        Some(name)
    }

    fn verify(&mut self, raw: RawVerify, source: Option<&Source>) -> Verify {
        let at = FieldPath::root().key("verify");
        let has_answers = source.is_some_and(|source| source.answer_field.is_some());
        if raw.math == Some(true) && !has_answers && source.is_some() {
            self.error(
                at.key("math"),
                "needs source.answer_field: there is nothing to compare answers with",
            );
        }
        let max_mixed_script_ratio =
            self.ratio(raw.max_mixed_script_ratio, at.key("max_mixed_script_ratio"));
        let max_repetition_ratio =
            self.ratio(raw.max_repetition_ratio, at.key("max_repetition_ratio"));
        let max_completion_tokens =
            self.optional_count(raw.max_completion_tokens, at.key("max_completion_tokens"));
        let code = raw.code.and_then(|code| self.code(code));
        let on_truncated = raw.on_truncated.unwrap_or_default();
        if raw.truncation_budget_tokens.is_some() && on_truncated == OnTruncated::Reject {
            self.error(
                at.key("truncation_budget_tokens"),
                "applies only with verify.on_truncated = \"continue\" or \"reask\" (a \
                 truncated sample is rejected otherwise)",
            );
        }
        // Checked against teacher.max_tokens once both are known (`budget`).
        let truncation_budget_tokens = self
            .optional_count(
                raw.truncation_budget_tokens,
                at.key("truncation_budget_tokens"),
            )
            .unwrap_or(NonZeroU32::MAX);
        Verify {
            math: raw.math.unwrap_or(has_answers && code.is_none()),
            format: raw.format.unwrap_or(true),
            max_mixed_script_ratio,
            max_completion_tokens,
            max_repetition_ratio,
            code,
            keep: raw.keep.unwrap_or_default(),
            on_truncated,
            truncation_budget_tokens,
        }
    }

    fn code(&mut self, raw: RawCode) -> Option<CodeCheck> {
        let at = FieldPath::root().key("verify").key("code");
        let tests_field = self.required(
            raw.tests_field,
            at.key("tests_field"),
            "the field holding the tests to run",
        );
        let entry_point_field = self.identifier(raw.entry_point_field, at.key("entry_point_field"));
        let setup_field = self.identifier(raw.setup_field, at.key("setup_field"));
        if setup_field.is_some() && entry_point_field.is_some() {
            self.error(
                at.key("setup_field"),
                "applies to the MBPP layout (asserts), not with entry_point_field (HumanEval's \
                 `check` function)",
            );
        }
        let parallel = self.optional_count(raw.parallel, at.key("parallel"));
        Some(CodeCheck {
            tests_field: self.identifier(tests_field, at.key("tests_field"))?,
            entry_point_field,
            setup_field,
            timeout: self.seconds(raw.timeout_secs, 10.0, at.key("timeout_secs")),
            memory_mb: self.count(raw.memory_mb, 512, at.key("memory_mb")),
            parallel,
        })
    }

    /// The files a definition names must be there; a typo is cheaper to hear about now than
    /// after the teacher has started.
    fn files_exist(&mut self, pipeline: &Pipeline) {
        let mut named = vec![(
            FieldPath::root().key("source").key("path"),
            pipeline.source.path.as_path(),
            "",
        )];
        let teacher = FieldPath::root().key("teacher");
        match &pipeline.teacher.backend {
            Backend::Local(local) => named.push((
                teacher.key("local").key("checkpoint"),
                local.checkpoint.as_path(),
                " (a Hugging Face checkpoint directory or a .gguf file; `make model` downloads \
                 the SmolLM2 checkpoint the shipped definitions use into models/)",
            )),
            Backend::Mock { settings, .. } => {
                if let Some(dataset) = &settings.dataset {
                    named.push((teacher.key("mock").key("dataset"), dataset.as_path(), ""));
                }
            }
            Backend::Openai { .. } => {}
        }
        for (path, file, hint) in named {
            if !file.exists() {
                self.error(path, format!("{} does not exist{hint}", file.display()));
            }
        }
    }

    fn output(&mut self, raw: crate::raw::RawOutput) -> Output {
        let at = FieldPath::root().key("output");
        Output {
            dir: PathBuf::from(raw.dir.unwrap_or_else(|| "runs".to_owned())),
            shard_rows: self.count(raw.shard_rows, 5_000, at.key("shard_rows")),
            shard_interval: self.seconds(
                raw.shard_interval_secs,
                60.0,
                at.key("shard_interval_secs"),
            ),
        }
    }
}

fn is_run_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn kind_name(kind: TeacherKind) -> &'static str {
    match kind {
        TeacherKind::Openai => "openai",
        TeacherKind::Local => "local",
        TeacherKind::Mock => "mock",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SpecError;

    const MINIMAL: &str = r#"
name = "t"
[source]
path = "data.jsonl"
prompt_field = "question"
answer_field = "answer"
[teacher]
base_url = "http://localhost:8000/v1"
model = "m"
"#;

    fn errors(text: &str) -> Vec<String> {
        match crate::Pipeline::parse(text, Path::new("p.toml"), Path::new("/base")) {
            Ok(_) => Vec::new(),
            Err(SpecError::Invalid { problems, .. }) => problems
                .iter()
                .map(|p| {
                    let at = p
                        .position
                        .map_or(String::new(), |p| format!("{}:{}", p.line, p.column));
                    format!("{at} {}: {}", p.path, p.message)
                })
                .collect(),
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    fn minimal_definition_gets_r1_defaults() {
        let pipeline =
            crate::Pipeline::parse(MINIMAL, Path::new("p.toml"), Path::new("/base")).unwrap();
        assert_eq!(pipeline.source.path, Path::new("/base/data.jsonl"));
        assert_eq!(pipeline.source.format, SourceFormat::Jsonl);
        assert_eq!(pipeline.teacher.sampling.temperature, 0.6);
        assert_eq!(pipeline.teacher.sampling.top_p, 0.95);
        assert_eq!(pipeline.teacher.samples_per_prompt.get(), 1);
        assert!(pipeline.teacher.stream);
        assert_eq!(pipeline.prompt.system, None);
        assert_eq!(
            pipeline.prompt.template.as_str(),
            "{question}\nPlease reason step by step, and put your final answer within \\boxed{}."
        );
        assert!(
            pipeline.verify.math,
            "math checking is on when there are reference answers"
        );
        let Backend::Openai { endpoints } = &pipeline.teacher.backend else {
            panic!("expected an OpenAI backend");
        };
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].limits.concurrency.get(), DEFAULT_CONCURRENCY);
    }

    #[test]
    fn top_logprobs_is_validated_and_named() {
        let parse = |k: &str| {
            crate::Pipeline::parse(
                &MINIMAL.replace(
                    "model = \"m\"",
                    &format!("model = \"m\"\ntop_logprobs = {k}"),
                ),
                Path::new("p.toml"),
                Path::new("/base"),
            )
        };
        assert_eq!(
            parse("8").unwrap().teacher.top_logprobs.map(|k| k.get()),
            Some(8)
        );
        assert_eq!(
            crate::Pipeline::parse(MINIMAL, Path::new("p.toml"), Path::new("/base"))
                .unwrap()
                .teacher
                .top_logprobs,
            None
        );
        for bad in ["0", "21", "-1"] {
            let text = MINIMAL.replace(
                "model = \"m\"",
                &format!("model = \"m\"\ntop_logprobs = {bad}"),
            );
            let errors = errors(&text);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0]
                    .starts_with("10:16 teacher.top_logprobs: must be a whole number from 1 to 20"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn unknown_key_is_reported_with_line_column_and_path() {
        let text = MINIMAL.replace("model = \"m\"", "model = \"m\"\ntemprature = 0.7");
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("10:1 teacher.temprature: unknown field `temprature`"),
            "{errors:?}"
        );
    }

    #[test]
    fn wrong_type_is_reported_at_the_value() {
        let text = MINIMAL.replace("model = \"m\"", "model = \"m\"\nn = \"four\"");
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("10:5 teacher.n: invalid type"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_type_error_is_reported_at_once() {
        let text = MINIMAL.replace(
            "model = \"m\"",
            "model = \"m\"\nn = \"two\"\nconcurrency = \"many\"\ntemprature = 1",
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("10:5 teacher.n: invalid type"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("11:15 teacher.concurrency: invalid type"),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with("12:1 teacher.temprature: unknown field"),
            "{errors:#?}"
        );
        // A required field of the wrong type is reported once, as a type error.
        let text = MINIMAL.replace("prompt_field = \"question\"", "prompt_field = 3");
        let required = super::tests::errors(&text);
        assert_eq!(required.len(), 1, "{required:#?}");
        assert!(
            required[0].contains("source.prompt_field: invalid type"),
            "{required:#?}"
        );
    }

    #[test]
    fn syntax_error_has_a_position() {
        let errors = errors("name = \"t\"\n[source\npath = 1\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("2:"), "{errors:?}");
    }

    #[test]
    fn every_semantic_error_is_reported_at_once() {
        let text = r#"
name = "bad name!"
[source]
path = "data.txt"
answer_extract = "gsm8k"
[teacher]
temperature = 3.0
top_p = 0
n = 0
[[teacher.endpoints]]
base_url = "localhost:8000"
api_key_env = "sk-abcdef0123456789"
[[teacher.endpoints]]
base_url = "http://b/v1"
model = "m"
concurrency = -2
"#;
        let errors = errors(text);
        let expected = [
            "2:8 name: `bad name!` cannot name a run directory",
            "3:2 source.prompt_field: is required",
            "4:8 source.path: cannot tell the format of /base/data.txt",
            "5:18 source.answer_extract: needs source.answer_field",
            "7:15 teacher.temperature: must be between 0 and 2, got 3",
            "8:9 teacher.top_p: must be above 0 and at most 1, got 0",
            "9:5 teacher.n: must be a whole number from 1",
            "10:1 teacher.endpoints[0].model: is required",
            "11:12 teacher.endpoints[0].base_url: must be an http:// or https:// URL",
            "12:15 teacher.endpoints[0].api_key_env: must name an environment variable (letters, digits and `_`); it looks like a key itself",
            "16:15 teacher.endpoints[1].concurrency: must be a whole number from 1",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expected) {
            assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        }
        assert!(
            !errors.iter().any(|e| e.contains("sk-abcdef")),
            "a pasted key is never echoed"
        );
    }

    #[test]
    fn mock_settings_are_checked_and_default_to_the_source() {
        let text = r#"
name = "m"
[source]
path = "d.jsonl"
prompt_field = "question"
answer_field = "answer"
[teacher]
kind = "mock"
[teacher.mock]
accuracy = 1.5
[teacher.mock.faults]
rate_limit = 0.7
server_error = 0.7
"#;
        let errors = errors(text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with("10:12 teacher.mock.accuracy: must be between 0 and 1"));
        assert!(errors[1].contains("teacher.mock.faults: fault rates add up to 1.400"));

        let ok = text.replace("accuracy = 1.5", "").replace("0.7", "0.1");
        let pipeline = crate::Pipeline::parse(&ok, Path::new("p.toml"), Path::new("/b")).unwrap();
        let Backend::Mock {
            settings, model, ..
        } = pipeline.teacher.backend
        else {
            panic!("expected the mock backend");
        };
        assert_eq!(settings.dataset.as_deref(), Some(Path::new("/b/d.jsonl")));
        assert_eq!(model, DEFAULT_MOCK_MODEL);
    }

    #[test]
    fn base_url_and_endpoints_are_exclusive_and_kind_specific_tables_checked() {
        let text = MINIMAL.replace(
            "model = \"m\"",
            "model = \"m\"\n[[teacher.endpoints]]\nbase_url = \"http://x\"\n[teacher.local]\ncheckpoint = \"c\"",
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors.iter().any(
                |e| e.contains("teacher.local: does not apply to a teacher of kind \"openai\"")
            )
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("teacher.endpoints: give either teacher.base_url"))
        );
    }

    #[test]
    fn code_checks_choose_their_layout_and_make_the_mock_write_code() {
        let base = "name = \"c\"\n[source]\npath = \"d.jsonl\"\nprompt_field = \"text\"\nanswer_field = \"code\"\n[teacher]\nkind = \"mock\"\n";
        let parse = |extra: &str| {
            crate::Pipeline::parse(
                &format!("{base}{extra}"),
                Path::new("p.toml"),
                Path::new("/b"),
            )
        };
        let mbpp = parse(
            "[verify.code]\ntests_field = \"test_list\"\nsetup_field = \"test_setup_code\"\nparallel = 3\n",
        )
        .unwrap();
        let code = mbpp.verify.code.as_ref().unwrap();
        assert_eq!(code.layout(), crate::CodeLayout::Mbpp);
        assert_eq!(code.setup_field.as_deref(), Some("test_setup_code"));
        assert_eq!(code.parallel.map(NonZeroU32::get), Some(3));
        assert!(!mbpp.verify.math, "code answers are not compared as math");
        let Backend::Mock { settings, .. } = &mbpp.teacher.backend else {
            panic!("expected the mock backend");
        };
        assert_eq!(settings.task, Some(MockTask::Code));

        let humaneval =
            parse("[verify.code]\ntests_field = \"test\"\nentry_point_field = \"entry_point\"\n")
                .unwrap();
        let code = humaneval.verify.code.as_ref().unwrap();
        assert_eq!(code.layout(), crate::CodeLayout::HumanEval);
        assert_eq!(code.parallel, None);

        // Without a code check the mock writes math; a task given is kept.
        let math = parse("").unwrap();
        let Backend::Mock { settings, .. } = &math.teacher.backend else {
            panic!("expected the mock backend");
        };
        assert_eq!(settings.task, Some(MockTask::Math));
        let told = parse("[teacher.mock]\ntask = \"code\"\n").unwrap();
        let Backend::Mock { settings, .. } = &told.teacher.backend else {
            panic!("expected the mock backend");
        };
        assert_eq!(settings.task, Some(MockTask::Code));

        let errors = errors(&format!(
            "{base}[verify.code]\ntests_field = \"test\"\nentry_point_field = \"entry_point\"\nsetup_field = \"s\"\nparallel = 0\n"
        ));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with("11:15 verify.code.setup_field: applies to the MBPP layout"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("12:12 verify.code.parallel: must be a whole number from 1"),
            "{errors:#?}"
        );
        let missing = super::tests::errors(&format!("{base}[verify.code]\ntimeout_secs = 1\n"));
        assert!(
            missing[0].contains("verify.code.tests_field: is required"),
            "{missing:#?}"
        );
    }

    #[test]
    fn truncation_handling_is_validated_against_max_tokens_and_the_backend() {
        let with = |extra: &str| {
            MINIMAL.replace(
                "model = \"m\"",
                &format!("model = \"m\"\nmax_tokens = 1000\n{extra}"),
            )
        };
        let parse = |extra: &str| {
            crate::Pipeline::parse(&with(extra), Path::new("p.toml"), Path::new("/base"))
        };
        let default = parse("").unwrap();
        assert_eq!(default.verify.on_truncated, OnTruncated::Reject);
        let cont = parse("[verify]\non_truncated = \"continue\"").unwrap();
        assert_eq!(cont.verify.on_truncated, OnTruncated::Continue);
        assert_eq!(
            cont.verify.truncation_budget_tokens.get(),
            4000,
            "four times max_tokens"
        );
        let reask =
            parse("[verify]\non_truncated = \"reask\"\ntruncation_budget_tokens = 2500").unwrap();
        assert_eq!(reask.verify.on_truncated, OnTruncated::Reask);
        assert_eq!(reask.verify.truncation_budget_tokens.get(), 2500);

        let errors = super::tests::errors(&with(
            "[verify]\non_truncated = \"continue\"\ntruncation_budget_tokens = 800",
        ));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(
                "13:28 verify.truncation_budget_tokens: must be more than teacher.max_tokens (1000)"
            ),
            "{errors:#?}"
        );
        let errors = super::tests::errors(&with("[verify]\ntruncation_budget_tokens = 8000"));
        assert!(
            errors[0].starts_with(
                "12:28 verify.truncation_budget_tokens: applies only with verify.on_truncated"
            ),
            "{errors:#?}"
        );
        let errors = super::tests::errors(&with("[verify]\non_truncated = \"later\""));
        assert!(
            errors[0].starts_with("12:16 verify.on_truncated: unknown variant"),
            "{errors:#?}"
        );
        let local = "name = \"l\"\n[source]\npath = \"d.jsonl\"\nprompt_field = \"q\"\n[teacher]\nkind = \"local\"\n[teacher.local]\ncheckpoint = \"c\"\n[verify]\non_truncated = \"continue\"\n";
        let errors = super::tests::errors(local);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("10:16 verify.on_truncated: \"continue\" needs a server"),
            "{errors:#?}"
        );
    }

    #[test]
    fn until_correct_takes_max_samples_and_checks_them() {
        let with =
            |extra: &str| MINIMAL.replace("model = \"m\"", &format!("model = \"m\"\n{extra}"));
        let parse = |extra: &str| {
            crate::Pipeline::parse(&with(extra), Path::new("p.toml"), Path::new("/base"))
        };
        let until = parse("n = 2\nuntil_correct = 3")
            .unwrap()
            .teacher
            .until_correct
            .unwrap();
        assert_eq!((until.verified.get(), until.max_samples.get()), (3, 12));
        let until = parse("until_correct = 2\nmax_samples = 5")
            .unwrap()
            .teacher
            .until_correct
            .unwrap();
        assert_eq!((until.verified.get(), until.max_samples.get()), (2, 5));
        assert_eq!(parse("").unwrap().teacher.until_correct, None);

        let errors = super::tests::errors(&with("max_samples = 4"));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("10:15 teacher.max_samples: applies with teacher.until_correct"),
            "{errors:#?}"
        );
        let errors = super::tests::errors(&with("until_correct = 4\nmax_samples = 3"));
        assert!(
            errors[0].starts_with(
                "11:15 teacher.max_samples: max_samples (3) is fewer than until_correct (4)"
            ),
            "{errors:#?}"
        );
        let errors = super::tests::errors(&with("n = 4\nuntil_correct = 1\nmax_samples = 2"));
        assert!(
            errors[0].starts_with(
                "12:15 teacher.max_samples: max_samples (2) must be at least teacher.n (4)"
            ),
            "{errors:#?}"
        );
        let errors = super::tests::errors(&with("until_correct = 0"));
        assert!(
            errors[0].starts_with("10:17 teacher.until_correct: must be a whole number from 1"),
            "{errors:#?}"
        );
        let errors = super::tests::errors(&format!(
            "{}[verify]\nkeep = \"first_correct\"\n",
            with("until_correct = 2")
        ));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("10:17 teacher.until_correct: asks for 2 verified samples"),
            "{errors:#?}"
        );
    }

    #[test]
    fn shipped_pipelines_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                match crate::Pipeline::from_file(&path) {
                    Ok(_) => {}
                    // A clone without `make model` lacks the git-ignored local checkpoint; that
                    // is the one error a shipped definition may have.
                    Err(crate::SpecError::Invalid { problems, .. })
                        if problems.iter().all(|p| {
                            p.path.to_string() == "teacher.local.checkpoint"
                                && p.message.contains("/models/")
                                && p.message.contains("`make model`")
                        }) => {}
                    Err(e) => panic!("{e}"),
                }
                seen += 1;
            }
        }
        assert!(
            seen >= 3,
            "expected the three example pipelines, found {seen}"
        );
    }

    #[test]
    fn every_unknown_key_is_reported_with_the_other_errors() {
        let text = "name = \"ok\"\n[source]\npath = \"d.jsonl\"\nprompt_feld = \"q\"\n[teacher]\nkind = \"mock\"\ntemprature = 1\n";
        let errors = errors(text);
        for want in [
            "4:1 source.prompt_feld: unknown field",
            "7:1 teacher.temprature: unknown field",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "{want}: {errors:#?}"
            );
        }
        assert!(
            errors
                .iter()
                .any(|e| e.contains("source.prompt_field: is required")),
            "{errors:#?}"
        );
    }
}

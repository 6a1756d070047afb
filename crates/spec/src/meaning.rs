//! What in a definition changes the meaning of the rows a run writes, and what only tunes how
//! the run goes. `resume` with an edited definition compares the first and lets the second
//! change.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::{
    Backend, CodeCheck, Endpoint, FaultRates, Limits, LocalModel, MockSettings, Output, Pipeline,
    Teacher, Verify,
};

/// What every tuning-only limit is set to in [`Pipeline::meaning`].
const ANY_LIMITS: Limits = Limits {
    concurrency: NonZeroU32::MIN,
    requests_per_minute: None,
    tokens_per_minute: None,
};

impl Pipeline {
    /// This definition with every field that only tunes the run set to one fixed value:
    /// concurrency and rate limits, timeouts, retries, streaming, pricing, shard sizes, the
    /// local teacher's batch size, sandboxes at once, and the mock's latency, faults and the
    /// file it replays. Two definitions with equal meanings write interchangeable rows.
    ///
    /// The structs that mix both kinds are taken apart field by field with no `..`, so a new
    /// field does not compile until it is put on one side or the other.
    pub fn meaning(&self) -> Pipeline {
        let Pipeline {
            name,
            source,
            prompt,
            teacher,
            verify,
            output,
        } = self.clone();
        let Teacher {
            backend,
            sampling,
            samples_per_prompt,
            timeout: _,
            retries: _,
            stream: _,
            top_logprobs,
            pricing: _,
            until_correct,
        } = teacher;
        let Verify {
            math,
            format,
            max_mixed_script_ratio,
            max_completion_tokens,
            max_repetition_ratio,
            code,
            keep,
            on_truncated,
            truncation_budget_tokens,
        } = verify;
        let Output {
            dir,
            shard_rows: _,
            shard_interval: _,
        } = output;
        Pipeline {
            name,
            source,
            prompt,
            teacher: Teacher {
                backend: backend_meaning(backend),
                sampling,
                samples_per_prompt,
                timeout: Duration::ZERO,
                retries: 0,
                stream: false,
                top_logprobs,
                pricing: None,
                until_correct,
            },
            verify: Verify {
                math,
                format,
                max_mixed_script_ratio,
                max_completion_tokens,
                max_repetition_ratio,
                code: code.map(code_meaning),
                keep,
                on_truncated,
                truncation_budget_tokens,
            },
            output: Output {
                dir,
                shard_rows: NonZeroU32::MIN,
                shard_interval: Duration::ZERO,
            },
        }
    }
}

fn backend_meaning(backend: Backend) -> Backend {
    match backend {
        Backend::Openai { endpoints } => Backend::Openai {
            endpoints: endpoints
                .into_iter()
                .map(
                    |Endpoint {
                         base_url,
                         model,
                         api_key_env,
                         limits: _,
                     }| Endpoint {
                        base_url,
                        model,
                        api_key_env,
                        limits: ANY_LIMITS,
                    },
                )
                .collect(),
        },
        // Every local sample has its own seeded sampler: batching changes only the speed.
        Backend::Local(LocalModel {
            checkpoint,
            batch_size: _,
            seed,
            device,
            dtype,
            quantized,
        }) => Backend::Local(LocalModel {
            checkpoint,
            batch_size: NonZeroU32::MIN,
            seed,
            device,
            dtype,
            quantized,
        }),
        Backend::Mock {
            model,
            limits: _,
            settings,
        } => {
            let MockSettings {
                dataset: _,
                question_field,
                answer_field,
                task,
                accuracy,
                latency_ms: _,
                latency_jitter_ms: _,
                language_mix_rate,
                truncation_rate,
                reasoning_style,
                assistant_format,
                seed,
                faults: _,
                tokenizer,
            } = settings;
            Backend::Mock {
                model,
                limits: ANY_LIMITS,
                settings: MockSettings {
                    dataset: None,
                    question_field,
                    answer_field,
                    task,
                    accuracy,
                    latency_ms: 0.0,
                    latency_jitter_ms: 0.0,
                    language_mix_rate,
                    truncation_rate,
                    reasoning_style,
                    assistant_format,
                    seed,
                    faults: FaultRates::default(),
                    tokenizer,
                },
            }
        }
    }
}

/// Sandboxes at once give the same verdicts, sooner or later.
fn code_meaning(
    CodeCheck {
        tests_field,
        entry_point_field,
        setup_field,
        timeout,
        memory_mb,
        parallel: _,
    }: CodeCheck,
) -> CodeCheck {
    CodeCheck {
        tests_field,
        entry_point_field,
        setup_field,
        timeout,
        memory_mb,
        parallel: None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Pipeline;

    fn parse(text: &str) -> Pipeline {
        Pipeline::parse(text, Path::new("p.toml"), Path::new(".")).unwrap()
    }

    const BASE: &str = "name = \"t\"\n[source]\npath = \"x.jsonl\"\nprompt_field = \"q\"\nanswer_field = \"a\"\n[teacher]\nkind = \"mock\"\n";

    #[test]
    fn tuning_does_not_change_the_meaning_and_sampling_does() {
        let base = parse(BASE);
        let tuned = parse(&format!(
            "{BASE}timeout_secs = 5\nretries = 1\nstream = false\n[teacher.mock]\nlatency_ms = 80\n[output]\nshard_rows = 3\n"
        ));
        assert_ne!(base, tuned);
        assert_eq!(base.meaning(), tuned.meaning());
        let hotter = parse(&format!("{BASE}temperature = 0.9\n"));
        assert_ne!(base.meaning(), hotter.meaning());
    }
}

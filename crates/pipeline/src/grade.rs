//! Rejection sampling for one prompt: every check on every sample, then the keep policy.
//! Pure apart from the optional code sandbox, so it is tested without actors or servers.

use distillery_spec::{AssistantFormat, KeepPolicy, Verify};
use distillery_store::TeacherLogprobs;
use distillery_store::record::{
    ChatMessage, CheckResult, Generation, Provenance, assistant_turn_as, first_failure,
};
use distillery_teacher::{Completion, FinishReason, ReasoningSource, Sample, TokenLogprob};
use distillery_verify::code::{HumanEvalTask, Sandbox, SandboxLimits, mbpp_program};
use distillery_verify::{
    Check, LanguagePolicy, LengthLimits, Reason, RepetitionLimits, Verdict, format, language,
    length, math, repetition,
};

use crate::job::PromptJob;

/// What every row of a run shares.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: String,
    pub pipeline: String,
    pub config_hash: String,
    pub source_path: String,
}

/// The checks a definition asks for, prepared once.
#[derive(Debug)]
pub struct Grader {
    math: bool,
    format: bool,
    language: Option<LanguagePolicy>,
    length: LengthLimits,
    repetition: Option<RepetitionLimits>,
    code: Option<CodeGrader>,
    keep: distillery_verify::KeepPolicy,
    /// The layout the format check requires and the training conversation takes.
    assistant_format: AssistantFormat,
}

#[derive(Debug)]
struct CodeGrader {
    sandbox: Sandbox,
    tests_field: String,
    entry_point_field: Option<String>,
    setup_field: Option<String>,
    prompt_field: String,
    /// At most this many sandboxes run at once, whatever the number of verifier threads.
    slots: Slots,
}

/// A counting semaphore for blocking threads: the verifier pool's threads wait here for a
/// sandbox, so a slow test suite holds up verification and not the teacher's event loops.
#[derive(Debug)]
struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    fn new(count: usize) -> Self {
        Self {
            free: std::sync::Mutex::new(count.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        {
            let mut free = self
                .free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while *free == 0 {
                free = self
                    .freed
                    .wait(free)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            *free -= 1;
        }
        // Given back even if `work` panics, so one bad check cannot starve the pool.
        struct Release<'a>(&'a Slots);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let mut free = self
                    .0
                    .free
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *free += 1;
                self.0.freed.notify_one();
            }
        }
        let _release = Release(self);
        work()
    }
}

/// Sandboxes at once when `[verify.code] parallel` is not given: one per core.
pub fn default_code_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Grader {
    pub fn new(verify: &Verify, prompt_field: &str) -> Self {
        Self {
            math: verify.math,
            format: verify.format,
            language: verify
                .max_mixed_script_ratio
                .map(|max_foreign_share| LanguagePolicy {
                    max_foreign_share,
                    ..LanguagePolicy::default()
                }),
            length: LengthLimits {
                max_tokens: verify.max_completion_tokens.map(|t| u64::from(t.get())),
                ..LengthLimits::default()
            },
            repetition: verify
                .max_repetition_ratio
                .map(|max_repeated_share| RepetitionLimits {
                    max_repeated_share,
                    ..RepetitionLimits::default()
                }),
            code: verify.code.as_ref().map(|code| CodeGrader {
                sandbox: Sandbox::new(SandboxLimits {
                    wall_time: code.timeout,
                    cpu_time: code.timeout,
                    memory_bytes: u64::from(code.memory_mb.get()) << 20,
                    ..SandboxLimits::default()
                }),
                tests_field: code.tests_field.clone(),
                entry_point_field: code.entry_point_field.clone(),
                setup_field: code.setup_field.clone(),
                prompt_field: prompt_field.to_owned(),
                slots: Slots::new(
                    code.parallel
                        .map_or_else(default_code_parallelism, |n| n.get() as usize),
                ),
            }),
            keep: match verify.keep {
                KeepPolicy::FirstCorrect => distillery_verify::KeepPolicy::FirstCorrect,
                KeepPolicy::AllCorrect => distillery_verify::KeepPolicy::AllCorrect,
                KeepPolicy::All => distillery_verify::KeepPolicy::All,
            },
            assistant_format: AssistantFormat::R1,
        }
    }

    /// Requires `format` of the answers (when the format check is on) and lays the training
    /// conversation out in it.
    pub fn with_assistant_format(mut self, format: AssistantFormat) -> Self {
        self.assistant_format = format;
        self
    }

    /// Sandboxes the code check runs at once; `None` without a code check.
    pub fn code_parallelism(&self) -> Option<usize> {
        let code = self.code.as_ref()?;
        let free = code
            .slots
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(*free)
    }

    /// Every sample of `completion` as a row, accepted or rejected with its reasons.
    pub fn grade(
        &self,
        job: &PromptJob,
        completion: &Completion,
        context: &RunContext,
        created_at_ms: i64,
    ) -> Vec<Generation> {
        let reference = job.reference_answer.as_deref().map(math::Reference::new);
        let tokens = TokenShares::new(completion);
        let graded: Vec<(Vec<Verdict>, Option<String>)> = completion
            .samples
            .iter()
            .enumerate()
            .map(|(position, sample)| {
                let (completion_tokens, _) = tokens.of(position);
                self.check_sample(job, sample, reference.as_ref(), completion_tokens)
            })
            .collect();
        let verdict_lists: Vec<&[Verdict]> = graded.iter().map(|(v, _)| v.as_slice()).collect();
        let kept = self.keep.select(&verdict_lists);

        completion
            .samples
            .iter()
            .zip(graded)
            .enumerate()
            .map(|(position, (sample, (verdicts, extracted)))| {
                let passed = verdicts.iter().all(Verdict::is_pass);
                let kept = kept.contains(&position);
                let mut checks: Vec<CheckResult> = verdicts.iter().map(check_result).collect();
                if passed && !kept {
                    checks.push(CheckResult {
                        check: "keep".into(),
                        passed: false,
                        reason: Some("keep.not_first_correct".into()),
                        detail: Some("an earlier sample of this prompt was kept".into()),
                    });
                }
                let accepted = passed && kept;
                let reject_reason = (!accepted).then(|| first_failure(&checks));
                let mut messages = Vec::with_capacity(3);
                if let Some(system) = &job.system {
                    messages.push(ChatMessage::new("system", system.clone()));
                }
                messages.push(ChatMessage::new("user", job.problem.clone()));
                messages.push(ChatMessage::new(
                    "assistant",
                    assistant_turn_as(
                        self.assistant_format,
                        sample.reasoning.as_deref(),
                        &sample.content,
                    ),
                ));
                let (completion_tokens, reasoning_tokens) = tokens.of(position);
                Generation {
                    id: job.id.clone(),
                    sample_index: sample.index,
                    problem: job.problem.clone(),
                    system_prompt: job.system.clone(),
                    reference_answer: job.reference_answer.clone(),
                    source: job.source_fields.clone(),
                    reasoning: sample.reasoning.clone(),
                    content: sample.content.clone(),
                    extracted_answer: extracted,
                    messages,
                    checks,
                    accepted,
                    reject_reason,
                    teacher_model: completion.model.clone(),
                    endpoint: completion.endpoint.clone(),
                    finish_reason: sample.finish_reason.to_string(),
                    reasoning_source: match sample.reasoning_source {
                        ReasoningSource::Field => "field",
                        ReasoningSource::ThinkTags => "think_tags",
                        ReasoningSource::Absent => "absent",
                    }
                    .into(),
                    prompt_tokens: completion.usage.prompt_tokens,
                    completion_tokens,
                    reasoning_tokens,
                    tokens_estimated: completion.usage.estimated,
                    latency_ms: u64::try_from(completion.latency.as_millis()).unwrap_or(u64::MAX),
                    attempts: completion.attempts,
                    provenance: Provenance {
                        run_id: context.run_id.clone(),
                        pipeline: context.pipeline.clone(),
                        config_hash: context.config_hash.clone(),
                        source_path: context.source_path.clone(),
                        source_row: job.row_number,
                        created_at_ms,
                    },
                    // Set by the caller, which knows what the length limit did.
                    length: Default::default(),
                    // Only accepted rows are trained on, so only they pay for the column.
                    teacher_logprobs: if accepted {
                        sample.logprobs.as_deref().map(compact_logprobs)
                    } else {
                        None
                    },
                }
            })
            .collect()
    }

    /// The verdicts on one sample, in a fixed order, and the answer the math check read.
    fn check_sample(
        &self,
        job: &PromptJob,
        sample: &Sample,
        reference: Option<&math::Reference>,
        completion_tokens: u64,
    ) -> (Vec<Verdict>, Option<String>) {
        let mut verdicts = Vec::with_capacity(6);
        let mut extracted = None;
        if sample.finish_reason == FinishReason::Length {
            verdicts.push(Verdict::fail(Check::Length, Reason::LengthTruncated));
        }
        if self.format {
            let check = match self.assistant_format {
                AssistantFormat::R1 => format::check_think,
                AssistantFormat::Tagged => format::check_tagged,
            };
            verdicts.push(check(sample.reasoning.as_deref(), &sample.content));
        }
        if let (true, Some(reference)) = (self.math, reference) {
            let graded = reference.grade(&sample.content);
            extracted = graded.answer.map(|answer| answer.text);
            verdicts.push(graded.verdict);
        }
        if let Some(code) = &self.code {
            verdicts.push(code.check(job, &sample.content));
            // The code that was run, for whoever studies the rows.
            if extracted.is_none() {
                extracted =
                    distillery_verify::code::extract_code_block(&sample.content).map(str::to_owned);
            }
        }
        let whole = match &sample.reasoning {
            Some(reasoning) => format!("{reasoning}\n{}", sample.content),
            None => sample.content.clone(),
        };
        if let Some(policy) = &self.language {
            verdicts.push(language::check_mixing(&whole, policy));
        }
        verdicts.push(length::check(&whole, Some(completion_tokens), &self.length));
        if let Some(limits) = &self.repetition {
            verdicts.push(repetition::check(&whole, limits));
        }
        (verdicts, extracted)
    }
}

impl CodeGrader {
    fn check(&self, job: &PromptJob, answer: &str) -> Verdict {
        self.slots.run(|| self.run(job, answer))
    }

    fn run(&self, job: &PromptJob, answer: &str) -> Verdict {
        let tests = job.field(&self.tests_field).unwrap_or_default();
        match &self.entry_point_field {
            Some(entry_point_field) => {
                let task = HumanEvalTask {
                    task_id: job.id.clone(),
                    prompt: job.field(&self.prompt_field).unwrap_or_default(),
                    canonical_solution: String::new(),
                    test: tests,
                    entry_point: job.field(entry_point_field).unwrap_or_default(),
                };
                self.sandbox.check_humaneval_answer(&task, answer)
            }
            None => {
                let code = distillery_verify::code::extract_code_block(answer).unwrap_or(answer);
                if code.trim().is_empty() {
                    return Verdict::fail(Check::Code, Reason::CodeNoCode);
                }
                let lines: Vec<String> = tests.lines().map(str::to_owned).collect();
                let setup = self
                    .setup_field
                    .as_ref()
                    .and_then(|field| job.field(field))
                    .unwrap_or_default();
                self.sandbox
                    .check_program(&mbpp_program(code, &setup, &lines))
            }
        }
    }
}

/// A verdict as the row records it.
pub fn check_result(verdict: &Verdict) -> CheckResult {
    CheckResult {
        check: verdict.check.name().to_owned(),
        passed: verdict.is_pass(),
        reason: verdict.reason().map(|_| verdict.code().to_owned()),
        detail: verdict.reason().map(ToString::to_string),
    }
}

/// The server reports tokens per request; each sample gets a share proportional to its length,
/// apportioned so that the shares add up to the request's totals exactly.
struct TokenShares {
    completion: Vec<u64>,
    reasoning: Vec<u64>,
}

impl TokenShares {
    fn new(completion: &Completion) -> Self {
        let weights: Vec<u64> = completion
            .samples
            .iter()
            .map(|s| (s.content.len() + s.reasoning.as_deref().map_or(0, str::len)).max(1) as u64)
            .collect();
        let reasoning_weights: Vec<u64> = completion
            .samples
            .iter()
            .map(|s| s.reasoning.as_deref().map_or(0, str::len) as u64)
            .collect();
        Self {
            completion: apportion(completion.usage.completion_tokens, &weights),
            reasoning: apportion(completion.usage.reasoning_tokens, &reasoning_weights),
        }
    }

    fn of(&self, position: usize) -> (u64, u64) {
        (
            self.completion.get(position).copied().unwrap_or(0),
            self.reasoning.get(position).copied().unwrap_or(0),
        )
    }
}

/// Splits `total` in proportion to `weights`; the rounding remainder goes to the largest
/// fractional parts, so the parts always sum to `total`.
fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if weights.is_empty() {
        return Vec::new();
    }
    if sum == 0 {
        return apportion(total, &vec![1; weights.len()]);
    }
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|&w| {
            let scaled = u128::from(total) * u128::from(w);
            ((scaled / sum) as u64, scaled % sum)
        })
        .collect();
    let mut parts: Vec<u64> = exact.iter().map(|(floor, _)| *floor).collect();
    let mut left = total - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// A sample's token log-probabilities in the shards' compact form, keeping as many
/// alternatives per position as the server sent (its `top_logprobs`).
fn compact_logprobs(tokens: &[TokenLogprob]) -> TeacherLogprobs {
    let k = tokens.iter().map(|t| t.top.len()).max().unwrap_or(0);
    let mut out = TeacherLogprobs::new(u8::try_from(k).unwrap_or(u8::MAX));
    for t in tokens {
        out.push(
            &t.token,
            t.logprob,
            t.top.iter().map(|(token, lp)| (token.as_slice(), *lp)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use distillery_spec::Pipeline;
    use distillery_teacher::Usage;

    use super::*;

    fn grader(keep: &str) -> (Grader, Pipeline) {
        let text = format!(
            "name = \"t\"\n[source]\npath = \"x.jsonl\"\nprompt_field = \"question\"\nanswer_field = \"answer\"\n[teacher]\nkind = \"mock\"\n[verify]\nmath = true\nformat = true\nmax_mixed_script_ratio = 0.05\nkeep = \"{keep}\"\n"
        );
        let pipeline = Pipeline::parse(&text, Path::new("t.toml"), Path::new("/d")).unwrap();
        (Grader::new(&pipeline.verify, "question"), pipeline)
    }

    fn job() -> PromptJob {
        PromptJob {
            id: "p1".into(),
            row_number: 1,
            problem: "What is 2+2?".into(),
            system: None,
            reference_answer: Some("4".into()),
            source_fields: Default::default(),
            fields: Default::default(),
        }
    }

    fn sample(index: u32, reasoning: &str, content: &str, finish: FinishReason) -> Sample {
        Sample {
            logprobs: None,
            index,
            reasoning: Some(reasoning.into()),
            content: content.into(),
            reasoning_source: ReasoningSource::Field,
            finish_reason: finish,
        }
    }

    fn completion(samples: Vec<Sample>) -> Completion {
        Completion {
            samples,
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 101,
                reasoning_tokens: 50,
                estimated: false,
            },
            model: "m".into(),
            endpoint: "http://e/v1".into(),
            attempts: 2,
            latency: Duration::from_millis(1500),
            first_token: None,
        }
    }

    fn context() -> RunContext {
        RunContext {
            run_id: "r".into(),
            pipeline: "t".into(),
            config_hash: "h".into(),
            source_path: "x.jsonl".into(),
        }
    }

    const THINK: &str = "Two plus two: 2 + 2 = 4. Let me check it once more, yes it is four.";

    #[test]
    fn grades_each_sample_and_applies_first_correct() {
        let (grader, _) = grader("first_correct");
        let rows = grader.grade(
            &job(),
            &completion(vec![
                sample(0, THINK, "The answer is \\boxed{5}.", FinishReason::Stop),
                sample(1, THINK, "The answer is \\boxed{4}.", FinishReason::Stop),
                sample(2, THINK, "So \\boxed{4}.", FinishReason::Stop),
                sample(3, "Two plus two is", "", FinishReason::Length),
            ]),
            &context(),
            7,
        );
        let outcome: Vec<(bool, Option<&str>)> = rows
            .iter()
            .map(|r| (r.accepted, r.reject_reason.as_deref()))
            .collect();
        assert_eq!(
            outcome,
            vec![
                (false, Some("math.wrong_answer")),
                (true, None),
                (false, Some("keep.not_first_correct")),
                (false, Some("length.truncated")),
            ]
        );
        assert_eq!(rows[0].extracted_answer.as_deref(), Some("5"));
        let assistant = &rows[1].messages.last().unwrap().content;
        assert_eq!(
            assistant,
            &format!("<think>\n{THINK}\n</think>\n\nThe answer is \\boxed{{4}}.")
        );
        assert_eq!(rows[1].provenance.created_at_ms, 7);
        assert_eq!(rows[1].latency_ms, 1500);
        let total: u64 = rows.iter().map(|r| r.completion_tokens).sum();
        assert_eq!(total, 101);
        let reasoning: u64 = rows.iter().map(|r| r.reasoning_tokens).sum();
        assert_eq!(reasoning, 50);
    }

    #[test]
    fn all_correct_keeps_every_passing_sample_and_names_mixing() {
        let (grader, _) = grader("all_correct");
        let mixed =
            format!("{THINK} 让我们再检查一下这个答案是否正确然后继续计算下一步的结果吧好的");
        let rows = grader.grade(
            &job(),
            &completion(vec![
                sample(0, THINK, "\\boxed{4}", FinishReason::Stop),
                sample(1, THINK, "\\boxed{4}", FinishReason::Stop),
                sample(2, &mixed, "\\boxed{4}", FinishReason::Stop),
            ]),
            &context(),
            0,
        );
        assert!(rows[0].accepted && rows[1].accepted);
        assert_eq!(rows[2].reject_reason.as_deref(), Some("language.mixed"));
        let language = rows[2]
            .checks
            .iter()
            .find(|c| c.check == "language")
            .unwrap();
        assert!(!language.passed);
        assert!(language.detail.is_some());
    }

    #[test]
    fn tagged_format_requires_one_answer_block_and_shapes_the_conversation() {
        let (grader, _) = grader("all");
        let grader = grader.with_assistant_format(AssistantFormat::Tagged);
        let rows = grader.grade(
            &job(),
            &completion(vec![
                sample(
                    0,
                    THINK,
                    "<answer>\n\\boxed{4}\n</answer>",
                    FinishReason::Stop,
                ),
                sample(1, THINK, "The answer is \\boxed{4}.", FinishReason::Stop),
                sample(2, THINK, "<answer></answer> \\boxed{4}", FinishReason::Stop),
                sample(
                    3,
                    THINK,
                    "<answer>4</answer><answer>4</answer>",
                    FinishReason::Stop,
                ),
            ]),
            &context(),
            0,
        );
        let reasons: Vec<Option<&str>> = rows.iter().map(|r| r.reject_reason.as_deref()).collect();
        assert_eq!(
            reasons,
            [
                None,
                Some("format.answer_tag_missing"),
                Some("format.answer_tag_empty"),
                Some("format.answer_tag_doubled")
            ]
        );
        assert_eq!(
            rows[0].messages.last().unwrap().content,
            format!("<think>\n{THINK}\n</think>\n<answer>\n\\boxed{{4}}\n</answer>")
        );
    }

    fn code_grader(verify_code: &str) -> Grader {
        let text = format!(
            "name = \"t\"\n[source]\npath = \"x.jsonl\"\nprompt_field = \"prompt\"\n[teacher]\nkind = \"mock\"\n[verify]\nformat = true\n[verify.code]\n{verify_code}\n"
        );
        let pipeline = Pipeline::parse(&text, Path::new("t.toml"), Path::new("/d")).unwrap();
        Grader::new(&pipeline.verify, "prompt")
    }

    fn code_job(fields: serde_json::Value) -> PromptJob {
        PromptJob {
            id: "c1".into(),
            row_number: 1,
            problem: "Write it.".into(),
            system: None,
            reference_answer: None,
            source_fields: Default::default(),
            fields: Arc::new(fields.as_object().unwrap().clone()),
        }
    }

    fn fenced(code: &str) -> String {
        format!("Here it is:\n\n```python\n{code}```\n\nThat handles every case.")
    }

    fn reasons(grader: &Grader, job: &PromptJob, answers: &[String]) -> Vec<Option<String>> {
        let samples = answers
            .iter()
            .enumerate()
            .map(|(i, answer)| sample(i as u32, THINK, answer, FinishReason::Stop))
            .collect();
        grader
            .grade(job, &completion(samples), &context(), 0)
            .into_iter()
            .map(|row| {
                let code = row.extracted_answer.as_deref().unwrap_or_default();
                assert!(
                    code.starts_with("def ") || code.starts_with("import "),
                    "{code:?}"
                );
                row.reject_reason
            })
            .collect()
    }

    #[test]
    fn humaneval_layout_runs_the_fenced_function_against_check() {
        let grader = code_grader(
            "tests_field = \"test\"\nentry_point_field = \"entry_point\"\ntimeout_secs = 2",
        );
        let job = code_job(serde_json::json!({
            "prompt": "def add(a, b):\n    \"\"\"Add a and b.\"\"\"\n",
            "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
            "entry_point": "add",
        }));
        let answers = [
            fenced("def add(a, b):\n    return a + b\n"),
            fenced("def add(a, b):\n    return a - b\n"),
            fenced("def add(a, b)\n    return a + b\n"),
            fenced("def add(a, b):\n    while True:\n        pass\n"),
        ];
        assert_eq!(
            reasons(&grader, &job, &answers),
            [
                None,
                Some("code.failed".into()),
                Some("code.syntax".into()),
                Some("code.timeout".into())
            ]
        );
    }

    #[test]
    fn mbpp_layout_runs_setup_then_each_assert() {
        let grader = code_grader(
            "tests_field = \"test_list\"\nsetup_field = \"test_setup_code\"\ntimeout_secs = 2",
        );
        let job = code_job(serde_json::json!({
            "prompt": "Write a function to scale a number.",
            "test_list": ["assert scale(2) == 2 * FACTOR", "assert scale(0) == 0"],
            "test_setup_code": "FACTOR = 3",
        }));
        let answers = [
            fenced("def scale(x):\n    return 3 * x\n"),
            fenced("def scale(x):\n    return 2 * x\n"),
        ];
        assert_eq!(
            reasons(&grader, &job, &answers),
            [None, Some("code.failed".into())]
        );
        // Without the setup code the asserts cannot run: the setup really is run.
        let no_setup = code_grader("tests_field = \"test_list\"\ntimeout_secs = 2");
        assert_eq!(
            reasons(&no_setup, &job, &answers[..1]),
            [Some("code.failed".into())]
        );
    }

    #[test]
    fn no_more_sandboxes_than_parallel_run_at_once() {
        let grader = Arc::new(code_grader(
            "tests_field = \"test_list\"\ntimeout_secs = 5\nparallel = 2",
        ));
        assert_eq!(grader.code_parallelism(), Some(2));
        let job = code_job(serde_json::json!({
            "prompt": "Wait a while.",
            "test_list": ["assert slow() == 1"],
        }));
        let answer = fenced("import time\ndef slow():\n    time.sleep(0.4)\n    return 1\n");
        let started = std::time::Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..6 {
                let (grader, job, answer) = (&grader, &job, &answer);
                scope.spawn(move || {
                    assert_eq!(reasons(grader, job, std::slice::from_ref(answer)), [None]);
                });
            }
        });
        // Six 0.4 s programs, two at a time: three rounds at least.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(1150), "{elapsed:?}");
        assert_eq!(
            grader.code_parallelism(),
            Some(2),
            "every slot was given back"
        );
    }

    #[test]
    fn apportion_adds_up() {
        assert_eq!(apportion(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(apportion(7, &[0, 0]), vec![4, 3]);
        assert_eq!(apportion(0, &[5, 9]), vec![0, 0]);
        assert_eq!(apportion(100, &[1, 3]), vec![25, 75]);
        assert!(apportion(5, &[]).is_empty());
    }
}

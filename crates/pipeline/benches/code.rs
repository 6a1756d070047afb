//! The code verifier pool's throughput: HumanEval's 164 canonical solutions, each as a fenced
//! answer, graded by the pipeline's own grader (`[verify.code]`, HumanEval layout) from a pool of
//! verifier threads, as a run grades them.
//!
//! Run with `cargo bench -p distillery-pipeline --bench code` (or `make bench`). Each figure is
//! printed with its ratio to a baseline and, when `DISTILLERY_BENCH_JSON` names a file, appended
//! to it as one JSON object (see `benches/report.rs` at the workspace root).
//!
//! Figures:
//! 1. checks/s with `parallel = 1` (one sandbox at a time, whatever the threads);
//! 2. checks/s with `parallel` = twice the cores, as many verifier threads: a sandbox mostly
//!    waits on its Python child, so more than one per core still helps;
//! 3. checks/s of the fast problems while a quarter of the answers are infinite loops cut at
//!    1 s, with `parallel` = twice the cores: slow test suites take slots, the rest go on.

#[path = "../../../benches/report.rs"]
mod report;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use distillery_pipeline::grade::{Grader, RunContext};
use distillery_pipeline::job::PromptJob;
use distillery_spec::Pipeline;
use distillery_teacher::{Completion, FinishReason, ReasoningSource, Sample, Usage};
use report::{Better, Figure};

/// Baselines, measured with this bench on the development machine (2-vCPU AMD EPYC cloud VM,
/// shared with other work) on 2026-11-29: the time is Python's (start-up and the tests), so the
/// profile hardly matters. The loops are CPU-bound: while four run, the other checks share
/// what is left of two cores.
const BASELINE_SERIAL: f64 = 23.0;
const BASELINE_PARALLEL: f64 = 70.0;
const BASELINE_WITH_LOOPS: f64 = 9.0;

fn grader(parallel: usize, timeout_secs: f64) -> Grader {
    let text = format!(
        "name = \"bench\"\n[source]\npath = \"x.jsonl\"\nprompt_field = \"prompt\"\n\
         [teacher]\nkind = \"mock\"\n[verify]\nformat = true\n[verify.code]\n\
         tests_field = \"test\"\nentry_point_field = \"entry_point\"\n\
         timeout_secs = {timeout_secs}\nparallel = {parallel}\n"
    );
    let pipeline = Pipeline::parse(&text, Path::new("bench.toml"), Path::new(".")).unwrap();
    Grader::new(&pipeline.verify, "prompt")
}

/// (job, answer) for every HumanEval problem: the prompt and canonical body, fenced.
fn problems() -> Vec<(PromptJob, String)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/humaneval/HumanEval.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    text.lines()
        .enumerate()
        .map(|(line, row)| {
            let fields: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(row).expect("a HumanEval row");
            let text = |name: &str| fields[name].as_str().expect("a text field").to_owned();
            let answer = format!(
                "Here is the function:\n\n```python\n{}{}```",
                text("prompt"),
                text("canonical_solution")
            );
            let job = PromptJob {
                id: text("task_id"),
                row_number: line as u64 + 1,
                problem: text("prompt"),
                system: None,
                reference_answer: None,
                source_fields: Default::default(),
                fields: Arc::new(fields),
            };
            (job, answer)
        })
        .collect()
}

fn completion(answer: &str) -> Completion {
    Completion {
        samples: vec![Sample {
            logprobs: None,
            index: 0,
            reasoning: Some("Let me write the function carefully and check it.".into()),
            content: answer.to_owned(),
            reasoning_source: ReasoningSource::Field,
            finish_reason: FinishReason::Stop,
        }],
        usage: Usage::default(),
        model: "bench".into(),
        endpoint: "bench".into(),
        attempts: 1,
        latency: Duration::ZERO,
        first_token: None,
    }
}

/// Grades every (job, answer) from `threads` threads; the seconds taken and the passes.
fn grade_all(grader: &Grader, work: &[(PromptJob, String)], threads: usize) -> (f64, usize) {
    let context = RunContext {
        run_id: "bench".into(),
        pipeline: "bench".into(),
        config_hash: String::new(),
        source_path: String::new(),
    };
    let next = AtomicUsize::new(0);
    let passed = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some((job, answer)) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let rows = grader.grade(job, &completion(answer), &context, 0);
                    if rows.iter().all(|row| row.accepted) {
                        passed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (start.elapsed().as_secs_f64(), passed.into_inner())
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let wide = cores * 2;
    let work = problems();
    assert_eq!(work.len(), 164);

    let (serial_secs, passed) = grade_all(&grader(1, 10.0), &work, wide);
    assert_eq!(passed, 164, "every canonical solution passes");
    let serial = 164.0 / serial_secs;

    let (wide_secs, passed) = grade_all(&grader(wide, 10.0), &work, wide);
    assert_eq!(passed, 164);
    let parallel = 164.0 / wide_secs;

    // A quarter of the answers never end.
    let mut mixed = work.clone();
    let mut loops = 0;
    for (i, (_, answer)) in mixed.iter_mut().enumerate() {
        if i % 4 == 3 {
            *answer = answer.replacen("```python\n", "```python\nwhile True:\n    pass\n", 1);
            loops += 1;
        }
    }
    let (mixed_secs, passed) = grade_all(&grader(wide, 1.0), &mixed, wide);
    assert_eq!(passed, 164 - loops, "the loops time out, the rest pass");
    let with_loops = passed as f64 / mixed_secs;

    report::report(&[
        Figure::new(
            "verify_code",
            "checks_per_s_parallel_1",
            serial,
            "checks/s",
            Better::Higher,
        )
        .baseline(BASELINE_SERIAL)
        .note(format!(
            "HumanEval canonical solutions, {wide} threads, 1 sandbox at a time, {serial_secs:.1} s"
        )),
        Figure::new(
            "verify_code",
            "checks_per_s_parallel_wide",
            parallel,
            "checks/s",
            Better::Higher,
        )
        .baseline(BASELINE_PARALLEL)
        .note(format!(
            "parallel = {wide} ({cores} cores), {wide_secs:.1} s; {:.2}x one at a time",
            parallel / serial
        )),
        Figure::new(
            "verify_code",
            "passing_checks_per_s_with_loops",
            with_loops,
            "checks/s",
            Better::Higher,
        )
        .baseline(BASELINE_WITH_LOOPS)
        .note(format!(
            "{loops} of 164 answers loop until a 1 s timeout, parallel = {wide}, {mixed_secs:.1} s"
        )),
    ]);
}

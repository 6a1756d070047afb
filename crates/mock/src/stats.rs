//! What the simulator has served: lock-free counters, and the snapshot tests and benchmarks read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::code::Bug;
use crate::faults::{Fault, PromptLedger};
use crate::trace::{FinishReason, Sample};

/// A snapshot of what the simulator has served, also at `GET /v1/mock/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStats {
    /// Every `POST /v1/chat/completions`, whatever became of it.
    pub total_requests: u64,
    /// Completions sent without an injected fault.
    pub successful_responses: u64,
    /// Requests refused with 400, 401 or 404 (bad body, bad key, unknown model).
    pub rejected_requests: u64,
    pub faults: FaultCounts,
    /// Requests whose prompt matched no data set question (answered with a made-up number).
    pub unmatched_requests: u64,
    /// Samples (choices) in successful responses; the counts below are among these.
    pub samples: u64,
    /// Samples cut off with `finish_reason = "length"` (drawn, or by `max_tokens`).
    pub truncated_samples: u64,
    /// Samples that continued a partial answer the request sent (`continue_final_message`).
    #[serde(default)]
    pub continued_samples: u64,
    /// Complete samples whose final answer is wrong.
    pub wrong_answer_samples: u64,
    /// Samples whose reasoning contains the Chinese sentence.
    pub language_mixed_samples: u64,
    /// Complete wrong code samples by the kind of bug they carry (a subset of
    /// `wrong_answer_samples`).
    #[serde(default)]
    pub code_bugs: BugCounts,
    /// Requests per prompt, keyed by the matched data set question (or, for an unmatched
    /// prompt, the prompt itself). Counts every attempt that got past validation.
    pub requests_per_prompt: HashMap<String, u32>,
}

impl MockStats {
    /// Requests seen for `question`; 0 when it was never asked.
    pub fn attempts(&self, question: &str) -> u32 {
        self.requests_per_prompt.get(question).copied().unwrap_or(0)
    }
}

/// Injected faults by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub rate_limit: u64,
    pub server_error: u64,
    pub reset: u64,
    pub stall: u64,
    pub malformed: u64,
}

/// Wrong code samples by [`Bug`](crate::Bug) kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BugCounts {
    pub off_by_one: u64,
    pub wrong_operator: u64,
    pub missing_edge_case: u64,
    pub syntax_error: u64,
    pub infinite_loop: u64,
}

impl BugCounts {
    pub fn total(&self) -> u64 {
        self.off_by_one
            + self.wrong_operator
            + self.missing_edge_case
            + self.syntax_error
            + self.infinite_loop
    }
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.rate_limit + self.server_error + self.reset + self.stall + self.malformed
    }
}

/// The live counters behind [`MockStats`]. Relaxed atomics: each count is independent, and a
/// snapshot taken under load is allowed to be a few requests out of step between fields.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    total_requests: AtomicU64,
    successful_responses: AtomicU64,
    rejected_requests: AtomicU64,
    rate_limit: AtomicU64,
    server_error: AtomicU64,
    reset: AtomicU64,
    stall: AtomicU64,
    malformed: AtomicU64,
    unmatched_requests: AtomicU64,
    samples: AtomicU64,
    truncated_samples: AtomicU64,
    continued_samples: AtomicU64,
    wrong_answer_samples: AtomicU64,
    language_mixed_samples: AtomicU64,
    bugs: [AtomicU64; 5],
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    pub(crate) fn request(&self) {
        bump(&self.total_requests, 1);
    }

    pub(crate) fn rejected(&self) {
        bump(&self.rejected_requests, 1);
    }

    pub(crate) fn unmatched(&self) {
        bump(&self.unmatched_requests, 1);
    }

    pub(crate) fn fault(&self, fault: Fault) {
        bump(
            match fault {
                Fault::RateLimit => &self.rate_limit,
                Fault::ServerError => &self.server_error,
                Fault::Reset => &self.reset,
                Fault::Stall => &self.stall,
                Fault::Malformed => &self.malformed,
            },
            1,
        );
    }

    pub(crate) fn continuation(&self) {
        bump(&self.continued_samples, 1);
    }

    pub(crate) fn success(&self, samples: &[Sample]) {
        bump(&self.successful_responses, 1);
        bump(&self.samples, samples.len() as u64);
        let count = |keep: fn(&Sample) -> bool| samples.iter().filter(|s| keep(s)).count() as u64;
        bump(
            &self.truncated_samples,
            count(|s| s.finish == FinishReason::Length),
        );
        bump(
            &self.wrong_answer_samples,
            count(|s| s.wrong_answer && s.finish == FinishReason::Stop),
        );
        bump(&self.language_mixed_samples, count(|s| s.language_mixed));
        for sample in samples {
            if let (Some(bug), FinishReason::Stop) = (sample.bug, sample.finish) {
                let at = Bug::ALL.iter().position(|&b| b == bug).unwrap_or(0);
                bump(&self.bugs[at], 1);
            }
        }
    }

    pub(crate) fn snapshot(&self, ledger: &PromptLedger) -> MockStats {
        MockStats {
            total_requests: read(&self.total_requests),
            successful_responses: read(&self.successful_responses),
            rejected_requests: read(&self.rejected_requests),
            faults: FaultCounts {
                rate_limit: read(&self.rate_limit),
                server_error: read(&self.server_error),
                reset: read(&self.reset),
                stall: read(&self.stall),
                malformed: read(&self.malformed),
            },
            unmatched_requests: read(&self.unmatched_requests),
            samples: read(&self.samples),
            truncated_samples: read(&self.truncated_samples),
            continued_samples: read(&self.continued_samples),
            wrong_answer_samples: read(&self.wrong_answer_samples),
            language_mixed_samples: read(&self.language_mixed_samples),
            code_bugs: BugCounts {
                off_by_one: read(&self.bugs[0]),
                wrong_operator: read(&self.bugs[1]),
                missing_edge_case: read(&self.bugs[2]),
                syntax_error: read(&self.bugs[3]),
                infinite_loop: read(&self.bugs[4]),
            },
            requests_per_prompt: ledger.attempts_per_prompt(),
        }
    }
}

//! Which attempts fail, and the per-prompt attempt counts that decision depends on.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use distillery_spec::mock::FaultRates;

use crate::hash::{Domain, Draws};

/// A failure injected into one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// 429 with `Retry-After`.
    RateLimit,
    /// 500 with an error body.
    ServerError,
    /// The connection drops part-way through the response.
    Reset,
    /// The response goes silent for `stall_secs`, then finishes.
    Stall,
    /// A 200 whose body (or one SSE event) is not valid JSON.
    Malformed,
}

/// The fault of attempt `attempt` (0-based) at the prompt hashed to `prompt_hash`, before the
/// per-prompt cap is applied: a pure function of its arguments.
pub(crate) fn draw_fault(
    rates: &FaultRates,
    seed: u64,
    prompt_hash: u64,
    attempt: u32,
) -> Option<Fault> {
    if rates.total() <= 0.0 {
        return None;
    }
    let roll = Draws::new(Domain::Fault, &[seed, prompt_hash, u64::from(attempt)]).next_f64();
    let mut edge = 0.0;
    [
        (rates.rate_limit, Fault::RateLimit),
        (rates.server_error, Fault::ServerError),
        (rates.reset, Fault::Reset),
        (rates.stall, Fault::Stall),
        (rates.malformed, Fault::Malformed),
    ]
    .into_iter()
    .find_map(|(rate, fault)| {
        edge += rate;
        (roll < edge).then_some(fault)
    })
}

/// What happened to one attempt at a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// 0 for the first request for this prompt.
    pub(crate) number: u32,
    pub(crate) fault: Option<Fault>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PromptCounts {
    attempts: u32,
    faults: u32,
}

/// Enough shards that concurrent requests rarely wait on one another.
const SHARDS: usize = 32;

type Shard = Mutex<HashMap<Box<str>, PromptCounts>>;

/// Attempts and injected faults per prompt. Sharded, and each lock is held only for a map
/// update (never across an await), so it costs next to nothing under load.
#[derive(Debug)]
pub(crate) struct PromptLedger {
    shards: Box<[Shard]>,
}

impl Default for PromptLedger {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl PromptLedger {
    /// Counts one attempt at `prompt` and decides its fault: the drawn one, unless this prompt
    /// already had `rates.max_faults_per_prompt` faults, so every prompt completes eventually.
    /// Both happen under one lock so concurrent attempts get distinct numbers.
    pub(crate) fn record_attempt(
        &self,
        prompt: &str,
        prompt_hash: u64,
        rates: &FaultRates,
        seed: u64,
    ) -> Attempt {
        let count = |counts: &mut PromptCounts| {
            let number = counts.attempts;
            counts.attempts = counts.attempts.saturating_add(1);
            let fault = if counts.faults < rates.max_faults_per_prompt {
                draw_fault(rates, seed, prompt_hash, number)
            } else {
                None
            };
            if fault.is_some() {
                counts.faults += 1;
            }
            Attempt { number, fault }
        };
        let mut shard = self.shard(prompt_hash);
        // Look up by `&str` first: the key is allocated only for a prompt's first attempt.
        match shard.get_mut(prompt) {
            Some(counts) => count(counts),
            None => count(shard.entry(prompt.into()).or_default()),
        }
    }

    /// Requests seen for `prompt` (the matched data set question, or the prompt itself).
    pub(crate) fn attempts(&self, prompt: &str, prompt_hash: u64) -> u32 {
        self.shard(prompt_hash)
            .get(prompt)
            .map_or(0, |counts| counts.attempts)
    }

    pub(crate) fn attempts_per_prompt(&self) -> HashMap<String, u32> {
        let mut all = HashMap::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            all.extend(
                shard
                    .iter()
                    .map(|(prompt, counts)| (prompt.to_string(), counts.attempts)),
            );
        }
        all
    }

    fn shard(
        &self,
        prompt_hash: u64,
    ) -> std::sync::MutexGuard<'_, HashMap<Box<str>, PromptCounts>> {
        // The counts stay consistent even if a holder panicked: each update is one write.
        self.shards[(prompt_hash % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fnv1a;

    fn rates(rate_limit: f64, max_faults_per_prompt: u32) -> FaultRates {
        FaultRates {
            rate_limit,
            max_faults_per_prompt,
            ..FaultRates::default()
        }
    }

    #[test]
    fn faults_are_a_pure_function_of_seed_prompt_and_attempt() {
        let rates = FaultRates {
            rate_limit: 0.2,
            server_error: 0.2,
            reset: 0.2,
            stall: 0.2,
            malformed: 0.1,
            ..FaultRates::default()
        };
        let run = |seed| {
            (0..200)
                .map(|attempt| draw_fault(&rates, seed, 99, attempt))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        let drawn = run(5);
        for kind in [
            Fault::RateLimit,
            Fault::ServerError,
            Fault::Reset,
            Fault::Stall,
            Fault::Malformed,
        ] {
            assert!(drawn.contains(&Some(kind)), "{kind:?} never drawn");
        }
        assert!(drawn.contains(&None));
    }

    #[test]
    fn no_rates_no_faults_and_full_rate_always() {
        let none = FaultRates::default();
        assert!((0..100).all(|attempt| draw_fault(&none, 0, 1, attempt).is_none()));
        let always = rates(1.0, 3);
        assert!(
            (0..100).all(|attempt| draw_fault(&always, 0, 1, attempt) == Some(Fault::RateLimit))
        );
    }

    #[test]
    fn the_ledger_caps_faults_per_prompt() {
        let ledger = PromptLedger::default();
        let rates = rates(1.0, 3);
        let prompt = "What is 2+2?";
        let hash = fnv1a(prompt.as_bytes());
        let attempts: Vec<Attempt> = (0..6)
            .map(|_| ledger.record_attempt(prompt, hash, &rates, 0))
            .collect();
        assert_eq!(
            attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            attempts
                .iter()
                .map(|a| a.fault.is_some())
                .collect::<Vec<_>>(),
            [true, true, true, false, false, false]
        );
        assert_eq!(ledger.attempts(prompt, hash), 6);
        assert_eq!(ledger.attempts("other", fnv1a(b"other")), 0);

        let other = ledger.record_attempt("other", fnv1a(b"other"), &rates, 0);
        assert_eq!(
            other,
            Attempt {
                number: 0,
                fault: Some(Fault::RateLimit)
            }
        );
        let counts = ledger.attempts_per_prompt();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts.get(prompt), Some(&6));
        assert_eq!(counts.get("other"), Some(&1));
    }

    #[test]
    fn a_zero_cap_disables_faults() {
        let ledger = PromptLedger::default();
        let attempt = ledger.record_attempt("q", 1, &rates(1.0, 0), 0);
        assert_eq!(attempt.fault, None);
    }
}

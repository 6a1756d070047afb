//! What a run shows while it works: a progress bar on a terminal, plain log lines otherwise.
//! The Prometheus endpoint (`crate::metrics`) reads the same counters.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use distillery_store::Manifest;
use distillery_teacher::TeacherStats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Live counters of a run. Durable counts come from the writer after each commit.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub in_flight: AtomicUsize,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
    pub prompts_done: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub quarantined: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub prompts_total: AtomicU64,
}

impl Progress {
    pub(crate) fn publish(&self, manifest: &Manifest) {
        let counts = &manifest.counts;
        self.prompts_done
            .store(counts.prompts_done, Ordering::Relaxed);
        self.accepted.store(counts.accepted, Ordering::Relaxed);
        self.rejected.store(counts.rejected, Ordering::Relaxed);
        self.quarantined
            .store(counts.quarantined, Ordering::Relaxed);
        self.completion_tokens
            .store(manifest.tokens.completion, Ordering::Relaxed);
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A bar on a terminal, log lines otherwise.
    Auto,
    /// Log lines every few seconds.
    Lines,
    Quiet,
}

/// Shows progress until dropped.
pub(crate) struct Reporter {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Reporter {
    pub(crate) fn start(
        progress: Arc<Progress>,
        teacher: Arc<dyn Fn() -> TeacherStats + Send + Sync>,
        display: Display,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        if display != Display::Quiet {
            let bar = display == Display::Auto && std::io::stderr().is_terminal();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                report(&progress, teacher.as_ref(), bar, &stop);
            }));
        }
        Self { stop, threads }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Generations accepted or rejected so far, earlier sessions of the run included.
fn generations(progress: &Progress) -> u64 {
    progress.accepted.load(Ordering::Relaxed) + progress.rejected.load(Ordering::Relaxed)
}

/// Counts are the run's; rates are this session's, so a resume does not count the generations
/// it found done (`earlier`) as made in its first seconds.
fn line(progress: &Progress, teacher: &TeacherStats, secs: f64, earlier: u64) -> String {
    let secs = secs.max(1e-3);
    format!(
        "accepted {} · rejected {} · in flight {} · retries {} · {} gen/s · {} tok/s",
        progress.accepted.load(Ordering::Relaxed),
        progress.rejected.load(Ordering::Relaxed),
        progress.in_flight.load(Ordering::Relaxed),
        teacher.retries,
        rate(generations(progress).saturating_sub(earlier) as f64 / secs),
        rate(teacher.completion_tokens as f64 / secs),
    )
}

/// Whole numbers for fast rates; decimals for slow ones (a local teacher on a CPU makes a
/// generation every few seconds, which `0 gen/s` would hide).
fn rate(per_sec: f64) -> String {
    match per_sec {
        r if r >= 100.0 || r == 0.0 => format!("{r:.0}"),
        r if r >= 10.0 => format!("{r:.1}"),
        r => format!("{r:.2}"),
    }
}

fn report(progress: &Progress, teacher: &dyn Fn() -> TeacherStats, bar: bool, stop: &AtomicBool) {
    let started = Instant::now();
    let earlier = generations(progress);
    let line = || {
        line(
            progress,
            &teacher(),
            started.elapsed().as_secs_f64(),
            earlier,
        )
    };
    let total = progress.prompts_total.load(Ordering::Relaxed);
    if bar {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} prompts (eta {eta})\n{msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        while !stop.load(Ordering::Relaxed) {
            bar.set_position(progress.prompts_done.load(Ordering::Relaxed));
            bar.set_message(line());
            std::thread::sleep(Duration::from_millis(200));
        }
        bar.set_position(progress.prompts_done.load(Ordering::Relaxed));
        bar.finish_with_message(line());
    } else {
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() >= Duration::from_secs(5) {
                last = Instant::now();
                // Read live: the source counts the prompts it finds done as it reaches them.
                tracing::info!(
                    "{}/{} prompts ({} already done) · {}",
                    progress.prompts_done.load(Ordering::Relaxed),
                    total,
                    progress.skipped.load(Ordering::Relaxed),
                    line()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_shows_its_counts_but_rates_of_this_session_only() {
        let progress = Progress::default();
        let teacher = TeacherStats {
            completion_tokens: 5_000,
            ..TeacherStats::default()
        };
        // 1000 generations were done before; 50 more in 2 s.
        progress.accepted.store(940, Ordering::Relaxed);
        progress.rejected.store(110, Ordering::Relaxed);
        let shown = line(&progress, &teacher, 2.0, 1_000);
        assert!(
            shown.starts_with("accepted 940 · rejected 110 · "),
            "{shown}"
        );
        assert!(shown.ends_with(" · 25.0 gen/s · 2500 tok/s"), "{shown}");
    }

    #[test]
    fn slow_rates_keep_their_decimals() {
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(0.133), "0.13");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(6301.4), "6301");
    }
}

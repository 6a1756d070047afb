//! Math verification throughput on the public cases, single thread, plus agreement with labels.
//!
//! Run with `cargo bench -p distillery-verify --bench math`. When `DISTILLERY_BENCH_JSON` names a
//! file, one JSON object per figure is appended to it (see `benches/report.rs` at the workspace
//! root).

#[path = "../tests/cases/mod.rs"]
mod cases;
#[path = "../../../benches/report.rs"]
mod report;

use std::hint::black_box;
use std::time::{Duration, Instant};

use cases::Case;
use distillery_verify::math;
use report::{Better, Figure};

/// The bar: 10,000 math cases per second on one core.
const BASELINE_CASES_PER_S: f64 = 10_000.0;
const RUN_FOR: Duration = Duration::from_secs(2);

struct Agreement {
    agree: usize,
    total: usize,
}

impl Agreement {
    fn of(cases: &[Case]) -> Self {
        let agree = cases
            .iter()
            .filter(|c| math::verify(&c.gold, &c.prediction).is_pass() == c.label())
            .count();
        Agreement {
            agree,
            total: cases.len(),
        }
    }

    fn percent(&self) -> f64 {
        100.0 * self.agree as f64 / self.total.max(1) as f64
    }
}

fn main() {
    let mathverify = cases::load(cases::MATHVERIFY);
    let gsm = cases::load(cases::GSM);
    let all: Vec<&Case> = mathverify.iter().chain(&gsm).collect();

    // Warm up, then run whole passes over every case until the time is up.
    for case in &all {
        black_box(math::verify(&case.gold, &case.prediction));
    }
    let start = Instant::now();
    let mut verified = 0u64;
    while start.elapsed() < RUN_FOR {
        for case in &all {
            black_box(math::verify(
                black_box(&case.gold),
                black_box(&case.prediction),
            ));
        }
        verified += all.len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cases_per_s = verified as f64 / elapsed;

    let (mv, gs) = (Agreement::of(&mathverify), Agreement::of(&gsm));
    let overall = (mv.agree + gs.agree) as f64 / (mv.total + gs.total) as f64;
    report::report(&[
        Figure::new(
            "verify_math",
            "cases_per_s",
            cases_per_s,
            "cases/s",
            Better::Higher,
        )
        .baseline(BASELINE_CASES_PER_S)
        .note(format!(
            "single thread, {verified} verifications in {elapsed:.2} s"
        )),
        Figure::new("verify_math", "agreement", overall, "share", Better::Higher).note(format!(
            "with the labels: mathverify {:.1}% ({}/{}), gsm {:.1}% ({}/{})",
            mv.percent(),
            mv.agree,
            mv.total,
            gs.percent(),
            gs.agree,
            gs.total
        )),
    ]);
}

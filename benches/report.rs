//! The one convention every benchmark behind `make bench` follows, shared by inclusion
//! (`#[path = "../../../benches/report.rs"] mod report;`) so that the benches cannot drift apart.
//!
//! A bench prints each figure on a line of its own, with its baseline and ratio, and when
//! `DISTILLERY_BENCH_JSON` names a file it appends one JSON object per figure to it:
//!
//! ```json
//! {"bench":"pipeline","figure":"generations_per_s_10k","value":2500.0,"unit":"gen/s",
//!  "baseline":2400.0,"ratio":1.04,"better":"higher","note":"n=1, concurrency 64"}
//! ```
//!
//! `ratio` is always `value / baseline` (null without a baseline), and `better` says which way
//! is an improvement, so a ratio above 1 is good for a throughput and bad for a memory peak.
//! `scripts/bench-table.sh` merges the lines into one JSON summary and prints the table.

#![allow(dead_code)] // each bench uses part of it

use std::io::Write;

/// Which direction of a figure is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    Higher,
    Lower,
}

/// One measured figure.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub bench: &'static str,
    pub figure: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub baseline: Option<f64>,
    pub better: Better,
    /// How it was measured, in a few words (sizes, settings).
    pub note: String,
}

impl Figure {
    pub(crate) fn new(
        bench: &'static str,
        figure: &'static str,
        value: f64,
        unit: &'static str,
        better: Better,
    ) -> Self {
        Self {
            bench,
            figure,
            value,
            unit,
            baseline: None,
            better,
            note: String::new(),
        }
    }

    pub(crate) fn baseline(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// `value / baseline`, when there is a (non-zero) baseline and both are finite.
    pub(crate) fn ratio(&self) -> Option<f64> {
        let baseline = self.baseline?;
        let ratio = self.value / baseline;
        ratio.is_finite().then_some(ratio)
    }

    /// The JSON object written to the summary.
    pub(crate) fn json(&self) -> serde_json::Value {
        let number = |v: f64| {
            serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::from)
        };
        serde_json::json!({
            "bench": self.bench,
            "figure": self.figure,
            "value": number(self.value),
            "unit": self.unit,
            "baseline": self.baseline.map_or(serde_json::Value::Null, number),
            "ratio": self.ratio().map_or(serde_json::Value::Null, number),
            "better": match self.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
            },
            "note": self.note,
        })
    }

    /// The line printed for a reader.
    pub(crate) fn line(&self) -> String {
        let against = match (self.baseline, self.ratio()) {
            (Some(baseline), Some(ratio)) => {
                format!(
                    " — baseline {} {}, ratio {ratio:.2}",
                    show(baseline),
                    self.unit
                )
            }
            _ => String::new(),
        };
        let note = if self.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.note)
        };
        format!(
            "{}/{}: {} {}{against}{note}",
            self.bench,
            self.figure,
            show(self.value),
            self.unit
        )
    }
}

/// Three significant decimals for small values, whole numbers for large ones.
fn show(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Prints every figure and appends them to `$DISTILLERY_BENCH_JSON` when it is set; exits with
/// status 1 if that file cannot be written, so that `make bench` fails loudly.
pub(crate) fn report(figures: &[Figure]) {
    for figure in figures {
        println!("{}", figure.line());
    }
    let Some(path) = std::env::var_os("DISTILLERY_BENCH_JSON") else {
        return;
    };
    let text: String = figures.iter().map(|f| format!("{}\n", f.json())).collect();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(error) = written {
        eprintln!(
            "could not append to {}: {error}",
            std::path::Path::new(&path).display()
        );
        std::process::exit(1);
    }
}

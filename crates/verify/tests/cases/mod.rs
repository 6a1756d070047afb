//! The labelled public cases in `tests/data`, shared by the agreement test and the benchmark.

use std::path::Path;

use serde::Deserialize;

#[derive(Deserialize)]
pub(crate) struct Case {
    pub id: String,
    pub gold: String,
    pub prediction: String,
    expected: Option<bool>,
    intended_correct: Option<bool>,
}

impl Case {
    /// The label to agree with: the intended truth where the file gives one, else `expected`.
    pub(crate) fn label(&self) -> bool {
        self.intended_correct
            .or(self.expected)
            .unwrap_or_else(|| panic!("{}: no label", self.id))
    }
}

pub(crate) const MATHVERIFY: &str = "mathverify_cases_public.jsonl";
pub(crate) const GSM: &str = "gsm_style_cases_public.jsonl";

pub(crate) fn load(name: &str) -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
        .collect()
}

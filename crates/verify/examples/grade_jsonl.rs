//! Grades `{gold, prediction[, config]}` JSON lines (`config`: a `VerifyConfig`) from stdin and writes one JSON line per row:
//! `{"correct": bool, "extracted": str|null, "reason": str}`. The differential scripts in
//! `scripts/verify/` drive it; `distillery verify` is the user-facing command.

use std::io::{self, BufRead, BufWriter, Write};

use distillery_verify::math;

fn main() -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for (index, line) in io::stdin().lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Value = match serde_json::from_str(&line) {
            Ok(row) => row,
            Err(err) => {
                eprintln!("stdin:{}: {err}", index + 1);
                std::process::exit(2);
            }
        };
        let field = |name: &str| row.get(name).and_then(|v| v.as_str()).unwrap_or_default();
        let config: math::VerifyConfig = match row.get("config") {
            Some(config) => match serde_json::from_value(config.clone()) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("stdin:{}: config: {err}", index + 1);
                    std::process::exit(2);
                }
            },
            None => math::VerifyConfig::default(),
        };
        let graded = math::grade_with(field("gold"), field("prediction"), &config);
        let result = serde_json::json!({
            "correct": graded.verdict.is_pass(),
            "extracted": graded.answer.as_ref().map(|a| a.text.as_str()),
            "reason": graded.verdict.code(),
        });
        writeln!(out, "{result}")?;
    }
    out.flush()
}

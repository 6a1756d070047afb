//! `distillery status`: what a run has done, read from its manifest. Pure, so it is tested
//! without a run.

use std::fmt::Write;

use distillery_store::shard_set::ShardSet;
use distillery_store::{Counts, Manifest, RunStatus};

/// A manifest not updated for this long belongs to a process that is gone.
const STALE_MS: i64 = 10_000;

/// The report `distillery status` prints.
pub fn report(manifest: &Manifest, now_ms: i64) -> String {
    let counts = &manifest.counts;
    let mut out = String::new();
    let status = match manifest.status {
        RunStatus::Running if now_ms - manifest.updated_at_ms > STALE_MS => {
            "stopped without finishing (killed?); `distillery resume` continues it"
        }
        RunStatus::Running => "running",
        RunStatus::Interrupted => "interrupted; `distillery resume` continues it",
        RunStatus::Incomplete => {
            "incomplete: the teacher gave up on some prompts (failures.jsonl); `distillery resume` asks them again"
        }
        RunStatus::Completed
            if manifest
                .counts
                .prompts_total
                .is_some_and(|t| t > counts.prompts_done) =>
        {
            "completed with prompts left (the teacher gave up on some); `distillery resume` retries them"
        }
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed; fix the cause and `distillery resume` continues it",
    };
    let _ = writeln!(out, "run        {} ({})", manifest.run_id, manifest.name);
    if let Some(shard) = manifest.shard {
        let _ = writeln!(
            out,
            "shard      {shard}: the prompts whose id hashes to shard {} of {}",
            shard.index(),
            shard.count()
        );
    }
    let _ = writeln!(out, "status     {status}");
    let total = counts
        .prompts_total
        .map_or_else(|| "?".to_owned(), |t| t.to_string());
    let _ = writeln!(out, "prompts    {} of {total} done", counts.prompts_done);
    let judged = counts.accepted + counts.rejected;
    let rate = if judged == 0 {
        0.0
    } else {
        100.0 * counts.accepted as f64 / judged as f64
    };
    let _ = writeln!(
        out,
        "samples    {} accepted, {} rejected ({rate:.1}% accepted)",
        counts.accepted, counts.rejected
    );
    let mut reasons: Vec<_> = counts.rejected_by_reason.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (reason, count) in reasons {
        let share = 100.0 * *count as f64 / judged.max(1) as f64;
        let _ = writeln!(out, "  {reason:<28} {count:>8}  {share:5.1}%");
    }
    difficulty_lines(&mut out, counts);
    if counts.prompts_unfinished > 0 {
        let mut reasons: Vec<_> = counts.unfinished_by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        let _ = writeln!(
            out,
            "unfinished {} prompt(s) without an answer ({})",
            counts.prompts_unfinished,
            reasons.join(", ")
        );
    }
    for endpoint in &manifest.endpoints {
        if endpoint.backoffs > 0 || endpoint.limit < endpoint.concurrency {
            let _ = writeln!(
                out,
                "endpoint   {}: concurrency settled at {} of {} (backed off {} time(s) when the server was overloaded)",
                endpoint.base_url, endpoint.limit, endpoint.concurrency, endpoint.backoffs
            );
        }
    }
    if counts.quarantined > 0 {
        let _ = writeln!(
            out,
            "quarantine {} rows (see quarantine.jsonl)",
            counts.quarantined
        );
    }
    let tokens = &manifest.tokens;
    let _ = writeln!(
        out,
        "tokens     {} prompt, {} completion ({} reasoning){}",
        tokens.prompt,
        tokens.completion,
        tokens.reasoning,
        if tokens.estimated {
            " — estimated from the text for a server that reports no usage"
        } else {
            ""
        }
    );
    if let Some(cost) = manifest.cost_usd {
        let _ = writeln!(
            out,
            "cost       ${cost:.4} (estimate from the definition's prices)"
        );
    }
    let secs = manifest.elapsed_secs;
    if secs > 0.0 {
        let _ = writeln!(
            out,
            "throughput {:.1} samples/s, {:.0} completion tokens/s over {secs:.1} s",
            judged as f64 / secs,
            tokens.completion as f64 / secs
        );
        if let Some(total) = counts.prompts_total {
            let left = total.saturating_sub(counts.prompts_done);
            let per_sec = counts.prompts_done as f64 / secs;
            if left > 0 && per_sec > 0.0 {
                let _ = writeln!(
                    out,
                    "eta        {:.0} s at the rate so far",
                    left as f64 / per_sec
                );
            }
        }
    }
    let rows: u64 = manifest.shards.iter().map(|s| s.accepted_rows).sum();
    let _ = writeln!(
        out,
        "shards     {} cut(s), {rows} accepted rows in shards/",
        manifest.shards.len()
    );
    out
}

/// What the length limit cost, and acceptance by problem difficulty: the source's level where
/// rows have one, else the teacher's pass rate on the problem.
fn difficulty_lines(out: &mut String, counts: &Counts) {
    if counts.by_difficulty.is_empty() {
        return;
    }
    let mut total = distillery_store::difficulty::DifficultyCounts::default();
    for row in counts.by_difficulty.values() {
        total.add(row);
    }
    if total.truncated > 0 {
        let _ = writeln!(
            out,
            "length     {} sample(s) cut off by the length limit: {} recovered, {} rejected; {} problem(s) without an accepted sample lost to it",
            total.truncated,
            total.truncated - total.lost_to_length,
            total.lost_to_length,
            total.problems_lost_to_length
        );
    }
    let _ = writeln!(
        out,
        "difficulty {:<17} {:>8} {:>9} {:>8} {:>9} {:>9} {:>6}",
        "(level/pass rate)", "problems", "solved", "samples", "accepted", "truncated", "lost"
    );
    for (name, row) in distillery_store::difficulty::ordered(&counts.by_difficulty) {
        let _ = writeln!(
            out,
            "  {name:<26} {:>8} {:>9} {:>8} {:>8.1}% {:>9} {:>6}",
            row.problems,
            row.problems_accepted,
            row.samples,
            row.acceptance(),
            row.truncated,
            row.lost_to_length
        );
    }
}

/// The report of `distillery status` over the shards of a run: a line per shard, the totals,
/// and what keeps them from being one complete run.
pub fn set_report(set: &ShardSet, now_ms: i64) -> String {
    let mut out = String::new();
    let count = set.members.first().map_or(0, |m| m.shard.count());
    let mut hashes: Vec<&str> = set
        .members
        .iter()
        .map(|m| m.manifest.config_hash.as_str())
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    let config = match hashes.as_slice() {
        [one] => format!("config {}", &one[..one.len().min(12)]),
        _ => format!("{} different configs", hashes.len()),
    };
    let _ = writeln!(
        out,
        "run set    {}: {} of {count} shards present ({config})",
        set.name,
        set.members.len()
    );
    let mut total = Counts::default();
    let mut total_known = true;
    for member in &set.members {
        let m = &member.manifest;
        let counts = &m.counts;
        let status = match m.status {
            RunStatus::Running if now_ms - m.updated_at_ms > STALE_MS => "stopped (killed?)",
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Incomplete => "incomplete",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        };
        let shown_total = counts
            .prompts_total
            .map_or_else(|| "?".to_owned(), |t| t.to_string());
        let _ = writeln!(
            out,
            "shard {:<7}{status:<18} {:>8} prompts {:>8} accepted {:>8} rejected  {}",
            member.shard.to_string(),
            format!("{}/{shown_total}", counts.prompts_done),
            counts.accepted,
            counts.rejected,
            member.path.display()
        );
        total.prompts_done += counts.prompts_done;
        total.accepted += counts.accepted;
        total.rejected += counts.rejected;
        for (name, row) in &counts.by_difficulty {
            total
                .by_difficulty
                .entry(name.clone())
                .or_default()
                .add(row);
        }
        match counts.prompts_total {
            Some(t) => *total.prompts_total.get_or_insert(0) += t,
            None => total_known = false,
        }
    }
    let judged = total.accepted + total.rejected;
    let _ = writeln!(
        out,
        "total      {} of {} prompts done, {} accepted, {} rejected ({:.1}% accepted)",
        total.prompts_done,
        match total.prompts_total {
            Some(t) if total_known && set.members.len() as u32 == count => t.to_string(),
            _ => "?".to_owned(),
        },
        total.accepted,
        total.rejected,
        if judged == 0 {
            0.0
        } else {
            100.0 * total.accepted as f64 / judged as f64
        }
    );
    difficulty_lines(&mut out, &total);
    if set.problems.is_empty() {
        let _ = writeln!(
            out,
            "complete   every shard ran the same definition and completed: `distillery export` writes them as one dataset"
        );
    } else {
        let _ = writeln!(out, "problems");
        for problem in &set.problems {
            let _ = writeln!(out, "  - {problem}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_counts_reasons_throughput_and_eta() {
        let mut manifest = Manifest::new("r-1", "gsm8k", "name = \"gsm8k\"", "0.1.0");
        manifest.status = RunStatus::Interrupted;
        manifest.counts.prompts_total = Some(100);
        manifest.counts.prompts_done = 40;
        manifest.counts.accepted = 60;
        manifest.counts.rejected = 20;
        manifest
            .counts
            .rejected_by_reason
            .insert("math.wrong_answer".into(), 15);
        manifest
            .counts
            .rejected_by_reason
            .insert("length.truncated".into(), 5);
        manifest.elapsed_secs = 20.0;
        let text = report(&manifest, manifest.updated_at_ms);
        assert!(text.contains("status     interrupted"), "{text}");
        assert!(text.contains("40 of 100 done"), "{text}");
        assert!(
            text.contains("60 accepted, 20 rejected (75.0% accepted)"),
            "{text}"
        );
        let wrong = text.find("math.wrong_answer").unwrap();
        let truncated = text.find("length.truncated").unwrap();
        assert!(wrong < truncated, "most frequent reason first:\n{text}");
        assert!(text.contains("4.0 samples/s"), "{text}");
        assert!(text.contains("eta        30 s"), "{text}");
        assert!(!text.contains("difficulty"), "nothing to show yet:\n{text}");
    }

    #[test]
    fn reports_acceptance_by_difficulty_and_what_the_length_limit_cost() {
        use distillery_store::difficulty::DifficultyCounts;
        let mut manifest = Manifest::new("r-1", "math", "", "0.1.0");
        manifest.counts.by_difficulty.insert(
            "Level 5".into(),
            DifficultyCounts {
                problems: 4,
                problems_accepted: 1,
                samples: 8,
                accepted: 2,
                truncated: 3,
                lost_to_length: 2,
                problems_lost_to_length: 1,
            },
        );
        manifest.counts.by_difficulty.insert(
            "Level 1".into(),
            DifficultyCounts {
                problems: 2,
                problems_accepted: 2,
                samples: 4,
                accepted: 4,
                ..Default::default()
            },
        );
        let text = report(&manifest, manifest.updated_at_ms);
        assert!(
            text.contains("length     3 sample(s) cut off by the length limit: 1 recovered, 2 rejected; 1 problem(s)"),
            "{text}"
        );
        let one = text.find("  Level 1 ").expect(&text);
        let five = text.find("  Level 5 ").expect(&text);
        assert!(one < five, "{text}");
        assert!(text[five..].starts_with("  Level 5                           4         1        8     25.0%         3      2"), "{text}");
    }

    #[test]
    fn a_running_run_that_stopped_updating_is_called_stopped() {
        let manifest = Manifest::new("r-1", "x", "", "0.1.0");
        let text = report(&manifest, manifest.updated_at_ms + 60_000);
        assert!(text.contains("stopped without finishing"), "{text}");
    }
}

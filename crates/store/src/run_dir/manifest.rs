//! The manifest: what a run is, how far it got, and what it counted.

use super::*;

/// SHA-256 (hex) of a frozen definition's text.
pub fn config_hash(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    #[default]
    Running,
    Interrupted,
    /// Every prompt was tried, but some have no durable answer (the teacher gave up on them;
    /// see failures.jsonl): a resume asks them again.
    Incomplete,
    /// Every prompt of the source is accounted for: its generations are durable, or it is
    /// quarantined with its reason.
    Completed,
    Failed,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Incomplete => "incomplete",
            Self::Completed => "completed",
            Self::Failed => "failed",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Rows in the source when known (after `limit`).
    pub prompts_total: Option<u64>,
    /// Source rows accounted for: prompts with their generations in the WAL or shards, and
    /// quarantined rows.
    pub prompts_done: u64,
    pub generations: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rejected generations by their `reject_reason`.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Lines of quarantine.jsonl.
    pub quarantined: u64,
    /// Quarantined prompts whose reason is not a `source.*` one (the teacher gave up).
    pub prompts_failed: u64,
    /// Prompts with no durable answer yet whose last attempt failed (failures.jsonl); a
    /// resume asks them again.
    pub prompts_unfinished: u64,
    /// `prompts_unfinished` by the reason of the last failure.
    pub unfinished_by_reason: BTreeMap<String, u64>,
    /// Problems, samples, acceptance and what the length limit cost, by problem difficulty
    /// (the source's level, else the teacher's pass-rate bucket; see [`crate::difficulty`]).
    pub by_difficulty: BTreeMap<String, crate::difficulty::DifficultyCounts>,
}

impl Counts {
    /// Sets the unfinished counts from the failures not made good.
    pub fn set_unfinished<'a>(&mut self, failures: impl IntoIterator<Item = &'a FailureEntry>) {
        self.prompts_unfinished = 0;
        self.unfinished_by_reason.clear();
        for failure in failures {
            self.prompts_unfinished += 1;
            *self
                .unfinished_by_reason
                .entry(failure.reason.clone())
                .or_default() += 1;
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenTotals {
    pub prompt: u64,
    pub completion: u64,
    pub reasoning: u64,
    /// Some counts were estimated from the text: a server reported no usage.
    pub estimated: bool,
}

/// One cut: the shards made from one WAL segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardInfo {
    /// The segment number; the shards are `shards/{accepted,rejected}-<index>.parquet`.
    pub index: u64,
    pub accepted_rows: u64,
    pub rejected_rows: u64,
    /// Total size of the files.
    pub bytes: u64,
    /// Paths relative to the run directory.
    pub files: Vec<String>,
    /// SHA-256 (hex) of each file as it was written, by path relative to the run directory
    /// (empty for shards listed by versions that did not record them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sha256: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub name: String,
    pub status: RunStatus,
    pub config_hash: String,
    pub distillery_version: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    #[serde(default)]
    pub counts: Counts,
    #[serde(default)]
    pub tokens: TokenTotals,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub elapsed_secs: f64,
    #[serde(default)]
    pub shards: Vec<ShardInfo>,
    /// Absolute path of the definition file the run was started (or last resumed) from;
    /// relative paths in the frozen copy resolve against its directory.
    #[serde(default)]
    pub definition_path: Option<String>,
    /// The adaptive concurrency of each teacher endpoint, as it stood at the last update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointConcurrency>,
    /// The shard of the prompt space this run covers (`--shard I/N`); `None`: all of it.
    /// Fixed when the run starts: a resume covers the same shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<distillery_spec::Shard>,
}

/// Where a teacher endpoint's adaptive concurrency settled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointConcurrency {
    pub base_url: String,
    /// The configured concurrency.
    pub concurrency: u32,
    /// Requests allowed in flight: lower than `concurrency` after the server was overloaded.
    pub limit: u32,
    /// Times the concurrency was halved this session.
    pub backoffs: u64,
}

impl Manifest {
    /// A fresh manifest for a run about to start.
    pub fn new(
        run_id: &str,
        name: &str,
        frozen_definition: &str,
        distillery_version: &str,
    ) -> Self {
        let now = now_ms();
        Self {
            run_id: run_id.to_owned(),
            name: name.to_owned(),
            status: RunStatus::Running,
            config_hash: config_hash(frozen_definition),
            distillery_version: distillery_version.to_owned(),
            created_at_ms: now,
            updated_at_ms: now,
            counts: Counts::default(),
            tokens: TokenTotals::default(),
            cost_usd: None,
            elapsed_secs: 0.0,
            shards: Vec::new(),
            definition_path: None,
            endpoints: Vec::new(),
            shard: None,
        }
    }
}

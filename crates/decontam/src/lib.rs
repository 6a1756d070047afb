//! Decontamination: which training problems overlap the benchmarks a student will be measured
//! on. Two tests, as the open R1 pipelines use them:
//!
//! - **n-gram overlap** (open-r1's rule): a problem is contaminated when it shares any run of
//!   `n` consecutive words (default 8) with a benchmark item, after normalising both (lower
//!   case, LaTeX commands and punctuation dropped, whitespace collapsed). A text shorter than `n`
//!   words is one gram of its own length, so a short benchmark item copied whole is still found.
//! - **near duplicates** (light paraphrases that break every 8-gram): the problem's content words
//!   contain most of an item's (at least `near_duplicate` of the smaller set), and the numbers of
//!   the item appear in the problem. Requiring the numbers keeps template-alike problems with
//!   other numbers, common in GSM8K, apart.
//!
//! Everything here is pure: building an [`Index`] of benchmark items and checking a text.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

/// One benchmark problem to protect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchmarkItem {
    /// `gsm8k`, `math500`, `aime24`, `humaneval`, or a file's name.
    pub benchmark: String,
    /// The item's id in its benchmark (its id field, else its row number).
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Words per n-gram.
    pub ngram: usize,
    /// Share of the smaller set of content words two texts must have in common to be near
    /// duplicates; `None` turns the near-duplicate check off.
    pub near_duplicate: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ngram: 8,
            near_duplicate: Some(0.7),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// Shares an n-gram with the item.
    Ngram,
    /// A near duplicate of the item.
    NearDuplicate,
}

/// The benchmark item a text overlaps, and how.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Match {
    pub benchmark: String,
    pub item_id: String,
    pub kind: MatchKind,
    /// The shared n-gram (normalised), or the share of content words in common.
    pub evidence: String,
}

/// The benchmarks shipped in `datasets/`: name, file under the datasets directory, the field
/// holding the problem, the field holding its id.
pub const BUILTIN: &[(&str, &str, &str, &str)] = &[
    ("gsm8k", "gsm8k/test.jsonl", "question", ""),
    ("math500", "math500/test.jsonl", "problem", "unique_id"),
    ("aime24", "aime24/test.jsonl", "problem", "id"),
    (
        "humaneval",
        "humaneval/HumanEval.jsonl",
        "prompt",
        "task_id",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Row {
        path: String,
        line: usize,
        message: String,
    },
    #[error(
        "unknown benchmark `{0}`: give one of gsm8k, math500, aime24, humaneval, or FILE.jsonl:FIELD"
    )]
    Unknown(String),
}

/// The items of a benchmark given by name (`math500`, read from `datasets_dir`) or as
/// `FILE.jsonl:FIELD` (the field holding the problem; ids are row numbers or the `id` field).
pub fn load_benchmark(
    datasets_dir: &std::path::Path,
    spec: &str,
) -> Result<Vec<BenchmarkItem>, LoadError> {
    if let Some(&(name, file, field, id_field)) = BUILTIN.iter().find(|(n, ..)| *n == spec) {
        return load_jsonl(&datasets_dir.join(file), name, field, id_field);
    }
    match spec.rsplit_once(':') {
        Some((file, field)) if file.ends_with(".jsonl") => {
            let path = std::path::Path::new(file);
            let name = path
                .file_stem()
                .map_or_else(|| file.to_owned(), |s| s.to_string_lossy().into_owned());
            load_jsonl(path, &name, field, "id")
        }
        _ => Err(LoadError::Unknown(spec.to_owned())),
    }
}

fn load_jsonl(
    path: &std::path::Path,
    benchmark: &str,
    field: &str,
    id_field: &str,
) -> Result<Vec<BenchmarkItem>, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: shown.clone(),
        source,
    })?;
    let mut items = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row_error = |message: String| LoadError::Row {
            path: shown.clone(),
            line: index + 1,
            message,
        };
        let row: serde_json::Value =
            serde_json::from_str(line).map_err(|e| row_error(e.to_string()))?;
        let problem = row
            .get(field)
            .and_then(|v| v.as_str())
            .ok_or_else(|| row_error(format!("no text field `{field}`")))?;
        let id = match row.get(id_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => (index + 1).to_string(),
        };
        items.push(BenchmarkItem {
            benchmark: benchmark.to_owned(),
            id,
            text: problem.to_owned(),
        });
    }
    Ok(items)
}

/// Benchmark items prepared for checking many texts against them.
#[derive(Debug)]
pub struct Index {
    options: Options,
    items: Vec<BenchmarkItem>,
    /// Hash of each n-gram to the first item that has it.
    grams: HashMap<u64, u32>,
    /// Content word to the items that use it.
    postings: HashMap<String, Vec<u32>>,
    /// Each item's content words and numbers.
    profiles: Vec<Profile>,
}

#[derive(Debug, Default)]
struct Profile {
    words: HashSet<String>,
    numbers: HashSet<String>,
    /// Words in all.
    len: usize,
}

/// Words too common to say anything about which problem a text is.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "by", "with", "from", "is",
    "are", "was", "were", "be", "been", "it", "its", "this", "that", "these", "those", "he", "she",
    "they", "his", "her", "their", "them", "him", "we", "you", "i", "if", "then", "than", "as",
    "so", "what", "which", "how", "many", "much", "does", "do", "did", "has", "have", "had",
    "each", "every", "there", "into", "will", "would", "can", "could", "if", "per", "all", "some",
    "more", "less", "after", "before", "find", "compute", "let", "s", "t",
];

impl Index {
    pub fn new(items: Vec<BenchmarkItem>, options: Options) -> Index {
        let n = options.ngram.max(1);
        let mut grams = HashMap::new();
        let mut postings: HashMap<String, Vec<u32>> = HashMap::new();
        let mut profiles = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let index = index as u32;
            let words = normalize(&item.text);
            for gram in ngrams(&words, n) {
                grams.entry(gram).or_insert(index);
            }
            let profile = profile(&words);
            for word in &profile.words {
                postings.entry(word.clone()).or_default().push(index);
            }
            profiles.push(profile);
        }
        Index {
            options,
            items,
            grams,
            postings,
            profiles,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many items each benchmark contributed.
    pub fn benchmarks(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for item in &self.items {
            match counts.iter_mut().find(|(b, _)| *b == item.benchmark) {
                Some((_, n)) => *n += 1,
                None => counts.push((item.benchmark.clone(), 1)),
            }
        }
        counts
    }

    /// The first benchmark item `text` overlaps, if any.
    pub fn check(&self, text: &str) -> Option<Match> {
        let words = normalize(text);
        let n = self.options.ngram.max(1);
        let text_profile = profile(&words);
        // Shared grams per item, with the first one as evidence.
        let mut shared: Vec<(u32, usize, std::ops::Range<usize>)> = Vec::new();
        for (gram, range) in ngrams_with_span(&words, n) {
            if let Some(&index) = self.grams.get(&gram) {
                match shared.iter_mut().find(|(i, ..)| *i == index) {
                    Some((_, hits, _)) => *hits += 1,
                    None => shared.push((index, 1, range)),
                }
            }
        }
        // One stock phrase in common ("how much money will she have left over") is not a copy:
        // a shared run of n + 2 words, or any shared n-gram together with the item's numbers
        // (or all of a short item), is.
        let convincing = shared
            .into_iter()
            .filter(|(index, hits, _)| {
                let item = &self.profiles[*index as usize];
                let numbers_kept =
                    !item.numbers.is_empty() && item.numbers.is_subset(&text_profile.numbers);
                *hits >= 3 || numbers_kept || item.len <= n + 2
            })
            .max_by_key(|(_, hits, _)| *hits);
        if let Some((index, _, range)) = convincing {
            let item = &self.items[index as usize];
            return Some(Match {
                benchmark: item.benchmark.clone(),
                item_id: item.id.clone(),
                kind: MatchKind::Ngram,
                evidence: words[range].join(" "),
            });
        }
        let threshold = self.options.near_duplicate?;
        self.near_duplicate(&text_profile, threshold)
    }

    fn near_duplicate(&self, text: &Profile, threshold: f64) -> Option<Match> {
        // Candidates: items sharing distinctive words with the text.
        let common = (self.items.len() / 20).max(50);
        let mut shared: HashMap<u32, usize> = HashMap::new();
        for word in &text.words {
            if let Some(items) = self.postings.get(word)
                && items.len() <= common
            {
                for &item in items {
                    *shared.entry(item).or_default() += 1;
                }
            }
        }
        let mut best: Option<(f64, u32)> = None;
        for (&index, &hits) in &shared {
            if hits < 3 {
                continue;
            }
            let item = &self.profiles[index as usize];
            let smaller = text.words.len().min(item.words.len());
            if smaller < 4 {
                continue;
            }
            let overlap = text.words.intersection(&item.words).count() as f64 / smaller as f64;
            let numbers_kept = item.numbers.is_empty()
                || item.numbers.intersection(&text.numbers).count() * 5 >= item.numbers.len() * 4;
            if overlap >= threshold && numbers_kept && best.is_none_or(|(b, _)| overlap > b) {
                best = Some((overlap, index));
            }
        }
        let (overlap, index) = best?;
        let item = &self.items[index as usize];
        Some(Match {
            benchmark: item.benchmark.clone(),
            item_id: item.id.clone(),
            kind: MatchKind::NearDuplicate,
            evidence: format!("{:.0}% of content words shared", overlap * 100.0),
        })
    }
}

/// Lower-case words of `text`: LaTeX commands (`\frac`) and punctuation dropped, so the same
/// problem typed with other spacing, case or markup reads the same.
pub fn normalize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            // Skip the command's name; its arguments stay.
            while chars.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                chars.next();
            }
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn profile(words: &[String]) -> Profile {
    let mut profile = Profile {
        len: words.len(),
        ..Profile::default()
    };
    for word in words {
        if word.chars().all(|c| c.is_ascii_digit()) {
            profile.numbers.insert(word.clone());
        } else if word.chars().count() > 1 && !STOP_WORDS.contains(&word.as_str()) {
            // A crude stem: "apples" and "apple" are one word.
            let stem = word
                .strip_suffix('s')
                .filter(|s| s.len() > 2)
                .unwrap_or(word);
            profile.words.insert(stem.to_owned());
        }
    }
    profile
}

fn ngrams(words: &[String], n: usize) -> Vec<u64> {
    ngrams_with_span(words, n).map(|(g, _)| g).collect()
}

/// Hashes of every run of `n` words (or of all the words, when there are fewer than `n` but at
/// least 3, or 2 with a number: a shorter text is too generic to protect).
fn ngrams_with_span(
    words: &[String],
    n: usize,
) -> impl Iterator<Item = (u64, std::ops::Range<usize>)> + '_ {
    let spans: Vec<std::ops::Range<usize>> = if words.len() >= n {
        (0..=words.len() - n).map(|i| i..i + n).collect()
    } else if words.len() >= 3
        || (words.len() == 2 && words.iter().any(|w| w.chars().all(|c| c.is_ascii_digit())))
    {
        // "Simplify $\sqrt{242}$." reads "simplify 242": short, but the number makes it specific.
        std::iter::once(0..words.len()).collect()
    } else {
        Vec::new()
    };
    spans.into_iter().map(move |span| {
        let mut hasher = DefaultHasher::new();
        words[span.clone()].hash(&mut hasher);
        (hasher.finish(), span)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, text: &str) -> BenchmarkItem {
        BenchmarkItem {
            benchmark: "bench".into(),
            id: id.into(),
            text: text.into(),
        }
    }

    fn index() -> Index {
        Index::new(
            vec![
                item(
                    "1",
                    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
                ),
                item("2", "Compute $\\dbinom{8}{4}$."),
            ],
            Options::default(),
        )
    }

    #[test]
    fn normalisation_ignores_case_markup_and_punctuation() {
        assert_eq!(
            normalize("Compute $\\dbinom{8}{4}$.  HOW many?"),
            vec!["compute", "8", "4", "how", "many"]
        );
    }

    #[test]
    fn exact_and_reformatted_copies_share_an_ngram() {
        let index = index();
        let copy = "natalia SOLD clips to 48 of her friends in April, and then she sold half";
        let found = index.check(copy).unwrap();
        assert_eq!(
            (found.item_id.as_str(), found.kind),
            ("1", MatchKind::Ngram)
        );
        // A short item copied whole is found too.
        assert_eq!(index.check("Compute \\binom{8}{4}").unwrap().item_id, "2");
    }

    #[test]
    fn paraphrases_are_near_duplicates_but_other_numbers_are_not() {
        let index = index();
        let paraphrase = "In April Natalia sold clips to 48 friends; in May she sold half as \
                          many clips. Altogether, what number of clips did Natalia sell in April \
                          and May?";
        let found = index.check(paraphrase).unwrap();
        assert_eq!(found.kind, MatchKind::NearDuplicate, "{found:?}");
        let other_numbers = "In April Natalia sold clips to 52 friends; in May she sold a third \
                             as many clips. Altogether, what number of clips did Natalia sell?";
        assert_eq!(index.check(other_numbers), None);
        assert_eq!(index.check("Tom has 3 apples and buys 4 more."), None);
    }
}

//! String helpers shared by extraction and parsing: cleaning an answer span, finding math
//! environments and sentence ends. All byte indices returned are at ASCII characters, so slicing
//! with them never splits a UTF-8 sequence.

use std::ops::Range;

/// Trims wrappers and punctuation around an answer and undoes typographic spellings the lexer
/// should not have to know: `\$` currency, `{,}` and `\!` inside numbers, decimal commas.
pub(crate) fn clean_answer(raw: &str) -> String {
    let mut owned;
    let mut s = raw;
    if s.contains("\\$") {
        owned = s.replace("\\$", "");
        s = &owned;
    }
    let s = strip_wrappers(s);
    owned = s.to_string();
    if owned.contains('{') && owned.contains(',') {
        // `14{,}916`, `14 {, }916`: a comma braced so LaTeX adds no space after it.
        owned = braced_commas(&owned);
    }
    if owned.contains(['\u{2009}', '\u{202f}', '\u{a0}']) {
        owned = owned.replace(['\u{2009}', '\u{202f}', '\u{a0}'], " ");
    }
    if owned.contains(['\\', '~']) {
        // A thin or explicit space between digit groups: "1\,000", "898\ 638", "1~000".
        owned = thin_space_groups(&owned);
    }
    if owned.contains("\\overline{") {
        owned = repeating_decimals(&owned);
    }
    // A leading "≈" only says the value is rounded: "\approx 2.718" is the answer 2.718.
    for sign in ["\\approx", "≈", "\\sim"] {
        if let Some(rest) = owned.trim_start().strip_prefix(sign) {
            owned = rest.trim_start().to_string();
        }
    }
    if owned.contains("\\!") {
        // A negative thin space glues digit groups: "32,\! 349".
        owned = owned
            .split("\\!")
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("");
    }
    if owned.contains("\\quad") {
        owned = owned.replace("\\qquad", " ").replace("\\quad", " ");
    }
    owned
}

/// `0.\overline{6}` → `(2/3)`, `1.2\overline{34}` → `(611/495)`: a repeating decimal as the
/// fraction it is (at most 15 digits in each part; other spellings stay as written).
fn repeating_decimals(s: &str) -> String {
    const OVERLINE: &str = "\\overline{";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(OVERLINE) {
        let (before, after) = (&rest[..at], &rest[at + OVERLINE.len()..]);
        let Some(close) = after.find('}') else {
            break;
        };
        match repeating_fraction(before, &after[..close]) {
            Some((start, fraction)) => {
                out.push_str(&before[..start]);
                out.push_str(&fraction);
            }
            None => {
                out.push_str(&rest[..at + OVERLINE.len() + close + 1]);
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// For `before` ending in `W.F` and the repeating digits `R`: where `W.F` starts, and the
/// fraction.
fn repeating_fraction(before: &str, repeat: &str) -> Option<(usize, String)> {
    let digits_at_end = |t: &str| t.bytes().rev().take_while(u8::is_ascii_digit).count();
    let fraction_len = digits_at_end(before);
    let head = before[..before.len() - fraction_len].strip_suffix('.')?;
    let whole_len = digits_at_end(head);
    let (whole, fraction) = (
        &head[head.len() - whole_len..],
        &before[before.len() - fraction_len..],
    );
    let all_digits = repeat.bytes().all(|b| b.is_ascii_digit());
    if repeat.is_empty() || !all_digits || [whole, fraction, repeat].iter().any(|t| t.len() > 15) {
        return None;
    }
    let value = |t: &str| {
        if t.is_empty() {
            Some(0i128)
        } else {
            t.parse::<i128>().ok()
        }
    };
    let nines = 10i128.checked_pow(repeat.len() as u32)? - 1;
    let shift = 10i128.checked_pow(fraction.len() as u32)?;
    let numerator = value(whole)?
        .checked_mul(shift)?
        .checked_add(value(fraction)?)?
        .checked_mul(nines)?
        .checked_add(value(repeat)?)?;
    let denominator = shift.checked_mul(nines)?;
    Some((
        head.len() - whole_len,
        format!("({numerator}/{denominator})"),
    ))
}

fn braced_commas(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('{') {
        let inner = &rest[at + 1..];
        let close = inner.find('}');
        match close {
            Some(c) if inner[..c].trim() == "," => {
                out.push_str(rest[..at].trim_end());
                out.push(',');
                rest = inner[c + 1..].trim_start();
            }
            _ => {
                out.push_str(&rest[..=at]);
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    out
}

fn thin_space_groups(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let space = ["\\,", "\\ ", "~"]
            .into_iter()
            .find(|sp| s[i..].starts_with(sp))
            .map_or(0, str::len);
        if space > 0
            && i > 0
            && b[i - 1].is_ascii_digit()
            && b.len() >= i + space + 3
            && b[i + space..i + space + 3].iter().all(u8::is_ascii_digit)
            && !b.get(i + space + 3).is_some_and(u8::is_ascii_digit)
        {
            i += space;
            continue;
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

const PREFIXES: &[&str] = &["**", "\\\"", "\"", "“", "$$", "$", "\\[", "\\(", ":"];
const SUFFIXES: &[&str] = &[
    "**", "\\\"", "\"", "”", "$$", "$", "\\]", "\\)", ".", ",", ";", ":",
];

fn strip_wrappers(mut s: &str) -> &str {
    loop {
        let before = s.len();
        s = s.trim();
        for p in PREFIXES {
            if let Some(rest) = s.strip_prefix(p) {
                s = rest.trim_start();
            }
        }
        for p in SUFFIXES {
            if let Some(rest) = s.strip_suffix(p) {
                s = rest.trim_end();
            }
        }
        if s.len() == before {
            return s;
        }
    }
}

/// The number of "386.96 USD", "9\text{ L}", "71\,\mathrm{m}", "82 m", "12 €": units and
/// currency after a number are not part of the answer, and are never converted.
pub(crate) fn strip_unit(s: &str) -> Option<String> {
    const SINGLE_LETTER_UNITS: &[&str] = &[
        "m", "g", "s", "L", "l", "h", "t", "K", "V", "W", "J", "N", "A",
    ];
    const NOT_UNITS: &[&str] = &[
        "pi",
        "percent",
        "pct",
        "percentage",
        "i",
        "e",
        "x",
        "y",
        "z",
        "n",
    ];
    let s = s.trim();
    let number_len = s
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_digit()
                || (*i == 0 && matches!(c, '-' | '+'))
                || matches!(c, '.' | ',' | ' ')
        })
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    let number = s[..number_len].trim_end_matches(['.', ',', ' ']);
    if !number.ends_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut unit = s[number.len()..].trim_start();
    for space in ["\\,", "\\;", "\\:", "\\ ", "\\!", "~"] {
        unit = unit.strip_prefix(space).unwrap_or(unit).trim_start();
    }
    for wrapper in [
        "\\text{",
        "\\mathrm{",
        "\\mbox{",
        "\\textrm{",
        "\\operatorname{",
    ] {
        if let Some(inner) = unit.strip_prefix(wrapper).and_then(|u| u.strip_suffix('}')) {
            unit = inner.trim();
        }
    }
    let spaced = s[number.len()..].starts_with([' ', '\\', '~']);
    // Letters, "/" and "." ("km/h", "sq. ft"), and powers ("m^2", "m²").
    let unit_chars = unit
        .replace("^2", "")
        .replace("^3", "")
        .replace("^{2}", "")
        .replace("^{3}", "");
    let word = unit_chars
        .chars()
        .all(|c| c.is_alphabetic() || matches!(c, ' ' | '/' | '.' | '²' | '³'))
        && unit.starts_with(char::is_alphabetic);
    let currency = matches!(unit, "€" | "£" | "¥" | "₹" | "$" | "\\euro" | "\\pounds");
    let single_letter = unit.chars().count() == 1;
    let is_unit = currency
        || (word
            && !NOT_UNITS.contains(&unit.to_ascii_lowercase().as_str())
            && (!single_letter || (spaced && SINGLE_LETTER_UNITS.contains(&unit))));
    is_unit.then(|| number.to_string())
}

/// The decimal reading of "9,34" or "1,2", which could also be a list: callers try both.
/// "1,234" is left alone: the lexer reads it as a thousand-separated integer.
pub(crate) fn decimal_comma(s: &str) -> Option<String> {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = unsigned.split_once(',')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    // "1,234" is a thousands group, but no group starts with a zero: "0,111" is 0.111.
    if !digits(int) || !digits(frac) || (int.len() <= 3 && frac.len() == 3 && int != "0") {
        return None;
    }
    Some(s.replacen(',', ".", 1))
}

/// The spelling-insensitive form used for a quick "same text" test: no whitespace, spacing
/// commands or `$`, `\dfrac`/`\tfrac` as `\frac`, and `\text{…}`-style wrappers replaced by their
/// content. One linear pass, whatever the input.
pub(crate) fn text_fingerprint(cleaned: &str) -> String {
    const WRAPPERS: [&str; 4] = ["\\text{", "\\textbf{", "\\mathrm{", "\\mbox{"];
    const DROPPED: [&str; 9] = [
        "\\left",
        "\\right",
        "\\displaystyle",
        "\\,",
        "\\;",
        "\\:",
        "\\ ",
        "$",
        "\\!",
    ];
    let mut out = String::with_capacity(cleaned.len());
    // For each open brace: whether it opened a wrapper (so its closing brace is dropped too).
    let mut braces: Vec<bool> = Vec::new();
    let mut rest = cleaned;
    while let Some(c) = rest.chars().next() {
        if let Some(w) = WRAPPERS.iter().find(|w| rest.starts_with(**w)) {
            braces.push(true);
            rest = &rest[w.len()..];
            continue;
        }
        if let Some(d) = DROPPED.iter().find(|d| rest.starts_with(**d)) {
            rest = &rest[d.len()..];
            continue;
        }
        if let Some(after) = rest
            .strip_prefix("\\dfrac")
            .or_else(|| rest.strip_prefix("\\tfrac"))
        {
            out.push_str("\\frac");
            rest = after;
            continue;
        }
        match c {
            '{' => braces.push(false),
            '}' if braces.pop() == Some(true) => {
                rest = &rest[1..];
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Case-insensitive ASCII search for `needle` ending at or before `end`, last match first.
pub(crate) fn rfind_ci(hay: &str, needle: &str, end: usize) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let end = end.min(h.len());
    if n.len() > end {
        return None;
    }
    (0..=end - n.len())
        .rev()
        .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

pub(crate) fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// A math environment: where it starts and its content (delimiters excluded).
#[derive(Debug, Clone)]
pub(crate) struct MathEnv {
    pub start: usize,
    pub content: Range<usize>,
    pub end: usize,
}

/// `$…$` and `\(…\)` (single line), `$$…$$` and `\[…\]`, in order of appearance.
pub(crate) fn math_envs(text: &str) -> Vec<MathEnv> {
    let b = text.as_bytes();
    let mut envs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let (open, close, inline): (&str, &str, bool) = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'(')) => ("\\(", "\\)", true),
            (b'\\', Some(b'[')) => ("\\[", "\\]", false),
            (b'\\', Some(_)) => {
                i += 2;
                continue;
            }
            (b'$', Some(b'$')) => ("$$", "$$", false),
            (b'$', _) => ("$", "$", true),
            _ => {
                i += 1;
                continue;
            }
        };
        let from = i + open.len();
        match find_unescaped(text, close, from) {
            Some(to) if !(inline && text[from..to].contains('\n')) => {
                envs.push(MathEnv {
                    start: i,
                    content: from..to,
                    end: to + close.len(),
                });
                i = to + close.len();
            }
            // An unmatched or multi-line inline opener is prose (often a currency sign).
            _ => i += open.len(),
        }
    }
    envs
}

fn find_unescaped(text: &str, pat: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(rel) = text.get(at..)?.find(pat) {
        let pos = at + rel;
        if pat.starts_with('$') && pos > 0 && text.as_bytes()[pos - 1] == b'\\' {
            at = pos + 1;
            continue;
        }
        return Some(pos);
    }
    None
}

/// Spans opened by `\(` or `\[` up to their closer (or the end), whatever their line breaks:
/// numbers inside a broken formula are not answers.
pub(crate) fn latex_regions(text: &str) -> Vec<Range<usize>> {
    let mut regions = Vec::new();
    let mut at = 0;
    while let Some(rel) = text[at..].find('\\') {
        let pos = at + rel;
        let closer = match text.as_bytes().get(pos + 1) {
            Some(b'(') => "\\)",
            Some(b'[') => "\\]",
            _ => {
                at = pos + 1;
                continue;
            }
        };
        let end = text[pos + 2..]
            .find(closer)
            .map_or(text.len(), |r| pos + 2 + r + 2);
        regions.push(pos..end);
        at = end.max(pos + 2);
    }
    regions
}

/// End of the sentence starting at `s[0]`: a newline or a sentence-ending period outside math,
/// or "I hope" (the Minerva "Final Answer: … I hope it is correct." template).
pub(crate) fn sentence_end(s: &str) -> usize {
    const MAX_SPAN: usize = 2000;
    let b = s.as_bytes();
    let mut i = 0;
    let mut dollars = 0u8;
    let mut latex_math = false;
    let mut braces = 0usize;
    while i < b.len() && i < MAX_SPAN {
        let in_math = dollars > 0 || latex_math;
        match b[i] {
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'(' | b'[') => latex_math = true,
                    Some(b')' | b']') => latex_math = false,
                    _ => {}
                }
                i += 2;
                continue;
            }
            b'$' => {
                if b.get(i + 1) == Some(&b'$') {
                    dollars = if dollars == 2 { 0 } else { 2 };
                    i += 2;
                    continue;
                }
                dollars = if dollars == 1 { 0 } else { 1 };
            }
            b'{' => braces += 1,
            b'}' => braces = braces.saturating_sub(1),
            b'\n' if !latex_math && dollars != 2 => return i,
            b'.' if !in_math
                && braces == 0
                && b.get(i + 1).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                return i;
            }
            b'I' if !in_math && s[i..].starts_with("I hope") => return i,
            _ => {}
        }
        i += 1;
    }
    i.min(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean_answer(" $\\frac{1}{3}.$ "), "\\frac{1}{3}");
        assert_eq!(clean_answer("\\[\\frac{1}{3}.\\]"), "\\frac{1}{3}");
        assert_eq!(clean_answer("\\$16386.17"), "16386.17");
        assert_eq!(clean_answer("32,\\! 349"), "32,349");
        assert_eq!(clean_answer("14{,}916"), "14,916");
        assert_eq!(decimal_comma("9,34").as_deref(), Some("9.34"));
        assert_eq!(decimal_comma("-1,2").as_deref(), Some("-1.2"));
        assert_eq!(decimal_comma("1,234"), None);
        assert_eq!(clean_answer("**62**"), "62");
        assert_eq!(clean_answer("\\\"$12 $ and $13 $\\\""), "12 $ and $13");
    }

    #[test]
    fn fingerprints() {
        assert_eq!(text_fingerprint("\\text{odd}"), "odd");
        assert_eq!(
            text_fingerprint("\\left( \\dfrac{1}{2}, x \\right)"),
            "(\\frac{1}{2},x)"
        );
        assert_eq!(text_fingerprint("15\\mbox{ cm}^2"), "15cm^2");
        assert_eq!(text_fingerprint("{a}\\text{b}"), "{a}b");
    }

    #[test]
    fn environments() {
        let text = "cost 5 dollars, so $x$ and $$ \n 9 \n $$ but \\( \n 9 \n \\)";
        let contents: Vec<&str> = math_envs(text)
            .iter()
            .map(|e| &text[e.content.clone()])
            .collect();
        assert_eq!(contents, vec!["x", " \n 9 \n "]);
        assert_eq!(latex_regions(text).len(), 1);
        let currency = "costs $11, and more\nthen $5";
        assert_eq!(math_envs(currency).len(), 0);
    }

    #[test]
    fn sentences() {
        let s = "is $28 \\%$. I hope it is correct.";
        assert_eq!(&s[..sentence_end(s)], "is $28 \\%$");
        assert_eq!(sentence_end("0.5 of it"), 9);
        let s = "Jane started 3 hours ago. I hope";
        assert_eq!(&s[..sentence_end(s)], "Jane started 3 hours ago");
    }
}

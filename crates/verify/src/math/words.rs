//! English number words: "twenty", "seventy-five", "minus twenty-eight", "one hundred and five".

/// The integer spelled by `text`, which may be followed by unit words ("fourteen dollars").
pub(crate) fn parse_number_words(text: &str) -> Option<i128> {
    let mut negative = false;
    let mut total: i128 = 0;
    let mut current: i128 = 0;
    let mut seen_number = false;
    for word in text
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty())
    {
        let word = word.trim_end_matches(['.', ',', '!']).to_ascii_lowercase();
        match word.as_str() {
            "minus" | "negative" if !seen_number && !negative => negative = true,
            "and" if seen_number => {}
            "hundred" if seen_number => current = current.max(1).checked_mul(100)?,
            "thousand" | "million" | "billion" if seen_number => {
                let scale = match word.as_str() {
                    "thousand" => 1_000,
                    "million" => 1_000_000,
                    _ => 1_000_000_000,
                };
                total = total.checked_add(current.max(1).checked_mul(scale)?)?;
                current = 0;
            }
            w => match small_number(w) {
                Some(n) => {
                    current = current.checked_add(n)?;
                    seen_number = true;
                }
                // Words after the number are units; words before it mean this is prose.
                None if seen_number => break,
                None => return None,
            },
        }
    }
    if !seen_number {
        return None;
    }
    let value = total.checked_add(current)?;
    Some(if negative { -value } else { value })
}

fn small_number(word: &str) -> Option<i128> {
    const UNITS: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if let Some(i) = UNITS.iter().position(|w| *w == word) {
        return Some(i as i128);
    }
    TENS.iter()
        .position(|w| *w == word)
        .map(|i| (i as i128 + 2) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_numbers() {
        assert_eq!(parse_number_words("twenty"), Some(20));
        assert_eq!(parse_number_words("seventy-five"), Some(75));
        assert_eq!(parse_number_words("minus twenty-eight"), Some(-28));
        assert_eq!(parse_number_words("one hundred and five"), Some(105));
        assert_eq!(parse_number_words("three thousand two hundred"), Some(3200));
        assert_eq!(parse_number_words("fourteen dollars"), Some(14));
        assert_eq!(parse_number_words("the twenty"), None);
        assert_eq!(parse_number_words("and"), None);
    }
}

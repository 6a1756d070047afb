//! Tokens of a final answer written in LaTeX or plain text.
//!
//! The lexer settles everything that needs to look at raw characters: thousands separators
//! (`1,000`, `1 000`), mixed numbers (`4 4/9`), degree signs, `\text{…}` groups (units, `and`,
//! words), and which letter runs are words rather than products of variables.

use super::ParseError;

/// Longest answer the parser accepts; anything longer is compared as text only.
pub(crate) const MAX_ANSWER_BYTES: usize = 4096;
const MAX_TOKENS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Log,
    Exp,
    Floor,
    Ceil,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Const {
    Pi,
    E,
    Infinity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Approx,
    In,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BigOp {
    Sum,
    Prod,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Digits with an optional fraction; separators already removed.
    Num(Box<str>),
    /// `whole numerator/denominator`, e.g. `4 4/9`.
    Mixed(Box<str>, Box<str>, Box<str>),
    Sym(Box<str>),
    Func(Func),
    Const(Const),
    Frac,
    Binom,
    Sqrt,
    BigOp(BigOp),
    /// An English word (never a product of variables); only allowed as a trailing unit.
    Word,
    /// `\text{…}` content that is neither a separator nor a symbol.
    Text(Box<str>),
    Plus,
    Minus,
    PlusMinus,
    Star,
    Slash,
    Caret,
    Underscore,
    Bang,
    Percent,
    LParen,
    RParen,
    LBrack,
    RBrack,
    LBrace,
    RBrace,
    LSet,
    RSet,
    Bar,
    LFloor,
    RFloor,
    LCeil,
    RCeil,
    Comma,
    Semi,
    /// `a:b`, a ratio.
    Colon,
    And,
    Or,
    Rel(RelOp),
    Cup,
    MatBegin,
    MatEnd,
    Amp,
    RowSep,
    EmptySet,
}

pub(crate) fn lex(s: &str) -> Result<Vec<Tok>, ParseError> {
    if s.len() > MAX_ANSWER_BYTES {
        return Err(ParseError::TooLong);
    }
    let mut lexer = Lexer {
        s,
        b: s.as_bytes(),
        i: 0,
        out: Vec::new(),
        depth: 0,
    };
    lexer.run()?;
    Ok(lexer.out)
}

struct Lexer<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    out: Vec<Tok>,
    /// Bracket depth, so `1,000` is a thousand at top level but `(1,000)` stays a pair.
    depth: usize,
}

impl Lexer<'_> {
    fn peek(&self, off: usize) -> u8 {
        self.b.get(self.i + off).copied().unwrap_or(0)
    }

    fn push(&mut self, tok: Tok) -> Result<(), ParseError> {
        if self.out.len() >= MAX_TOKENS {
            return Err(ParseError::TooLong);
        }
        match tok {
            Tok::LParen | Tok::LBrack | Tok::LSet => self.depth += 1,
            Tok::RParen | Tok::RBrack | Tok::RSet => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        self.out.push(tok);
        Ok(())
    }

    fn run(&mut self) -> Result<(), ParseError> {
        while self.i < self.b.len() {
            let c = self.b[self.i];
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | b'$' | b'~' => self.i += 1,
                b'0'..=b'9' => self.number()?,
                b'.' if self.peek(1).is_ascii_digit() => self.number()?,
                b'a'..=b'z' | b'A'..=b'Z' => self.letters()?,
                b'\\' => self.command()?,
                b'^' => self.caret()?,
                b'!' if self.peek(1) == b'=' => self.two(Tok::Rel(RelOp::Ne))?,
                b'<' if self.peek(1) == b'=' => self.two(Tok::Rel(RelOp::Le))?,
                b'>' if self.peek(1) == b'=' => self.two(Tok::Rel(RelOp::Ge))?,
                b'=' if self.peek(1) == b'=' => self.two(Tok::Rel(RelOp::Eq))?,
                b'<' if self.peek(1) == b'>' => self.two(Tok::Rel(RelOp::Ne))?,
                _ if c.is_ascii() => {
                    let tok = match c {
                        b'+' => Tok::Plus,
                        b'-' => Tok::Minus,
                        b'*' => Tok::Star,
                        b'/' => Tok::Slash,
                        b'_' => Tok::Underscore,
                        b'!' => Tok::Bang,
                        b'%' => Tok::Percent,
                        b'(' => Tok::LParen,
                        b')' => Tok::RParen,
                        b'[' => Tok::LBrack,
                        b']' => Tok::RBrack,
                        b'{' => Tok::LBrace,
                        b'}' => Tok::RBrace,
                        b'|' => Tok::Bar,
                        b',' => Tok::Comma,
                        b';' => Tok::Semi,
                        b':' => Tok::Colon,
                        b'&' => Tok::Amp,
                        b'=' => Tok::Rel(RelOp::Eq),
                        b'<' => Tok::Rel(RelOp::Lt),
                        b'>' => Tok::Rel(RelOp::Gt),
                        _ => return Err(ParseError::Unexpected),
                    };
                    self.i += 1;
                    self.push(tok)?;
                }
                _ => self.unicode()?,
            }
        }
        Ok(())
    }

    fn two(&mut self, tok: Tok) -> Result<(), ParseError> {
        self.i += 2;
        self.push(tok)
    }

    fn unicode(&mut self) -> Result<(), ParseError> {
        let Some(ch) = self.s[self.i..].chars().next() else {
            return Err(ParseError::Unexpected);
        };
        self.i += ch.len_utf8();
        let tok = match ch {
            '×' | '·' | '⋅' | '∙' => Tok::Star,
            '÷' | '∕' => Tok::Slash,
            '−' | '–' | '—' => Tok::Minus,
            '≤' | '⩽' => Tok::Rel(RelOp::Le),
            '≥' | '⩾' => Tok::Rel(RelOp::Ge),
            '≠' => Tok::Rel(RelOp::Ne),
            '≈' => Tok::Rel(RelOp::Approx),
            '∈' => Tok::Rel(RelOp::In),
            '±' => Tok::PlusMinus,
            '√' => Tok::Sqrt,
            'π' => Tok::Const(Const::Pi),
            '∞' => Tok::Const(Const::Infinity),
            '∪' => Tok::Cup,
            '∅' => Tok::EmptySet,
            '⌊' => Tok::LFloor,
            '⌋' => Tok::RFloor,
            '⌈' => Tok::LCeil,
            '⌉' => Tok::RCeil,
            '⟨' => Tok::LParen,
            '⟩' => Tok::RParen,
            '²' | '³' => {
                self.push(Tok::Caret)?;
                Tok::Num(if ch == '²' { "2" } else { "3" }.into())
            }
            '°' => {
                self.skip_degree_scale();
                return Ok(());
            }
            '€' | '£' | '¥' | '₹' | '\u{a0}' | '\u{2009}' | '\u{202f}' | '\u{3000}' => {
                return Ok(());
            }
            c if ('\u{391}'..='\u{3c9}').contains(&c) => Tok::Sym(c.to_string().into()),
            c if c.is_alphabetic() => Tok::Word,
            _ => return Err(ParseError::Unexpected),
        };
        self.push(tok)
    }

    /// After a degree sign, `C` or `F` names the scale, not a variable.
    fn skip_degree_scale(&mut self) {
        let mut j = self.i;
        while self.b.get(j) == Some(&b' ') {
            j += 1;
        }
        if matches!(self.b.get(j), Some(b'C' | b'F'))
            && !self.b.get(j + 1).is_some_and(u8::is_ascii_alphabetic)
        {
            self.i = j + 1;
        }
    }

    fn caret(&mut self) -> Result<(), ParseError> {
        // `^\circ`, `^{\circ}` are degree signs: the value is the number before them.
        let rest = &self.s[self.i + 1..];
        let trimmed = rest.trim_start();
        for pattern in [
            "\\circ",
            "{\\circ}",
            "{ \\circ }",
            "{\\circ }",
            "{ \\circ}",
            "\\degree",
        ] {
            if let Some(after) = trimmed.strip_prefix(pattern)
                && !after.starts_with(|c: char| c.is_ascii_alphabetic() && pattern.ends_with('c'))
            {
                self.i = self.s.len() - after.len();
                self.skip_degree_scale();
                return Ok(());
            }
        }
        self.i += 1;
        self.push(Tok::Caret)
    }

    fn number(&mut self) -> Result<(), ParseError> {
        let scan = scan_number(self.b, self.i, self.depth == 0, self.mixed_allowed());
        self.i = scan.end;
        self.push(scan.tok)
    }

    /// A mixed number only starts where a new term may start: `(11) 4/9` and `11/10 4/9` are not.
    fn mixed_allowed(&self) -> bool {
        match self.out.last() {
            None => true,
            Some(tok) => matches!(
                tok,
                Tok::Plus
                    | Tok::Minus
                    | Tok::PlusMinus
                    | Tok::LParen
                    | Tok::LBrack
                    | Tok::LBrace
                    | Tok::LSet
                    | Tok::Comma
                    | Tok::Semi
                    | Tok::And
                    | Tok::Or
                    | Tok::Rel(_)
            ),
        }
    }

    fn letters(&mut self) -> Result<(), ParseError> {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_alphabetic() {
            self.i += 1;
        }
        let run = &self.s[start..self.i];
        // A capitalised English word ("Because", "Answer") is a word, not B·e·c·a·u·s·e.
        if run.len() >= 3
            && run.as_bytes()[0].is_ascii_uppercase()
            && run[1..].bytes().all(|b| b.is_ascii_lowercase())
        {
            return self.push(Tok::Word);
        }
        // Split mixed-case runs (`orW`) at case changes, then classify each piece.
        let mut piece_start = 0;
        let bytes = run.as_bytes();
        for k in 1..=bytes.len() {
            if k == bytes.len()
                || bytes[k].is_ascii_uppercase() != bytes[k - 1].is_ascii_uppercase()
            {
                self.letter_piece(&run[piece_start..k])?;
                piece_start = k;
            }
        }
        // `x2` is a name, not x·2 (nobody writes 2x that way).
        if self.peek(0).is_ascii_digit()
            && let Some(Tok::Sym(name)) = self.out.last_mut()
        {
            let digits = self.b[self.i..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            *name = format!("{name}{}", &self.s[self.i..self.i + digits]).into();
            self.i += digits;
        }
        Ok(())
    }

    fn letter_piece(&mut self, piece: &str) -> Result<(), ParseError> {
        if piece.as_bytes()[0].is_ascii_uppercase() {
            // Upper-case runs name points and segments: AB is A·B, which is as good as any.
            for ch in piece.chars() {
                self.push(Tok::Sym(ch.to_string().into()))?;
            }
            return Ok(());
        }
        if let Some(tok) = word_token(piece) {
            return match tok {
                WordTok::Skip => Ok(()),
                WordTok::Tok(tok) => self.push(tok),
            };
        }
        if piece.len() > 3 {
            return self.push(Tok::Word);
        }
        if piece == "e" {
            return self.push(Tok::Const(Const::E));
        }
        for ch in piece.chars() {
            self.push(Tok::Sym(ch.to_string().into()))?;
        }
        Ok(())
    }

    fn command(&mut self) -> Result<(), ParseError> {
        let next = self.peek(1);
        if next == b'\\' {
            // `\\` is a matrix row break, unless it is a doubled escape of a known command
            // (`\\frac`), which appears in answers that went through one JSON escape too many.
            let name = letters_at(self.b, self.i + 2);
            if !name.is_empty() && is_known_command(name) {
                self.i += 1;
                return self.command();
            }
            self.i += 2;
            return self.push(Tok::RowSep);
        }
        if !next.is_ascii_alphabetic() {
            self.i += 2;
            return match next {
                b'{' => self.push(Tok::LSet),
                b'}' => self.push(Tok::RSet),
                b'%' => self.push(Tok::Percent),
                b'|' => self.push(Tok::Bar),
                b',' | b';' | b':' | b'!' | b' ' | b'$' | b'\n' | b'\t' => Ok(()),
                _ => Err(ParseError::Unexpected),
            };
        }
        let name = letters_at(self.b, self.i + 1);
        self.i += 1 + name.len();
        let tok = match name {
            "frac" | "dfrac" | "tfrac" | "cfrac" => Tok::Frac,
            "sqrt" => Tok::Sqrt,
            "left" | "right" => {
                if self.peek(0) == b'.' {
                    self.i += 1;
                }
                return Ok(());
            }
            "boxed" | "fbox" | "displaystyle" | "textstyle" | "limits" | "quad" | "qquad"
            | "circ" | "degree" | "overline" | "vec" | "hat" | "bar" | "mathstrut" | "rm"
            | "bf" => return Ok(()),
            "cdot" | "times" | "ast" => Tok::Star,
            "div" => Tok::Slash,
            "pm" | "mp" => Tok::PlusMinus,
            "le" | "leq" | "leqslant" => Tok::Rel(RelOp::Le),
            "ge" | "geq" | "geqslant" => Tok::Rel(RelOp::Ge),
            "ne" | "neq" => Tok::Rel(RelOp::Ne),
            "lt" => Tok::Rel(RelOp::Lt),
            "gt" => Tok::Rel(RelOp::Gt),
            "approx" | "simeq" | "thickapprox" => Tok::Rel(RelOp::Approx),
            "in" => Tok::Rel(RelOp::In),
            "cup" => Tok::Cup,
            "lfloor" => Tok::LFloor,
            "rfloor" => Tok::RFloor,
            "lceil" => Tok::LCeil,
            "rceil" => Tok::RCeil,
            "lvert" | "rvert" | "vert" => Tok::Bar,
            "lbrace" => Tok::LSet,
            "rbrace" => Tok::RSet,
            // Vectors ⟨1, 2⟩ compare like tuples.
            "langle" => Tok::LParen,
            "rangle" => Tok::RParen,
            "infty" | "infin" => Tok::Const(Const::Infinity),
            "pi" => Tok::Const(Const::Pi),
            "emptyset" | "varnothing" => Tok::EmptySet,
            "binom" | "dbinom" | "tbinom" => Tok::Binom,
            "sum" => Tok::BigOp(BigOp::Sum),
            "prod" => Tok::BigOp(BigOp::Prod),
            "text" | "textbf" | "textit" | "textrm" | "textnormal" | "mbox" | "mathrm"
            | "mathbf" | "mathit" | "mathsf" | "operatorname" | "mathbb" | "mathcal" => {
                return self.text_group();
            }
            "begin" => return self.environment(true),
            "end" => return self.environment(false),
            _ => {
                if let Some(f) = func_named(name) {
                    Tok::Func(f)
                } else if is_greek(name) {
                    Tok::Sym(format!("\\{name}").into())
                } else {
                    return Err(ParseError::UnknownCommand);
                }
            }
        };
        self.push(tok)
    }

    /// Reads a `{…}` group's raw content (brace-matched), leaving `i` after it.
    fn raw_group(&mut self) -> Result<&str, ParseError> {
        while self.peek(0) == b' ' {
            self.i += 1;
        }
        if self.peek(0) != b'{' {
            return Err(ParseError::Unexpected);
        }
        let start = self.i + 1;
        let end = matching_brace(self.b, self.i).ok_or(ParseError::Unexpected)?;
        self.i = end + 1;
        Ok(&self.s[start..end])
    }

    fn text_group(&mut self) -> Result<(), ParseError> {
        let content = self.raw_group()?.trim();
        let lower = content.to_ascii_lowercase();
        let tok = match lower.as_str() {
            "" => return Ok(()),
            "and" | "," | ", and" => Tok::And,
            "or" | ", or" => Tok::Or,
            "%" | "\\%" | "percent" | "percentage" | "pct" => Tok::Percent,
            "e" => Tok::Const(Const::E),
            _ if content.len() == 1 && content.as_bytes()[0].is_ascii_alphabetic() => {
                Tok::Sym(content.into())
            }
            _ if content.bytes().all(|b| b.is_ascii_digit()) => Tok::Num(content.into()),
            _ => match func_named(&lower) {
                Some(f) => Tok::Func(f),
                None => Tok::Text(content.into()),
            },
        };
        let is_text = matches!(tok, Tok::Text(_));
        self.push(tok)?;
        if is_text {
            self.absorb_unit_power();
        }
        Ok(())
    }

    /// `\text{ cm}^2` is one unit: drop the power together with the unit.
    fn absorb_unit_power(&mut self) {
        if self.peek(0) != b'^' {
            return;
        }
        let after = &self.b[self.i + 1..];
        let skip = match after {
            [d, ..] if d.is_ascii_digit() => 1,
            [b'{', d, b'}', ..] if d.is_ascii_digit() => 3,
            _ => 0,
        };
        if skip > 0 {
            self.i += 1 + skip;
        }
    }

    fn environment(&mut self, begin: bool) -> Result<(), ParseError> {
        let name = self.raw_group()?.trim();
        let is_matrix = name.ends_with("matrix") || name == "array";
        if !is_matrix {
            return Err(ParseError::Unsupported);
        }
        if begin && name == "array" {
            // Column spec: `\begin{array}{cc}`.
            let _ = self.raw_group();
        }
        self.push(if begin { Tok::MatBegin } else { Tok::MatEnd })
    }
}

enum WordTok {
    Skip,
    Tok(Tok),
}

/// Lower-case words with a meaning of their own in answers.
fn word_token(word: &str) -> Option<WordTok> {
    let tok = match word {
        "and" => Tok::And,
        "or" => Tok::Or,
        "pi" => Tok::Const(Const::Pi),
        "inf" | "infty" | "infinity" => Tok::Const(Const::Infinity),
        "sqrt" => Tok::Sqrt,
        "pct" | "percent" | "percentage" => Tok::Percent,
        "deg" | "degree" | "degrees" => return Some(WordTok::Skip),
        _ => {
            if let Some(f) = func_named(word) {
                Tok::Func(f)
            } else if STOP_WORDS.contains(&word) {
                Tok::Word
            } else {
                return None;
            }
        }
    };
    Some(WordTok::Tok(tok))
}

/// Short words that must not become products of variables (`is` ≠ i·s). Longer runs are words
/// anyway and single letters are always variables; these are the two- and three-letter words
/// that show up around answers.
const STOP_WORDS: &[&str] = &[
    "an", "am", "are", "as", "at", "be", "by", "cm", "do", "for", "ft", "got", "has", "hr", "hrs",
    "in", "is", "it", "its", "kg", "km", "lb", "lbs", "mg", "mi", "min", "ml", "mm", "no", "not",
    "of", "on", "oz", "pcs", "per", "sec", "so", "the", "to", "usd", "was", "we", "yd", "yes",
    "you", "all", "any", "but", "can", "one", "two", "six", "ten", "day", "yr", "yrs", "km", "mph",
    "kph", "hz",
];

fn func_named(name: &str) -> Option<Func> {
    Some(match name {
        "sin" => Func::Sin,
        "cos" => Func::Cos,
        "tan" => Func::Tan,
        "cot" => Func::Cot,
        "sec" => Func::Sec,
        "csc" => Func::Csc,
        "arcsin" | "asin" => Func::Asin,
        "arccos" | "acos" => Func::Acos,
        "arctan" | "atan" => Func::Atan,
        "sinh" => Func::Sinh,
        "cosh" => Func::Cosh,
        "tanh" => Func::Tanh,
        "ln" => Func::Ln,
        "log" => Func::Log,
        "exp" => Func::Exp,
        _ => return None,
    })
}

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

fn is_greek(name: &str) -> bool {
    GREEK.contains(&name)
}

fn is_known_command(name: &str) -> bool {
    matches!(
        name,
        "frac"
            | "dfrac"
            | "tfrac"
            | "sqrt"
            | "left"
            | "right"
            | "boxed"
            | "text"
            | "textbf"
            | "mathrm"
            | "mbox"
            | "cdot"
            | "times"
            | "pm"
            | "le"
            | "leq"
            | "ge"
            | "geq"
            | "ne"
            | "neq"
            | "infty"
            | "pi"
            | "in"
            | "cup"
            | "begin"
            | "end"
            | "circ"
            | "quad"
            | "qquad"
    ) || func_named(name).is_some()
        || is_greek(name)
}

fn letters_at(b: &[u8], start: usize) -> &str {
    let end = b[start.min(b.len())..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .count()
        + start.min(b.len());
    // ASCII letters only, so the slice is valid UTF-8.
    std::str::from_utf8(&b[start.min(b.len())..end]).unwrap_or("")
}

/// Index of the `}` matching the `{` at `open`, skipping escaped braces. Linear, no recursion.
pub(crate) fn matching_brace(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

pub(crate) struct NumberScan {
    pub end: usize,
    pub tok: Tok,
}

/// Scans a number starting at `start` (a digit, or `.` before a digit).
///
/// `grouping`: whether `1,000` may be read as a thousand (not inside brackets, where the comma
/// separates coordinates). `mixed`: whether `4 4/9` may be read as a mixed number here.
pub(crate) fn scan_number(b: &[u8], start: usize, grouping: bool, mixed: bool) -> NumberScan {
    let digits_from = |i: usize| {
        b[i.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut int_digits = String::new();
    let mut i = start;
    let n = digits_from(i);
    int_digits.push_str(std::str::from_utf8(&b[i..i + n]).unwrap_or(""));
    i += n;

    let mut grouped = false;
    if (1..=3).contains(&n) {
        for sep in [b',', b' '] {
            if !(grouping || sep == b' ') {
                continue;
            }
            let mut j = i;
            while b.get(j) == Some(&sep)
                && digits_from(j + 1) == 3
                && !matches!(b.get(j + 4), Some(b'/'))
            {
                int_digits.push_str(std::str::from_utf8(&b[j + 1..j + 4]).unwrap_or(""));
                j += 4;
            }
            if j > i {
                i = j;
                grouped = true;
                break;
            }
        }
    }

    // Dots grouping thousands, "175.760.000": two or more regular groups cannot be a decimal.
    if grouping && !grouped && (1..=3).contains(&n) {
        let mut j = i;
        let mut groups = 0;
        while b.get(j) == Some(&b'.') && digits_from(j + 1) == 3 {
            j += 4;
            groups += 1;
        }
        if groups >= 2 {
            for g in 0..groups {
                let from = i + 1 + 4 * g;
                int_digits.push_str(std::str::from_utf8(&b[from..from + 3]).unwrap_or(""));
            }
            i = j;
            grouped = true;
        }
    }

    let mut text = if int_digits.is_empty() {
        "0".to_string()
    } else {
        int_digits
    };
    let mut decimal = false;
    if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        let f = digits_from(i + 1);
        text.push('.');
        text.push_str(std::str::from_utf8(&b[i + 1..i + 1 + f]).unwrap_or(""));
        i += 1 + f;
        decimal = true;
    }

    // Scientific notation: 1.2e3, 6.02E-23. Only with digits after the `e`, so `2e` stays 2·e.
    let exp_digits_at = |j: usize| match b.get(j) {
        Some(b'+' | b'-') => (digits_from(j + 1) > 0).then_some(j + 1),
        Some(d) if d.is_ascii_digit() => Some(j),
        _ => None,
    };
    if matches!(b.get(i), Some(b'e' | b'E'))
        && let Some(from) = exp_digits_at(i + 1)
        && !b
            .get(from + digits_from(from))
            .is_some_and(u8::is_ascii_alphabetic)
    {
        let len = digits_from(from);
        let negative = b[i + 1] == b'-';
        let exponent = std::str::from_utf8(&b[from..from + len])
            .ok()
            .and_then(|e| e.parse::<i32>().ok());
        let end = from + len;
        let text = exponent
            .and_then(|e| shift_decimal(&text, if negative { -e } else { e }))
            .unwrap_or_else(|| "e".into());
        return NumberScan {
            end,
            tok: Tok::Num(text.into()),
        };
    }

    if mixed && !grouped && !decimal && n > 0 {
        let mut j = i;
        while matches!(b.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        let num_len = digits_from(j);
        if j > i && num_len > 0 && b.get(j + num_len) == Some(&b'/') {
            let den_start = j + num_len + 1;
            let den_len = digits_from(den_start);
            let end = den_start + den_len;
            if den_len > 0 && !matches!(b.get(end), Some(b'.' | b'^' | b'/')) {
                let part = |from: usize, len: usize| -> Box<str> {
                    std::str::from_utf8(&b[from..from + len])
                        .unwrap_or("")
                        .into()
                };
                return NumberScan {
                    end,
                    tok: Tok::Mixed(text.into(), part(j, num_len), part(den_start, den_len)),
                };
            }
        }
    }
    NumberScan {
        end: i,
        tok: Tok::Num(text.into()),
    }
}

/// `digits[.digits]` times 10^exp, as plain decimal text; `None` when absurdly long.
fn shift_decimal(text: &str, exp: i32) -> Option<String> {
    if exp.unsigned_abs() > 60 {
        return None;
    }
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = format!("{int}{frac}");
    let point = int.len() as i32 + exp;
    Some(if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).expect("lexes")
    }

    #[test]
    fn thousands_and_mixed_numbers() {
        assert_eq!(toks("1,000.99"), vec![Tok::Num("1000.99".into())]);
        assert_eq!(toks("1 000"), vec![Tok::Num("1000".into())]);
        assert_eq!(
            toks("4 4/9"),
            vec![Tok::Mixed("4".into(), "4".into(), "9".into())]
        );
        assert_eq!(toks("(1,000)")[1], Tok::Num("1".into()));
        // After a closing bracket a new mixed number cannot start.
        assert!(!toks("(11) 4/9").iter().any(|t| matches!(t, Tok::Mixed(..))));
        assert_eq!(toks("11\n5/6")[0], Tok::Num("11".into()));
        assert_eq!(
            toks("6.02e23"),
            vec![Tok::Num("602000000000000000000000".into())]
        );
        assert_eq!(toks("1.5E-3"), vec![Tok::Num("0.0015".into())]);
        assert_eq!(toks("2e")[1], Tok::Const(Const::E));
        assert_eq!(toks("x2"), vec![Tok::Sym("x2".into())]);
    }

    #[test]
    fn words_units_and_commands() {
        assert_eq!(toks("x"), vec![Tok::Sym("x".into())]);
        assert_eq!(toks("Because"), vec![Tok::Word]);
        assert_eq!(toks("W(x)=1orW(x)=-1")[6], Tok::Or);
        assert_eq!(
            toks("15\\mbox{ cm}^2"),
            vec![Tok::Num("15".into()), Tok::Text("cm".into())]
        );
        assert_eq!(toks("90^\\circ"), vec![Tok::Num("90".into())]);
        assert_eq!(toks("\\\\frac"), vec![Tok::Frac]);
        assert_eq!(toks("1 \\\\ 2")[1], Tok::RowSep);
        assert!(lex("\\bigl(").is_err());
    }
}

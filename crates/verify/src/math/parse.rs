//! Recursive-descent parser from tokens to an answer tree.
//!
//! One tree type covers everything an answer can be: scalar expressions, tuples and intervals,
//! sets, unions, matrices, relations (`x = 5`, `-2 \le x \le 7`), lists (`1, 2 and 3`) and text.
//! Recursion is bounded by [`MAX_DEPTH`], so `\frac` nested a thousand deep is an error, not a
//! stack overflow.

use super::ParseError;
use super::lex::{BigOp, Const, Func, RelOp, Tok, lex};
use super::number::{Literal, Rational};

const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bracket {
    Round,
    Square,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Num(Literal),
    Sym(Box<str>),
    /// `x_1`, `a_{n-1}`: evaluated as an opaque function of the index.
    Indexed(Box<str>, Box<Node>),
    Const(Const),
    Neg(Box<Node>),
    Add(Box<Node>, Box<Node>),
    Sub(Box<Node>, Box<Node>),
    Mul(Box<Node>, Box<Node>),
    Div(Box<Node>, Box<Node>),
    Pow(Box<Node>, Box<Node>),
    /// `a ± b`, or `± b` when there is no left side.
    PlusMinus(Option<Box<Node>>, Box<Node>),
    Func(Func, Box<Node>),
    LogBase(Box<Node>, Box<Node>),
    Root(Box<Node>, Box<Node>),
    /// `f(x)`: an unknown function applied to arguments.
    Call(Box<str>, Vec<Node>),
    Abs(Box<Node>),
    Factorial(Box<Node>),
    Binomial(Box<Node>, Box<Node>),
    Percent(Box<Node>),
    BigOp {
        op: BigOp,
        var: Box<str>,
        lo: Box<Node>,
        hi: Box<Node>,
        body: Box<Node>,
    },
    Tuple {
        open: Bracket,
        close: Bracket,
        items: Vec<Node>,
    },
    Set(Vec<Node>),
    Union(Vec<Node>),
    Matrix(Vec<Vec<Node>>),
    Relation {
        ops: Vec<RelOp>,
        sides: Vec<Node>,
    },
    List(Vec<Node>),
    Text(Box<str>),
    EmptySet,
}

/// "p=5,q=2; p=7,q=2": semicolons separate solutions whose commas separate assignments; each
/// solution is the tuple of its values, `(5, 2), (7, 2)`. Groups that are not all assignments
/// stay lists.
fn solution_groups(items: Vec<Node>, semicolons: &[usize]) -> Node {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        group.push(item);
        if semicolons.contains(&index) {
            groups.push(std::mem::take(&mut group));
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    let assigned_value = |node: &Node| match node {
        Node::Relation { ops, sides } if ops.as_slice() == [RelOp::Eq] => match sides.as_slice() {
            [Node::Sym(_) | Node::Indexed(..), value] => Some(value.clone()),
            _ => None,
        },
        _ => None,
    };
    Node::List(
        groups
            .into_iter()
            .map(|group| {
                let values: Option<Vec<Node>> = group.iter().map(assigned_value).collect();
                match values {
                    Some(values) if values.len() > 1 => Node::Tuple {
                        open: Bracket::Round,
                        close: Bracket::Round,
                        items: values,
                    },
                    _ if group.len() == 1 => group.into_iter().next().unwrap_or(Node::EmptySet),
                    _ => Node::List(group),
                }
            })
            .collect(),
    )
}

pub(crate) fn parse_tokens(text: &str) -> Result<Node, ParseError> {
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut parser = Parser {
        toks: tokens,
        pos: 0,
        depth: 0,
    };
    let node = parser.list(&[])?;
    if parser.pos != parser.toks.len() {
        return Err(ParseError::Unexpected);
    }
    Ok(node)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

fn boxed(node: Node) -> Box<Node> {
    Box::new(node)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), ParseError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(ParseError::Unexpected)
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(ParseError::TooDeep)
        } else {
            Ok(())
        }
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn at_separator(&self, top: bool) -> bool {
        match self.peek() {
            Some(Tok::Comma | Tok::Semi) => true,
            Some(Tok::And | Tok::Or) => top,
            _ => false,
        }
    }

    /// Items separated by commas/semicolons (and `and`/`or` at top level) until one of `closers`
    /// or the end. Returns the single item itself, or a `List`.
    fn list(&mut self, closers: &[Tok]) -> Result<Node, ParseError> {
        let mut semicolons = Vec::new();
        let items = self.items_split(closers, &mut semicolons)?;
        if closers.is_empty() && !semicolons.is_empty() && semicolons.len() + 1 < items.len() {
            return Ok(solution_groups(items, &semicolons));
        }
        Ok(if items.len() == 1 {
            items.into_iter().next().ok_or(ParseError::Empty)?
        } else {
            Node::List(items)
        })
    }

    fn items(&mut self, closers: &[Tok]) -> Result<Vec<Node>, ParseError> {
        self.items_split(closers, &mut Vec::new())
    }

    /// Items, and after which of them a semicolon came.
    fn items_split(
        &mut self,
        closers: &[Tok],
        semicolons: &mut Vec<usize>,
    ) -> Result<Vec<Node>, ParseError> {
        let top = closers.is_empty();
        let mut items = Vec::new();
        loop {
            items.push(self.item(closers)?);
            if !self.at_separator(top) {
                break;
            }
            if self.peek() == Some(&Tok::Semi) {
                semicolons.push(items.len() - 1);
            }
            // ", and" / ", or" is one separator.
            while self.at_separator(top) {
                self.pos += 1;
            }
        }
        Ok(items)
    }

    fn at_item_end(&self, closers: &[Tok]) -> bool {
        match self.peek() {
            None => true,
            Some(tok) => closers.contains(tok) || self.at_separator(closers.is_empty()),
        }
    }

    fn item(&mut self, closers: &[Tok]) -> Result<Node, ParseError> {
        if let Some(Tok::Text(text)) = self.peek() {
            let text = text.clone();
            self.pos += 1;
            if self.at_item_end(closers) {
                return Ok(Node::Text(text));
            }
            return Err(ParseError::Unexpected);
        }
        let node = self.relation()?;
        // Trailing words are units: "18 cards", "15 \text{ cm}^2", "0.5 of the pizza".
        let start = self.pos;
        while matches!(self.peek(), Some(Tok::Word | Tok::Text(_))) {
            self.pos += 1;
        }
        if self.pos > start && !self.at_item_end(closers) {
            return Err(ParseError::Unexpected);
        }
        Ok(node)
    }

    fn relation(&mut self) -> Result<Node, ParseError> {
        let first = self.ratio()?;
        let mut ops = Vec::new();
        let mut sides = vec![first];
        while let Some(Tok::Rel(op)) = self.peek() {
            let op = *op;
            self.pos += 1;
            ops.push(op);
            sides.push(self.ratio()?);
        }
        Ok(if ops.is_empty() {
            sides.pop().ok_or(ParseError::Empty)?
        } else {
            Node::Relation { ops, sides }
        })
    }

    /// `11:21`, `V_1:V_2`: a ratio, kept as the ordered terms of an opaque `ratio(…)`, so it
    /// equals only the same terms in the same order.
    fn ratio(&mut self) -> Result<Node, ParseError> {
        let first = self.union()?;
        if self.peek() != Some(&Tok::Colon) {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.eat(&Tok::Colon) {
            terms.push(self.union()?);
        }
        Ok(Node::Call("ratio".into(), terms))
    }

    fn union(&mut self) -> Result<Node, ParseError> {
        let first = self.sum()?;
        if self.peek() != Some(&Tok::Cup) {
            return Ok(first);
        }
        let mut parts = vec![first];
        while self.eat(&Tok::Cup) {
            parts.push(self.sum()?);
        }
        Ok(Node::Union(parts))
    }

    fn sum(&mut self) -> Result<Node, ParseError> {
        let mut left = self.term()?;
        loop {
            left = match self.peek() {
                Some(Tok::Plus) => {
                    self.pos += 1;
                    Node::Add(boxed(left), boxed(self.term()?))
                }
                Some(Tok::Minus) => {
                    self.pos += 1;
                    Node::Sub(boxed(left), boxed(self.term()?))
                }
                Some(Tok::PlusMinus) => {
                    self.pos += 1;
                    Node::PlusMinus(Some(boxed(left)), boxed(self.term()?))
                }
                _ => return Ok(left),
            };
        }
    }

    fn term(&mut self) -> Result<Node, ParseError> {
        let mut left = self.unary()?;
        loop {
            left = match self.peek() {
                Some(Tok::Star) => {
                    self.pos += 1;
                    Node::Mul(boxed(left), boxed(self.unary()?))
                }
                Some(Tok::Slash) => {
                    self.pos += 1;
                    Node::Div(boxed(left), boxed(self.unary()?))
                }
                Some(tok) if starts_operand(tok) => {
                    // Two bare numbers side by side ("4 4/9 2", "11\n5/6") are not a product.
                    if matches!(tok, Tok::Num(_) | Tok::Mixed(..)) && ends_in_number(&left) {
                        return Err(ParseError::Unexpected);
                    }
                    let is_frac = *tok == Tok::Frac;
                    let right = self.power()?;
                    if is_frac && let Some(mixed) = latex_mixed_number(&left, &right) {
                        mixed
                    } else {
                        Node::Mul(boxed(left), boxed(right))
                    }
                }
                _ => return Ok(left),
            };
        }
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        self.enter()?;
        let node = match self.peek() {
            Some(Tok::Minus) => {
                self.pos += 1;
                Node::Neg(boxed(self.unary()?))
            }
            Some(Tok::Plus) => {
                self.pos += 1;
                self.unary()?
            }
            Some(Tok::PlusMinus) => {
                self.pos += 1;
                Node::PlusMinus(None, boxed(self.unary()?))
            }
            _ => self.power()?,
        };
        self.leave();
        Ok(node)
    }

    fn power(&mut self) -> Result<Node, ParseError> {
        let base = self.postfix()?;
        if self.eat(&Tok::Caret) {
            let exp = self.script_arg(true)?;
            // Postfix operators after the exponent (x^2!) are rare; percent is not.
            let node = Node::Pow(boxed(base), boxed(exp));
            return Ok(if self.eat(&Tok::Percent) {
                Node::Percent(boxed(node))
            } else {
                node
            });
        }
        Ok(base)
    }

    fn postfix(&mut self) -> Result<Node, ParseError> {
        let mut node = self.primary()?;
        loop {
            node = match self.peek() {
                Some(Tok::Bang) => {
                    self.pos += 1;
                    Node::Factorial(boxed(node))
                }
                Some(Tok::Percent) => {
                    self.pos += 1;
                    Node::Percent(boxed(node))
                }
                Some(Tok::Underscore) => {
                    self.pos += 1;
                    let index = self.script_arg(false)?;
                    match node {
                        Node::Sym(name) => self.maybe_call(name, Some(index))?,
                        _ => return Err(ParseError::Unexpected),
                    }
                }
                _ => return Ok(node),
            };
        }
    }

    /// The argument of `^` or `_`: a braced group, or a single token (`x^2`, `10^-3`).
    fn script_arg(&mut self, allow_sign: bool) -> Result<Node, ParseError> {
        if self.peek() == Some(&Tok::LBrace) {
            return self.primary();
        }
        if allow_sign && self.peek() == Some(&Tok::Minus) {
            self.pos += 1;
            return Ok(Node::Neg(boxed(self.tex_arg()?)));
        }
        self.tex_arg()
    }

    /// A TeX macro argument: a braced group or exactly one token, so `\frac12` is 1/2.
    fn tex_arg(&mut self) -> Result<Node, ParseError> {
        if let Some(Tok::Num(digits)) = self.peek()
            && digits.len() > 1
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            let (first, rest) = digits.split_at(1);
            let first = Literal::parse(first).ok_or(ParseError::InvalidNumber)?;
            let rest: Box<str> = rest.into();
            self.toks[self.pos] = Tok::Num(rest);
            return Ok(Node::Num(first));
        }
        self.primary()
    }

    fn maybe_call(&mut self, name: Box<str>, index: Option<Node>) -> Result<Node, ParseError> {
        let base = match index {
            Some(index) => Node::Indexed(name.clone(), boxed(index)),
            None => Node::Sym(name.clone()),
        };
        // f(x), g(2), P(A), W(n): a function applied; x(x+1) stays a product.
        if self.peek() == Some(&Tok::LParen)
            && is_function_name(&name)
            && matches!(base, Node::Sym(_))
        {
            self.pos += 1;
            let args = self.items(&[Tok::RParen])?;
            self.expect(&Tok::RParen)?;
            return Ok(Node::Call(name, args));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        self.enter()?;
        let node = self.primary_inner();
        self.leave();
        node
    }

    fn primary_inner(&mut self) -> Result<Node, ParseError> {
        let tok = self.peek().cloned().ok_or(ParseError::Empty)?;
        self.pos += 1;
        Ok(match tok {
            Tok::Num(text) => Node::Num(Literal::parse(&text).ok_or(ParseError::InvalidNumber)?),
            Tok::Mixed(whole, num, den) => mixed_number(&whole, &num, &den)?,
            Tok::Sym(name) => self.maybe_call(name, None)?,
            Tok::Const(c) => Node::Const(c),
            Tok::Func(f) => self.function(f)?,
            Tok::Frac => {
                let num = self.tex_arg()?;
                let den = self.tex_arg()?;
                Node::Div(boxed(num), boxed(den))
            }
            Tok::Binom => {
                let n = self.tex_arg()?;
                let k = self.tex_arg()?;
                Node::Binomial(boxed(n), boxed(k))
            }
            Tok::Sqrt => {
                if self.eat(&Tok::LBrack) {
                    let index = self.sum()?;
                    self.expect(&Tok::RBrack)?;
                    let radicand = self.tex_arg()?;
                    Node::Root(boxed(index), boxed(radicand))
                } else {
                    let radicand = self.tex_arg()?;
                    Node::Root(boxed(Node::Num(Literal::from_int(2))), boxed(radicand))
                }
            }
            Tok::LParen | Tok::LBrack => {
                let open = if tok == Tok::LParen {
                    Bracket::Round
                } else {
                    Bracket::Square
                };
                let items = self.items(&[Tok::RParen, Tok::RBrack])?;
                let close = match self.peek() {
                    Some(Tok::RParen) => Bracket::Round,
                    Some(Tok::RBrack) => Bracket::Square,
                    _ => return Err(ParseError::Unexpected),
                };
                self.pos += 1;
                if items.len() == 1 && open == close {
                    items.into_iter().next().ok_or(ParseError::Empty)?
                } else if items.len() == 1 {
                    return Err(ParseError::Unexpected);
                } else {
                    Node::Tuple { open, close, items }
                }
            }
            Tok::LBrace => {
                // A bare TeX group; with commas inside it is a set written without escapes.
                let items = self.items(&[Tok::RBrace])?;
                self.expect(&Tok::RBrace)?;
                if items.len() == 1 {
                    items.into_iter().next().ok_or(ParseError::Empty)?
                } else {
                    Node::Set(items)
                }
            }
            Tok::LSet => {
                if self.eat(&Tok::RSet) {
                    return Ok(Node::EmptySet);
                }
                let items = self.items(&[Tok::RSet])?;
                self.expect(&Tok::RSet)?;
                Node::Set(items)
            }
            Tok::LFloor | Tok::LCeil => {
                let (func, close) = if tok == Tok::LFloor {
                    (Func::Floor, Tok::RFloor)
                } else {
                    (Func::Ceil, Tok::RCeil)
                };
                let inner = self.sum()?;
                self.expect(&close)?;
                Node::Func(func, boxed(inner))
            }
            Tok::Bar => {
                let inner = self.sum()?;
                self.expect(&Tok::Bar)?;
                Node::Abs(boxed(inner))
            }
            Tok::MatBegin => self.matrix()?,
            Tok::BigOp(op) => self.big_op(op)?,
            Tok::EmptySet => Node::EmptySet,
            _ => return Err(ParseError::Unexpected),
        })
    }

    fn function(&mut self, f: Func) -> Result<Node, ParseError> {
        // \log_2 x, \sin^2 x
        let base = if self.eat(&Tok::Underscore) {
            Some(self.script_arg(false)?)
        } else {
            None
        };
        let power = if self.eat(&Tok::Caret) {
            Some(self.script_arg(true)?)
        } else {
            None
        };
        let arg = match self.peek() {
            Some(Tok::LParen | Tok::LBrace) => self.primary()?,
            _ => self.power()?,
        };
        // \sin^{-1} x is arcsin x, not 1/sin x.
        let is_inverse = matches!(&power, Some(Node::Neg(one)) if **one == Node::int(1));
        let (f, power) = match (f, is_inverse) {
            (Func::Sin, true) => (Func::Asin, None),
            (Func::Cos, true) => (Func::Acos, None),
            (Func::Tan, true) => (Func::Atan, None),
            _ => (f, power),
        };
        let applied = match base {
            Some(base) if f == Func::Log => Node::LogBase(boxed(base), boxed(arg)),
            Some(_) => return Err(ParseError::Unexpected),
            None => Node::Func(f, boxed(arg)),
        };
        Ok(match power {
            Some(p) => Node::Pow(boxed(applied), boxed(p)),
            None => applied,
        })
    }

    fn matrix(&mut self) -> Result<Node, ParseError> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::MatEnd) => {
                    self.pos += 1;
                    break;
                }
                Some(Tok::RowSep) => {
                    self.pos += 1;
                    rows.push(std::mem::take(&mut row));
                }
                Some(Tok::Amp) => {
                    self.pos += 1;
                }
                Some(_) => row.push(self.sum()?),
                None => return Err(ParseError::Unexpected),
            }
        }
        rows.push(row);
        rows.retain(|r| !r.is_empty());
        let width = rows.first().map_or(0, Vec::len);
        if width == 0 || rows.iter().any(|r| r.len() != width) {
            return Err(ParseError::Unexpected);
        }
        Ok(Node::Matrix(rows))
    }

    fn big_op(&mut self, op: BigOp) -> Result<Node, ParseError> {
        // \sum_{k=0}^{n} body
        self.expect(&Tok::Underscore)?;
        self.expect(&Tok::LBrace)?;
        let Some(Tok::Sym(var)) = self.peek().cloned() else {
            return Err(ParseError::Unsupported);
        };
        self.pos += 1;
        self.expect(&Tok::Rel(RelOp::Eq))?;
        let lo = self.sum()?;
        self.expect(&Tok::RBrace)?;
        self.expect(&Tok::Caret)?;
        let hi = self.script_arg(true)?;
        let body = self.term()?;
        Ok(Node::BigOp {
            op,
            var,
            lo: boxed(lo),
            hi: boxed(hi),
            body: boxed(body),
        })
    }
}

/// Tokens that can begin the right operand of an implicit product (`2x`, `3\pi`, `x(x+1)`).
fn starts_operand(tok: &Tok) -> bool {
    matches!(
        tok,
        Tok::Num(_)
            | Tok::Mixed(..)
            | Tok::Sym(_)
            | Tok::Const(_)
            | Tok::Func(_)
            | Tok::Frac
            | Tok::Binom
            | Tok::Sqrt
            | Tok::LParen
            | Tok::LBrace
            | Tok::MatBegin
            | Tok::BigOp(_)
    )
}

fn ends_in_number(node: &Node) -> bool {
    match node {
        Node::Num(_) => true,
        Node::Neg(inner) => ends_in_number(inner),
        Node::Mul(_, right) | Node::Div(_, right) => ends_in_number(right),
        // A mixed number is parsed to Add(whole, Div(..)).
        Node::Add(left, right) => {
            matches!(**left, Node::Num(_)) && matches!(**right, Node::Div(..))
        }
        _ => false,
    }
}

/// `2\frac{1}{2}` is two and a half when the fraction is a proper one of integers.
fn latex_mixed_number(whole: &Node, frac: &Node) -> Option<Node> {
    let integer = |n: &Node| matches!(n, Node::Num(lit) if lit.decimals.is_none());
    let (negative, whole) = match whole {
        Node::Neg(inner) => (true, &**inner),
        other => (false, other),
    };
    let Node::Div(num, den) = frac else {
        return None;
    };
    if !(integer(whole) && integer(num) && integer(den)) {
        return None;
    }
    let (Node::Num(n), Node::Num(d)) = (&**num, &**den) else {
        return None;
    };
    let proper = n.exact?.cmp_value(d.exact?)? == std::cmp::Ordering::Less && !d.exact?.is_zero();
    if !proper {
        return None;
    }
    let mixed = Node::Add(boxed(whole.clone()), boxed(frac.clone()));
    Some(if negative {
        Node::Neg(boxed(mixed))
    } else {
        mixed
    })
}

fn is_function_name(name: &str) -> bool {
    matches!(name, "f" | "g" | "h" | "p" | "q")
        || name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
}

/// `4 4/9` is 40/9, but only when the fraction is proper: `11 6/6` and `4 0/0` are not numbers.
fn mixed_number(whole: &str, num: &str, den: &str) -> Result<Node, ParseError> {
    let whole = Literal::parse(whole).ok_or(ParseError::InvalidNumber)?;
    let num = Literal::parse(num).ok_or(ParseError::InvalidNumber)?;
    let den = Literal::parse(den).ok_or(ParseError::InvalidNumber)?;
    let proper = match (num.exact, den.exact) {
        (Some(n), Some(d)) => !d.is_zero() && n.cmp_value(d) == Some(std::cmp::Ordering::Less),
        _ => false,
    };
    if !proper {
        return Err(ParseError::InvalidNumber);
    }
    Ok(Node::Add(
        boxed(Node::Num(whole)),
        boxed(Node::Div(boxed(Node::Num(num)), boxed(Node::Num(den)))),
    ))
}

impl Node {
    pub(crate) fn int(n: i128) -> Node {
        Node::Num(Literal::from_int(n))
    }

    pub(crate) fn rational(r: Rational) -> Node {
        let num = Node::int(r.num().abs());
        let value = if r.is_integer() {
            num
        } else {
            Node::Div(boxed(num), boxed(Node::int(r.den())))
        };
        if r.num() < 0 {
            Node::Neg(boxed(value))
        } else {
            value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Node {
        parse_tokens(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn structures() {
        assert!(matches!(
            parse("(1, 2)"),
            Node::Tuple {
                open: Bracket::Round,
                close: Bracket::Round,
                ..
            }
        ));
        assert!(matches!(
            parse("[0,1)"),
            Node::Tuple {
                open: Bracket::Square,
                close: Bracket::Round,
                ..
            }
        ));
        assert!(matches!(parse("\\{1,2\\}"), Node::Set(_)));
        assert!(matches!(parse("{1,2,3}"), Node::Set(_)));
        assert!(matches!(parse("1 and 2 and 3"), Node::List(v) if v.len() == 3));
        assert!(matches!(parse("19, 46, and 82"), Node::List(v) if v.len() == 3));
        assert!(matches!(parse("-2 \\le x \\le 7"), Node::Relation { ops, .. } if ops.len() == 2));
        assert!(matches!(parse("(1,2) \\cup (3, \\infty)"), Node::Union(_)));
        assert!(
            matches!(parse("\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}"), Node::Matrix(r) if r.len() == 2)
        );
        assert!(matches!(parse("f(x)"), Node::Call(..)));
        assert!(matches!(parse("x(x+1)"), Node::Mul(..)));
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        for bad in [
            "4 0/0",
            "11 6/6",
            "4 4/9 2",
            "11\n5/6",
            "Because B",
            "\\frac{1}{",
            "((1)",
        ] {
            assert!(parse_tokens(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "\\frac{".repeat(200) + "1" + &"}{2}".repeat(200);
        assert_eq!(parse_tokens(&deep), Err(ParseError::TooDeep));
        let parens = "(".repeat(3000) + &")".repeat(3000);
        assert!(parse_tokens(&parens).is_err());
    }
}

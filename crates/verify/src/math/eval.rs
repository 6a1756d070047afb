//! Evaluation of scalar expressions: exactly (rationals) where possible, and approximately at
//! pseudo-random points so symbolic identities can be tested without a computer algebra system.

use super::lex::{BigOp, Const, Func};
use super::number::Rational;
use super::parse::Node;

/// Sums and products with more terms than this are not expanded.
const MAX_BIG_OP_TERMS: f64 = 1000.0;

/// The exact value of a constant expression, if it is rational and fits in `i128`.
pub(crate) fn exact(node: &Node) -> Option<Rational> {
    match node {
        Node::Num(lit) => lit.exact,
        Node::Neg(x) => Some(exact(x)?.neg()),
        Node::Add(a, b) => exact(a)?.add(exact(b)?),
        Node::Sub(a, b) => exact(a)?.sub(exact(b)?),
        Node::Mul(a, b) => exact(a)?.mul(exact(b)?),
        Node::Div(a, b) => exact(a)?.div(exact(b)?),
        Node::Pow(base, exp) => {
            let exp = exact(exp)?;
            if !exp.is_integer() {
                return None;
            }
            exact(base)?.pow(exp.num())
        }
        Node::Root(index, radicand) => {
            if exact(index)? != Rational::int(2)? {
                return None;
            }
            exact(radicand)?.sqrt()
        }
        Node::Abs(x) => Some(exact(x)?.abs()),
        Node::Func(Func::Floor, x) => exact(x)?.floor(),
        Node::Func(Func::Ceil, x) => Some(exact(x)?.neg().floor()?.neg()),
        Node::Percent(x) => exact(x)?.div(Rational::int(100)?),
        Node::Binomial(n, k) => {
            let (n, k) = (exact(n)?, exact(k)?);
            if !n.is_integer()
                || !k.is_integer()
                || k.num() < 0
                || n.num() < 0
                || k.num() > n.num()
                || n.num() > 10_000
            {
                return None;
            }
            let k = k.num().min(n.num() - k.num());
            (0..k).try_fold(Rational::ONE, |acc, i| {
                acc.mul(Rational::new(n.num() - i, i + 1)?)
            })
        }
        Node::Factorial(x) => {
            let n = exact(x)?;
            if !n.is_integer() || !(0..=33).contains(&n.num()) {
                return None;
            }
            (1..=n.num()).try_fold(Rational::ONE, |acc, k| acc.mul(Rational::int(k)?))
        }
        _ => None,
    }
}

/// Whether the expression has no free variables (so one evaluation decides it).
pub(crate) fn is_constant(node: &Node) -> bool {
    match node {
        Node::Num(_) | Node::Const(_) => true,
        Node::Sym(_) | Node::Indexed(..) | Node::Call(..) => false,
        Node::Neg(x) | Node::Func(_, x) | Node::Abs(x) | Node::Factorial(x) | Node::Percent(x) => {
            is_constant(x)
        }
        Node::Binomial(a, b) => is_constant(a) && is_constant(b),
        Node::Add(a, b)
        | Node::Sub(a, b)
        | Node::Mul(a, b)
        | Node::Div(a, b)
        | Node::Pow(a, b)
        | Node::LogBase(a, b)
        | Node::Root(a, b) => is_constant(a) && is_constant(b),
        Node::PlusMinus(a, b) => a.as_deref().is_none_or(is_constant) && is_constant(b),
        // Sums count as variable: their bound variable looks free, and testing at several
        // points costs nothing when it is not.
        _ => false,
    }
}

/// One assignment of values to free symbols, derived from a seed so both sides of a comparison
/// see the same values without collecting symbols first.
pub(crate) struct Point {
    seed: u64,
    bound: Vec<(Box<str>, f64)>,
}

impl Point {
    pub(super) fn new(index: u64) -> Self {
        Point {
            seed: splitmix(index.wrapping_add(0x5eed)),
            bound: Vec::new(),
        }
    }

    fn symbol(&self, name: &str) -> f64 {
        if let Some((_, v)) = self.bound.iter().rev().find(|(n, _)| &**n == name) {
            return *v;
        }
        // In [0.3, 2.3): positive (so roots and logs are defined) and never an integer pattern.
        let h = splitmix(self.seed ^ fnv(name));
        0.3 + 2.0 * unit(h)
    }

    /// An arbitrary but fixed smooth function, standing in for an unknown `f(x)` or `a_n`.
    fn function(&self, name: &str, args: &[f64]) -> f64 {
        let h = splitmix(self.seed ^ fnv(name) ^ 0xf00d);
        let phase = unit(h) * std::f64::consts::TAU;
        let mix: f64 = args
            .iter()
            .enumerate()
            .map(|(k, a)| a * (1.3 + 0.7 * k as f64))
            .sum();
        1.5 + (mix + phase).sin() + 0.25 * (mix * 0.37 + phase).cos()
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The approximate value at `point`; NaN where undefined or not a scalar.
pub(crate) fn approx(node: &Node, point: &mut Point) -> f64 {
    match node {
        Node::Num(lit) => lit.exact.map_or(lit.approx, Rational::to_f64),
        Node::Sym(name) => point.symbol(name),
        Node::Indexed(name, index) => {
            let i = approx(index, point);
            point.function(name, &[i])
        }
        Node::Call(name, args) => {
            let values: Vec<f64> = args.iter().map(|a| approx(a, point)).collect();
            point.function(name, &values)
        }
        Node::Const(Const::Pi) => std::f64::consts::PI,
        Node::Const(Const::E) => std::f64::consts::E,
        Node::Const(Const::Infinity) => f64::INFINITY,
        Node::Neg(x) => -approx(x, point),
        Node::Add(a, b) => approx(a, point) + approx(b, point),
        Node::Sub(a, b) => approx(a, point) - approx(b, point),
        Node::Mul(a, b) => approx(a, point) * approx(b, point),
        Node::Div(a, b) => {
            let d = approx(b, point);
            if d == 0.0 {
                f64::NAN
            } else {
                approx(a, point) / d
            }
        }
        Node::Pow(a, b) => power(approx(a, point), approx(b, point)),
        Node::Root(n, x) => {
            let (n, x) = (approx(n, point), approx(x, point));
            if n == 2.0 {
                x.sqrt()
            } else if x < 0.0 && n.fract() == 0.0 && n.rem_euclid(2.0) == 1.0 {
                -(-x).powf(1.0 / n)
            } else {
                x.powf(1.0 / n)
            }
        }
        Node::Func(f, x) => function(*f, approx(x, point)),
        Node::LogBase(base, x) => approx(x, point).ln() / approx(base, point).ln(),
        Node::Abs(x) => approx(x, point).abs(),
        Node::Percent(x) => approx(x, point) / 100.0,
        Node::Factorial(x) => factorial(approx(x, point)),
        Node::Binomial(n, k) => {
            let (n, k) = (approx(n, point), approx(k, point));
            factorial(n) / (factorial(k) * factorial(n - k))
        }
        Node::BigOp {
            op,
            var,
            lo,
            hi,
            body,
        } => big_op(*op, var, lo, hi, body, point),
        _ => f64::NAN,
    }
}

fn power(base: f64, exp: f64) -> f64 {
    // Odd roots of negatives: (-8)^(1/3) = -2 as a grader means it.
    if base < 0.0 && exp.fract() != 0.0 {
        let recip = 1.0 / exp;
        if (recip - recip.round()).abs() < 1e-9 && recip.round().rem_euclid(2.0) == 1.0 {
            return -(-base).powf(exp);
        }
    }
    base.powf(exp)
}

fn function(f: Func, x: f64) -> f64 {
    match f {
        Func::Sin => x.sin(),
        Func::Cos => x.cos(),
        Func::Tan => x.tan(),
        Func::Cot => 1.0 / x.tan(),
        Func::Sec => 1.0 / x.cos(),
        Func::Csc => 1.0 / x.sin(),
        Func::Asin => x.asin(),
        Func::Acos => x.acos(),
        Func::Atan => x.atan(),
        Func::Sinh => x.sinh(),
        Func::Cosh => x.cosh(),
        Func::Tanh => x.tanh(),
        Func::Ln | Func::Log => x.ln(),
        Func::Exp => x.exp(),
        Func::Floor => x.floor(),
        Func::Ceil => x.ceil(),
    }
}

fn factorial(x: f64) -> f64 {
    if x.fract() != 0.0 || !(0.0..=170.0).contains(&x) {
        return f64::NAN;
    }
    (1..=x as u32).map(f64::from).product()
}

fn big_op(op: BigOp, var: &str, lo: &Node, hi: &Node, body: &Node, point: &mut Point) -> f64 {
    let (lo, hi) = (approx(lo, point).round(), approx(hi, point).round());
    if !lo.is_finite() || !hi.is_finite() || hi - lo > MAX_BIG_OP_TERMS {
        return f64::NAN;
    }
    let mut acc = match op {
        BigOp::Sum => 0.0,
        BigOp::Prod => 1.0,
    };
    let mut k = lo;
    while k <= hi {
        point.bound.push((var.into(), k));
        let v = approx(body, point);
        point.bound.pop();
        match op {
            BigOp::Sum => acc += v,
            BigOp::Prod => acc *= v,
        }
        k += 1.0;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::parse::parse_tokens;

    fn node(s: &str) -> Node {
        parse_tokens(s).expect("parses")
    }

    #[test]
    fn exact_values() {
        assert_eq!(exact(&node("\\frac{3}{4}")), Rational::new(3, 4));
        assert_eq!(exact(&node("4 4/9")), Rational::new(40, 9));
        assert_eq!(exact(&node("28\\%")), Rational::new(7, 25));
        assert_eq!(exact(&node("\\sqrt{16}")), Rational::int(4));
        assert_eq!(exact(&node("\\binom{5}{2}")), Rational::int(10));
        assert_eq!(exact(&node("\\lfloor -2.5 \\rfloor")), Rational::int(-3));
        assert_eq!(exact(&node("\\lceil 7/2 \\rceil")), Rational::int(4));
        assert_eq!(exact(&node("2\\frac{1}{2}")), Rational::new(5, 2));
        assert_eq!(exact(&node("-2\\frac{1}{2}")), Rational::new(-5, 2));
        assert_eq!(exact(&node("2\\frac{3}{2}")), Rational::int(3));
        assert_eq!(exact(&node("\\sqrt{2}")), None);
        assert_eq!(exact(&node("2^{1000}")), None);
        assert_eq!(exact(&node("1/0")), None);
    }

    #[test]
    fn approximate_values_are_shared_between_sides() {
        let (a, b) = (node("(x+1)^2"), node("x^2+2x+1"));
        for i in 0..5 {
            let (va, vb) = (
                approx(&a, &mut Point::new(i)),
                approx(&b, &mut Point::new(i)),
            );
            assert!((va - vb).abs() < 1e-9, "{va} vs {vb}");
        }
        assert!((approx(&node("\\sqrt[3]{-8}"), &mut Point::new(0)) + 2.0).abs() < 1e-12);
        assert!(approx(&node("\\sum_{k=1}^{10^9} k"), &mut Point::new(0)).is_nan());
        assert_eq!(approx(&node("\\sum_{k=1}^{4} k"), &mut Point::new(0)), 10.0);
    }
}

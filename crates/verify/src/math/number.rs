//! Exact numbers: a reduced `i128` rational with checked arithmetic, and the literal as written.
//!
//! Every operation returns `None` on overflow instead of wrapping; callers then fall back to
//! `f64`, so huge inputs degrade to approximate comparison instead of panicking or lying.

use std::cmp::Ordering;

/// `num / den`, reduced, `den > 0`. Neither part is `i128::MIN`, so negation never overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Rational {
    num: i128,
    den: i128,
}

impl Rational {
    pub(super) const ONE: Rational = Rational { num: 1, den: 1 };

    pub(super) fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 || num == i128::MIN || den == i128::MIN {
            return None;
        }
        let g = gcd(num.unsigned_abs(), den.unsigned_abs());
        // g divides both and is at most |den| <= i128::MAX, so the casts are lossless.
        let g = g as i128;
        let (mut num, mut den) = (num / g, den / g);
        if den < 0 {
            num = -num;
            den = -den;
        }
        Some(Rational { num, den })
    }

    pub(super) fn int(n: i128) -> Option<Self> {
        Rational::new(n, 1)
    }

    pub(super) fn num(self) -> i128 {
        self.num
    }

    pub(super) fn den(self) -> i128 {
        self.den
    }

    pub(super) fn is_integer(self) -> bool {
        self.den == 1
    }

    pub(super) fn is_zero(self) -> bool {
        self.num == 0
    }

    pub(super) fn add(self, other: Self) -> Option<Self> {
        let g = gcd(self.den.unsigned_abs(), other.den.unsigned_abs()) as i128;
        let left = self.num.checked_mul(other.den / g)?;
        let right = other.num.checked_mul(self.den / g)?;
        Rational::new(
            left.checked_add(right)?,
            (self.den / g).checked_mul(other.den)?,
        )
    }

    pub(super) fn neg(self) -> Self {
        Rational {
            num: -self.num,
            den: self.den,
        }
    }

    pub(super) fn sub(self, other: Self) -> Option<Self> {
        self.add(other.neg())
    }

    pub(super) fn mul(self, other: Self) -> Option<Self> {
        // Cross-reduce first so products of already reduced fractions stay small.
        let g1 = gcd(self.num.unsigned_abs(), other.den.unsigned_abs()).max(1) as i128;
        let g2 = gcd(other.num.unsigned_abs(), self.den.unsigned_abs()).max(1) as i128;
        let num = (self.num / g1).checked_mul(other.num / g2)?;
        let den = (self.den / g2).checked_mul(other.den / g1)?;
        Rational::new(num, den)
    }

    pub(super) fn recip(self) -> Option<Self> {
        Rational::new(self.den, self.num)
    }

    pub(super) fn div(self, other: Self) -> Option<Self> {
        self.mul(other.recip()?)
    }

    /// Integer powers only; the exponent is capped so `2^(10^9)` is refused, not computed.
    pub(super) fn pow(self, exp: i128) -> Option<Self> {
        if exp.unsigned_abs() > 256 {
            return None;
        }
        let mut base = if exp < 0 { self.recip()? } else { self };
        let mut e = exp.unsigned_abs();
        let mut acc = Rational::ONE;
        while e > 0 {
            if e & 1 == 1 {
                acc = acc.mul(base)?;
            }
            e >>= 1;
            if e > 0 {
                base = base.mul(base)?;
            }
        }
        Some(acc)
    }

    /// The exact square root when numerator and denominator are perfect squares.
    pub(super) fn sqrt(self) -> Option<Self> {
        if self.num < 0 {
            return None;
        }
        let n = isqrt(self.num as u128)?;
        let d = isqrt(self.den as u128)?;
        Rational::new(n as i128, d as i128)
    }

    pub(super) fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    pub(super) fn floor(self) -> Option<Self> {
        Rational::int(self.num.div_euclid(self.den))
    }

    pub(super) fn abs(self) -> Self {
        Rational {
            num: self.num.abs(),
            den: self.den,
        }
    }

    pub(super) fn cmp_value(self, other: Self) -> Option<Ordering> {
        let diff = self.sub(other)?;
        Some(diff.num.cmp(&0))
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Exact integer square root, `None` when `n` is not a perfect square.
fn isqrt(n: u128) -> Option<u128> {
    let mut x = (n as f64).sqrt() as u128;
    // Correct the float estimate by a step or two either way.
    while x.checked_mul(x).is_none_or(|sq| sq > n) {
        x -= 1;
    }
    while (x + 1).checked_mul(x + 1).is_some_and(|sq| sq <= n) {
        x += 1;
    }
    (x * x == n).then_some(x)
}

/// A number as written: exact when it fits, always approximable, and with how it was written
/// (decimal places, significant digits) because "0.0833333333333333" and "1/12" should match
/// while "0.333" and "1/3" should not.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Literal {
    pub exact: Option<Rational>,
    pub approx: f64,
    /// Digits after the decimal point, `None` for an integer literal.
    pub decimals: Option<u32>,
    pub significant: u32,
    /// Canonical text (no leading zeros, no trailing fractional zeros): equal numbers too large
    /// for `i128` still compare exactly through it.
    pub key: Box<str>,
}

impl Literal {
    /// Parses `digits[.digits]` (separators already removed by the lexer).
    pub(super) fn parse(text: &str) -> Option<Self> {
        let (int_part, frac_part) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text, None),
        };
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.unwrap_or("").bytes().all(|b| b.is_ascii_digit())
            || (int_part.is_empty() && frac_part.unwrap_or("").is_empty())
        {
            return None;
        }
        let int_trim = int_part.trim_start_matches('0');
        let frac_trim = frac_part.unwrap_or("").trim_end_matches('0');
        let key: Box<str> = match (int_trim.is_empty(), frac_trim.is_empty()) {
            (true, true) => "0".into(),
            (false, true) => int_trim.into(),
            (true, false) => format!("0.{frac_trim}").into(),
            (false, false) => format!("{int_trim}.{frac_trim}").into(),
        };
        let all_digits = format!("{int_trim}{}", frac_part.unwrap_or(""));
        let significant = all_digits.trim_start_matches('0').len() as u32;
        let exact = exact_decimal(int_trim, frac_trim);
        let approx = key.parse::<f64>().unwrap_or(f64::NAN);
        Some(Literal {
            exact,
            approx,
            decimals: frac_part.map(|f| f.len() as u32),
            significant,
            key,
        })
    }

    pub(super) fn from_int(n: i128) -> Self {
        let key: Box<str> = n.unsigned_abs().to_string().into();
        Literal {
            exact: Rational::int(n),
            approx: n as f64,
            decimals: None,
            significant: key.trim_start_matches('0').len() as u32,
            key,
        }
    }
}

fn exact_decimal(int_digits: &str, frac_digits: &str) -> Option<Rational> {
    // 10^38 < i128::MAX, so at most 38 digits are attempted.
    if int_digits.len() + frac_digits.len() > 38 {
        return None;
    }
    let mantissa: i128 = format!("{int_digits}{frac_digits}0").parse::<i128>().ok()? / 10;
    let scale = 10i128.checked_pow(frac_digits.len() as u32)?;
    Rational::new(mantissa, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_exact_and_reduced() {
        let a = Rational::new(1, 3).unwrap();
        let b = Rational::new(1, 6).unwrap();
        assert_eq!(a.add(b), Rational::new(1, 2));
        assert_eq!(a.mul(b), Rational::new(1, 18));
        assert_eq!(Rational::new(4, -8), Rational::new(-1, 2));
        assert_eq!(Rational::new(9, 4).unwrap().sqrt(), Rational::new(3, 2));
        assert_eq!(Rational::new(2, 1).unwrap().sqrt(), None);
        assert_eq!(Rational::int(2).unwrap().pow(-3), Rational::new(1, 8));
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        let big = Rational::int(i128::MAX / 2).unwrap();
        assert_eq!(big.mul(big), None);
        assert_eq!(Rational::int(10).unwrap().pow(100), None);
        assert_eq!(Rational::new(1, 0), None);
        assert_eq!(Rational::new(i128::MIN, 1), None);
    }

    #[test]
    fn literals_keep_how_they_were_written() {
        let lit = Literal::parse("0012.500").unwrap();
        assert_eq!(&*lit.key, "12.5");
        assert_eq!(lit.decimals, Some(3));
        assert_eq!(lit.exact, Rational::new(25, 2));
        assert_eq!(Literal::parse(".4").unwrap().exact, Rational::new(2, 5));
        let huge = Literal::parse(&"9".repeat(60)).unwrap();
        assert_eq!(huge.exact, None);
        assert!(huge.approx > 1e59);
        assert_eq!(Literal::parse("1.2.3"), None);
    }
}

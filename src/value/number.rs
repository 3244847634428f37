//! Exact decimals: DynamoDB N strings parsed, normalised, compared and written as JSON
//! numbers, never through f64.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use super::ValueError;

/// Longest plain-notation number text; longer numbers are written in scientific notation.
const MAX_PLAIN_LEN: i128 = 48;

/// Borrowed normalised decimal: `(-1)^neg * digits(hi ++ lo) * 10^exp`, where the
/// concatenated digit string has no leading or trailing zeros (empty for zero).
#[derive(Clone, Copy)]
pub(super) struct Dec<'a> {
    neg: bool,
    hi: &'a str,
    lo: &'a str,
    exp: i64,
}

fn eat_sign(b: &[u8], i: &mut usize) -> bool {
    match b.get(*i) {
        Some(b'-') => {
            *i += 1;
            true
        }
        Some(b'+') => {
            *i += 1;
            false
        }
        _ => false,
    }
}

fn eat_digits(b: &[u8], i: &mut usize) -> usize {
    let start = *i;
    while b.get(*i).is_some_and(u8::is_ascii_digit) {
        *i += 1;
    }
    start
}

impl<'a> Dec<'a> {
    pub(super) fn parse(s: &'a str) -> Option<Self> {
        let b = s.as_bytes();
        let mut i = 0;
        let neg = eat_sign(b, &mut i);
        let start = eat_digits(b, &mut i);
        let mut hi = &s[start..i];
        let mut lo = "";
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = eat_digits(b, &mut i);
            lo = &s[start..i];
        }
        if hi.is_empty() && lo.is_empty() {
            return None;
        }
        let mut e: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let eneg = eat_sign(b, &mut i);
            let start = eat_digits(b, &mut i);
            if start == i {
                return None;
            }
            for &c in &b[start..i] {
                let d = i64::from(c - b'0');
                e = e.checked_mul(10)?.checked_add(if eneg { -d } else { d })?;
            }
        }
        if i != b.len() {
            return None;
        }
        let mut exp = e.checked_sub(i64::try_from(lo.len()).ok()?)?;
        hi = hi.trim_start_matches('0');
        if hi.is_empty() {
            lo = lo.trim_start_matches('0');
        }
        let trimmed = lo.trim_end_matches('0');
        exp = exp.checked_add(i64::try_from(lo.len() - trimmed.len()).ok()?)?;
        lo = trimmed;
        if lo.is_empty() {
            let trimmed = hi.trim_end_matches('0');
            exp = exp.checked_add(i64::try_from(hi.len() - trimmed.len()).ok()?)?;
            hi = trimmed;
        }
        if hi.is_empty() && lo.is_empty() {
            return Some(Dec {
                neg: false,
                hi,
                lo,
                exp: 0,
            });
        }
        Some(Dec { neg, hi, lo, exp })
    }

    fn len(&self) -> usize {
        self.hi.len() + self.lo.len()
    }

    fn digits(&self) -> impl Iterator<Item = u8> + 'a {
        self.hi.bytes().chain(self.lo.bytes())
    }

    /// Exponent of the leading digit (scientific notation exponent).
    fn adjusted(&self) -> i128 {
        i128::from(self.exp) + self.len() as i128 - 1
    }

    fn signum(&self) -> i8 {
        match (self.len(), self.neg) {
            (0, _) => 0,
            (_, true) => -1,
            (_, false) => 1,
        }
    }

    /// Appends digits `from..to` of the concatenated digit string.
    fn push_digits(&self, out: &mut String, from: usize, to: usize) {
        let h = self.hi.len();
        if from < h {
            out.push_str(&self.hi[from..to.min(h)]);
        }
        if to > h {
            out.push_str(&self.lo[from.max(h) - h..to - h]);
        }
    }

    pub(super) fn write(&self, out: &mut String) {
        let len = self.len();
        if len == 0 {
            out.push('0');
            return;
        }
        if self.neg {
            out.push('-');
        }
        let (n, exp) = (len as i128, i128::from(self.exp));
        let plain_len = i128::from(self.neg)
            + if exp >= 0 {
                n + exp
            } else if n > -exp {
                n + 1
            } else {
                2 - exp
            };
        if plain_len <= MAX_PLAIN_LEN {
            // All quantities below are bounded by MAX_PLAIN_LEN.
            if exp >= 0 {
                self.push_digits(out, 0, len);
                out.extend(std::iter::repeat_n('0', exp as usize));
            } else if n > -exp {
                let point = (n + exp) as usize;
                self.push_digits(out, 0, point);
                out.push('.');
                self.push_digits(out, point, len);
            } else {
                out.push_str("0.");
                out.extend(std::iter::repeat_n('0', (-exp - n) as usize));
                self.push_digits(out, 0, len);
            }
        } else {
            self.push_digits(out, 0, 1);
            if len > 1 {
                out.push('.');
                self.push_digits(out, 1, len);
            }
            let adj = self.adjusted();
            out.push_str(if adj < 0 { "E-" } else { "E+" });
            let _ = write!(out, "{}", adj.unsigned_abs());
        }
    }

    pub(super) fn cmp(&self, other: &Dec<'_>) -> Ordering {
        let (sa, sb) = (self.signum(), other.signum());
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        let mag = self
            .adjusted()
            .cmp(&other.adjusted())
            .then_with(|| self.digits().cmp(other.digits()));
        if self.neg {
            mag.reverse()
        } else {
            mag
        }
    }

    fn as_i64(&self) -> Option<i64> {
        if self.len() == 0 {
            return Some(0);
        }
        if self.exp < 0 || self.adjusted() >= 19 {
            return None;
        }
        // At most 19 integer digits: fits in i128 without overflow.
        let mut m = self
            .digits()
            .fold(0i128, |m, d| m * 10 + i128::from(d - b'0'));
        for _ in 0..self.exp {
            m *= 10;
        }
        i64::try_from(if self.neg { -m } else { m }).ok()
    }
}

/// An exact decimal parsed from a DynamoDB N string (never through f64).
///
/// value = (-1)^negative * digits * 10^exponent; `digits` has no leading or trailing
/// zeros, and zero is `digits == ""` with `negative == false` and `exponent == 0`, so
/// structural equality is numeric equality.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Number {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (at least one mantissa digit); keeps all digits.
    pub fn parse(s: &str) -> Result<Number, ValueError> {
        let d = Dec::parse(s).ok_or_else(|| ValueError::InvalidNumber(s.to_owned()))?;
        let mut digits = String::with_capacity(d.len());
        digits.push_str(d.hi);
        digits.push_str(d.lo);
        Ok(Number {
            negative: d.neg,
            digits,
            exponent: d.exp,
        })
    }

    fn dec(&self) -> Dec<'_> {
        Dec {
            neg: self.negative,
            hi: &self.digits,
            lo: "",
            exp: self.exponent,
        }
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Significant digits (empty for zero).
    pub fn digits(&self) -> &str {
        &self.digits
    }

    pub fn exponent(&self) -> i64 {
        self.exponent
    }

    /// Appends a JSON number with every significant digit: plain notation when that takes
    /// at most 48 characters, otherwise `d.dddE+x` / `dE-x`.
    pub fn write_json(&self, out: &mut String) {
        self.dec().write(out);
    }

    pub fn to_json_string(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    pub fn is_integer(&self) -> bool {
        self.exponent >= 0
    }

    /// Numeric order.
    pub fn cmp_value(&self, other: &Number) -> Ordering {
        self.dec().cmp(&other.dec())
    }

    /// `Some` only if integral and within `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.dec().as_i64()
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_value(other)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

impl std::str::FromStr for Number {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Number::parse(s)
    }
}

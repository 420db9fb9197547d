//! fio's `$`-keywords and arithmetic in option values.
//!
//! fio replaces `$pagesize`, `$mb_memory` and `$ncpus` in a value before
//! parsing it, and evaluates a value with operators (`(1+2)*4k`,
//! `$mb_memory/1024*65536`). Debian's fio 3.33 (built without fio's own
//! expression parser) hands a value with a keyword and operators to `bc`,
//! which computes in integers; this evaluator does the same (integer
//! arithmetic, `/` truncating), and also takes fio's unit suffixes on each
//! number, as upstream fio's parser does. Every failure is a typed error.

use crate::error::{Error, Result};

/// `$pagesize`, `$mb_memory`, `$ncpus` replaced by their values.
pub fn keywords(v: &str) -> String {
    if !v.contains('$') {
        return v.to_string();
    }
    // Longest names first is not needed: none is a prefix of another.
    v.replace("$pagesize", &page_size().to_string())
        .replace("$mb_memory", &mb_memory().to_string())
        .replace("$ncpus", &ncpus().to_string())
}

fn sysconf(name: libc::c_int) -> u64 {
    // SAFETY: sysconf reads a system constant; no memory is passed.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).unwrap_or(0)
}

pub fn page_size() -> u64 {
    sysconf(libc::_SC_PAGESIZE).max(1)
}

/// Physical memory in MiB (fio: `_SC_PHYS_PAGES * page size / 1 MiB`).
pub fn mb_memory() -> u64 {
    sysconf(libc::_SC_PHYS_PAGES).saturating_mul(page_size()) >> 20
}

/// Online CPUs (fio: `_SC_NPROCESSORS_ONLN`).
pub fn ncpus() -> u64 {
    sysconf(libc::_SC_NPROCESSORS_ONLN).max(1)
}

/// Evaluate an integer expression: `+ - * / %`, parentheses, numbers with
/// fio's unit suffixes (`4k`, `1m`, `0x10`).
pub fn eval(s: &str, kb_base: u64) -> Result<u64> {
    let toks = lex(s, kb_base)?;
    let mut p = Parser {
        t: &toks,
        i: 0,
        src: s,
    };
    let v = p.sum(0)?;
    if p.i != toks.len() {
        return Err(Error::msg(format!("expression '{s}': unexpected text")));
    }
    u64::try_from(v).map_err(|_| Error::msg(format!("expression '{s}' is negative or too large")))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Num(i128),
    Op(char),
}

fn lex(s: &str, kb_base: u64) -> Result<Vec<Tok>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if "+-*/%()".contains(c) {
            out.push(Tok::Op(c));
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '.' {
            let st = i;
            while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            let v = crate::options::parse_size_plain(&s[st..i], kb_base)
                .map_err(|e| Error::msg(format!("expression '{s}': {e}")))?;
            out.push(Tok::Num(i128::from(v)));
        } else {
            return Err(Error::msg(format!("expression '{s}': unexpected '{c}'")));
        }
    }
    if out.len() > 256 {
        return Err(Error::msg(format!("expression '{s}' is too long")));
    }
    Ok(out)
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
    src: &'a str,
}

const LIMIT: i128 = 1 << 100;

impl Parser<'_> {
    fn err(&self, what: &str) -> Error {
        Error::msg(format!("expression '{}': {what}", self.src))
    }
    fn check(&self, v: i128) -> Result<i128> {
        // unsigned_abs: a saturated product can be i128::MIN, whose abs()
        // overflows (found by the fio_units fuzz target).
        if v.unsigned_abs() > LIMIT.unsigned_abs() {
            Err(self.err("too large"))
        } else {
            Ok(v)
        }
    }
    fn sum(&mut self, depth: usize) -> Result<i128> {
        if depth > 32 {
            return Err(self.err("nested too deeply"));
        }
        let mut v = self.product(depth)?;
        while let Some(Tok::Op(c @ ('+' | '-'))) = self.t.get(self.i).copied() {
            self.i += 1;
            let r = self.product(depth)?;
            v = self.check(if c == '+' { v + r } else { v - r })?;
        }
        Ok(v)
    }
    fn product(&mut self, depth: usize) -> Result<i128> {
        let mut v = self.unary(depth)?;
        while let Some(Tok::Op(c @ ('*' | '/' | '%'))) = self.t.get(self.i).copied() {
            self.i += 1;
            let r = self.unary(depth)?;
            v = match c {
                '*' => self.check(v.saturating_mul(r))?,
                _ if r == 0 => return Err(self.err("division by zero")),
                '/' => v / r,
                _ => v % r,
            };
        }
        Ok(v)
    }
    fn unary(&mut self, depth: usize) -> Result<i128> {
        match self.t.get(self.i).copied() {
            Some(Tok::Op('-')) => {
                self.i += 1;
                Ok(-self.unary(depth + 1)?)
            }
            Some(Tok::Op('+')) => {
                self.i += 1;
                self.unary(depth + 1)
            }
            Some(Tok::Op('(')) => {
                self.i += 1;
                let v = self.sum(depth + 1)?;
                if self.t.get(self.i) != Some(&Tok::Op(')')) {
                    return Err(self.err("missing ')'"));
                }
                self.i += 1;
                Ok(v)
            }
            Some(Tok::Num(n)) => {
                self.i += 1;
                Ok(n)
            }
            _ => Err(self.err("expected a number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_like_fio() {
        assert_eq!(eval("(1+2)*4k", 1024).unwrap(), 12288);
        assert_eq!(eval("23/1024*65536", 1024).unwrap(), 0);
        assert_eq!(eval("24105/1024*65536", 1024).unwrap(), 23 * 65536);
        assert_eq!(eval("2*8m", 1024).unwrap(), 16 << 20);
        assert_eq!(eval("4k", 1000).unwrap(), 4000);
        for bad in [
            "(1+2",
            "1/0",
            "1+",
            "2-5",
            "((((",
            "1k*1p*1p*1p*1p*1p*1p*1p",
            "a b",
        ] {
            assert!(eval(bad, 1024).is_err(), "{bad}");
        }
        assert_eq!(keywords("$ncpus"), ncpus().to_string());
        assert_eq!(keywords("x$pagesize"), format!("x{}", page_size()));
    }

    #[test]
    fn a_saturated_product_is_too_large_not_a_panic() {
        assert!(eval("-962222*617p*61p", 1024).is_err());
        assert!(eval("-(1p*1p*1p*1p)", 1024).is_err());
    }
}

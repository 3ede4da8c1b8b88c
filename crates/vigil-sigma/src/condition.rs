//! The condition language: `sel and not (filter1 or 1 of filter_*)`.
//!
//! Precedence from loosest to tightest: `or`, `and`, `not`, `x of`,
//! parentheses (Sigma specification). Keywords are case-insensitive.
//! Selection names in `x of` may use `*` wildcards; `them` means every
//! selection whose name does not start with `_`. A legacy aggregation
//! (`sel | count() by host > 5`) is split off for the correlation engine.

use crate::glob::{self, StrMatcher};

/// A parsed condition over selection indices.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Cond {
    /// Selection `i` matches.
    Sel(usize),
    /// All hold.
    And(Vec<Cond>),
    /// Any holds.
    Or(Vec<Cond>),
    /// At least `n` of these hold (`2 of sel*`).
    AtLeast(usize, Vec<Cond>),
    /// Negation.
    Not(Box<Cond>),
}

impl Cond {
    /// Evaluates with a function giving each selection's result.
    pub fn eval(&self, sel: &mut impl FnMut(usize) -> bool) -> bool {
        match self {
            Cond::Sel(i) => sel(*i),
            Cond::And(cs) => cs.iter().all(|c| c.eval(sel)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(sel)),
            Cond::AtLeast(n, cs) => {
                let mut count = 0;
                for c in cs {
                    if c.eval(sel) {
                        count += 1;
                        if count >= *n {
                            return true;
                        }
                    }
                }
                false
            }
            Cond::Not(c) => !c.eval(sel),
        }
    }

    /// Whether every selection it names is below `n`.
    pub(crate) fn selections_below(&self, n: usize) -> bool {
        match self {
            Cond::Sel(i) => *i < n,
            Cond::And(cs) | Cond::Or(cs) | Cond::AtLeast(_, cs) => {
                cs.iter().all(|c| c.selections_below(n))
            }
            Cond::Not(c) => c.selections_below(n),
        }
    }

    /// Renumbers selections by adding `offset`.
    pub fn shift(&mut self, offset: usize) {
        match self {
            Cond::Sel(i) => *i += offset,
            Cond::And(cs) | Cond::Or(cs) | Cond::AtLeast(_, cs) => {
                cs.iter_mut().for_each(|c| c.shift(offset))
            }
            Cond::Not(c) => c.shift(offset),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Of(Quantity),
    Ident(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Quantity {
    All,
    N(usize),
}

/// Splits a condition into its boolean part and a legacy aggregation
/// (the text after `|`), if any.
pub fn split_aggregation(text: &str) -> (&str, Option<&str>) {
    match text.split_once('|') {
        Some((cond, agg)) => (cond.trim(), Some(agg.trim())),
        None => (text.trim(), None),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        match c {
            '(' | ')' => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                words.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut tokens = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let lw = w.to_ascii_lowercase();
        let next_is_of = words
            .get(i + 1)
            .is_some_and(|n| n.eq_ignore_ascii_case("of"));
        let tok = match lw.as_str() {
            "(" => Token::LParen,
            ")" => Token::RParen,
            "and" => Token::And,
            "or" => Token::Or,
            "not" => Token::Not,
            "all" if next_is_of => {
                i += 1;
                Token::Of(Quantity::All)
            }
            "any" if next_is_of => {
                i += 1;
                Token::Of(Quantity::N(1))
            }
            n if next_is_of && n.parse::<usize>().is_ok() => {
                i += 1;
                let n: usize = n.parse().expect("checked");
                if n == 0 {
                    return Err("'0 of' is not a valid quantity".into());
                }
                Token::Of(Quantity::N(n))
            }
            "of" => return Err("'of' must follow a number or 'all'".into()),
            _ => Token::Ident(w.clone()),
        };
        tokens.push(tok);
        i += 1;
    }
    Ok(tokens)
}

/// Parses a condition (without aggregation) against the selection names.
///
/// # Errors
/// Syntax errors, unknown selection names, and `x of` patterns that match
/// no selection, each with the offending word.
pub fn parse(text: &str, names: &[String]) -> Result<Cond, String> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err("condition is empty".into());
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        names,
    };
    let cond = p.or()?;
    if let Some(t) = p.tokens.get(p.pos) {
        return Err(format!("unexpected {} in condition", describe(t)));
    }
    Ok(cond)
}

fn describe(t: &Token) -> String {
    match t {
        Token::LParen => "'('".into(),
        Token::RParen => "')'".into(),
        Token::And => "'and'".into(),
        Token::Or => "'or'".into(),
        Token::Not => "'not'".into(),
        Token::Of(_) => "'of'".into(),
        Token::Ident(s) => format!("'{s}'"),
    }
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    names: &'a [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Cond::Or(items)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.not()?];
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Cond::And(items)
        })
    }

    fn not(&mut self) -> Result<Cond, String> {
        if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond, String> {
        let tok = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or("condition ends too early")?;
        self.pos += 1;
        match tok {
            Token::LParen => {
                let inner = self.or()?;
                match self.peek() {
                    Some(Token::RParen) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => Err("missing ')' in condition".into()),
                }
            }
            Token::Of(q) => {
                let target = match self.tokens.get(self.pos) {
                    Some(Token::Ident(s)) => s.clone(),
                    _ => return Err("'of' must be followed by a selection name or 'them'".into()),
                };
                self.pos += 1;
                let selected: Vec<Cond> = if target == "them" {
                    (0..self.names.len())
                        .filter(|&i| !self.names[i].starts_with('_'))
                        .map(Cond::Sel)
                        .collect()
                } else {
                    // As with `them`, identifiers starting with `_` are left
                    // out unless the pattern itself asks for them.
                    let m = StrMatcher::new(&glob::parse(&target), false);
                    let hidden_ok = target.starts_with('_');
                    (0..self.names.len())
                        .filter(|&i| m.is_match(&self.names[i]))
                        .filter(|&i| hidden_ok || !self.names[i].starts_with('_'))
                        .map(Cond::Sel)
                        .collect()
                };
                if selected.is_empty() {
                    return Err(format!("'{target}' matches no selection"));
                }
                Ok(match q {
                    Quantity::All => Cond::And(selected),
                    Quantity::N(1) => Cond::Or(selected),
                    Quantity::N(n) => Cond::AtLeast(n, selected),
                })
            }
            Token::Ident(name) => match self.names.iter().position(|n| *n == name) {
                Some(i) => Ok(Cond::Sel(i)),
                None if self.peek() == Some(&Token::LParen) => Err(format!(
                    "'{name}(…)' is not Sigma condition syntax; an aggregation goes after '|', or in a correlation rule"
                )),
                None => Err(format!("condition names '{name}', which is not a selection")),
            },
            other => Err(format!("unexpected {} in condition", describe(&other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["sel", "filter_a", "filter_b", "_hidden"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn ev(cond: &str, truth: &[bool]) -> bool {
        parse(cond, &names()).unwrap().eval(&mut |i| truth[i])
    }

    #[test]
    fn precedence() {
        // not > and > or
        assert!(ev(
            "sel or filter_a and filter_b",
            &[true, false, false, false]
        ));
        assert!(!ev(
            "(sel or filter_a) and filter_b",
            &[true, false, false, false]
        ));
        assert!(ev("not sel and filter_a", &[false, true, false, false]));
        assert!(!ev("not (sel or filter_a)", &[false, true, false, false]));
        assert!(ev(
            "sel and not 1 of filter_*",
            &[true, false, false, false]
        ));
        assert!(!ev(
            "sel and not 1 of filter_*",
            &[true, false, true, false]
        ));
        assert!(ev("all of filter_*", &[false, true, true, false]));
        assert!(ev("NOT sel AND filter_a", &[false, true, false, false]));
    }

    #[test]
    fn them_skips_underscore() {
        assert!(ev("all of them", &[true, true, true, false]));
        assert!(!ev("1 of them", &[false, false, false, true]));
        assert!(ev("2 of them", &[true, false, true, false]));
        assert!(!ev("2 of them", &[true, false, false, true]));
    }

    #[test]
    fn errors() {
        let n = names();
        assert!(parse("sel and", &n).unwrap_err().contains("too early"));
        assert!(parse("nope", &n).unwrap_err().contains("'nope'"));
        assert!(parse("1 of x*", &n)
            .unwrap_err()
            .contains("matches no selection"));
        assert!(parse("(sel", &n).unwrap_err().contains("missing ')'"));
        assert!(parse("sel sel", &n).is_err());
        assert!(parse("", &n).is_err());
    }

    #[test]
    fn aggregation_split() {
        assert_eq!(
            split_aggregation("sel | count() by host > 5"),
            ("sel", Some("count() by host > 5"))
        );
    }
}

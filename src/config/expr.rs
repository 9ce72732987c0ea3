//! `series[].expr`: PromQL that promcast evaluates on the upstream,
//! checked when the configuration loads with the rules of Prometheus's
//! parser that every PromQL dialect shares: something to evaluate, quoted
//! strings that end, brackets closed in order, label matchers of the form
//! `name op "value"`. An expression that names a synthetic series is
//! refused: the upstream would ask promcast for it, so the family's
//! history would be promcast's own answer, and its own family's a loop.
//! The rest of the grammar (functions, types) is the upstream's to judge;
//! a server asks it once at start.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::labels::METRIC_NAME;
use crate::series::is_synthetic;

/// A PromQL expression that passed the checks of this module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Expr(String);

impl std::ops::Deref for Expr {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Expr {
    type Err = ExprError;

    fn from_str(text: &str) -> Result<Self, ExprError> {
        check(&lex(text)?)?;
        Ok(Self(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ExprVisitor)
    }
}

/// Checks the expression while the YAML deserializer still knows where
/// it is, so that an error names the field and the line of the value, not
/// of the `series` entry around it.
struct ExprVisitor;

impl serde::de::Visitor<'_> for ExprVisitor {
    type Value = Expr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a PromQL expression")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Expr, E> {
        text.parse().map_err(E::custom)
    }
}

/// Where in an expression something is, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    line: usize,
    column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 1 {
            write!(f, "expression column {}", self.column)
        } else {
            write!(f, "expression line {}, column {}", self.line, self.column)
        }
    }
}

/// Why an expression was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExprError {
    #[error("must not be empty")]
    Empty,
    #[error("unexpected character {found:?} ({at})")]
    Character { found: char, at: Position },
    #[error("unterminated quoted string ({at})")]
    Unterminated { at: Position },
    #[error("unexpected {found:?} ({at})")]
    Unopened { found: char, at: Position },
    #[error("unclosed {open:?} ({at})")]
    Unclosed { open: char, at: Position },
    #[error("unexpected {found} in label matchers, expected name=\"value\" ({at})")]
    Matcher { found: String, at: Position },
    #[error(
        "names the synthetic series {name:?} ({at}), which the upstream would ask promcast for"
    )]
    Synthetic { name: String, at: Position },
}

/// Keywords whose parenthesised list holds label names, not series.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A metric, label, function or keyword name.
    Name,
    /// The content of a quoted string.
    Quoted,
    /// One of `(){}[],`.
    Bracket,
    /// `=`, `!=`, `=~` or `!~`.
    MatchOp,
    /// A number, duration or operator.
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    at: Position,
}

impl Token {
    fn is(&self, bracket: char) -> bool {
        self.kind == Kind::Bracket && self.text.starts_with(bracket)
    }

    fn describe(&self) -> String {
        match self.kind {
            Kind::Quoted => format!("string {:?}", self.text),
            _ => format!("{:?}", self.text),
        }
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Splits `text` into tokens, as Prometheus's lexer does outside its
/// grammar: comments and white space dropped, strings read to their end.
fn lex(text: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut positions = Vec::with_capacity(chars.len() + 1);
    let (mut line, mut column) = (1, 1);
    for &c in &chars {
        positions.push(Position { line, column });
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let start = i;
        let at = positions[i];
        let kind = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '#' => {
                while chars.get(i).is_some_and(|&c| c != '\n') {
                    i += 1;
                }
                continue;
            }
            '"' | '\'' | '`' => {
                let (content, end) = quoted(&chars, i).ok_or(ExprError::Unterminated { at })?;
                i = end;
                tokens.push(Token {
                    kind: Kind::Quoted,
                    text: content,
                    at,
                });
                continue;
            }
            c if is_name_start(c) => {
                while chars.get(i).copied().is_some_and(is_name_char) {
                    i += 1;
                }
                Kind::Name
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while chars
                    .get(i)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                {
                    i += 1;
                }
                Kind::Other
            }
            '(' | ')' | '{' | '}' | '[' | ']' | ',' => {
                i += 1;
                Kind::Bracket
            }
            '=' | '!' => {
                i += 1;
                match (c, chars.get(i).copied()) {
                    ('=', Some('=')) => {
                        i += 1;
                        Kind::Other
                    }
                    (_, Some('~')) | ('!', Some('=')) => {
                        i += 1;
                        Kind::MatchOp
                    }
                    ('=', _) => Kind::MatchOp,
                    _ => return Err(ExprError::Character { found: c, at }),
                }
            }
            '<' | '>' => {
                i += 1;
                if chars.get(i) == Some(&'=') {
                    i += 1;
                }
                Kind::Other
            }
            '+' | '-' | '*' | '/' | '%' | '^' | '@' => {
                i += 1;
                Kind::Other
            }
            found => return Err(ExprError::Character { found, at }),
        };
        tokens.push(Token {
            kind,
            text: chars[start..i].iter().collect(),
            at,
        });
    }
    Ok(tokens)
}

/// The content of the string whose opening quote is at `open`, and the
/// index after its closing quote; `None` when it does not end. As in
/// Prometheus, `"` and `'` strings end on their line and take backslash
/// escapes, and backquoted ones take neither.
fn quoted(chars: &[char], open: usize) -> Option<(String, usize)> {
    let quote = chars[open];
    let mut content = String::new();
    let mut i = open + 1;
    loop {
        let c = *chars.get(i)?;
        match c {
            c if c == quote => return Some((content, i + 1)),
            '\n' if quote != '`' => return None,
            '\\' if quote != '`' => {
                content.push(*chars.get(i + 1)?);
                i += 2;
                continue;
            }
            c => content.push(c),
        }
        i += 1;
    }
}

/// Checks the structure of `tokens`: brackets closed in order, label
/// matchers well formed, no synthetic series named.
fn check(tokens: &[Token]) -> Result<(), ExprError> {
    if tokens.is_empty() {
        return Err(ExprError::Empty);
    }
    // Open brackets, each with whether it lists label names.
    let mut open: Vec<(&Token, bool)> = Vec::new();
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        i += 1;
        match token.kind {
            Kind::Bracket if token.is('{') => i = label_matchers(tokens, i, token)?,
            Kind::Bracket if token.is('(') || token.is('[') => open.push((token, false)),
            Kind::Bracket if token.is(')') || token.is(']') || token.is('}') => {
                let closes =
                    |o: &Token| (o.is('(') && token.is(')')) || (o.is('[') && token.is(']'));
                if !open.pop().is_some_and(|(o, _)| closes(o)) {
                    return Err(ExprError::Unopened {
                        found: token.text.chars().next().unwrap_or(')'),
                        at: token.at,
                    });
                }
            }
            Kind::Name => match tokens.get(i) {
                Some(next) if next.is('(') => {
                    if GROUPING.iter().any(|k| token.text.eq_ignore_ascii_case(k)) {
                        open.push((next, true));
                        i += 1;
                    }
                }
                _ if open.last().is_some_and(|o| o.1) => {}
                _ => synthetic(&token.text, token.at)?,
            },
            _ => {}
        }
    }
    match open.pop() {
        Some((o, _)) => Err(ExprError::Unclosed {
            open: o.text.chars().next().unwrap_or('('),
            at: o.at,
        }),
        None => Ok(()),
    }
}

/// Checks the label matchers after the `{` at `tokens[i - 1]` up to its
/// `}`, and returns the index after that.
fn label_matchers(tokens: &[Token], mut i: usize, brace: &Token) -> Result<usize, ExprError> {
    let mut next = || {
        i += 1;
        tokens.get(i - 1).ok_or(ExprError::Unclosed {
            open: '{',
            at: brace.at,
        })
    };
    let unexpected = |t: &Token| ExprError::Matcher {
        found: t.describe(),
        at: t.at,
    };
    loop {
        let name = next()?;
        if name.is('}') {
            break;
        }
        if !matches!(name.kind, Kind::Name | Kind::Quoted) {
            return Err(unexpected(name));
        }
        let op = next()?;
        let end = if op.kind == Kind::MatchOp {
            let value = next()?;
            if value.kind != Kind::Quoted {
                return Err(unexpected(value));
            }
            if name.text == METRIC_NAME && (op.text == "=" || op.text == "=~") {
                synthetic(&value.text, value.at)?;
            }
            next()?
        } else if name.kind == Kind::Quoted {
            // A quoted metric name in the braces: `{"my.metric"}`.
            synthetic(&name.text, name.at)?;
            op
        } else {
            return Err(unexpected(op));
        };
        if end.is('}') {
            break;
        }
        if !end.is(',') {
            return Err(unexpected(end));
        }
    }
    Ok(i)
}

/// Refuses a series name (or a name regex) in the synthetic namespace.
fn synthetic(name: &str, at: Position) -> Result<(), ExprError> {
    if is_synthetic(name) {
        return Err(ExprError::Synthetic {
            name: name.to_owned(),
            at,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        text.parse::<Expr>()
            .expect_err(&format!("{text:?} must be refused"))
            .to_string()
    }

    #[test]
    fn accepts_what_prometheus_parses() {
        for text in [
            "up",
            "avg by (instance) (1 - rate(node_cpu_seconds_total{mode=\"idle\"}[5m]))",
            "sum without (predicted_job) (rate(http_requests_total{job=~\"api|web\", code!~'5..'}[5m]))",
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m:1m] offset 1h)))",
            "a / on (instance) group_left (predicted_x) b > bool 0.5 # a comment",
            "{__name__=\"node_load1\", instance!=\"\",}",
            "{\"my.metric\", job=\"x\"}",
            "label_replace(up, \"dst\", \"$1\", \"src\", `(.*)\\`)",
            "x @ start() + 1e-3 * .5 ^ 2 % 3",
            "rate(\n  x[5m]\n)",
        ] {
            let expr: Expr = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(&*expr, text);
        }
    }

    #[test]
    fn refuses_what_no_dialect_parses() {
        for (text, reason) in [
            ("", "must not be empty"),
            ("  # only a comment", "must not be empty"),
            ("rate(x[5m]", "unclosed '(' (expression column 5)"),
            ("rate(x[5m)", "unexpected ')' (expression column 10)"),
            ("sum(x))", "unexpected ')' (expression column 7)"),
            (
                "x{job=\"a}",
                "unterminated quoted string (expression column 7)",
            ),
            ("x{job=\"a\"", "unclosed '{' (expression column 2)"),
            ("x{job}", "unexpected \"}\" in label matchers"),
            ("x{job=a}", "unexpected \"a\" in label matchers"),
            ("x{job=\"a\" instance=\"b\"}", "unexpected \"instance\""),
            ("rate(x[$__rate_interval])", "unexpected character '$'"),
            ("x; y", "unexpected character ';'"),
            ("!x", "unexpected character '!'"),
            (
                "sum(\n  x\n]",
                "unexpected ']' (expression line 3, column 1)",
            ),
        ] {
            let err = error(text);
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    /// A configured expression that reads promcast's own answers back.
    #[test]
    fn refuses_synthetic_series() {
        for (text, name) in [
            (
                "predicted_node_load1{horizon=\"1h\"}",
                "predicted_node_load1",
            ),
            ("avg(anomaly_score_x)", "anomaly_score_x"),
            ("rate(predicted_lower_x[5m])", "predicted_lower_x"),
            ("{__name__=\"predicted_upper_x\"}", "predicted_upper_x"),
            ("{__name__=~\"predicted_.+\"}", "predicted_.+"),
            ("{\"anomaly_score_y\"}", "anomaly_score_y"),
        ] {
            let err = error(text);
            assert!(
                err.contains(&format!("synthetic series {name:?}")),
                "{text:?}: {err}"
            );
        }
    }
}

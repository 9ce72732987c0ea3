//! Label sets and label matchers with Prometheus semantics, plus the
//! selector syntax (`name{label="value",...}`) that `/federate` accepts.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use crate::prompb;

/// The label holding a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// A series' labels, sorted by name as Prometheus requires on the wire.
pub type Labels = BTreeMap<String, String>;

/// How a [`Matcher`] compares a label value.
#[derive(Debug, Clone)]
pub enum MatchOp {
    /// `=`
    Equal(String),
    /// `!=`
    NotEqual(String),
    /// `=~`, with the regex fully anchored as Prometheus does.
    Regex(Regex),
    /// `!~`, fully anchored.
    NotRegex(Regex),
}

/// One label matcher of a selector. A missing label matches as the empty
/// string, exactly as in PromQL.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
}

/// Why a matcher or selector could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid regex {pattern:?} for label {label:?}: {error}")]
    Regex {
        label: String,
        pattern: String,
        error: Box<regex::Error>,
    },
    #[error("unknown matcher type {0}")]
    UnknownType(i32),
    #[error("invalid selector {selector:?}: {reason}")]
    Selector { selector: String, reason: String },
}

impl Matcher {
    /// `name="value"`.
    pub fn equal(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            op: MatchOp::Equal(value.to_owned()),
        }
    }

    /// Builds a matcher from its parts, compiling regexes anchored and
    /// with `.` matching newlines, exactly as Prometheus does (`^(?s:P)$`).
    pub fn new(name: &str, op: &str, value: &str) -> Result<Self, MatcherError> {
        let compile = |pattern: &str| {
            Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| MatcherError::Regex {
                label: name.to_owned(),
                pattern: pattern.to_owned(),
                error: Box::new(e),
            })
        };
        let op = match op {
            "=" => MatchOp::Equal(value.to_owned()),
            "!=" => MatchOp::NotEqual(value.to_owned()),
            "=~" => MatchOp::Regex(compile(value)?),
            "!~" => MatchOp::NotRegex(compile(value)?),
            other => {
                return Err(MatcherError::Selector {
                    selector: format!("{name}{other}{value:?}"),
                    reason: format!("unknown operator {other:?}"),
                });
            }
        };
        Ok(Self {
            name: name.to_owned(),
            op,
        })
    }

    /// Converts a remote-read matcher.
    pub fn from_proto(m: &prompb::LabelMatcher) -> Result<Self, MatcherError> {
        let op = match prompb::label_matcher::Type::try_from(m.r#type) {
            Ok(prompb::label_matcher::Type::Eq) => "=",
            Ok(prompb::label_matcher::Type::Neq) => "!=",
            Ok(prompb::label_matcher::Type::Re) => "=~",
            Ok(prompb::label_matcher::Type::Nre) => "!~",
            Err(_) => return Err(MatcherError::UnknownType(m.r#type)),
        };
        Self::new(&m.name, op, &m.value)
    }

    /// Converts back to a remote-read matcher (for asking the upstream).
    pub fn to_proto(&self) -> prompb::LabelMatcher {
        use prompb::label_matcher::Type;
        let (kind, value) = match &self.op {
            MatchOp::Equal(v) => (Type::Eq, v.clone()),
            MatchOp::NotEqual(v) => (Type::Neq, v.clone()),
            MatchOp::Regex(r) => (Type::Re, unanchored(r)),
            MatchOp::NotRegex(r) => (Type::Nre, unanchored(r)),
        };
        prompb::LabelMatcher {
            r#type: kind as i32,
            name: self.name.clone(),
            value,
        }
    }

    /// The label this matcher looks at.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The comparison.
    pub fn op(&self) -> &MatchOp {
        &self.op
    }

    /// Whether a label value (empty when the label is absent) passes.
    pub fn matches(&self, value: &str) -> bool {
        match &self.op {
            MatchOp::Equal(v) => v == value,
            MatchOp::NotEqual(v) => v != value,
            MatchOp::Regex(r) => r.is_match(value),
            MatchOp::NotRegex(r) => !r.is_match(value),
        }
    }

    /// Whether a label set passes this matcher.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).map_or("", String::as_str))
    }
}

/// The user's pattern, without the anchors `Matcher::new` added.
fn unanchored(r: &Regex) -> String {
    let s = r.as_str();
    s.strip_prefix("^(?s:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
        .to_owned()
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, value) = match &self.op {
            MatchOp::Equal(v) => ("=", v.clone()),
            MatchOp::NotEqual(v) => ("!=", v.clone()),
            MatchOp::Regex(r) => ("=~", unanchored(r)),
            MatchOp::NotRegex(r) => ("!~", unanchored(r)),
        };
        write!(f, "{}{}{:?}", self.name, op, value)
    }
}

/// Equality matchers on every label of `labels`: they select that series
/// (and any with more labels besides).
pub fn equal_to(labels: &Labels) -> impl Iterator<Item = Matcher> + '_ {
    labels
        .iter()
        .map(|(name, value)| Matcher::equal(name, value))
}

/// A selector as PromQL writes it: `metric`, or `metric{a="b", c=~"d"}`.
pub fn selector(name: &str, matchers: &[Matcher]) -> String {
    if matchers.is_empty() {
        return name.to_owned();
    }
    let matchers: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{name}{{{}}}", matchers.join(", "))
}

/// Parses a series selector as PromQL writes it: `metric`,
/// `metric{a="b",c=~"d.*"}` or `{__name__=~"x.*"}`.
pub fn parse_selector(selector: &str) -> Result<Vec<Matcher>, MatcherError> {
    let fail = |reason: &str| MatcherError::Selector {
        selector: selector.to_owned(),
        reason: reason.to_owned(),
    };
    let text = selector.trim();
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    let (name, rest) = text.split_at(name_end);
    let mut matchers = Vec::new();
    if !name.is_empty() {
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(fail("metric name must not start with a digit"));
        }
        matchers.push(Matcher::equal(METRIC_NAME, name));
    }
    let rest = rest.trim();
    if !rest.is_empty() {
        let body = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| fail("expected `{label=\"value\", ...}` after the metric name"))?;
        let mut chars = body.char_indices().peekable();
        loop {
            while chars
                .next_if(|(_, c)| c.is_whitespace() || *c == ',')
                .is_some()
            {}
            let Some(&(start, _)) = chars.peek() else {
                break;
            };
            while chars
                .next_if(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
                .is_some()
            {}
            let end = chars.peek().map_or(body.len(), |&(i, _)| i);
            let label = &body[start..end];
            if label.is_empty() {
                return Err(fail("expected a label name"));
            }
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            let mut op = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| matches!(c, '=' | '!' | '~')) {
                op.push(c);
            }
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            let quote = match chars.next() {
                Some((_, q @ ('"' | '\''))) => q,
                _ => return Err(fail("expected a quoted label value")),
            };
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, c)) => value.push(c),
                        None => return Err(fail("unterminated escape")),
                    },
                    Some((_, c)) if c == quote => break,
                    Some((_, c)) => value.push(c),
                    None => return Err(fail("unterminated label value")),
                }
            }
            matchers.push(Matcher::new(label, &op, &value)?);
        }
    }
    if matchers.is_empty() {
        return Err(fail("empty selector"));
    }
    if matchers.iter().all(|m| m.matches("")) {
        return Err(fail(
            "vector selector must contain at least one non-empty matcher",
        ));
    }
    Ok(matchers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let m = Matcher::new("job", "=~", "node|api").unwrap();
        assert!(m.matches("node"));
        assert!(m.matches("api"));
        assert!(!m.matches("node_exporter"));
        assert!(!m.matches("my-api"));
        let n = Matcher::new("job", "!~", "node.*").unwrap();
        assert!(!n.matches("node_exporter"));
        assert!(n.matches("api"));
        // As in Prometheus, `.` matches a newline too.
        assert!(Matcher::new("msg", "=~", "a.b").unwrap().matches("a\nb"));
    }

    #[test]
    fn missing_labels_match_as_empty() {
        let l = labels(&[("instance", "a")]);
        assert!(Matcher::new("zone", "=", "").unwrap().matches_labels(&l));
        assert!(!Matcher::new("zone", "!=", "").unwrap().matches_labels(&l));
        assert!(
            Matcher::new("zone", "=~", "|eu")
                .unwrap()
                .matches_labels(&l)
        );
        assert!(Matcher::new("zone", "!~", "eu").unwrap().matches_labels(&l));
        assert!(
            !Matcher::new("instance", "=~", "")
                .unwrap()
                .matches_labels(&l)
        );
    }

    #[test]
    fn proto_round_trip_keeps_the_users_pattern() {
        let m = Matcher::new("__name__", "=~", "predicted_.*").unwrap();
        let p = m.to_proto();
        assert_eq!(p.value, "predicted_.*");
        assert_eq!(p.r#type, prompb::label_matcher::Type::Re as i32);
        let back = Matcher::from_proto(&p).unwrap();
        assert!(back.matches("predicted_cpu"));
        assert!(!back.matches("xpredicted_cpu"));
    }

    #[test]
    fn bad_regex_and_type_are_errors() {
        assert!(Matcher::new("a", "=~", "(").is_err());
        let p = prompb::LabelMatcher {
            r#type: 9,
            name: "a".into(),
            value: "b".into(),
        };
        assert!(matches!(
            Matcher::from_proto(&p),
            Err(MatcherError::UnknownType(9))
        ));
    }

    #[test]
    fn parses_selectors() {
        let m =
            parse_selector(r#"predicted_cpu{instance="a", horizon=~"1h|6h",job!="x\"y"}"#).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].to_string(), r#"__name__="predicted_cpu""#);
        assert_eq!(m[2].to_string(), r#"horizon=~"1h|6h""#);
        assert_eq!(m[3].to_string(), r#"job!="x\"y""#);
        let only = parse_selector(r#"{__name__=~"predicted_.*"}"#).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(parse_selector("up").unwrap().len(), 1);
        for bad in [
            "",
            "{}",
            r#"{a=""}"#,
            "m{a=b}",
            r#"m{a="b""#,
            "m{=\"b\"}",
            "9m",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad:?} parsed");
        }
    }
}

//! `families.allow` and `families.deny`: which upstream metrics a query
//! may make promcast read, train on and answer for. Without them any
//! client that may query promcast can have it read any metric with
//! promcast's upstream credentials, and get its label sets back.
//! Patterns are regular expressions over the metric name, fully anchored
//! as in Prometheus's relabelling. Families configured under `series:`
//! are always allowed: the operator named them.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The allow and deny lists.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FamilyPolicy {
    /// When not empty, only metric names matching one of these.
    pub allow: Vec<NamePattern>,
    /// Never metric names matching one of these (deny wins over allow).
    pub deny: Vec<NamePattern>,
}

impl FamilyPolicy {
    /// Whether `family` (not one configured under `series:`) may be
    /// served; the refusal names the rule.
    pub fn check(&self, family: &str) -> Result<(), String> {
        if let Some(p) = self.deny.iter().find(|p| p.regex.is_match(family)) {
            return Err(format!(
                "family {family:?} is refused by families.deny pattern {:?}",
                p.pattern
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| p.regex.is_match(family)) {
            return Err(format!(
                "family {family:?} matches no families.allow pattern; ask the operator to allow it"
            ));
        }
        Ok(())
    }
}

/// A regular expression over metric names, anchored at both ends.
#[derive(Debug, Clone)]
pub struct NamePattern {
    pattern: String,
    regex: Regex,
}

impl Serialize for NamePattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.pattern)
    }
}

impl<'de> Deserialize<'de> for NamePattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(PatternVisitor)
    }
}

/// Compiles the pattern while the YAML deserializer still knows where it
/// is, so that an error names the line of the pattern.
struct PatternVisitor;

impl serde::de::Visitor<'_> for PatternVisitor {
    type Value = NamePattern;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a regular expression over metric names")
    }

    fn visit_str<E: serde::de::Error>(self, pattern: &str) -> Result<NamePattern, E> {
        let regex = Regex::new(&format!("^(?s:{pattern})$"))
            .map_err(|e| E::custom(format!("invalid regular expression {pattern:?}: {e}")))?;
        Ok(NamePattern {
            pattern: pattern.to_owned(),
            regex,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> FamilyPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn deny_wins_and_patterns_are_anchored() {
        let open = FamilyPolicy::default();
        assert!(open.check("anything").is_ok());

        let p = policy("allow: ['node_.*', http_requests_total]\ndeny: ['.*_secret.*']\n");
        assert!(p.check("node_load1").is_ok());
        assert!(p.check("http_requests_total").is_ok());
        // Anchored: a pattern matches the whole name, not a part of it.
        let err = p.check("my_node_load1").unwrap_err();
        assert!(err.contains("no families.allow pattern"), "{err}");
        assert!(p.check("http_requests_total_2").is_err());
        let err = p.check("node_secret_count").unwrap_err();
        assert!(
            err.contains("families.deny pattern \".*_secret.*\""),
            "{err}"
        );

        let deny_only = policy("deny: [up]\n");
        assert!(deny_only.check("up").is_err());
        assert!(deny_only.check("upx").is_ok());
    }

    #[test]
    fn a_bad_pattern_names_its_line() {
        let err = serde_yaml::from_str::<FamilyPolicy>("allow:\n  - 'node_('\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid regular expression \"node_(\""),
            "{err}"
        );
        assert!(err.contains("line 2"), "{err}");
    }
}

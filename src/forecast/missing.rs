//! Families asked for that the upstream has no series of: a misspelt
//! name, a metric not scraped (yet), or matchers that select nothing.
//! Their synthetic series are empty, which would look exactly like a
//! family still short of history if nothing said so; a family with a few
//! samples gets the baseline and shows as waiting for history instead.
//! So each one is logged at info, once until the family is found again,
//! and listed on the status page.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::calendar::rfc3339;

/// Families remembered at most; the least recently asked for goes first.
const MAX_FAMILIES: usize = 64;

/// The latest query for a missing family.
struct Sighting {
    selector: String,
    queries: u64,
    last_ms: i64,
}

/// One family that queries found no source series of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingFamily {
    /// Family name.
    pub family: String,
    /// The source selector of the latest such query.
    pub selector: String,
    /// Queries that found nothing since the family was last found.
    pub queries: u64,
    /// When it was last asked for (RFC 3339).
    pub last_asked: String,
}

/// The families queries found no source series of, by name.
#[derive(Default)]
pub struct Missing {
    families: Mutex<BTreeMap<String, Sighting>>,
}

impl Missing {
    /// Records that a query for `family`, selecting `selector`, found no
    /// source series at `now_ms`; logs it at info when the family was not
    /// missing already. Returns whether it logged.
    pub fn note(&self, family: &str, selector: &str, now_ms: i64) -> bool {
        let mut families = crate::lock::lock(&self.families);
        if let Some(s) = families.get_mut(family) {
            s.selector = selector.to_owned();
            s.queries += 1;
            s.last_ms = now_ms;
            return false;
        }
        if families.len() >= MAX_FAMILIES
            && let Some(oldest) = families
                .iter()
                .min_by_key(|(_, s)| s.last_ms)
                .map(|(f, _)| f.clone())
        {
            families.remove(&oldest);
        }
        families.insert(
            family.to_owned(),
            Sighting {
                selector: selector.to_owned(),
                queries: 1,
                last_ms: now_ms,
            },
        );
        drop(families);
        tracing::info!(
            family,
            selector,
            "no source series: the upstream has none for this selector (a misspelt name, a metric not scraped yet, or matchers that select nothing); its forecasts are empty"
        );
        true
    }

    /// Records that `family` has source series again.
    pub fn found(&self, family: &str) {
        crate::lock::lock(&self.families).remove(family);
    }

    /// Every missing family, the most recently asked for first.
    pub fn list(&self) -> Vec<MissingFamily> {
        let families = crate::lock::lock(&self.families);
        let mut list: Vec<(i64, MissingFamily)> = families
            .iter()
            .map(|(family, s)| {
                (
                    s.last_ms,
                    MissingFamily {
                        family: family.clone(),
                        selector: s.selector.clone(),
                        queries: s.queries,
                        last_asked: rfc3339(s.last_ms),
                    },
                )
            })
            .collect();
        list.sort_by_key(|(last, m)| (std::cmp::Reverse(*last), m.family.clone()));
        list.into_iter().map(|(_, m)| m).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_until_found_and_counts_the_rest() {
        let missing = Missing::default();
        assert!(missing.note("no_such_metric", "no_such_metric", 1_000));
        assert!(!missing.note("no_such_metric", "no_such_metric{job=\"x\"}", 2_000));
        assert!(missing.note("typo", "typo", 3_000));
        let list = missing.list();
        assert_eq!(
            list.iter()
                .map(|m| (m.family.as_str(), m.queries))
                .collect::<Vec<_>>(),
            [("typo", 1), ("no_such_metric", 2)]
        );
        assert_eq!(list[1].selector, "no_such_metric{job=\"x\"}");
        missing.found("no_such_metric");
        assert_eq!(missing.list().len(), 1);
        // Missing again after being found: a new line.
        assert!(missing.note("no_such_metric", "no_such_metric", 4_000));
    }

    #[test]
    fn remembers_a_bounded_number_of_families() {
        let missing = Missing::default();
        for i in 0..MAX_FAMILIES as i64 + 5 {
            missing.note(&format!("f{i}"), "f", i);
        }
        let list = missing.list();
        assert_eq!(list.len(), MAX_FAMILIES);
        assert!(list.iter().all(|m| m.family != "f0"));
        assert_eq!(list[0].family, format!("f{}", MAX_FAMILIES + 4));
    }
}

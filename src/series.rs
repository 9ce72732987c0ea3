//! The series contract: which synthetic names exist (`predicted_<m>`,
//! `predicted_lower_<m>`, `predicted_upper_<m>`, `anomaly_score_<m>`), what
//! their `horizon` label means, and how a selector's matchers resolve into
//! the forecasts to compute.

use std::collections::BTreeMap;

use crate::duration::PromDuration;
use crate::labels::{METRIC_NAME, MatchOp, Matcher};

/// The label carrying a forecast's horizon.
pub const HORIZON_LABEL: &str = "horizon";

/// A label that only routes a selector to promcast: matchers on it are
/// ignored, and answers do not carry it. Prometheus's
/// `remote_read.required_matchers: {promcast: "true"}` then asks promcast
/// only for selectors that carry `promcast="true"`, so that every other
/// query is spared a round trip, and a warning while promcast is down.
pub const ROUTING_LABEL: &str = "promcast";

/// What a synthetic series holds for its source series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SeriesKind {
    /// The forecast of the source at `t + horizon`.
    Predicted,
    /// Lower bound of the central prediction interval of that forecast.
    PredictedLower,
    /// Upper bound of the central prediction interval of that forecast.
    PredictedUpper,
    /// How unusual the source's value at `t` is; above 1 is anomalous.
    AnomalyScore,
}

impl SeriesKind {
    /// Every kind, longest prefix first so that parsing is unambiguous.
    pub const ALL: [SeriesKind; 4] = [
        SeriesKind::PredictedLower,
        SeriesKind::PredictedUpper,
        SeriesKind::AnomalyScore,
        SeriesKind::Predicted,
    ];

    /// The metric-name prefix of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            SeriesKind::Predicted => "predicted_",
            SeriesKind::PredictedLower => "predicted_lower_",
            SeriesKind::PredictedUpper => "predicted_upper_",
            SeriesKind::AnomalyScore => "anomaly_score_",
        }
    }

    /// Whether series of this kind carry a `horizon` label.
    pub fn has_horizon(self) -> bool {
        !matches!(self, SeriesKind::AnomalyScore)
    }

    /// The synthetic metric name of this kind for `family`.
    pub fn series_name(self, family: &str) -> String {
        format!("{}{family}", self.prefix())
    }
}

/// Splits a metric name into its synthetic kind and source family, or
/// `None` for names that are not synthetic. A family that is itself a
/// synthetic name is refused, so promcast never asks its upstream for one.
pub fn parse_name(name: &str) -> Option<(SeriesKind, &str)> {
    let (kind, family) = SeriesKind::ALL
        .iter()
        .find_map(|k| name.strip_prefix(k.prefix()).map(|f| (*k, f)))?;
    (is_metric_name(family) && !is_synthetic(family)).then_some((kind, family))
}

/// Whether `name` starts with a synthetic prefix.
pub fn is_synthetic(name: &str) -> bool {
    SeriesKind::ALL.iter().any(|k| name.starts_with(k.prefix()))
}

/// Whether `name` is a valid Prometheus metric name.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A forecast horizon together with the label value that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizon {
    duration: PromDuration,
    label: String,
}

impl Horizon {
    /// A horizon labelled in canonical form (`1h`, not `60m`), however
    /// its duration was written: configured horizons keep one label each.
    pub fn new(duration: PromDuration) -> Self {
        Self {
            duration,
            label: duration.canonical().to_string(),
        }
    }

    /// How far ahead the forecast looks.
    pub fn duration(&self) -> PromDuration {
        self.duration
    }

    /// The `horizon` label value.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// One synthetic output to compute for every matching source series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// What the output holds.
    pub kind: SeriesKind,
    /// The horizon, for the kinds that have one.
    pub horizon: Option<Horizon>,
}

/// The synthetic outputs a selector asks of one source family.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The source family (metric name or configured series name).
    pub family: String,
    /// Outputs to compute, in a stable order.
    pub outputs: Vec<Output>,
    /// Matchers that select the source series.
    pub source_matchers: Vec<Matcher>,
}

/// A selector that names synthetic series but cannot be answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("horizon {value:?} is not a duration: {reason}")]
    BadHorizon { value: String, reason: String },
    #[error("horizon {value} for {family:?} is longer than the longest forecast horizon {max}")]
    HorizonTooLong {
        family: String,
        value: String,
        max: PromDuration,
    },
    #[error("horizon must be positive")]
    ZeroHorizon,
}

/// What the resolver needs to know about the families promcast serves.
pub trait Catalog {
    /// Families that a name regex (`{__name__=~"predicted_.*"}`) expands over.
    fn families(&self) -> Vec<String>;
    /// The configured horizons of a family; the last is the longest.
    fn horizons(&self, family: &str) -> Vec<PromDuration>;
}

/// Resolves a selector's matchers into the synthetic outputs it selects,
/// grouped by family. Non-synthetic selectors resolve to nothing, and
/// matchers on [`ROUTING_LABEL`] are dropped.
pub fn resolve(matchers: &[Matcher], catalog: &dyn Catalog) -> Result<Vec<Selection>, SelectError> {
    let (name_matchers, rest): (Vec<&Matcher>, Vec<&Matcher>) =
        matchers.iter().partition(|m| m.name() == METRIC_NAME);
    let candidates: Vec<String> = match name_matchers.iter().find_map(|m| match m.op() {
        MatchOp::Equal(v) => Some(v.clone()),
        _ => None,
    }) {
        Some(name) => vec![name],
        None if name_matchers.is_empty() => Vec::new(),
        None => catalog
            .families()
            .iter()
            .flat_map(|f| SeriesKind::ALL.map(|k| k.series_name(f)))
            .collect(),
    };
    let mut kinds_by_family: BTreeMap<String, Vec<SeriesKind>> = BTreeMap::new();
    for name in &candidates {
        if !name_matchers.iter().all(|m| m.matches(name)) {
            continue;
        }
        if let Some((kind, family)) = parse_name(name) {
            kinds_by_family
                .entry(family.to_owned())
                .or_default()
                .push(kind);
        }
    }
    let (horizon_matchers, source_matchers): (Vec<&Matcher>, Vec<&Matcher>) = rest
        .into_iter()
        .filter(|m| m.name() != ROUTING_LABEL)
        .partition(|m| m.name() == HORIZON_LABEL);
    let mut selections = Vec::new();
    for (family, mut kinds) in kinds_by_family {
        kinds.sort();
        let horizons = select_horizons(&family, &horizon_matchers, &catalog.horizons(&family))?;
        let anomaly_selected = horizon_matchers.iter().all(|m| m.matches(""));
        let mut outputs = Vec::new();
        for kind in kinds {
            if kind.has_horizon() {
                outputs.extend(horizons.iter().map(|h| Output {
                    kind,
                    horizon: Some(h.clone()),
                }));
            } else if anomaly_selected {
                outputs.push(Output {
                    kind,
                    horizon: None,
                });
            }
        }
        if !outputs.is_empty() {
            selections.push(Selection {
                family,
                outputs,
                source_matchers: source_matchers.iter().map(|m| (*m).clone()).collect(),
            });
        }
    }
    Ok(selections)
}

/// The horizons a selector's `horizon` matchers pick: the configured ones,
/// plus any horizon named with `=` that the model can serve.
fn select_horizons(
    family: &str,
    matchers: &[&Matcher],
    configured: &[PromDuration],
) -> Result<Vec<Horizon>, SelectError> {
    let max = configured
        .iter()
        .copied()
        .max()
        .unwrap_or(PromDuration::from_millis(0));
    let mut candidates: Vec<Horizon> = configured.iter().copied().map(Horizon::new).collect();
    for m in matchers {
        if let MatchOp::Equal(value) = m.op() {
            if value.is_empty() {
                continue;
            }
            let duration: PromDuration =
                value.parse().map_err(|e: crate::duration::DurationError| {
                    SelectError::BadHorizon {
                        value: value.clone(),
                        reason: e.to_string(),
                    }
                })?;
            if duration.as_millis() == 0 {
                return Err(SelectError::ZeroHorizon);
            }
            if duration > max {
                return Err(SelectError::HorizonTooLong {
                    family: family.to_owned(),
                    value: value.clone(),
                    max,
                });
            }
            candidates.push(Horizon {
                duration,
                label: value.clone(),
            });
        }
    }
    let mut selected: Vec<Horizon> = Vec::new();
    for h in candidates {
        if matchers.iter().all(|m| m.matches(h.label()))
            && !selected.iter().any(|s| s.label == h.label)
        {
            selected.push(h);
        }
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Catalog for Fixed {
        fn families(&self) -> Vec<String> {
            vec!["cpu".into(), "disk_free".into()]
        }
        fn horizons(&self, _: &str) -> Vec<PromDuration> {
            ["15m", "1h", "6h"]
                .iter()
                .map(|h| h.parse().unwrap())
                .collect()
        }
    }

    fn m(name: &str, op: &str, value: &str) -> Matcher {
        Matcher::new(name, op, value).unwrap()
    }

    fn labels_of(s: &Selection) -> Vec<String> {
        s.outputs
            .iter()
            .map(|o| {
                format!(
                    "{}{}",
                    o.kind.series_name(&s.family),
                    o.horizon
                        .as_ref()
                        .map(|h| format!("@{}", h.label()))
                        .unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn parses_names_longest_prefix_first() {
        assert_eq!(
            parse_name("predicted_cpu"),
            Some((SeriesKind::Predicted, "cpu"))
        );
        assert_eq!(
            parse_name("predicted_lower_cpu"),
            Some((SeriesKind::PredictedLower, "cpu"))
        );
        assert_eq!(
            parse_name("anomaly_score_http:p99"),
            Some((SeriesKind::AnomalyScore, "http:p99"))
        );
        assert_eq!(parse_name("up"), None);
        assert_eq!(parse_name("predicted_"), None);
        assert_eq!(parse_name("predicted_predicted_cpu"), None);
    }

    #[test]
    fn one_series_per_configured_horizon_without_a_horizon_matcher() {
        let sel = resolve(
            &[m("__name__", "=", "predicted_cpu"), m("instance", "=", "a")],
            &Fixed,
        )
        .unwrap();
        assert_eq!(sel.len(), 1);
        assert_eq!(
            labels_of(&sel[0]),
            ["predicted_cpu@15m", "predicted_cpu@1h", "predicted_cpu@6h"]
        );
        assert_eq!(sel[0].source_matchers.len(), 1);
    }

    #[test]
    fn configured_horizons_are_labelled_canonically() {
        for text in ["60m", "3600s", "1h"] {
            let h = Horizon::new(text.parse().unwrap());
            assert_eq!(h.label(), "1h", "{text}");
        }
    }

    #[test]
    fn horizon_matchers_filter_and_extend() {
        let sel = resolve(
            &[
                m("__name__", "=", "predicted_cpu"),
                m("horizon", "=~", "1h|6h"),
            ],
            &Fixed,
        )
        .unwrap();
        assert_eq!(labels_of(&sel[0]), ["predicted_cpu@1h", "predicted_cpu@6h"]);
        let sel = resolve(
            &[
                m("__name__", "=", "predicted_cpu"),
                m("horizon", "=", "90m"),
            ],
            &Fixed,
        )
        .unwrap();
        assert_eq!(labels_of(&sel[0]), ["predicted_cpu@90m"]);
        assert!(matches!(
            resolve(
                &[m("__name__", "=", "predicted_cpu"), m("horizon", "=", "2d")],
                &Fixed
            ),
            Err(SelectError::HorizonTooLong { .. })
        ));
        assert!(matches!(
            resolve(
                &[
                    m("__name__", "=", "predicted_cpu"),
                    m("horizon", "=", "soon")
                ],
                &Fixed
            ),
            Err(SelectError::BadHorizon { .. })
        ));
    }

    #[test]
    fn anomaly_scores_have_no_horizon() {
        let sel = resolve(&[m("__name__", "=", "anomaly_score_cpu")], &Fixed).unwrap();
        assert_eq!(labels_of(&sel[0]), ["anomaly_score_cpu"]);
        let none = resolve(
            &[
                m("__name__", "=", "anomaly_score_cpu"),
                m("horizon", "=", "1h"),
            ],
            &Fixed,
        )
        .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn name_regex_expands_over_known_families() {
        let sel = resolve(
            &[m("__name__", "=~", "predicted_.*"), m("horizon", "=", "1h")],
            &Fixed,
        )
        .unwrap();
        let all: Vec<String> = sel.iter().flat_map(labels_of).collect();
        assert_eq!(
            all,
            [
                "predicted_cpu@1h",
                "predicted_lower_cpu@1h",
                "predicted_upper_cpu@1h",
                "predicted_disk_free@1h",
                "predicted_lower_disk_free@1h",
                "predicted_upper_disk_free@1h"
            ]
        );
        let anomalies = resolve(
            &[
                m("__name__", "=~", "anomaly_.*"),
                m("__name__", "!~", ".*disk.*"),
            ],
            &Fixed,
        )
        .unwrap();
        assert_eq!(anomalies.len(), 1);
        assert_eq!(anomalies[0].family, "cpu");
    }

    /// The recipe of `required_matchers: {promcast: "true"}`: the routing
    /// matcher reaches promcast with every selector that carries it, and
    /// must neither select source series nor filter the answers.
    #[test]
    fn routing_matchers_are_ignored() {
        let routed = resolve(
            &[
                m("__name__", "=", "predicted_cpu"),
                m("promcast", "=", "true"),
                m("horizon", "=", "1h"),
                m("instance", "=", "a"),
            ],
            &Fixed,
        )
        .unwrap();
        let plain = resolve(
            &[
                m("__name__", "=", "predicted_cpu"),
                m("horizon", "=", "1h"),
                m("instance", "=", "a"),
            ],
            &Fixed,
        )
        .unwrap();
        assert_eq!(labels_of(&routed[0]), labels_of(&plain[0]));
        let names = |s: &Selection| -> Vec<String> {
            s.source_matchers
                .iter()
                .map(|m| m.name().to_owned())
                .collect()
        };
        assert_eq!(names(&routed[0]), ["instance"]);
        assert_eq!(names(&routed[0]), names(&plain[0]));
        let anomalies = resolve(
            &[
                m("__name__", "=~", "anomaly_score_.+"),
                m("promcast", "=", "true"),
            ],
            &Fixed,
        )
        .unwrap();
        assert_eq!(anomalies.len(), 2);
        assert!(anomalies.iter().all(|s| s.source_matchers.is_empty()));
        assert!(
            resolve(
                &[m("__name__", "=", "up"), m("promcast", "=", "true")],
                &Fixed
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn non_synthetic_selectors_resolve_to_nothing() {
        for sel in [
            vec![m("__name__", "=", "up")],
            vec![m("__name__", "=~", "node_.*")],
            vec![m("job", "=", "node")],
        ] {
            assert!(resolve(&sel, &Fixed).unwrap().is_empty());
        }
    }
}

//! Prometheus's text exposition format, as promcast's `/metrics` serves it.

/// Sums the samples of `name` in a text exposition whose label part contains
/// every string of `label_filters`; comment lines are skipped.
pub fn metric_sum(exposition: &str, name: &str, label_filters: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value_part) = if let Some(after) = rest.strip_prefix('{') {
                let close = after.find('}')?;
                (&after[..close], &after[close + 1..])
            } else if rest.starts_with(' ') {
                ("", rest)
            } else {
                return None; // a longer metric name with the same prefix
            };
            if !label_filters.iter().all(|f| labels.contains(f)) {
                return None;
            }
            value_part.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

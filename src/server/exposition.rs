//! Prometheus's text exposition format (0.0.4), for the endpoints that
//! Prometheus scrapes: one sample per series, with its own timestamp.

use std::fmt::Write as _;

use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};

use crate::labels::{Labels, METRIC_NAME};

use super::{HttpResponse, text};

/// One series' sample: its labels (`__name__` included) and `(unix ms,
/// value)`.
pub type Sample<'a> = (&'a Labels, (i64, f64));

/// A 200 answer holding `samples` as text exposition.
pub fn response(samples: &[Sample]) -> HttpResponse {
    let mut response = text(StatusCode::OK, exposition(samples));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Text exposition of `samples`, grouped by metric name; samples without
/// a name are left out.
fn exposition(samples: &[Sample]) -> String {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by(|a, b| (a.0.get(METRIC_NAME), a.0).cmp(&(b.0.get(METRIC_NAME), b.0)));
    let mut out = String::new();
    let mut current: Option<&str> = None;
    for &(labels, (ts, value)) in sorted {
        let Some(name) = labels.get(METRIC_NAME) else {
            continue;
        };
        if current != Some(name.as_str()) {
            let _ = writeln!(out, "# TYPE {name} untyped");
            current = Some(name);
        }
        let pairs: Vec<String> = labels
            .iter()
            .filter(|(k, _)| *k != METRIC_NAME)
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(
            out,
            "{name}{{{}}} {} {ts}",
            pairs.join(","),
            format_value(value)
        );
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_groups_by_name_and_escapes() {
        let labels = |name: &str, inst: &str| -> Labels {
            [(METRIC_NAME, name), ("instance", inst)]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let (b, a1, a2) = (
            labels("predicted_b", "x"),
            labels("predicted_a", "q\"1"),
            labels("predicted_a", "z"),
        );
        let text = exposition(&[
            (&b, (1000, 2.5)),
            (&a1, (1000, 1.0)),
            (&a2, (1000, f64::INFINITY)),
        ]);
        assert_eq!(
            text,
            "# TYPE predicted_a untyped\npredicted_a{instance=\"q\\\"1\"} 1 1000\npredicted_a{instance=\"z\"} +Inf 1000\n# TYPE predicted_b untyped\npredicted_b{instance=\"x\"} 2.5 1000\n"
        );
    }
}

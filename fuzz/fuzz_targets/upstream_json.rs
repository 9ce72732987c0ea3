//! The upstream's JSON answers: a `/api/v1/query_range` matrix and a
//! `/api/v1/series` list, as promcast decodes them. Nothing may panic, and
//! no metric name survives decoding.
#![no_main]

use promcast::labels::METRIC_NAME;
use promcast::upstream::prometheus::{decode_matrix, decode_series_list};
use promcast_fuzz::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(series) = decode_matrix(data) {
        assert!(series.iter().all(|s| !s.labels.contains_key(METRIC_NAME)));
    }
    if let Ok(listed) = decode_series_list(data) {
        assert!(listed.iter().all(|labels| !labels.contains_key(METRIC_NAME)));
    }
});

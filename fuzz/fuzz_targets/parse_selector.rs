//! A series selector as `/federate` and the command line take it; the
//! matchers it yields are evaluated against a few values. Nothing here may
//! panic.
#![no_main]

use promcast::labels::parse_selector;
use promcast_fuzz::fuzz_target;

const VALUES: [&str; 4] = ["", "predicted_cpu", "node_exporter:9100", "ünïcode\n"];

fuzz_target!(|data: &[u8]| {
    let Ok(selector) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(matchers) = parse_selector(selector) else {
        return;
    };
    assert!(
        !matchers.is_empty(),
        "parse_selector accepted {selector:?} with no matchers"
    );
    for matcher in &matchers {
        for value in VALUES {
            let _ = matcher.matches(value);
        }
        let _ = matcher.to_string();
    }
});

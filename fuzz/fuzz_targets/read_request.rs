//! A remote-read request body, as the server's `/api/v1/read` receives it:
//! snappy-framed protobuf, then every matcher converted (regexes compiled)
//! and evaluated, and converted back as the server forwards them upstream.
//! Nothing here may panic.
#![no_main]

use promcast::labels::Matcher;
use promcast::prompb::ReadRequest;
use promcast::remote::codec::{MAX_DECODED_BYTES, decode};
use promcast_fuzz::fuzz_target;

const VALUES: [&str; 4] = ["", "predicted_cpu", "node_exporter:9100", "ünïcode\n"];

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode::<ReadRequest>(data, MAX_DECODED_BYTES) else {
        return;
    };
    for query in &request.queries {
        for proto in &query.matchers {
            let Ok(matcher) = Matcher::from_proto(proto) else {
                continue;
            };
            for value in VALUES.iter().copied().chain([proto.value.as_str()]) {
                let _ = matcher.matches(value);
            }
            // What the server forwards upstream converts back unchanged.
            let forwarded = Matcher::from_proto(&matcher.to_proto())
                .expect("a matcher's own proto does not convert back");
            assert_eq!(forwarded.to_string(), matcher.to_string());
        }
    }
});

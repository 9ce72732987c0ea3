//! One XOR chunk: decoding arbitrary bytes never panics, and whatever
//! decodes survives encode -> decode unchanged (values compared bitwise, so
//! NaN payloads count).
#![no_main]

use promcast::remote::xor::{XorError, decode_xor, encode_xor};
use promcast_fuzz::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(samples) = decode_xor(data) else {
        return;
    };
    let ordered = samples.windows(2).all(|w| w[0].0 < w[1].0);
    let encoded = match encode_xor(&samples) {
        Ok(encoded) => encoded,
        // The decoder accepts any timestamps; the encoder only increasing ones.
        Err(XorError::Unsorted { .. }) if !ordered => return,
        Err(e) => panic!("decoded samples do not re-encode: {e}"),
    };
    let again = decode_xor(&encoded).expect("re-encoded chunk does not decode");
    let bits = |s: &[(i64, f64)]| s.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
    assert_eq!(
        bits(&again),
        bits(&samples),
        "round trip changed the samples"
    );
});

//! A `STREAMED_XOR_CHUNKS` body as an upstream sends it: frames (length,
//! CRC32C, protobuf), then every chunk of every series decoded. Errors are
//! fine, panics are not. Frames that parse must also re-frame to the same
//! messages.
#![no_main]

use promcast::chunks::{decode_xor, read_frames, write_frame};
use promcast_fuzz::fuzz_target;

const MAX_FRAME: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(messages) = read_frames(data, MAX_FRAME) else {
        return;
    };
    let mut body = Vec::new();
    for message in &messages {
        for series in &message.chunked_series {
            for chunk in &series.chunks {
                let _ = decode_xor(&chunk.data);
            }
        }
        write_frame(&mut body, message);
    }
    let again = read_frames(&body, usize::MAX).expect("re-framed body does not parse");
    assert_eq!(again, messages, "re-framing changed the messages");
});

//! A `STREAMED_XOR_CHUNKS` body as an upstream sends it: frames (length,
//! CRC32C, protobuf), then every chunk of every series decoded. Errors are
//! fine, panics are not. The body read whole and read a byte at a time
//! must give the same answer, and frames that parse must re-frame to the
//! same messages.
#![no_main]

use promcast::prompb::ChunkedReadResponse;
use promcast::remote::frame::{FrameError, FrameReader, write_frame};
use promcast::remote::xor::decode_xor;
use promcast_fuzz::fuzz_target;

const MAX_FRAME: usize = 1 << 20;

/// Every message of `body`, pushed `step` bytes at a time.
fn read_frames(
    body: &[u8],
    step: usize,
    max_frame: usize,
) -> Result<Vec<ChunkedReadResponse>, FrameError> {
    let mut reader = FrameReader::new(max_frame);
    let mut messages = Vec::new();
    for piece in body.chunks(step) {
        reader.push(piece);
        while let Some(message) = reader.next_frame()? {
            messages.push(message);
        }
    }
    reader.finish()?;
    Ok(messages)
}

fuzz_target!(|data: &[u8]| {
    let whole = read_frames(data, data.len().max(1), MAX_FRAME);
    let bytewise = read_frames(data, 1, MAX_FRAME);
    assert_eq!(
        bytewise.as_ref().map_err(ToString::to_string),
        whole.as_ref().map_err(ToString::to_string),
        "reading byte by byte changed the answer"
    );
    let Ok(messages) = whole else {
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
    let again =
        read_frames(&body, body.len().max(1), usize::MAX).expect("re-framed body does not parse");
    assert_eq!(again, messages, "re-framing changed the messages");
});

//! The framing of a `STREAMED_XOR_CHUNKS` answer: a stream of
//! `ChunkedReadResponse` messages, each behind its uvarint length and the
//! big-endian CRC32-Castagnoli of its bytes, as Prometheus's
//! `ChunkedWriter` writes them and its `ChunkedReader` reads them.
//!
//! Both sides work one frame at a time, so that an answer can be sent, and
//! read, without holding all of it in memory. The reader takes untrusted
//! bytes (from an upstream, or a fuzzer) and answers malformed input with a
//! [`FrameError`] instead of panicking or allocating for sizes the input
//! only claims.

use bytes::{Buf, BytesMut};
use prost::Message;

use super::bits::{VarintOverflow, put_uvarint, read_uvarint};
use crate::prompb;

/// Why a stream of frames could not be read. Each error names where its
/// frame starts in the stream.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A frame's length prefix is not a valid uvarint.
    #[error("frame at byte {offset} has a malformed length prefix")]
    BadLength {
        /// Where the frame starts in the stream.
        offset: usize,
    },
    /// A frame is larger than the reader allows.
    #[error("frame at byte {offset} declares {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Where the frame starts in the stream.
        offset: usize,
        /// Message length from the frame header.
        len: u64,
        /// The reader's limit.
        limit: usize,
    },
    /// The stream ends inside a frame.
    #[error("frame at byte {offset} is truncated")]
    Truncated {
        /// Where the frame starts in the stream.
        offset: usize,
    },
    /// A frame's message does not match its checksum.
    #[error(
        "frame at byte {offset} is corrupt: CRC32C of its message is {actual:#010x}, its header says {expected:#010x}"
    )]
    CrcMismatch {
        /// Where the frame starts in the stream.
        offset: usize,
        /// Checksum from the frame header.
        expected: u32,
        /// Checksum of the message bytes received.
        actual: u32,
    },
    /// A frame's checksum is right but its message is not a `ChunkedReadResponse`.
    #[error("frame at byte {offset} is not a valid ChunkedReadResponse: {error}")]
    Protobuf {
        /// Where the frame starts in the stream.
        offset: usize,
        /// The protobuf decoder's complaint.
        error: prost::DecodeError,
    },
}

/// Appends one frame to `out`: uvarint(message length), big-endian
/// CRC32-Castagnoli of the message, then the message.
///
/// Prometheus's client reads `chunked_series[0]` of every frame without
/// checking it exists, so callers must not send a message without series.
pub fn write_frame(out: &mut Vec<u8>, message: &prompb::ChunkedReadResponse) {
    let body = message.encode_to_vec();
    put_uvarint(body.len() as u64, |byte| out.push(byte));
    out.extend_from_slice(&crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
}

/// Reads frames out of a stream as its bytes arrive, whatever pieces they
/// come in: [`push`](Self::push) what has arrived, take complete messages
/// with [`next_frame`](Self::next_frame) until it answers `None`, repeat;
/// at the end of the stream, [`finish`](Self::finish) tells a clean end
/// from a cut-off frame.
///
/// It holds only what has not been read yet: consumed frames are dropped,
/// and a length over the limit (Prometheus's `chunked_read_limit`, 5e7
/// bytes by default) is refused as soon as its prefix is complete, before
/// any of the frame is waited for. An error ends the stream: asked again,
/// the reader repeats it.
pub struct FrameReader {
    max_frame_bytes: usize,
    /// Bytes pushed but not yet returned as messages.
    pending: BytesMut,
    /// Stream position of `pending`'s first byte, for the errors.
    offset: usize,
}

impl FrameReader {
    /// A reader refusing messages over `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            max_frame_bytes,
            pending: BytesMut::new(),
            offset: 0,
        }
    }

    /// Appends the next bytes of the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next message, once all of its frame has been pushed; `None`
    /// while it has not.
    pub fn next_frame(&mut self) -> Result<Option<prompb::ChunkedReadResponse>, FrameError> {
        let offset = self.offset;
        // Parsed from the pending bytes, the prefix's reader runs out with
        // `None` where more bytes may still complete it.
        let mut header = 0;
        let len = read_uvarint(|| {
            let byte = self.pending.get(header).copied().ok_or(None);
            header += 1;
            byte
        });
        let len = match len {
            Ok(len) => len,
            Err(None) => return Ok(None),
            Err(Some(VarintOverflow)) => return Err(FrameError::BadLength { offset }),
        };
        if usize::try_from(len).map_or(true, |len| len > self.max_frame_bytes) {
            return Err(FrameError::TooLarge {
                offset,
                len,
                limit: self.max_frame_bytes,
            });
        }
        // Compared with what has arrived, never allocated for: a lying
        // length only waits for bytes that never come.
        let crc_end = header.saturating_add(4);
        let end = crc_end.saturating_add(len as usize);
        let (Some(crc), Some(message)) = (
            self.pending.get(header..crc_end),
            self.pending.get(crc_end..end),
        ) else {
            return Ok(None);
        };
        let expected = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let actual = crc32c(message);
        if actual != expected {
            return Err(FrameError::CrcMismatch {
                offset,
                expected,
                actual,
            });
        }
        let decoded = prompb::ChunkedReadResponse::decode(message)
            .map_err(|error| FrameError::Protobuf { offset, error })?;
        self.pending.advance(end);
        self.offset += end;
        Ok(Some(decoded))
    }

    /// Checks that the stream ended between frames. Call it once the input
    /// has ended and [`next_frame`](Self::next_frame) has answered `None`.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                offset: self.offset,
            })
        }
    }
}

/// CRC32-Castagnoli (reflected polynomial 0x82F63B78), the checksum of
/// stream frames; hand-written to avoid a dependency for 20 lines.
pub fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| {
        CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests;

//! The `STREAMED_XOR_CHUNKS` remote-read answer: Prometheus TSDB XOR
//! (Gorilla) chunks and the length- and CRC-framed `ChunkedReadResponse`
//! stream that carries them.
//!
//! Newer Prometheus clients ask for streamed chunks before plain samples.
//! They decode the chunk bytes with the TSDB's own iterator, so the bit
//! layout here has to match `tsdb/chunkenc/xor.go` exactly: a chunk that
//! merely round-trips through this module's own decoder is not enough,
//! which is why the tests pin hand-derived bytes.
//!
//! Both decoders ([`decode_xor`], [`read_frames`]) take untrusted bytes
//! (from an upstream, or a fuzzer) and answer malformed input with a
//! [`ChunkError`] instead of panicking or allocating for sizes the input
//! only claims.

use prost::Message;

use crate::prompb;

/// Samples per chunk, as the Prometheus TSDB cuts them; larger chunks are
/// valid but compress no better and make clients decode more than they need.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// Why samples could not be encoded, or bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The chunk header counts samples in a `u16`.
    #[error("{0} samples do not fit one XOR chunk, whose header counts at most 65535")]
    TooManySamples(usize),
    /// Prometheus assumes strictly increasing timestamps within a series.
    #[error(
        "sample {index} at {timestamp_ms} ms does not come after the previous sample at {previous_ms} ms"
    )]
    Unsorted {
        /// Position of the offending sample in the input.
        index: usize,
        /// Its timestamp.
        timestamp_ms: i64,
        /// The timestamp before it.
        previous_ms: i64,
    },
    /// The chunk ended before the sample count in its header was reached.
    #[error("XOR chunk is truncated: it ends inside {0}")]
    Truncated(&'static str),
    /// The header claims more samples than the remaining bytes could encode.
    #[error("XOR chunk declares {declared} samples, more than its {bytes} bytes can hold")]
    CountTooLarge {
        /// Sample count from the header.
        declared: usize,
        /// Size of the whole chunk.
        bytes: usize,
    },
    /// A varint ran past ten bytes or 64 bits.
    #[error("XOR chunk has a timestamp varint that overflows 64 bits")]
    VarintOverflow,
    /// A value's leading-zero count and significant-bit count exceed 64 bits.
    #[error(
        "XOR chunk has an invalid value window: {leading} leading zeros and {significant} significant bits exceed 64"
    )]
    BadValueWindow {
        /// Leading-zero count read from the chunk.
        leading: u32,
        /// Significant-bit count read from the chunk.
        significant: u32,
    },
    /// A frame's length prefix is not a valid uvarint.
    #[error("frame at byte {offset} has a malformed length prefix")]
    BadFrameLength {
        /// Where the frame starts in the body.
        offset: usize,
    },
    /// A frame is larger than the caller allows.
    #[error("frame at byte {offset} declares {len} bytes, over the {limit}-byte limit")]
    FrameTooLarge {
        /// Where the frame starts in the body.
        offset: usize,
        /// Message length from the frame header.
        len: u64,
        /// The caller's limit.
        limit: usize,
    },
    /// The body ends inside a frame.
    #[error("frame at byte {offset} is truncated")]
    TruncatedFrame {
        /// Where the frame starts in the body.
        offset: usize,
    },
    /// A frame's message does not match its checksum.
    #[error(
        "frame at byte {offset} is corrupt: CRC32C of its message is {actual:#010x}, its header says {expected:#010x}"
    )]
    CrcMismatch {
        /// Where the frame starts in the body.
        offset: usize,
        /// Checksum from the frame header.
        expected: u32,
        /// Checksum of the message bytes received.
        actual: u32,
    },
    /// A frame's checksum is right but its message is not a `ChunkedReadResponse`.
    #[error("frame at byte {offset} is not a valid ChunkedReadResponse: {error}")]
    Protobuf {
        /// Where the frame starts in the body.
        offset: usize,
        /// The protobuf decoder's complaint.
        error: prost::DecodeError,
    },
}

/// Encodes samples as one Prometheus XOR chunk (`Chunk.type = XOR`).
///
/// `samples` must be in strictly increasing time order. Prometheus's TSDB
/// never puts more than [`MAX_SAMPLES_PER_CHUNK`] samples in a chunk, and
/// [`chunk_series`] splits series accordingly; this function itself accepts
/// up to `u16::MAX`, the most the header can count. An empty slice encodes
/// as a bare two-byte header.
pub fn encode_xor(samples: &[(i64, f64)]) -> Result<Vec<u8>, ChunkError> {
    let count =
        u16::try_from(samples.len()).map_err(|_| ChunkError::TooManySamples(samples.len()))?;
    check_order(samples)?;

    let mut w = BitWriter::default();
    w.write_bits(u64::from(count), 16);
    let mut prev_t = 0i64;
    let mut prev_delta = 0u64;
    let mut prev_v = 0u64;
    let mut window = None;
    for (i, &(t, v)) in samples.iter().enumerate() {
        let v = v.to_bits();
        match i {
            0 => {
                write_uvarint(&mut w, zigzag(t));
                w.write_bits(v, 64);
            }
            1 => {
                // Go computes deltas as uint64(t - prev): wrapping arithmetic
                // keeps the extreme timestamps the decoder's wrapping sums
                // reproduce.
                prev_delta = t.wrapping_sub(prev_t) as u64;
                write_uvarint(&mut w, prev_delta);
                write_value(&mut w, v, prev_v, &mut window);
            }
            _ => {
                let delta = t.wrapping_sub(prev_t) as u64;
                write_dod(&mut w, delta.wrapping_sub(prev_delta) as i64);
                prev_delta = delta;
                write_value(&mut w, v, prev_v, &mut window);
            }
        }
        prev_t = t;
        prev_v = v;
    }
    // Prometheus's bit stream adds a byte after every whole byte it writes
    // and fills it with the next bit; a chunk of one sample never writes a
    // single bit, so its stream ends in that empty byte. Matched, so that a
    // chunk's bytes are Prometheus's own.
    if samples.len() == 1 {
        w.bytes.push(0);
    }
    Ok(w.bytes)
}

/// Decodes one XOR chunk into `(unix ms, value)` samples.
///
/// Safe on arbitrary bytes: truncated input, a sample count the bytes
/// cannot hold, overlong varints and impossible value windows are errors.
/// Bytes after the last counted sample are ignored, as Prometheus does.
pub fn decode_xor(data: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let mut r = BitReader::new(data);
    let count = r.read_bits(16, "the sample count")? as usize;
    // Refuse an inflated count before allocating for it: the cheapest
    // samples are a 1-byte varint and 64 value bits, then a 1-byte varint
    // and a 1-bit value, then one bit each for timestamp and value.
    let min_bits = match count {
        0 => 0,
        1 => 72,
        n => 81 + 2 * (n - 2),
    };
    if min_bits > r.remaining() {
        return Err(ChunkError::CountTooLarge {
            declared: count,
            bytes: data.len(),
        });
    }

    let mut samples = Vec::with_capacity(count);
    let mut t = 0i64;
    let mut delta = 0u64;
    let mut v = 0u64;
    // Prometheus's iterator starts from an all-zero window rather than "no
    // window", so a reuse bit before any window reads 64 bits; accept the
    // same chunks it accepts.
    let mut leading = 0u32;
    let mut trailing = 0u32;
    for i in 0..count {
        match i {
            0 => {
                t = unzigzag(read_uvarint(|| {
                    r.read_bits(8, "the first timestamp").map(|b| b as u8)
                })?);
                v = r.read_bits(64, "the first value")?;
            }
            1 => {
                delta = read_uvarint(|| r.read_bits(8, "the second timestamp").map(|b| b as u8))?;
                t = t.wrapping_add(delta as i64);
                v = read_value(&mut r, v, &mut leading, &mut trailing)?;
            }
            _ => {
                delta = delta.wrapping_add(read_dod(&mut r)? as u64);
                t = t.wrapping_add(delta as i64);
                v = read_value(&mut r, v, &mut leading, &mut trailing)?;
            }
        }
        samples.push((t, f64::from_bits(v)));
    }
    Ok(samples)
}

/// Splits a series into XOR chunks of at most [`MAX_SAMPLES_PER_CHUNK`]
/// samples, each labelled with its first and last timestamp.
///
/// Never fails, because it runs while an answer is being written: a sample
/// whose timestamp does not come after the one before it is dropped rather
/// than producing a chunk Prometheus would iterate out of order. Callers
/// are expected to pass strictly increasing timestamps, so nothing is
/// dropped in practice. An empty series gives no chunks.
pub fn chunk_series(samples: &[(i64, f64)]) -> Vec<prompb::Chunk> {
    let ordered;
    let samples = if check_order(samples).is_ok() {
        samples
    } else {
        let mut kept: Vec<(i64, f64)> = Vec::with_capacity(samples.len());
        for &s in samples {
            if kept.last().is_none_or(|last| s.0 > last.0) {
                kept.push(s);
            }
        }
        ordered = kept;
        &ordered
    };
    samples
        .chunks(MAX_SAMPLES_PER_CHUNK)
        .filter_map(|chunk| {
            let (first, last) = (chunk.first()?, chunk.last()?);
            Some(prompb::Chunk {
                min_time_ms: first.0,
                max_time_ms: last.0,
                r#type: prompb::chunk::Encoding::Xor as i32,
                // Ordered and at most 120 samples, so encoding cannot fail.
                data: encode_xor(chunk).ok()?,
            })
        })
        .collect()
}

/// Appends one stream frame to `out`: uvarint(message length), big-endian
/// CRC32-Castagnoli of the message, then the message.
///
/// Prometheus's client reads `chunked_series[0]` of every frame without
/// checking it exists, so callers must not send a message without series.
pub fn write_frame(out: &mut Vec<u8>, message: &prompb::ChunkedReadResponse) {
    let body = message.encode_to_vec();
    let mut len = body.len() as u64;
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(&crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
}

/// Parses a whole `STREAMED_XOR_CHUNKS` body into its messages, checking
/// every frame's length against `max_frame` (Prometheus's
/// `chunked_read_limit`, 5e7 bytes by default) and its CRC32C.
pub fn read_frames(
    body: &[u8],
    max_frame: usize,
) -> Result<Vec<prompb::ChunkedReadResponse>, ChunkError> {
    let mut messages = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let offset = pos;
        let len = read_uvarint(|| {
            let byte = body
                .get(pos)
                .copied()
                .ok_or(ChunkError::TruncatedFrame { offset })?;
            pos += 1;
            Ok(byte)
        })
        .map_err(|e| match e {
            ChunkError::VarintOverflow => ChunkError::BadFrameLength { offset },
            other => other,
        })?;
        if usize::try_from(len).map_or(true, |len| len > max_frame) {
            return Err(ChunkError::FrameTooLarge {
                offset,
                len,
                limit: max_frame,
            });
        }
        // Checked against the body before slicing, so a lying length costs
        // neither a panic nor an allocation.
        let crc_end = pos.saturating_add(4);
        let end = crc_end.saturating_add(len as usize);
        let (Some(crc), Some(message)) = (body.get(pos..crc_end), body.get(crc_end..end)) else {
            return Err(ChunkError::TruncatedFrame { offset });
        };
        let expected = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let actual = crc32c(message);
        if actual != expected {
            return Err(ChunkError::CrcMismatch {
                offset,
                expected,
                actual,
            });
        }
        let decoded = prompb::ChunkedReadResponse::decode(message)
            .map_err(|error| ChunkError::Protobuf { offset, error })?;
        messages.push(decoded);
        pos = end;
    }
    Ok(messages)
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

fn check_order(samples: &[(i64, f64)]) -> Result<(), ChunkError> {
    for (index, pair) in samples.windows(2).enumerate() {
        if pair[1].0 <= pair[0].0 {
            return Err(ChunkError::Unsorted {
                index: index + 1,
                timestamp_ms: pair[1].0,
                previous_ms: pair[0].0,
            });
        }
    }
    Ok(())
}

/// Go's `binary.PutVarint` mapping of signed to unsigned.
fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn write_uvarint(w: &mut BitWriter, mut x: u64) {
    while x >= 0x80 {
        w.write_bits(x & 0x7f | 0x80, 8);
        x >>= 7;
    }
    w.write_bits(x, 8);
}

/// Go's `binary.ReadUvarint`, including its overflow rule: at most ten
/// bytes, the tenth no more than 1.
fn read_uvarint(mut next: impl FnMut() -> Result<u8, ChunkError>) -> Result<u64, ChunkError> {
    let mut x = 0u64;
    for i in 0..10 {
        let b = next()?;
        if b < 0x80 {
            if i == 9 && b > 1 {
                return Err(ChunkError::VarintOverflow);
            }
            return Ok(x | u64::from(b) << (7 * i));
        }
        x |= u64::from(b & 0x7f) << (7 * i);
    }
    Err(ChunkError::VarintOverflow)
}

/// Prometheus's `bitRange`: an n-bit two's-complement field holds
/// −(2^(n−1)−1) … 2^(n−1), not the usual −2^(n−1) … 2^(n−1)−1, because the
/// decoder reads a raw value above 2^(n−1) (not at or above) as negative.
fn fits(dod: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    (-(half - 1)..=half).contains(&dod)
}

/// Delta-of-delta buckets, widest last; Prometheus uses wider buckets than
/// Gorilla's because its timestamps are milliseconds, not seconds.
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

fn write_dod(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bits(0, 1);
        return;
    }
    for (prefix, prefix_len, nbits) in DOD_BUCKETS {
        if fits(dod, nbits) {
            w.write_bits(prefix, prefix_len);
            // Two's complement truncated to the field; read_dod sign-extends.
            w.write_bits(dod as u64, nbits);
            return;
        }
    }
    w.write_bits(0b1111, 4);
    w.write_bits(dod as u64, 64);
}

fn read_dod(r: &mut BitReader) -> Result<i64, ChunkError> {
    // The prefix is a unary count of ones, at most four.
    let mut ones = 0;
    while ones < 4 && r.read_bits(1, "a timestamp")? == 1 {
        ones += 1;
    }
    let nbits = match ones {
        0 => return Ok(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => return Ok(r.read_bits(64, "a timestamp")? as i64),
    };
    let raw = r.read_bits(nbits, "a timestamp")?;
    let half = 1u64 << (nbits - 1);
    Ok(if raw > half {
        raw as i64 - (1i64 << nbits)
    } else {
        raw as i64
    })
}

/// Writes `v` XOR'd with the previous value. `window` is the previous
/// (leading zeros, trailing zeros), `None` before the first non-zero XOR.
fn write_value(w: &mut BitWriter, v: u64, prev: u64, window: &mut Option<(u32, u32)>) {
    let xor = v ^ prev;
    if xor == 0 {
        w.write_bits(0, 1);
        return;
    }
    w.write_bits(1, 1);
    // The count field has 5 bits. Clamping before the window comparison
    // matters: Prometheus compares the clamped count, and a different
    // choice here would pick a different branch and different bits.
    let leading = xor.leading_zeros().min(31);
    let trailing = xor.trailing_zeros();
    if let Some((prev_leading, prev_trailing)) = *window
        && leading >= prev_leading
        && trailing >= prev_trailing
    {
        w.write_bits(0, 1);
        w.write_bits(xor >> prev_trailing, 64 - prev_leading - prev_trailing);
        return;
    }
    *window = Some((leading, trailing));
    let significant = 64 - leading - trailing;
    w.write_bits(1, 1);
    w.write_bits(u64::from(leading), 5);
    // 64 significant bits do not fit 6 bits; 0 never occurs (that is the
    // equal-value case), so it stands for 64.
    w.write_bits(u64::from(significant) & 0x3f, 6);
    w.write_bits(xor >> trailing, significant);
}

fn read_value(
    r: &mut BitReader,
    prev: u64,
    leading: &mut u32,
    trailing: &mut u32,
) -> Result<u64, ChunkError> {
    if r.read_bits(1, "a value")? == 0 {
        return Ok(prev);
    }
    if r.read_bits(1, "a value")? == 1 {
        let new_leading = r.read_bits(5, "a value")? as u32;
        let significant = match r.read_bits(6, "a value")? as u32 {
            0 => 64,
            n => n,
        };
        if new_leading + significant > 64 {
            return Err(ChunkError::BadValueWindow {
                leading: new_leading,
                significant,
            });
        }
        *leading = new_leading;
        *trailing = 64 - new_leading - significant;
    }
    let significant = 64 - *leading - *trailing;
    let bits = r.read_bits(significant, "a value")?;
    // A 64-bit window has no trailing zeros, so the shift is always < 64.
    Ok(prev ^ (bits << *trailing))
}

/// Bits appended most significant first, the last byte zero-padded.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Unwritten bits left in the last byte.
    free: u32,
}

impl BitWriter {
    /// Appends the low `n` (at most 64) bits of `value`.
    fn write_bits(&mut self, value: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            n -= take;
            let part = (value >> n) & ((1u64 << take) - 1);
            if let Some(last) = self.bytes.last_mut() {
                *last |= (part as u8) << (self.free - take);
            }
            self.free -= take;
        }
    }

    #[cfg(test)]
    fn bit_len(&self) -> usize {
        self.bytes.len() * 8 - self.free as usize
    }
}

/// Bounds-checked reads of the bits [`BitWriter`] writes.
struct BitReader<'a> {
    data: &'a [u8],
    /// Next bit to read, counted from the first byte's most significant bit.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        (self.data.len().saturating_mul(8)).saturating_sub(self.pos)
    }

    /// Reads `n` (at most 64) bits; `what` names the field for the error.
    fn read_bits(&mut self, mut n: u32, what: &'static str) -> Result<u64, ChunkError> {
        if n as usize > self.remaining() {
            return Err(ChunkError::Truncated(what));
        }
        let mut value = 0u64;
        while n > 0 {
            let byte = self
                .data
                .get(self.pos / 8)
                .copied()
                .ok_or(ChunkError::Truncated(what))?;
            let offset = (self.pos % 8) as u32;
            let take = n.min(8 - offset);
            let part = (u64::from(byte) >> (8 - offset - take)) & ((1u64 << take) - 1);
            value = (value << take) | part;
            self.pos += take as usize;
            n -= take;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn assert_round_trip(samples: &[(i64, f64)]) {
        let data = encode_xor(samples).unwrap();
        let back = decode_xor(&data).unwrap();
        assert_eq!(back.len(), samples.len());
        for (i, (got, want)) in back.iter().zip(samples).enumerate() {
            assert_eq!(got.0, want.0, "timestamp {i}");
            // Bit patterns, so NaN payloads and -0.0 count.
            assert_eq!(got.1.to_bits(), want.1.to_bits(), "value {i}");
        }
    }

    /// Timestamps whose third and later samples have exactly these
    /// delta-of-deltas.
    fn with_dods(dods: &[i64]) -> Vec<(i64, f64)> {
        let mut t = 1_700_000_000_000i64;
        // A first delta large enough that negative dods keep time moving forward.
        let mut delta = 1i64 << 42;
        let mut samples = vec![(t, 1.0)];
        t += delta;
        samples.push((t, 2.0));
        for (i, dod) in dods.iter().enumerate() {
            delta += dod;
            t += delta;
            samples.push((t, i as f64));
        }
        samples
    }

    #[test]
    fn round_trips_small_and_special_cases() {
        assert_round_trip(&[]);
        assert_round_trip(&[(1_000, 1.5)]);
        assert_round_trip(&[(1_000, 1.5), (16_000, -2.25)]);
        assert_round_trip(&[(1, 7.0), (2, 7.0), (3, 7.0), (4, 7.0)]);
        // Prometheus's stale marker is a NaN with a specific payload.
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        assert_round_trip(&[
            (0, f64::NAN),
            (10, stale),
            (20, f64::INFINITY),
            (30, f64::NEG_INFINITY),
            (40, -0.0),
            (50, 0.0),
            (60, f64::MIN_POSITIVE),
            (70, f64::MAX),
            (80, -f64::MAX),
            (90, f64::from_bits(1)),
            (100, -f64::NAN),
        ]);
        // XORs with no leading or trailing zeros need all 64 significant
        // bits, the count written as 0.
        assert_round_trip(&[
            (0, f64::from_bits(0)),
            (1, f64::from_bits(u64::MAX)),
            (2, f64::from_bits(0x8000_0000_0000_0001)),
            (3, f64::from_bits(0)),
        ]);
    }

    /// Prometheus 2.42's own chunk of one sample, byte for byte (seen in
    /// its remote-read answers): the varint timestamp and the value's 64
    /// bits, then an empty byte.
    #[test]
    fn one_sample_chunks_end_as_prometheus_ends_them() {
        let bytes = encode_xor(&[(1_000, 1.5)]).unwrap();
        assert_eq!(
            bytes,
            [0, 1, 0xd0, 0x0f, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0],
            "count 1, zigzag varint of 1,000, the bits of 1.5, an empty byte"
        );
        assert_eq!(decode_xor(&bytes).unwrap(), [(1_000, 1.5)]);
    }

    #[test]
    fn round_trips_extreme_timestamps() {
        assert_round_trip(&[(-5_000_000_000_000, 1.0), (-1, 2.0), (0, 3.0), (1, 4.0)]);
        assert_round_trip(&[(i64::MIN, 1.0), (i64::MAX, 2.0)]);
        assert_round_trip(&[(i64::MIN, 1.0), (0, 2.0), (i64::MAX, 3.0)]);
        assert_round_trip(&[(i64::MIN, 1.0), (i64::MIN + 1, 2.0), (i64::MAX, 3.0)]);
        assert_round_trip(&[(i64::MAX - 2, 1.0), (i64::MAX - 1, 2.0), (i64::MAX, 3.0)]);
    }

    #[test]
    fn round_trips_every_delta_of_delta_bucket_boundary() {
        let dods = [
            0,
            1,
            -1,
            8191,
            -8191,
            8192,
            -8192,
            8193,
            65536,
            -65535,
            65537,
            -65536,
            524_288,
            -524_287,
            524_289,
            -524_288,
            1 << 40,
            -(1 << 40),
            0,
        ];
        let samples = with_dods(&dods);
        assert_round_trip(&samples);
        // Also one boundary at a time, so each dod follows a dod of 0.
        for dod in dods {
            assert_round_trip(&with_dods(&[0, dod, 0]));
        }
    }

    #[test]
    fn delta_of_delta_buckets_match_prometheus_bit_range() {
        // (dod, prefix + payload bits): the boundary values are where a
        // symmetric or off-by-one range would choose a different bucket.
        let cases = [
            (0, 1),
            (1, 16),
            (-1, 16),
            (8191, 16),
            (-8191, 16),
            (8192, 16),
            (-8192, 20),
            (8193, 20),
            (65536, 20),
            (-65535, 20),
            (65537, 24),
            (-65536, 24),
            (524_288, 24),
            (-524_287, 24),
            (524_289, 68),
            (-524_288, 68),
            (1 << 40, 68),
            (i64::MIN, 68),
        ];
        for (dod, bits) in cases {
            let mut w = BitWriter::default();
            write_dod(&mut w, dod);
            assert_eq!(w.bit_len(), bits, "dod {dod}");
            let mut r = BitReader::new(&w.bytes);
            assert_eq!(read_dod(&mut r).unwrap(), dod, "dod {dod}");
        }
    }

    #[test]
    fn round_trips_random_walks() {
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        for _ in 0..200 {
            let n = rng.random_range(1..=MAX_SAMPLES_PER_CHUNK);
            let mut t = rng.random_range(-1_000_000_000_000i64..2_000_000_000_000);
            let mut v: f64 = rng.random_range(-1e6..1e6);
            let step = rng.random_range(1..100_000i64);
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                samples.push((t, v));
                // Mostly regular scrapes with jitter, sometimes long gaps.
                t += match rng.random_range(0..10) {
                    0 => rng.random_range(1..10_000_000),
                    1..=3 => step + rng.random_range(-step / 2..=step / 2),
                    _ => step,
                };
                v = match rng.random_range(0..5) {
                    0 => v,
                    1 => v.round(),
                    2 => f64::from_bits(rng.random()),
                    _ => v + rng.random_range(-10.0..10.0),
                };
            }
            assert_round_trip(&samples);
        }
    }

    #[test]
    fn golden_three_sample_chunk() {
        // (1000, 1.0), (2000, 1.0), (3000, 2.0), derived by hand:
        //   00 03                    sample count 3, big-endian u16
        //   D0 0F                    varint(1000): zig-zag 2000 = 0b1111_1010000
        //                            -> 0x80|0x50, 0x0F
        //   3F F0 00 00 00 00 00 00  1.0 as raw bits
        //   E8 07                    uvarint delta 1000 = 0b111_1101000
        //                            -> 0x80|0x68, 0x07
        // then bits:
        //   0                        value 1.0 == 1.0
        //   0                        dod 1000 - 1000 = 0
        //   1                        2.0 != 1.0; XOR = 0x7FF0_0000_0000_0000
        //   1                        no previous window: new window
        //   00001                    1 leading zero
        //   001011                   64 - 1 - 52 trailing = 11 significant bits
        //   11111111111              XOR >> 52
        // = 0011_0000 1001_0111 1111_1111 11(00_0000 padding)
        // = 30 97 FF C0
        let samples = [(1000, 1.0), (2000, 1.0), (3000, 2.0)];
        let want = [
            0x00, 0x03, 0xD0, 0x0F, 0x3F, 0xF0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xE8, 0x07,
            0x30, 0x97, 0xFF, 0xC0,
        ];
        assert_eq!(encode_xor(&samples).unwrap(), want);
        assert_eq!(decode_xor(&want).unwrap(), samples);
    }

    #[test]
    fn golden_chunk_with_negative_dod_and_window_reuse() {
        // (0, 2.0), (10, 3.0), (19, 2.0), derived by hand:
        //   00 03                    sample count 3
        //   00                       varint(0)
        //   40 00 00 00 00 00 00 00  2.0 as raw bits
        //   0A                       uvarint delta 10
        // then bits:
        //   1 1 01100 000001 1       3.0 ^ 2.0 = 0x0008_0000_0000_0000: new
        //                            window, 12 leading, 1 significant bit
        //   10 11111111111111        delta 9, dod -1 in the 14-bit bucket
        //   1 0 1                    2.0 ^ 3.0 is the same bit: reuse the
        //                            window, 1 bit
        // = 1101_1000 0000_1110 1111_1111 1111_1110 1(000_0000 padding)
        // = D8 0E FF FE 80
        let samples = [(0, 2.0), (10, 3.0), (19, 2.0)];
        let want = [
            0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0xD8, 0x0E,
            0xFF, 0xFE, 0x80,
        ];
        assert_eq!(encode_xor(&samples).unwrap(), want);
        assert_eq!(decode_xor(&want).unwrap(), samples);
    }

    #[test]
    fn empty_chunk_is_a_bare_header() {
        assert_eq!(encode_xor(&[]).unwrap(), [0, 0]);
        assert!(decode_xor(&[0, 0]).unwrap().is_empty());
    }

    #[test]
    fn encode_rejects_unsorted_and_oversized_input() {
        assert!(matches!(
            encode_xor(&[(2, 1.0), (1, 1.0)]),
            Err(ChunkError::Unsorted {
                index: 1,
                timestamp_ms: 1,
                previous_ms: 2
            })
        ));
        assert!(matches!(
            encode_xor(&[(1, 1.0), (1, 2.0)]),
            Err(ChunkError::Unsorted { .. })
        ));
        let many: Vec<(i64, f64)> = (0..=i64::from(u16::MAX)).map(|t| (t, 0.0)).collect();
        assert!(matches!(
            encode_xor(&many),
            Err(ChunkError::TooManySamples(65536))
        ));
        assert_round_trip(&many[..usize::from(u16::MAX)]);
    }

    #[test]
    fn decode_rejects_every_truncation() {
        let mut rng = SmallRng::seed_from_u64(7);
        let samples: Vec<(i64, f64)> = (0..MAX_SAMPLES_PER_CHUNK as i64)
            .map(|i| {
                (
                    1_000 * i + rng.random_range(0..50),
                    rng.random_range(0.0..100.0),
                )
            })
            .collect();
        let data = encode_xor(&samples).unwrap();
        // The last byte always holds at least one meaningful bit, so every
        // strict prefix is short.
        for len in 0..data.len() {
            assert!(decode_xor(&data[..len]).is_err(), "prefix of {len} bytes");
        }
    }

    #[test]
    fn decode_rejects_inflated_counts_without_allocating() {
        let mut data = encode_xor(&[(1, 1.0), (2, 2.0)]).unwrap();
        data[0] = 0xff;
        data[1] = 0xff;
        assert!(matches!(
            decode_xor(&data),
            Err(ChunkError::CountTooLarge {
                declared: 65535,
                ..
            })
        ));
        assert!(matches!(decode_xor(&[0xff]), Err(ChunkError::Truncated(_))));
    }

    #[test]
    fn decode_rejects_impossible_windows_and_varints() {
        // One-sample header, then an 11-byte varint.
        let mut data = vec![0x00, 0x01];
        data.extend([0xff; 10]);
        data.extend([0x01; 8]);
        assert!(matches!(decode_xor(&data), Err(ChunkError::VarintOverflow)));

        // Two samples, the second value declaring 31 leading zeros and 40
        // significant bits.
        let mut w = BitWriter::default();
        w.write_bits(2, 16);
        write_uvarint(&mut w, 0);
        w.write_bits(0, 64);
        write_uvarint(&mut w, 1);
        w.write_bits(0b11, 2);
        w.write_bits(31, 5);
        w.write_bits(40, 6);
        w.write_bits(0, 64);
        assert!(matches!(
            decode_xor(&w.bytes),
            Err(ChunkError::BadValueWindow {
                leading: 31,
                significant: 40
            })
        ));
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        let mut rng = SmallRng::seed_from_u64(42);
        let valid = encode_xor(
            &(0..60)
                .map(|i| (i * 15_000, f64::from(i as i32).sin()))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        for round in 0..20_000 {
            let data: Vec<u8> = match round % 3 {
                // Pure noise.
                0 => (0..rng.random_range(0..200))
                    .map(|_| rng.random())
                    .collect(),
                // Noise behind a small, plausible count, to get past the
                // size check into the sample decoder.
                1 => {
                    let mut d = vec![0, rng.random_range(0..20)];
                    d.extend((0..rng.random_range(0..200)).map(|_| rng.random::<u8>()));
                    d
                }
                // A valid chunk with a few bits flipped.
                _ => {
                    let mut d = valid.clone();
                    for _ in 0..rng.random_range(1..4) {
                        let i = rng.random_range(0..d.len());
                        d[i] ^= 1 << rng.random_range(0..8);
                    }
                    d
                }
            };
            let _ = decode_xor(&data);
        }
    }

    #[test]
    fn chunk_series_splits_at_120_samples() {
        let samples: Vec<(i64, f64)> = (0..250).map(|i| (10_000 + i * 1_000, i as f64)).collect();
        let chunks = chunk_series(&samples);
        let bounds: Vec<(usize, usize)> = vec![(0, 120), (120, 240), (240, 250)];
        assert_eq!(chunks.len(), bounds.len());
        for (chunk, (from, to)) in chunks.iter().zip(bounds) {
            assert_eq!(chunk.r#type, prompb::chunk::Encoding::Xor as i32);
            assert_eq!(chunk.min_time_ms, samples[from].0);
            assert_eq!(chunk.max_time_ms, samples[to - 1].0);
            assert_eq!(decode_xor(&chunk.data).unwrap(), samples[from..to]);
        }
        assert!(chunk_series(&[]).is_empty());
    }

    #[test]
    fn chunk_series_drops_out_of_order_samples() {
        let chunks = chunk_series(&[(1, 1.0), (3, 3.0), (2, 2.0), (3, 4.0), (4, 5.0)]);
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            decode_xor(&chunks[0].data).unwrap(),
            [(1, 1.0), (3, 3.0), (4, 5.0)]
        );
    }

    fn response(query_index: i64, samples: &[(i64, f64)]) -> prompb::ChunkedReadResponse {
        prompb::ChunkedReadResponse {
            chunked_series: vec![prompb::ChunkedSeries {
                labels: vec![prompb::Label {
                    name: "__name__".into(),
                    value: "predicted_x".into(),
                }],
                chunks: chunk_series(samples),
            }],
            query_index,
        }
    }

    #[test]
    fn frames_round_trip() {
        let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 60_000, i as f64 / 3.0)).collect();
        let messages = [response(0, &samples), response(1, &samples[..5])];
        let mut body = Vec::new();
        for m in &messages {
            write_frame(&mut body, m);
        }
        assert_eq!(read_frames(&body, 50_000_000).unwrap(), messages);
        assert!(read_frames(&[], 1).unwrap().is_empty());

        // A small frame laid out by hand: uvarint length, big-endian CRC.
        let small = response(7, &[(1, 1.0)]);
        let encoded = small.encode_to_vec();
        assert!(encoded.len() < 0x80, "one-byte length prefix");
        let mut want = vec![encoded.len() as u8];
        want.extend(crc32c(&encoded).to_be_bytes());
        want.extend(&encoded);
        let mut got = Vec::new();
        write_frame(&mut got, &small);
        assert_eq!(got, want);
    }

    #[test]
    fn frames_reject_corruption_oversize_and_truncation() {
        let mut body = Vec::new();
        write_frame(&mut body, &response(0, &[(1, 1.0), (2, 2.0)]));
        let last = body.len() - 1;

        let mut flipped = body.clone();
        flipped[last] ^= 0x01;
        assert!(matches!(
            read_frames(&flipped, 1 << 20),
            Err(ChunkError::CrcMismatch { offset: 0, .. })
        ));

        let message_len = response(0, &[(1, 1.0), (2, 2.0)]).encoded_len();
        assert!(matches!(
            read_frames(&body, message_len - 1),
            Err(ChunkError::FrameTooLarge { offset: 0, .. })
        ));
        assert!(read_frames(&body, message_len).is_ok());

        for len in 1..body.len() {
            assert!(
                matches!(
                    read_frames(&body[..len], 1 << 20),
                    Err(ChunkError::TruncatedFrame { offset: 0 })
                ),
                "prefix of {len} bytes"
            );
        }

        // A length prefix of 2^64 - 1 with nothing behind it.
        let mut huge = vec![0xff; 9];
        huge.push(0x01);
        assert!(matches!(
            read_frames(&huge, usize::MAX),
            Err(ChunkError::TruncatedFrame { .. } | ChunkError::FrameTooLarge { .. })
        ));
        let mut overlong = vec![0xff; 10];
        overlong.push(0x01);
        assert!(matches!(
            read_frames(&overlong, usize::MAX),
            Err(ChunkError::BadFrameLength { offset: 0 })
        ));

        // Right checksum, wrong message.
        let junk = [0xff, 0xff, 0xff];
        let mut bad = vec![junk.len() as u8];
        bad.extend(crc32c(&junk).to_be_bytes());
        bad.extend(junk);
        assert!(matches!(
            read_frames(&bad, 1 << 20),
            Err(ChunkError::Protobuf { offset: 0, .. })
        ));
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }
}

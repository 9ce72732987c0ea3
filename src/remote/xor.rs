//! Prometheus TSDB XOR (Gorilla) chunks, the encoding of the samples in a
//! `STREAMED_XOR_CHUNKS` answer.
//!
//! Newer Prometheus clients ask for streamed chunks before plain samples.
//! They decode the chunk bytes with the TSDB's own iterator, so the bit
//! layout here has to match `tsdb/chunkenc/xor.go` exactly: a chunk that
//! merely round-trips through this module's own decoder is not enough,
//! which is why the tests pin hand-derived bytes.
//!
//! [`decode_xor`] takes untrusted bytes (from an upstream, or a fuzzer) and
//! answers malformed input with an [`XorError`] instead of panicking or
//! allocating for sizes the input only claims.

use super::bits::{BitReader, BitWriter, Truncated, VarintOverflow, unzigzag, zigzag};
use crate::prompb;

/// Samples per chunk, as the Prometheus TSDB cuts them; larger chunks are
/// valid but compress no better and make clients decode more than they need.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// Why samples could not be encoded as a chunk, or a chunk could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum XorError {
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
}

impl From<Truncated> for XorError {
    fn from(Truncated(what): Truncated) -> Self {
        Self::Truncated(what)
    }
}

impl From<VarintOverflow> for XorError {
    fn from(_: VarintOverflow) -> Self {
        Self::VarintOverflow
    }
}

/// Encodes samples as one Prometheus XOR chunk (`Chunk.type = XOR`).
///
/// `samples` must be in strictly increasing time order. Prometheus's TSDB
/// never puts more than [`MAX_SAMPLES_PER_CHUNK`] samples in a chunk, and
/// [`chunk_series`] splits series accordingly; this function itself accepts
/// up to `u16::MAX`, the most the header can count. An empty slice encodes
/// as a bare two-byte header.
pub fn encode_xor(samples: &[(i64, f64)]) -> Result<Vec<u8>, XorError> {
    let count =
        u16::try_from(samples.len()).map_err(|_| XorError::TooManySamples(samples.len()))?;
    check_order(samples)?;

    let mut w = BitWriter::after(count.to_be_bytes().to_vec());
    let mut prev_t = 0i64;
    let mut prev_delta = 0u64;
    let mut prev_v = 0u64;
    let mut window = None;
    for (i, &(t, v)) in samples.iter().enumerate() {
        let v = v.to_bits();
        match i {
            0 => {
                w.write_uvarint(zigzag(t));
                w.write_bits(v, 64);
            }
            1 => {
                // Go computes deltas as uint64(t - prev): wrapping arithmetic
                // keeps the extreme timestamps the decoder's wrapping sums
                // reproduce.
                prev_delta = t.wrapping_sub(prev_t) as u64;
                w.write_uvarint(prev_delta);
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
    Ok(w.into_bytes())
}

/// Decodes one XOR chunk into `(unix ms, value)` samples.
///
/// Safe on arbitrary bytes: truncated input, a sample count the bytes
/// cannot hold, overlong varints and impossible value windows are errors.
/// Bytes after the last counted sample are ignored, as Prometheus does.
pub fn decode_xor(data: &[u8]) -> Result<Vec<(i64, f64)>, XorError> {
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
        return Err(XorError::CountTooLarge {
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
                t = unzigzag(r.read_uvarint::<XorError>("the first timestamp")?);
                v = r.read_bits(64, "the first value")?;
            }
            1 => {
                delta = r.read_uvarint::<XorError>("the second timestamp")?;
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

fn check_order(samples: &[(i64, f64)]) -> Result<(), XorError> {
    for (index, pair) in samples.windows(2).enumerate() {
        if pair[1].0 <= pair[0].0 {
            return Err(XorError::Unsorted {
                index: index + 1,
                timestamp_ms: pair[1].0,
                previous_ms: pair[0].0,
            });
        }
    }
    Ok(())
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

fn read_dod(r: &mut BitReader) -> Result<i64, XorError> {
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
) -> Result<u64, XorError> {
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
            return Err(XorError::BadValueWindow {
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

#[cfg(test)]
mod tests;

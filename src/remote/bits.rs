//! Bit-level I/O and Go's varints, as the TSDB's XOR chunks and the
//! stream frames lay them out: bits most significant first, integers in
//! Go's `encoding/binary` uvarint and zig-zag forms.

/// The input ended inside a field.
#[derive(Debug, thiserror::Error)]
#[error("the input ends inside {0}")]
pub struct Truncated(pub &'static str);

/// A uvarint that does not fit 64 bits.
#[derive(Debug, thiserror::Error)]
#[error("varint overflows 64 bits")]
pub struct VarintOverflow;

/// Bits appended most significant first, laid out byte for byte as
/// Prometheus 2.x's bit stream (`tsdb/chunkenc/bstream.go`) lays them out,
/// so that a chunk's bytes are Prometheus's own: the whole bytes of a field
/// are written a byte at a time, and a byte written at a byte boundary
/// leaves an empty byte after it, which the next bit fills and which ends
/// the stream when nothing follows.
#[derive(Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Unwritten bits left in the last byte.
    free: u32,
}

impl BitWriter {
    /// A writer that appends after `bytes` (a header), at a byte boundary.
    pub fn after(bytes: Vec<u8>) -> Self {
        Self { bytes, free: 0 }
    }

    /// Appends the low `n` (at most 64) bits of `value`.
    pub fn write_bits(&mut self, value: u64, mut n: u32) {
        while n >= 8 {
            n -= 8;
            self.write_byte((value >> n) as u8);
        }
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

    /// Appends eight bits: the free bits of the last byte take the top of
    /// `byte`, a new byte the rest, and as many bits stay free as before.
    fn write_byte(&mut self, byte: u8) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if let Some(last) = self.bytes.last_mut() {
            *last |= byte >> (8 - self.free);
        }
        self.bytes.push((u16::from(byte) << self.free) as u8);
    }

    /// Appends `x` as a uvarint, eight bits per byte.
    pub fn write_uvarint(&mut self, x: u64) {
        put_uvarint(x, |byte| self.write_bits(u64::from(byte), 8));
    }

    /// The bits written, the last byte zero-padded (or empty, after a
    /// byte written at a byte boundary).
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// How many bits have been written.
    #[cfg(test)]
    pub fn bit_len(&self) -> usize {
        self.bytes.len() * 8 - self.free as usize
    }
}

/// Bounds-checked reads of the bits [`BitWriter`] writes.
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next bit to read, counted from the first byte's most significant bit.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// Reads `data` from its first bit.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Bits left to read.
    pub fn remaining(&self) -> usize {
        (self.data.len().saturating_mul(8)).saturating_sub(self.pos)
    }

    /// Reads `n` (at most 64) bits; `what` names the field for the error.
    pub fn read_bits(&mut self, mut n: u32, what: &'static str) -> Result<u64, Truncated> {
        if n as usize > self.remaining() {
            return Err(Truncated(what));
        }
        let mut value = 0u64;
        while n > 0 {
            let byte = self
                .data
                .get(self.pos / 8)
                .copied()
                .ok_or(Truncated(what))?;
            let offset = (self.pos % 8) as u32;
            let take = n.min(8 - offset);
            let part = (u64::from(byte) >> (8 - offset - take)) & ((1u64 << take) - 1);
            value = (value << take) | part;
            self.pos += take as usize;
            n -= take;
        }
        Ok(value)
    }

    /// Reads a uvarint written by [`BitWriter::write_uvarint`]; `what`
    /// names the field for the error.
    pub fn read_uvarint<E>(&mut self, what: &'static str) -> Result<u64, E>
    where
        E: From<Truncated> + From<VarintOverflow>,
    {
        read_uvarint(|| Ok(self.read_bits(8, what)? as u8))
    }
}

/// Go's `binary.PutUvarint`: seven bits per byte, least significant first,
/// the high bit set on every byte but the last.
pub fn put_uvarint(mut x: u64, mut emit: impl FnMut(u8)) {
    while x >= 0x80 {
        emit(x as u8 | 0x80);
        x >>= 7;
    }
    emit(x as u8);
}

/// Go's `binary.ReadUvarint`, including its overflow rule: at most ten
/// bytes, the tenth no more than 1. `next` gives the bytes one at a time
/// and decides what running out of them means.
pub fn read_uvarint<E: From<VarintOverflow>>(
    mut next: impl FnMut() -> Result<u8, E>,
) -> Result<u64, E> {
    let mut x = 0u64;
    for i in 0..10 {
        let b = next()?;
        if b < 0x80 {
            if i == 9 && b > 1 {
                return Err(VarintOverflow.into());
            }
            return Ok(x | u64::from(b) << (7 * i));
        }
        x |= u64::from(b & 0x7f) << (7 * i);
    }
    Err(VarintOverflow.into())
}

/// Go's `binary.PutVarint` mapping of signed to unsigned.
pub fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(x: u64) -> Result<u64, VarintOverflow> {
        let mut bytes = Vec::new();
        put_uvarint(x, |b| bytes.push(b));
        let mut rest = bytes.iter().copied();
        read_uvarint(|| Ok(rest.next().expect("a complete varint")))
    }

    #[test]
    fn uvarints_follow_go_at_the_ten_byte_limit() {
        for x in [0, 1, 0x7f, 0x80, 1 << 62, u64::MAX] {
            assert_eq!(round_trip(x).unwrap(), x);
        }
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let read = |bytes: &[u8]| {
            let mut rest = bytes.iter().copied();
            read_uvarint(|| rest.next().ok_or(None))
        };
        assert_eq!(read(&max).unwrap(), u64::MAX);
        let mut tenth_too_big = max;
        tenth_too_big[9] = 0x02;
        assert!(matches!(read(&tenth_too_big), Err(Some(VarintOverflow))));
        let mut eleven = vec![0xff; 10];
        eleven.push(0x01);
        assert!(matches!(read(&eleven), Err(Some(VarintOverflow))));
        assert!(matches!(read(&max[..9]), Err(None)));
    }

    #[test]
    fn bits_cross_byte_boundaries() {
        let mut w = BitWriter::default();
        w.write_bits(0b101, 3);
        w.write_uvarint(300);
        w.write_bits(u64::MAX, 64);
        assert_eq!(w.bit_len(), 3 + 16 + 64);
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.read_bits(3, "a").unwrap(), 0b101);
        assert_eq!(
            r.read_uvarint::<crate::remote::xor::XorError>("b").ok(),
            Some(300)
        );
        assert_eq!(r.read_bits(64, "c").unwrap(), u64::MAX);
        assert_eq!(r.remaining(), 5);
        assert!(matches!(r.read_bits(6, "d"), Err(Truncated("d"))));
    }
}

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

/// The flake this pins: Prometheus 2.42 ended a chunk of several samples
/// with an empty byte where its last field was whole bytes written at a
/// byte boundary, and promcast's chunk lacked it. Derived by hand:
/// `00 03`, varint(0) `00`, the bits of 1.0, uvarint delta 10 `0A`, then
/// `1 1 10000 001000 11111111` (a new window: 16 leading zeros, 8
/// significant bits) and `0 1 0 00000001` (dod 0, the same window),
/// whose last eight bits start at a byte boundary: `E0 47 FA 01`, and the
/// empty byte.
#[test]
fn a_field_ending_on_a_byte_boundary_leaves_an_empty_byte() {
    let first = 1.0f64.to_bits();
    let second = first ^ (0xff << 40);
    let third = second ^ (1 << 40);
    let samples = [
        (0, 1.0),
        (10, f64::from_bits(second)),
        (20, f64::from_bits(third)),
    ];
    let want = [
        0x00, 0x03, 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0x0A, 0xE0, 0x47, 0xFA, 0x01, 0x00,
    ];
    assert_eq!(encode_xor(&samples).unwrap(), want);
    assert_eq!(decode_xor(&want).unwrap(), samples);
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
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
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
        0x00, 0x03, 0xD0, 0x0F, 0x3F, 0xF0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xE8, 0x07, 0x30,
        0x97, 0xFF, 0xC0,
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
        0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0xD8, 0x0E, 0xFF,
        0xFE, 0x80,
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
        Err(XorError::Unsorted {
            index: 1,
            timestamp_ms: 1,
            previous_ms: 2
        })
    ));
    assert!(matches!(
        encode_xor(&[(1, 1.0), (1, 2.0)]),
        Err(XorError::Unsorted { .. })
    ));
    let many: Vec<(i64, f64)> = (0..=i64::from(u16::MAX)).map(|t| (t, 0.0)).collect();
    assert!(matches!(
        encode_xor(&many),
        Err(XorError::TooManySamples(65536))
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
        Err(XorError::CountTooLarge {
            declared: 65535,
            ..
        })
    ));
    assert!(matches!(decode_xor(&[0xff]), Err(XorError::Truncated(_))));
}

#[test]
fn decode_rejects_impossible_windows_and_varints() {
    // One-sample header, then an 11-byte varint.
    let mut data = vec![0x00, 0x01];
    data.extend([0xff; 10]);
    data.extend([0x01; 8]);
    assert!(matches!(decode_xor(&data), Err(XorError::VarintOverflow)));

    // Two samples, the second value declaring 31 leading zeros and 40
    // significant bits.
    let mut w = BitWriter::default();
    w.write_bits(2, 16);
    w.write_uvarint(0);
    w.write_bits(0, 64);
    w.write_uvarint(1);
    w.write_bits(0b11, 2);
    w.write_bits(31, 5);
    w.write_bits(40, 6);
    w.write_bits(0, 64);
    assert!(matches!(
        decode_xor(&w.into_bytes()),
        Err(XorError::BadValueWindow {
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

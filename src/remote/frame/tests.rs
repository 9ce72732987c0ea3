use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::remote::xor::chunk_series;

/// Every message of a stream that arrives in `pieces`, drained after each
/// piece as a streaming caller would.
fn read_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    max_frame_bytes: usize,
) -> Result<Vec<prompb::ChunkedReadResponse>, FrameError> {
    let mut reader = FrameReader::new(max_frame_bytes);
    let mut messages = Vec::new();
    for piece in pieces {
        reader.push(piece);
        while let Some(message) = reader.next_frame()? {
            messages.push(message);
        }
    }
    reader.finish()?;
    Ok(messages)
}

/// Every message of a whole body pushed at once.
fn read_all(
    body: &[u8],
    max_frame_bytes: usize,
) -> Result<Vec<prompb::ChunkedReadResponse>, FrameError> {
    read_pieces([body], max_frame_bytes)
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
    assert_eq!(read_all(&body, 50_000_000).unwrap(), messages);
    assert!(read_all(&[], 1).unwrap().is_empty());

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
        read_all(&flipped, 1 << 20),
        Err(FrameError::CrcMismatch { offset: 0, .. })
    ));

    let message_len = response(0, &[(1, 1.0), (2, 2.0)]).encoded_len();
    assert!(matches!(
        read_all(&body, message_len - 1),
        Err(FrameError::TooLarge { offset: 0, .. })
    ));
    assert!(read_all(&body, message_len).is_ok());

    for len in 1..body.len() {
        assert!(
            matches!(
                read_all(&body[..len], 1 << 20),
                Err(FrameError::Truncated { offset: 0 })
            ),
            "prefix of {len} bytes"
        );
    }

    // A length prefix of 2^64 - 1 with nothing behind it.
    let mut huge = vec![0xff; 9];
    huge.push(0x01);
    assert!(matches!(
        read_all(&huge, usize::MAX),
        Err(FrameError::Truncated { .. } | FrameError::TooLarge { .. })
    ));
    let mut overlong = vec![0xff; 10];
    overlong.push(0x01);
    assert!(matches!(
        read_all(&overlong, usize::MAX),
        Err(FrameError::BadLength { offset: 0 })
    ));

    // Right checksum, wrong message.
    let junk = [0xff, 0xff, 0xff];
    let mut bad = vec![junk.len() as u8];
    bad.extend(crc32c(&junk).to_be_bytes());
    bad.extend(junk);
    assert!(matches!(
        read_all(&bad, 1 << 20),
        Err(FrameError::Protobuf { offset: 0, .. })
    ));
}

/// Three frames, the first with a two-byte length prefix, and where each
/// ends in the stream.
fn three_frames() -> (Vec<prompb::ChunkedReadResponse>, Vec<u8>, Vec<usize>) {
    let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 60_000, i as f64 / 3.0)).collect();
    let messages = vec![
        response(0, &samples),
        response(1, &samples[..1]),
        response(1, &samples[..5]),
    ];
    assert!(messages[0].encoded_len() >= 0x80, "two-byte length prefix");
    let mut body = Vec::new();
    let mut ends = Vec::new();
    for m in &messages {
        write_frame(&mut body, m);
        ends.push(body.len());
    }
    (messages, body, ends)
}

#[test]
fn frames_fed_byte_by_byte_come_out_as_each_completes() {
    let (messages, body, ends) = three_frames();
    let mut reader = FrameReader::new(1 << 20);
    let mut got = Vec::new();
    let mut completed_at = Vec::new();
    for (i, byte) in body.iter().enumerate() {
        reader.push(std::slice::from_ref(byte));
        while let Some(message) = reader.next_frame().unwrap() {
            got.push(message);
            completed_at.push(i + 1);
            // Nothing of a consumed frame stays behind.
            assert!(reader.pending.is_empty());
        }
        let frame_start = completed_at.last().copied().unwrap_or(0);
        assert_eq!(reader.pending.len(), i + 1 - frame_start);
        assert_eq!(reader.offset, frame_start);
    }
    reader.finish().unwrap();
    assert_eq!(got, messages);
    assert_eq!(completed_at, ends);
}

#[test]
fn frames_split_anywhere_read_the_same() {
    let (messages, body, ends) = three_frames();
    let largest = ends
        .iter()
        .scan(0, |start, &end| Some(end - std::mem::replace(start, end)))
        .max()
        .unwrap();
    let mut rng = SmallRng::seed_from_u64(11);
    for _ in 0..200 {
        let mut reader = FrameReader::new(1 << 20);
        let mut got = Vec::new();
        let mut rest = body.as_slice();
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(rng.random_range(1..=rest.len().min(600)));
            rest = tail;
            reader.push(piece);
            while let Some(message) = reader.next_frame().unwrap() {
                got.push(message);
            }
            // Only the frame still incomplete is held.
            assert!(reader.pending.len() < largest);
        }
        reader.finish().unwrap();
        assert_eq!(got, messages);
    }
    assert_eq!(read_pieces(body.chunks(1), 1 << 20).unwrap(), messages);
    assert_eq!(
        read_pieces([&[][..], &body[..], &[]], 1 << 20).unwrap(),
        messages
    );
}

#[test]
fn bad_length_prefixes_are_refused_before_the_frame_arrives() {
    // A prefix of 2^20 + 1 against a limit of 2^20, with nothing behind it.
    let mut reader = FrameReader::new(1 << 20);
    reader.push(&[0x81, 0x80]);
    assert!(reader.next_frame().unwrap().is_none());
    reader.push(&[0x40]);
    assert!(matches!(
        reader.next_frame(),
        Err(FrameError::TooLarge {
            offset: 0,
            len: 0x10_0001,
            limit: 0x10_0000
        })
    ));

    let mut reader = FrameReader::new(usize::MAX);
    for _ in 0..9 {
        reader.push(&[0xff]);
        assert!(reader.next_frame().unwrap().is_none());
    }
    reader.push(&[0xff]);
    assert!(matches!(
        reader.next_frame(),
        Err(FrameError::BadLength { offset: 0 })
    ));
}

#[test]
fn errors_name_the_frame_in_the_stream_and_repeat() {
    let (_, body, ends) = three_frames();
    let mut corrupt = body.clone();
    corrupt[ends[1] + 5] ^= 0x01;
    let mut reader = FrameReader::new(1 << 20);
    reader.push(&corrupt);
    assert!(reader.next_frame().unwrap().is_some());
    assert!(reader.next_frame().unwrap().is_some());
    for _ in 0..2 {
        let err = reader.next_frame().unwrap_err();
        assert!(
            matches!(err, FrameError::CrcMismatch { offset, .. } if offset == ends[1]),
            "{err}"
        );
    }

    let cut = ends[0] + 3;
    let mut reader = FrameReader::new(1 << 20);
    reader.push(&body[..cut]);
    assert!(reader.next_frame().unwrap().is_some());
    assert!(reader.next_frame().unwrap().is_none());
    let err = reader.finish().unwrap_err();
    assert!(
        matches!(err, FrameError::Truncated { offset } if offset == ends[0]),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("frame at byte {} is truncated", ends[0])
    );
}

#[test]
fn crc32c_matches_the_standard_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
}

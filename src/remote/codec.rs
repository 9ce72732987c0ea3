//! Wire encoding of remote-read messages: snappy block compression around
//! protobuf, with the size checks that keep a hostile body from costing
//! memory.

use prost::Message;

/// Largest decompressed message accepted, as in Prometheus's own read handler.
pub const MAX_DECODED_BYTES: usize = 32 << 20;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("body is not snappy block-compressed data: {0}")]
    Snappy(#[from] snap::Error),
    #[error("decompressed body would be {declared} bytes, over the {limit}-byte limit")]
    TooLarge { declared: usize, limit: usize },
    #[error("body is not a valid protobuf {message}: {error}")]
    Protobuf {
        message: &'static str,
        error: prost::DecodeError,
    },
}

/// Snappy-compresses the protobuf encoding of `message`.
pub fn encode<M: Message>(message: &M) -> Vec<u8> {
    let raw = message.encode_to_vec();
    // Compressing an in-memory buffer only fails past snap's 4 GiB input
    // limit, which a message held in memory never reaches.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// Decompresses and decodes a snappy-compressed protobuf message, refusing
/// bodies that declare more than `limit` decompressed bytes before
/// allocating anything.
pub fn decode<M: Message + Default>(body: &[u8], limit: usize) -> Result<M, CodecError> {
    let declared = snap::raw::decompress_len(body)?;
    if declared > limit {
        return Err(CodecError::TooLarge { declared, limit });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    M::decode(raw.as_slice()).map_err(|error| CodecError::Protobuf {
        message: std::any::type_name::<M>()
            .rsplit("::")
            .next()
            .unwrap_or("message"),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompb;

    fn request() -> prompb::ReadRequest {
        prompb::ReadRequest {
            queries: vec![prompb::Query {
                start_timestamp_ms: 1_000,
                end_timestamp_ms: 301_000,
                matchers: vec![prompb::LabelMatcher {
                    r#type: prompb::label_matcher::Type::Re as i32,
                    name: "__name__".into(),
                    value: "predicted_.*".into(),
                }],
                hints: Some(prompb::ReadHints {
                    step_ms: 60_000,
                    ..Default::default()
                }),
            }],
            accepted_response_types: vec![
                prompb::read_request::ResponseType::StreamedXorChunks as i32,
                prompb::read_request::ResponseType::Samples as i32,
            ],
        }
    }

    #[test]
    fn round_trips_requests_and_responses() {
        let req = request();
        let back: prompb::ReadRequest = decode(&encode(&req), MAX_DECODED_BYTES).unwrap();
        assert_eq!(back, req);
        let resp = prompb::ReadResponse {
            results: vec![prompb::QueryResult {
                timeseries: vec![prompb::TimeSeries {
                    labels: vec![prompb::Label {
                        name: "__name__".into(),
                        value: "predicted_x".into(),
                    }],
                    samples: vec![prompb::Sample {
                        value: 1.5,
                        timestamp: 7,
                    }],
                }],
            }],
        };
        let back: prompb::ReadResponse = decode(&encode(&resp), MAX_DECODED_BYTES).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn rejects_garbage_truncation_and_bombs() {
        let body = encode(&request());
        assert!(matches!(
            decode::<prompb::ReadRequest>(&body[..body.len() / 2], MAX_DECODED_BYTES),
            Err(CodecError::Snappy(_))
        ));
        let not_proto = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
        assert!(matches!(
            decode::<prompb::ReadRequest>(&not_proto, MAX_DECODED_BYTES),
            Err(CodecError::Protobuf { .. })
        ));
        // A varint header declaring 2 GiB of output, followed by nothing.
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        assert!(matches!(
            decode::<prompb::ReadRequest>(&bomb, MAX_DECODED_BYTES),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(decode::<prompb::ReadRequest>(b"hello world", MAX_DECODED_BYTES).is_err());
    }
}

//! Prometheus's remote-read wire format, split where Prometheus splits it:
//!
//! - [`codec`]: a request, and a `SAMPLES` answer, is one protobuf message
//!   in a snappy block (`storage/remote/codec.go`).
//! - [`frame`]: a `STREAMED_XOR_CHUNKS` answer is a stream of frames, one
//!   length- and CRC-checked `ChunkedReadResponse` each
//!   (`storage/remote/chunked.go`).
//! - [`xor`]: the series in those frames carry their samples as TSDB XOR
//!   chunks (`tsdb/chunkenc/xor.go`), written with the bit-level helpers of
//!   a private `bits` module.

mod bits;
pub mod codec;
pub mod frame;
pub mod xor;

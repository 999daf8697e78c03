//! The compressed messages the testbed's tonic services and clients decode: gzip, zstd and
//! deflate, every encoding tonic implements. What they send stays uncompressed (identity),
//! which gRPC always allows; a peer chooses compression for what it sends.

/// Makes a generated tonic server or client (or `tonic::client::Grpc`) decode messages
/// compressed with gzip, zstd or deflate, and say so in `grpc-accept-encoding`. A server then
/// answers any other `grpc-encoding` with `UNIMPLEMENTED` naming these three, and limits a
/// message's decompressed size to its `max_decoding_message_size` (`RESOURCE_EXHAUSTED` past
/// it). Servers that compress their replies (grpcio with `compression=gzip`) are read so.
#[macro_export]
macro_rules! accept_compressed {
    ($server:expr) => {
        $server
            .accept_compressed(::tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(::tonic::codec::CompressionEncoding::Zstd)
            .accept_compressed(::tonic::codec::CompressionEncoding::Deflate)
    };
}

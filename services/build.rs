//! Compiles proto/v1 and proto/v2 with protox (pure Rust, no system protoc) and writes the
//! encoded file descriptor set next to the generated code, for gRPC server reflection. gRPC's
//! interop protos (proto/grpc/testing, vendored) get a descriptor set of their own, so the API's
//! catalog never holds `grpc.testing`.

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let sets = [
        (
            &["../proto/v1/increment.proto", "../proto/v2/increment.proto"][..],
            "increment_descriptor.bin",
        ),
        (
            &[
                "../proto/grpc/testing/empty.proto",
                "../proto/grpc/testing/messages.proto",
                "../proto/grpc/testing/test.proto",
            ][..],
            "interop_descriptor.bin",
        ),
    ];
    for (protos, descriptor) in sets {
        for proto in protos {
            println!("cargo:rerun-if-changed={proto}");
        }
        let fds = protox::compile(protos, ["../proto"])?;
        fs::write(out_dir.join(descriptor), fds.encode_to_vec())?;
        tonic_prost_build::configure()
            .emit_rerun_if_changed(false)
            .compile_fds(fds)?;
    }
    Ok(())
}

//! Compiles the admin API (`proto/admin/v1/routes.proto`, package `testbed.admin.v1`) with protox
//! (pure Rust, no system protoc) into the client and server code `port::admin` uses.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../proto/admin/v1/routes.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["../proto"])?;
    tonic_prost_build::configure()
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}

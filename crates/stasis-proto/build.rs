//! Generates the wire types from `proto/` without a system `protoc`: protox
//! (pure Rust) parses the .proto files, prost-build writes the structs and
//! pbjson-build writes their proto3-JSON serde impls.

use std::{env, error::Error, fs, path::PathBuf};

const PROTOS: &[&str] = &["process/process.proto", "filesystem/filesystem.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;

    let descriptor_path = out_dir.join("descriptors.bin");
    fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    prost_build::Config::new()
        // Our Timestamp writes the canonical `...Z` form that protobuf-es requires.
        .extern_path(".google.protobuf.Timestamp", "crate::timestamp::Timestamp")
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&fs::read(&descriptor_path)?)?
        // connect-go discards unknown JSON fields; newer SDKs may send fields we lack.
        .ignore_unknown_fields()
        .emit_fields()
        .build(&[".process", ".filesystem"])?;

    Ok(())
}

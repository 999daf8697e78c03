//! Helpers shared by the test modules.

use compat::{Api, Category, CheckOptions, Report};
use prost::Message;
use std::path::PathBuf;

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Every corpus case, sorted. The editions cases (`editions_*`) need a protoc 27+: without
/// one they are left out with a message, except under `CI=true`, where that fails.
pub(crate) fn cases() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    if !has_protoc("leaving out the editions corpus cases") {
        v.retain(|c| !c.starts_with("editions_"));
    }
    v
}

/// Whether a protoc 27+ is there for editions files; without one, prints `skipping` and why,
/// except under `CI=true`, where a missing protoc fails the test.
pub(crate) fn has_protoc(skipping: &str) -> bool {
    match compat::protoc::find() {
        Ok(_) => true,
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{e}");
            eprintln!("{skipping}: {e}");
            false
        }
    }
}

/// A corpus side, compiled with protox (or protoc for editions files).
pub(crate) fn load(case: &str, side: &str) -> Api {
    let dir = corpus_dir().join(case).join(side);
    let mut api =
        compat::source::load_dir(&dir, &[]).unwrap_or_else(|e| panic!("{case}/{side}: {e}"));
    api.label = format!("{case}/{side}");
    api
}

/// A corpus side as the encoded FileDescriptorSet buf reads: protoc's own output for an
/// editions case (the loaded pool holds their proto2 lowering), else [`fds_bytes`].
pub(crate) fn case_set_bytes(case: &str, side: &str) -> Vec<u8> {
    if !case.starts_with("editions_") {
        return fds_bytes(&load(case, side));
    }
    let dir = corpus_dir().join(case).join(side);
    let names = compat::source::proto_files(&dir).unwrap();
    compat::protoc::find()
        .unwrap()
        .compile(&[dir], &names)
        .unwrap_or_else(|e| panic!("{case}/{side}: {e}"))
}

/// The version's own files as an encoded FileDescriptorSet (with source info).
pub(crate) fn fds_bytes(api: &Api) -> Vec<u8> {
    let file = api
        .pool
        .file_descriptor_protos()
        .filter(|f| api.files.contains(f.name()))
        .cloned()
        .collect();
    prost_types::FileDescriptorSet { file }.encode_to_vec()
}

pub(crate) fn check_case(case: &str, categories: &[Category]) -> Report {
    let (old, new) = (load(case, "old"), load(case, "new"));
    let options = CheckOptions {
        categories: categories.to_vec(),
        map: Vec::new(),
        auto_pair: false,
        confirm: true,
    };
    compat::check(&old, &new, &options)
}

/// An output whose reader has gone (`| head -1`): every write is a broken pipe.
pub(crate) struct Closed;

impl std::io::Write for Closed {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
}

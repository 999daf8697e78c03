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

/// Every corpus case, sorted.
pub(crate) fn cases() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub(crate) fn load(case: &str, side: &str) -> Api {
    let dir = corpus_dir().join(case).join(side);
    let (pool, names) =
        compat::source::compile_dir(&dir, &[]).unwrap_or_else(|e| panic!("{case}/{side}: {e}"));
    Api {
        pool,
        files: names.into_iter().collect(),
        label: format!("{case}/{side}"),
        live: None,
    }
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

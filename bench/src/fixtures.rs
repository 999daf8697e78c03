//! What the crate's tests share: run options with chosen counts.

use crate::{BenchOptions, Flavor};
use std::path::PathBuf;

pub(crate) fn options(requests: u64, warmup: u64, concurrency: usize) -> BenchOptions {
    BenchOptions {
        requests,
        warmup,
        repeat: 1,
        concurrency,
        rows: Vec::new(),
        cpus: None,
        server_cpus: None,
        halt_poll_ns: None,
        flavor: Flavor::MultiThread,
        progress: None,
        testbed_exe: PathBuf::new(),
    }
}

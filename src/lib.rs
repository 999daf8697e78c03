//! The testbed's experiments: v1 and v2 of the Incrementer API served side by side behind a
//! version router, exercised by every client version (the compatibility matrix), loaded with
//! both versions at once, rolled out from v1 to v2 without downtime, and measured hop by hop.
//!
//! The pieces live in crates of their own (`services`, `router`, `client`, `port`, `bench`,
//! `compat`); this crate holds what runs them:
//!
//! - [`matrix`]: every client against every deployment, each cell judged.
//! - [`load`]: mixed-version client load with every reply verified.
//! - [`rollout`]: a zero-downtime v1 → v2 rollout under that load.
//! - [`report`]: the main job, all of the above and the latency runs as one report.
//! - [`cli`]: the commands' flags and what each command does, for the thin `main.rs`.

pub mod cli;
pub mod load;
pub mod matrix;
pub mod report;
pub mod rollout;

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
//! - [`proxy_rollout`]: the same rollout done by nginx, HAProxy or Envoy instead of the router.
//! - [`traffic_load`] and [`traffic_rollout`]: mixed load and the rollout for any API, driven by
//!   a traffic file and every reply compared with the old version's.
//! - [`report`]: the main job, all of the above and the latency runs as one report.
//! - [`canary`]: `testbed canary`, a canary driven by a gateway's weights and judged from its metrics.
//! - [`chaos`]: faults injected into a gateway's backends under that load, health watched.
//! - [`route`]: `testbed route`, a client of a running router's admin API; [`export`] its
//!   route table as Istio or Gateway API configuration.
//! - [`commands`] and [`cli`]: the command line, each command's flags and what it does, for the
//!   thin `main.rs`.
//! - [`terminal`]: what the command line draws: log lines, spinners and progress bars.

pub mod canary;
pub mod chaos;
pub mod cli;
pub mod commands;
pub mod docs;
pub mod export;
pub mod load;
pub mod matrix;
pub mod proxy_rollout;
pub mod report;
pub mod rollout;
pub mod route;
pub mod serve;
pub mod serve_config;
pub mod terminal;
pub mod traffic_load;
pub mod traffic_rollout;
pub mod xds;

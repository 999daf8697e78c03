//! The testbed's integration tests, as one test binary: servers on 127.0.0.1 port 0 (the OS
//! picks a free port, so tests run in parallel), real gRPC clients, external tools where the
//! test is about them (a missing tool skips outside CI and fails under `CI=true`).

mod common;

mod abuse;
mod admin;
mod api;
mod bodies;
mod builds;
mod canary;
mod catalog;
mod chaos;
mod check_live;
mod cli;
mod compression;
mod config;
mod descriptors;
mod docs;
mod drift;
mod export;
mod gateway;
mod grpcurl;
mod hardening;
mod interop;
mod latency;
mod limits;
mod load;
mod matrix;
mod metrics;
mod pki;
mod pool;
mod probe;
mod properties;
mod proxies;
mod readme;
mod reflection_health;
mod replay;
mod replicas;
mod report;
mod retire;
mod routes;
mod routing;
mod tls;
mod usage;
mod web;
mod weights;
mod xds;

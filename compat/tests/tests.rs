//! The compat crate's integration tests (one binary): the buf comparison over the corpus,
//! per-case expectations, the project's own API, the router function, inputs and bad input.

mod accept;
pub(crate) mod buf;
mod buf_cli;
mod ci_recipes;
mod columns;
pub(crate) mod common;
mod config;
mod corpus;
mod editions;
mod inputs;
pub(crate) mod project;
mod router;
mod sources;

//! Code shared by `stonescriptdb-router`, `stonescriptdb-migrator` and the
//! end-to-end tests: configuration (env / `.env` / flags), wire types for every
//! request and response, error codes with their HTTP status, and the rules for
//! platform, tenant and database names.
//!
//! Invariant: this crate performs no I/O: it parses configuration from a
//! lookup function its callers pass in, and everything else is pure, so it is
//! equally usable from both binaries and from tests. Start-up (reading the
//! environment and `.env`, the runtime, signals, the logger) lives in the
//! `stonescriptdb-startup` crate (`shared/startup/`). With the `openapi`
//! feature (the tests crate only) it also builds the OpenAPI document from
//! the wire types.
#![forbid(unsafe_code)]

// first: the `words!` macro the modules below define their enums with
#[macro_use]
pub mod words;

pub mod auth;
pub mod callable;
pub mod catalog;
pub mod config;
pub mod error;
pub mod names;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod request;
pub mod routes;
pub mod wire;

/// Version reported by `/health` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

//! certctl-engine: everything certctl *does*.
//!
//! The domain types, the operation catalogue with its single entry point
//! ([`Engine::call`]: authorize, approval gate, execute, audit), storage on
//! SQLite and PostgreSQL, and the PKI building blocks of the local CA.
//!
//! This crate must never depend on a face: no HTTP framework, no MCP SDK, no
//! terminal UI types. It never reads the system clock or the environment
//! itself; it is handed a [`clock::Clock`] and a typed [`config::EngineConfig`].

mod audit_anchor;
pub mod auth;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod domain;
mod engine;
pub mod error;
pub mod ids;
pub mod issuers;
pub mod net_guard;
pub mod netscan;
pub mod notify;
pub mod ops;
pub mod pki;
pub mod policy;
mod read_audit;
pub mod request_audit;
pub mod revocation;
pub mod scheduler;
pub mod store;

pub use engine::Engine;
pub use error::{Error, Result};

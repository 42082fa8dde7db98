//! Integration tests of the HTTP face: the router driven in memory with
//! `oneshot` on a fresh SQLite store per test, plus one real server on port 0.

#[path = "api/support.rs"]
mod support;

#[path = "api/actions.rs"]
mod actions;

#[path = "api/certificates.rs"]
mod certificates;
#[path = "api/errors.rs"]
mod errors;
#[path = "api/health.rs"]
mod health;
#[path = "api/operations.rs"]
mod operations;
#[path = "api/pki.rs"]
mod pki;
#[path = "api/server.rs"]
mod server;

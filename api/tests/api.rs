//! Integration tests of the HTTP face: the router driven in memory with
//! `oneshot` on a fresh SQLite store per test, plus one real server on port 0.

#[path = "api/support.rs"]
mod support;

#[path = "api/actions.rs"]
mod actions;
#[path = "api/adversarial_agents.rs"]
mod adversarial_agents;
#[path = "api/adversarial_est.rs"]
mod adversarial_est;
#[path = "api/adversarial_export.rs"]
mod adversarial_export;
#[path = "api/adversarial_public.rs"]
mod adversarial_public;

#[path = "api/certificates.rs"]
mod certificates;
#[path = "api/discovery.rs"]
mod discovery;
#[path = "api/errors.rs"]
mod errors;
#[path = "api/governance.rs"]
mod governance;
#[path = "api/health.rs"]
mod health;
#[path = "api/matrix.rs"]
mod matrix;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/operations.rs"]
mod operations;
#[path = "api/pki.rs"]
mod pki;
#[path = "api/properties.rs"]
mod properties;
#[path = "api/resources.rs"]
mod resources;
#[path = "api/security.rs"]
mod security;
#[path = "api/server.rs"]
mod server;

//! The engine's integration tests: one binary, built from modules. Every test
//! in `backend_tests!` runs twice, on SQLite and on PostgreSQL.

mod engine {
    pub mod support;

    mod adversarial_agents;
    mod adversarial_approvals;
    mod adversarial_audit;
    mod adversarial_network;
    mod adversarial_target_programs;
    mod agent_groups;
    mod approvals;
    mod audit;
    mod bootstrap;
    mod bulk;
    mod caches;
    mod catalogue;
    mod certificates;
    mod deployments;
    mod discovery;
    mod import;
    mod inputs;
    mod issuance;
    mod issuers;
    mod issuers_acme;
    mod issuers_acme_agent;
    mod issuers_stepca;
    mod jobs;
    mod notifications;
    mod policies;
    mod properties;
    pub mod receiver;
    mod revocation;
    mod scheduler;
    mod stepca_double;
}

-- certctl initial schema (PostgreSQL). Keep in step with ../sqlite/0001_initial.sql:
-- same tables, columns and indexes; only types and trigger syntax differ.
-- Timestamps are Unix seconds (BIGINT); JSON is TEXT; ids are readable TEXT.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE owners (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL DEFAULT '',
    team_id    TEXT REFERENCES teams(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX owners_email ON owners(email) WHERE email <> '';

CREATE TABLE profiles (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL,            -- the Profile as JSON
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE renewal_policies (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    renew_before_days BIGINT,
    renew_at_fraction DOUBLE PRECISION,
    jitter_percent    BIGINT NOT NULL DEFAULT 10,
    max_retries       BIGINT NOT NULL DEFAULT 5,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE policy_rules (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    params     TEXT NOT NULL DEFAULT '{}',
    severity   TEXT NOT NULL,
    mode       TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE issuers (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    config          TEXT NOT NULL DEFAULT '{}',
    ca_material     TEXT,                -- sealed CA keys and certificates as JSON (local CA kinds)
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE agents (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    hostname          TEXT NOT NULL DEFAULT '',
    os                TEXT NOT NULL DEFAULT '',
    arch              TEXT NOT NULL DEFAULT '',
    ip_address        TEXT NOT NULL DEFAULT '',
    version           TEXT NOT NULL DEFAULT '',
    labels            TEXT NOT NULL DEFAULT '{}',
    status            TEXT NOT NULL,
    last_heartbeat_at BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE targets (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    agent_id   TEXT REFERENCES agents(id),
    config     TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE certificates (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    common_name        TEXT NOT NULL,
    sans               TEXT NOT NULL DEFAULT '[]',
    status             TEXT NOT NULL,
    environment        TEXT NOT NULL DEFAULT '',
    issuer_id          TEXT NOT NULL REFERENCES issuers(id),
    profile_id         TEXT NOT NULL REFERENCES profiles(id),
    owner_id           TEXT REFERENCES owners(id),
    team_id            TEXT REFERENCES teams(id),
    renewal_policy_id  TEXT REFERENCES renewal_policies(id),
    labels             TEXT NOT NULL DEFAULT '{}',
    current_version_id TEXT,
    serial             TEXT,
    fingerprint        TEXT,
    key_algorithm      TEXT,
    not_before         BIGINT,
    -- 9999-12-31T23:59:59Z until a version exists, so keyset pagination on
    -- (not_after, id) needs no NULL handling, which the two databases order differently.
    not_after          BIGINT NOT NULL DEFAULT 253402300799,
    revoked_at         BIGINT,
    revocation_reason  TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
-- Expiry scans and the default sort (soonest expiry first), keyset by (not_after, id).
CREATE INDEX certificates_not_after ON certificates(not_after, id);
CREATE INDEX certificates_status_not_after ON certificates(status, not_after, id);
CREATE INDEX certificates_owner ON certificates(owner_id, not_after, id);
CREATE INDEX certificates_team ON certificates(team_id, not_after, id);
CREATE INDEX certificates_issuer ON certificates(issuer_id, not_after, id);
CREATE INDEX certificates_env ON certificates(environment, not_after, id);
CREATE INDEX certificates_created ON certificates(created_at, id);
CREATE INDEX certificates_cn ON certificates(common_name);

CREATE TABLE certificate_versions (
    id                TEXT PRIMARY KEY,
    certificate_id    TEXT NOT NULL REFERENCES certificates(id),
    issuer_id         TEXT NOT NULL REFERENCES issuers(id),
    serial            TEXT NOT NULL,
    fingerprint       TEXT NOT NULL,
    key_algorithm     TEXT NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    cert_pem          TEXT NOT NULL,
    chain_pem         TEXT NOT NULL,
    csr_pem           TEXT,
    private_key_sealed TEXT,             -- only for server-side key generation
    revoked_at        BIGINT,
    revocation_reason TEXT,
    created_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX certificate_versions_serial ON certificate_versions(issuer_id, serial);
CREATE INDEX certificate_versions_cert ON certificate_versions(certificate_id, created_at);
CREATE INDEX certificate_versions_revoked ON certificate_versions(issuer_id, revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE certificate_targets (
    certificate_id TEXT NOT NULL REFERENCES certificates(id),
    target_id      TEXT NOT NULL REFERENCES targets(id),
    PRIMARY KEY (certificate_id, target_id)
);
CREATE INDEX certificate_targets_target ON certificate_targets(target_id);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    certificate_id   TEXT REFERENCES certificates(id),
    target_id        TEXT REFERENCES targets(id),
    agent_id         TEXT REFERENCES agents(id),
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL DEFAULT 5,
    run_after        BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    payload          TEXT NOT NULL DEFAULT '{}',
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX jobs_status_run_after ON jobs(status, run_after);
CREATE INDEX jobs_certificate ON jobs(certificate_id, created_at);
CREATE INDEX jobs_agent ON jobs(agent_id, status);

CREATE TABLE principals (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    agent_id     TEXT REFERENCES agents(id),
    key_hash     TEXT NOT NULL UNIQUE,   -- SHA-256 of the API key; the key itself is never stored
    key_prefix   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

CREATE TABLE approvals (
    id            TEXT PRIMARY KEY,
    operation     TEXT NOT NULL,
    input         TEXT NOT NULL,          -- the exact serialized input that will run
    input_hash    TEXT NOT NULL,
    summary       TEXT NOT NULL,
    risk          TEXT NOT NULL,
    gate_reason   TEXT NOT NULL,          -- 'risk' (risk-class policy) or 'profile' (profile requires approval)
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    requested_by  TEXT NOT NULL,
    status        TEXT NOT NULL,
    decided_by    TEXT,
    decided_at    BIGINT,
    decision_note TEXT,
    result        TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX approvals_status ON approvals(status, created_at);

CREATE TABLE notifications (
    id             TEXT PRIMARY KEY,
    event          TEXT NOT NULL,
    certificate_id TEXT REFERENCES certificates(id),
    channel        TEXT NOT NULL,
    recipient      TEXT NOT NULL,
    subject        TEXT NOT NULL,
    body           TEXT NOT NULL,
    status         TEXT NOT NULL,
    dedup_key      TEXT NOT NULL UNIQUE,
    attempts       BIGINT NOT NULL DEFAULT 0,
    last_error     TEXT,
    created_at     BIGINT NOT NULL,
    sent_at        BIGINT
);
CREATE INDEX notifications_status ON notifications(status, created_at);

-- The audit trail: append-only and hash-chained. `seq` orders the chain.
CREATE TABLE audit_events (
    seq           BIGINT PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    at            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    actor_role    TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    outcome       TEXT NOT NULL,
    details       TEXT NOT NULL DEFAULT '{}',
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_events_resource ON audit_events(resource_type, resource_id, seq);
CREATE INDEX audit_events_actor ON audit_events(actor, seq);
CREATE INDEX audit_events_at ON audit_events(at, seq);

CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

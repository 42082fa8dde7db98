-- Post-deployment verification (one row per deployment job, the agent's
-- latest report) and certificates agents found on disk, kept for triage.

CREATE TABLE deployment_verifications (
    job_id               TEXT PRIMARY KEY REFERENCES jobs(id),
    agent_id             TEXT NOT NULL,
    target_id            TEXT,
    endpoint             TEXT NOT NULL,
    expected_fingerprint TEXT NOT NULL,
    served_fingerprint   TEXT,
    verified             BIGINT NOT NULL,
    error                TEXT,
    verified_at          BIGINT NOT NULL
);

CREATE TABLE discovered_certificates (
    id             TEXT PRIMARY KEY,
    agent_id       TEXT NOT NULL,
    path           TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    common_name    TEXT NOT NULL,
    sans           TEXT NOT NULL,
    issuer_dn      TEXT NOT NULL,
    subject_dn     TEXT NOT NULL,
    serial         TEXT NOT NULL,
    not_before     BIGINT NOT NULL,
    not_after      BIGINT NOT NULL,
    is_ca          BIGINT NOT NULL,
    key_path       TEXT,
    cert_pem       TEXT NOT NULL,
    status         TEXT NOT NULL,
    certificate_id TEXT,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX discovered_certificates_seen ON discovered_certificates(agent_id, path, fingerprint);
CREATE INDEX discovered_certificates_status ON discovered_certificates(status, id);

-- Discovery (issues 5 and 9): certificates found on disk by agents and on
-- the network by the scanner, in one triage list deduplicated by SHA-256
-- fingerprint. Only public certificates are stored; key files are noted by
-- path, never read.

CREATE TABLE discovered_certificates (
    id             TEXT PRIMARY KEY,
    fingerprint    TEXT NOT NULL UNIQUE,
    common_name    TEXT,
    subject_dn     TEXT NOT NULL,
    issuer_dn      TEXT NOT NULL,
    sans           TEXT NOT NULL DEFAULT '[]',
    serial         TEXT NOT NULL,
    key_type       TEXT NOT NULL,
    is_ca          BIGINT NOT NULL,
    not_before     BIGINT NOT NULL,
    not_after      BIGINT NOT NULL,
    cert_pem       TEXT NOT NULL,
    status         TEXT NOT NULL,
    certificate_id TEXT REFERENCES certificates(id),
    note           TEXT,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX discovered_status ON discovered_certificates(status, id);
CREATE INDEX discovered_not_after ON discovered_certificates(not_after, id);

-- Every place a certificate was seen: an agent's file, or a scanned endpoint.
-- `location` is the path (agent) or `ip:port` (network); `server_name` the
-- SNI sent, empty when none.
CREATE TABLE discovery_sightings (
    discovered_id TEXT NOT NULL REFERENCES discovered_certificates(id),
    source        TEXT NOT NULL,
    agent_id      TEXT NOT NULL DEFAULT '',
    location      TEXT NOT NULL,
    server_name   TEXT NOT NULL DEFAULT '',
    key_path      TEXT,
    scan_target_id TEXT,
    first_seen_at BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    PRIMARY KEY (discovered_id, source, agent_id, location, server_name)
);
CREATE INDEX discovery_sightings_agent ON discovery_sightings(agent_id, discovered_id);
CREATE INDEX discovery_sightings_source ON discovery_sightings(source, discovered_id);

CREATE TABLE network_scan_targets (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    cidrs            TEXT NOT NULL,
    ports            TEXT NOT NULL,
    server_names     TEXT NOT NULL DEFAULT '[]',
    enabled          BIGINT NOT NULL,
    allow_restricted BIGINT NOT NULL DEFAULT 0,
    last_scan_at     BIGINT,
    last_scan        TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

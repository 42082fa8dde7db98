-- Governance (issue 9, points 3-5): policy violations, bulk operation records,
-- dynamic agent groups. Keep in step with ../postgres/0009_governance.sql.

-- Every time a policy rule did not hold for an operation: `warn` rules let the
-- operation go on (the row commits with it), `enforce` rules refused it (the
-- row is written with the failure's audit event, outside the rolled-back work).
CREATE TABLE policy_violations (
    id             TEXT PRIMARY KEY,
    rule_id        TEXT NOT NULL,
    rule_name      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    severity       TEXT NOT NULL,
    mode           TEXT NOT NULL,
    -- whether the operation was refused (enforce) or went on (warn)
    refused        INTEGER NOT NULL,
    operation      TEXT NOT NULL,
    certificate_id TEXT,
    common_name    TEXT NOT NULL DEFAULT '',
    actor          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX policy_violations_created ON policy_violations(created_at, id);
CREATE INDEX policy_violations_certificate ON policy_violations(certificate_id, created_at);
CREATE INDEX policy_violations_rule ON policy_violations(rule_id, created_at);

-- One bulk renew / revoke / reassign: its counts and per-item results.
CREATE TABLE bulk_operations (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    total        INTEGER NOT NULL,
    succeeded    INTEGER NOT NULL,
    skipped      INTEGER NOT NULL,
    request      TEXT NOT NULL DEFAULT '{}',
    results      TEXT NOT NULL DEFAULT '[]',
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX bulk_operations_created ON bulk_operations(created_at, id);

-- Agent groups: membership is computed from the criteria at each use.
CREATE TABLE agent_groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    criteria    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- A target may name an agent group instead of (or as well as) one agent.
ALTER TABLE targets ADD COLUMN agent_group_id TEXT REFERENCES agent_groups(id);

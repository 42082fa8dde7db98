-- Post-deployment verification: one row per deployment job, the agent's
-- latest report.

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

-- Singleton loops (renewal checks, notifications, ...) run on one process at
-- a time: the process holding a loop's unexpired lease row runs it.
CREATE TABLE loop_leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

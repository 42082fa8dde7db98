-- Signed checkpoints of the audit chain's head (issue 17): each names the
-- event at the head (position, id, hash), links to the checkpoint before it,
-- and is signed with the installation's checkpoint key (Ed25519, stored
-- sealed with the master key in `meta`). Deleting the tail of the log, or
-- rewriting it with a re-computed chain, no longer verifies: a checkpoint
-- names the events that are gone or the hash they had. Append-only like
-- audit_events.
CREATE TABLE audit_checkpoints (
    number        BIGINT PRIMARY KEY,
    at            BIGINT NOT NULL,
    head_seq      BIGINT NOT NULL,
    head_event_id TEXT NOT NULL,
    head_hash     TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    signature     TEXT NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

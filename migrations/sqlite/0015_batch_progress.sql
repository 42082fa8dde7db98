-- Bulk operations run in committed chunks (issue 9): the ids still to do
-- (in selection order), the principal they run as (JSON), and a lease so one
-- process at a time runs the next chunk and a crashed one's work moves on.
ALTER TABLE bulk_operations ADD COLUMN pending TEXT NOT NULL DEFAULT '[]';
ALTER TABLE bulk_operations ADD COLUMN principal TEXT;
ALTER TABLE bulk_operations ADD COLUMN lease_owner TEXT;
ALTER TABLE bulk_operations ADD COLUMN lease_expires_at BIGINT;
CREATE INDEX bulk_operations_running ON bulk_operations(status, lease_expires_at);

-- When the expiry-warning pass next has something to say about a certificate
-- (the next threshold it crosses; 0: not computed yet, so the pass reads it
-- once). The pass reads only rows whose time has come (issue 6).
ALTER TABLE certificates ADD COLUMN next_warn_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX certificates_next_warn ON certificates(status, next_warn_at);

-- The ARI pass takes the longest-waiting ACME certificates of one issuer in
-- (ari_next_check_at, id) order, LIMIT 500: with the id in the index that is
-- an index walk of 500 entries, not a sort of every due one (all of an
-- issuer's certificates are due at once after an upgrade; 1.5 s at 170,000).
CREATE INDEX certificates_ari_due ON certificates(issuer_id, ari_next_check_at, id);

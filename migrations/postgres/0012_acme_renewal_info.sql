-- ACME Renewal Information (RFC 9773): when the renewal loop next asks the
-- CA for its suggested window for a certificate's current version (0: ask
-- soon; reset whenever a new version is recorded).
ALTER TABLE certificates ADD COLUMN ari_next_check_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX certificates_ari_next_check ON certificates(issuer_id, ari_next_check_at);

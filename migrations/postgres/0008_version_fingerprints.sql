-- Imports (and discovery claims) find a certificate by the SHA-256
-- fingerprint of one of its versions; without this index that is a full scan
-- per imported certificate.
CREATE INDEX certificate_versions_fingerprint ON certificate_versions(fingerprint);

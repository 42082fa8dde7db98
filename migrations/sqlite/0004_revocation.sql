-- Revocations, one row per revoked certificate version, with its CRL entry
-- (serial, revocation date, reason) already DER-encoded: building a CRL is
-- then one indexed scan and a concatenation, whatever the CRL's size, and a
-- revocation costs one insert.
CREATE TABLE revocations (
    issuer_id      TEXT NOT NULL REFERENCES issuers(id),
    serial         TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    version_id     TEXT NOT NULL,
    revoked_at     INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    not_after      INTEGER NOT NULL,
    crl_entry      BLOB NOT NULL,
    PRIMARY KEY (issuer_id, serial)
);
CREATE INDEX revocations_expiry ON revocations(issuer_id, not_after);

-- Each revocation bumps its issuer's revision (one row update, whatever
-- the CRL's size); a CRL records the revision it was built from, so any
-- replica can tell whether the stored CRL is behind.
CREATE TABLE crl_revisions (
    issuer_id TEXT PRIMARY KEY REFERENCES issuers(id) ON DELETE CASCADE,
    revision  INTEGER NOT NULL
);

-- The latest signed CRL of each issuer; its number only grows.
CREATE TABLE crls (
    issuer_id   TEXT PRIMARY KEY REFERENCES issuers(id) ON DELETE CASCADE,
    crl_number  INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL,
    entries     INTEGER NOT NULL,
    der         BLOB NOT NULL
);

-- Single-use download links for exports (the MCP face hands these out
-- instead of asking for a PKCS#12 password in chat). Only the SHA-256 of the
-- token is stored.
CREATE TABLE export_links (
    token_hash     TEXT PRIMARY KEY,
    certificate_id TEXT NOT NULL REFERENCES certificates(id),
    format         TEXT NOT NULL,
    principal_id   TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);

-- EST re-enrollment finds the version a client presents by its fingerprint.
CREATE INDEX certificate_versions_fingerprint ON certificate_versions(fingerprint);

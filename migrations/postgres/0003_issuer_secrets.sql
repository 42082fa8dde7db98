-- External issuers (ACME, step-ca, Vault, script): credentials sealed with
-- the master key, kept apart from the plain `config` so reads of an issuer
-- never carry them, and the ACME account the connector registered.
ALTER TABLE issuers ADD COLUMN secrets TEXT;
ALTER TABLE issuers ADD COLUMN account TEXT;

-- Approvals bind to what they showed and keep secrets sealed (issue 17).
-- bound_state: the facts the summary described (JSON array of strings: ids
-- with their versions and serials, profile, issuer); approving re-reads them
-- and refuses with stale_approval when they changed. NULL for approvals
-- requested before this migration, which run unchecked as they did.
-- input_sealed / result_sealed: the full input and result sealed with the
-- master key when they hold a secret; `input` and `result` then keep a copy
-- with the secret values replaced by "[sealed]", which is all a reader sees.
ALTER TABLE approvals ADD COLUMN bound_state TEXT;
ALTER TABLE approvals ADD COLUMN input_sealed TEXT;
ALTER TABLE approvals ADD COLUMN result_sealed TEXT;

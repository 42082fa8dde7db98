-- Notifications, renewal timing and stored expiry (issue 6). Keep in step
-- with ../sqlite/0005_notifications.sql.

-- The outbox: lifecycle events written in the same transaction as the change
-- that caused them. The notifications loop routes each event once (routed_at)
-- into per-channel deliveries in `notifications`.
CREATE TABLE notification_events (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    certificate_id TEXT,
    owner_id       TEXT,
    team_id        TEXT,
    profile_id     TEXT,
    renewal_policy_id TEXT,
    subject        TEXT NOT NULL,
    body           TEXT NOT NULL,
    details        TEXT NOT NULL DEFAULT '{}',
    dedup_key      TEXT NOT NULL UNIQUE,
    created_at     BIGINT NOT NULL,
    routed_at      BIGINT
);
CREATE INDEX notification_events_unrouted ON notification_events(routed_at, created_at);

-- Where notifications go. Secrets (SMTP password, webhook signing secret,
-- PagerDuty routing key, OpsGenie API key) are sealed with the master key.
CREATE TABLE notification_channels (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    config        TEXT NOT NULL DEFAULT '{}',
    secret_sealed TEXT,
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Which events go to which channel, filtered by owner, team and policy.
CREATE TABLE notification_rules (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    channel_id        TEXT NOT NULL REFERENCES notification_channels(id),
    events            TEXT NOT NULL DEFAULT '[]',
    owner_id          TEXT REFERENCES owners(id),
    team_id           TEXT REFERENCES teams(id),
    profile_id        TEXT REFERENCES profiles(id),
    renewal_policy_id TEXT REFERENCES renewal_policies(id),
    recipients        TEXT NOT NULL DEFAULT '[]',
    include_owner     BOOLEAN NOT NULL DEFAULT TRUE,
    enabled           BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX notification_rules_channel ON notification_rules(channel_id);

-- Deliveries: one row per event and channel (dedup_key is unique), claimed
-- with a lease like jobs, retried with backoff, dead-lettered at the limit.
ALTER TABLE notifications ADD COLUMN event_id TEXT;
ALTER TABLE notifications ADD COLUMN channel_id TEXT;
ALTER TABLE notifications ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
ALTER TABLE notifications ADD COLUMN max_attempts BIGINT NOT NULL DEFAULT 5;
ALTER TABLE notifications ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN lease_owner TEXT;
ALTER TABLE notifications ADD COLUMN lease_expires_at BIGINT;
CREATE INDEX notifications_due ON notifications(status, next_attempt_at, id);

-- When the renewal loop picks a certificate up: precomputed at issuance from
-- its renewal policy (fraction of lifetime or days before expiry, with
-- jitter), so the due query is one index range at a million certificates.
ALTER TABLE certificates ADD COLUMN renew_after BIGINT;
-- The smallest expiry-warning threshold (days) already announced for the
-- current version; cleared when a new version is issued.
ALTER TABLE certificates ADD COLUMN expiry_warned_days BIGINT;
UPDATE certificates SET renew_after = not_after - 30 * 86400 WHERE status = 'active';
CREATE INDEX certificates_renew_due ON certificates(status, renew_after, id);

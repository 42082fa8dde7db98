-- A durable record of which process ran which singleton loop tick (a tick is
-- the loop's interval slot, now / interval), so several replicas on one
-- database can be checked to run each tick once. Rows older than a day are
-- pruned as new ones are written.
CREATE TABLE loop_runs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    loop_name  TEXT NOT NULL,
    tick       INTEGER NOT NULL,
    owner      TEXT NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE INDEX loop_runs_by_loop ON loop_runs (loop_name, started_at);

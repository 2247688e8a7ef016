-- Control catalog, version 4: the lifecycle of databases and platforms.

-- Dropping a database is crash-consistent like creating one: the row turns
-- `dropping` under a lease (from then on it is not reachable), the database
-- is backed up when asked and dropped, then the row is removed. A `dropping`
-- row whose lease is free belongs to a migrator that stopped: the next one
-- finishes the drop. Offboarding a platform marks it first, so a migrator
-- that stops half-way leaves a platform the next one finishes offboarding.
ALTER TABLE databases DROP CONSTRAINT databases_state_check;
ALTER TABLE databases ADD CONSTRAINT databases_state_check
    CHECK (state IN ('creating', 'ready', 'dropping'));
ALTER TABLE platforms ADD offboarding_since timestamptz;

-- A v2 database created or migrated with an explicit `version` stays on
-- that version (`schema_version`) until it is moved again or unpinned.
ALTER TABLE databases ADD pinned boolean NOT NULL DEFAULT false;

-- Deployment history older than HISTORY_RETENTION_DAYS is removed.
CREATE INDEX deployments_started_at ON deployments (started_at);

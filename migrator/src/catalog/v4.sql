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

-- A v1 platform keeps its last V1_ARCHIVES_KEPT shipped archives, numbered
-- from 1 (GET /platform/{p}/versions; POST /migrate with `version`
-- redeploys one). An archive /register or /migrate deployed becomes the
-- next number unless it equals the latest; the oldest beyond the setting
-- are removed, and numbers are never given again. `redeployed_from` names
-- the number an archive redeployed by `version` was kept under before. The
-- archive each platform kept so far (a single one, in `platforms`) becomes
-- its version 1. Offboarding a platform removes its archives with it.
CREATE TABLE v1_archives (
    platform text NOT NULL REFERENCES platforms (name) ON DELETE CASCADE,
    version integer NOT NULL CHECK (version > 0),
    archive bytea NOT NULL,
    archive_sha256 text NOT NULL,
    size bigint NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    redeployed_from integer CHECK (redeployed_from > 0),
    PRIMARY KEY (platform, version)
);
INSERT INTO v1_archives (platform, version, archive, archive_sha256, size, uploaded_at)
SELECT name, 1, v1_schema, encode(sha256(v1_schema), 'hex'), length(v1_schema),
       coalesce(v1_schema_at, now())
FROM platforms WHERE v1_schema IS NOT NULL;
ALTER TABLE platforms DROP COLUMN v1_schema, DROP COLUMN v1_schema_sha256,
    DROP COLUMN v1_schema_at;

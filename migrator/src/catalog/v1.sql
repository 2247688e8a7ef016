-- Control catalog, version 1 (SPEC §8). Applied once by the migrator, under
-- an advisory lock, in one transaction; later versions add files, never
-- edit this one.

-- One row: the catalog's generation. Every committed change to a database
-- takes the next value while holding this row's lock, so generations become
-- visible in the order they were committed (routers poll "newer than N").
CREATE TABLE generation (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    value bigint NOT NULL
);
INSERT INTO generation VALUES (true, 0);

-- Lease numbers: a migrator session holds the advisory lock
-- (1396983628, lease) while it creates a database or runs a deployment.
CREATE SEQUENCE leases AS integer CYCLE;

CREATE TABLE platforms (
    name text PRIMARY KEY,
    owner_role text NOT NULL UNIQUE,
    owner_password text NOT NULL,
    app_role text NOT NULL UNIQUE,
    app_password text NOT NULL,
    -- set by POST /platform/register (the v2 stored-schema API)
    v2_registered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- the archive last deployed by /register or /migrate: /admin/create-tenant's schema
    v1_schema bytea,
    v1_schema_sha256 text,
    v1_schema_at timestamptz
);

CREATE TABLE schema_versions (
    platform text NOT NULL REFERENCES platforms (name),
    schema_name text NOT NULL,
    version integer NOT NULL,
    checksum text NOT NULL,
    archive bytea NOT NULL,
    archive_sha256 text NOT NULL,
    has_tables boolean NOT NULL,
    has_functions boolean NOT NULL,
    has_migrations boolean NOT NULL,
    has_seeders boolean NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    -- the template database holding this version, once built, and its report
    template text,
    template_report jsonb,
    PRIMARY KEY (platform, schema_name, version)
);

CREATE TABLE databases (
    name text PRIMARY KEY,
    -- NULL only for the scratch database of a dry run by a platform not recorded yet
    platform text REFERENCES platforms (name) CHECK (platform IS NOT NULL OR kind = 'scratch'),
    kind text NOT NULL CHECK (kind IN ('v1', 'v2', 'template', 'scratch', 'adopted')),
    tenant_id text,
    schema_name text,
    database_id text,
    -- v2: the schema version last deployed into it
    schema_version integer,
    -- the role owning it (a scratch database may use a throwaway role)
    owner_role text NOT NULL,
    -- the PostgreSQL server holding it ('primary': the gateway's DB_HOST)
    server text NOT NULL DEFAULT 'primary',
    state text NOT NULL CHECK (state IN ('creating', 'ready')),
    lease integer,
    generation bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_deployed_at timestamptz
);
CREATE INDEX databases_platform ON databases (platform, kind);
CREATE INDEX databases_generation ON databases (generation);

CREATE TABLE deployments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    database text NOT NULL,
    platform text NOT NULL,
    operation text NOT NULL,
    dry_run boolean NOT NULL,
    force boolean NOT NULL,
    status text NOT NULL,
    lease integer,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    archive_sha256 text,
    schema_version integer,
    requested_by text NOT NULL,
    peer text,
    request_id text,
    counts jsonb,
    error jsonb
);
CREATE INDEX deployments_database ON deployments (database, id);
CREATE INDEX deployments_platform ON deployments (platform, id);
CREATE INDEX deployments_running ON deployments (id) WHERE status = 'running';

-- Announce a committed change to a database: the next generation, recorded
-- on the database, and a notification routers act on. Operators may call it
-- after DDL run by hand (or simply NOTIFY stonescriptdb_gateway, '<database>').
CREATE FUNCTION announce(db text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    g bigint;
BEGIN
    UPDATE generation SET value = value + 1 RETURNING value INTO g;
    UPDATE databases SET generation = g WHERE name = db;
    PERFORM pg_notify('stonescriptdb_gateway',
                      json_build_object('database', db, 'generation', g)::text);
    RETURN g;
END $$;

-- What was imported from an older installation's files under DATA_DIR
-- (credentials, v2 registry, last v1 schemas), once per DATA_DIR.
CREATE TABLE legacy_imports (
    data_dir text PRIMARY KEY,
    imported_at timestamptz NOT NULL DEFAULT now(),
    report jsonb NOT NULL
);

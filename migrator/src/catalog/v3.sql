-- Control catalog, version 3: /v2/migrate-all jobs. A job is recorded
-- `queued` under a lease (like a deployment), turns `running`, gathers one
-- result per tenant database as each finishes, and ends `completed`,
-- `partial` or `failed`; a job whose lease is free while it says `queued`
-- or `running` belongs to a migrator that stopped and is marked
-- `interrupted`. At most one job per platform and schema is queued or
-- running (the partial unique index). Ended jobs are kept at least 24 hours.

CREATE TABLE jobs (
    id text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    platform text NOT NULL REFERENCES platforms (name),
    schema_name text NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'partial', 'failed', 'interrupted')),
    total integer NOT NULL,
    succeeded integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    -- one JobResult object per finished database, in the order they finished
    results jsonb NOT NULL DEFAULT '[]',
    error text,
    lease integer,
    requested_by text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);

CREATE UNIQUE INDEX jobs_one_at_a_time ON jobs (platform, schema_name)
    WHERE status IN ('queued', 'running');
CREATE INDEX jobs_finished_at ON jobs (finished_at);

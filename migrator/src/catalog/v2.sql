-- Control catalog, version 2: platform tokens (POST /admin/platform-token).
-- A token is derived from the platform, its generation and a key
-- (PLATFORM_TOKEN_SECRET, or the key kept here when that is unset); only
-- the generation and when it was issued are stored, never a token.

CREATE TABLE platform_tokens (
    platform text PRIMARY KEY REFERENCES platforms (name),
    generation integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row: the key tokens are derived from when PLATFORM_TOKEN_SECRET is not set.
CREATE TABLE token_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key text NOT NULL
);

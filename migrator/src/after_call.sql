-- The router's cleanup after every /call, evaluated at the end of the call
-- statement, after the function's rows were rendered (see shared/src/names.rs
-- AFTER_CALL_FUNCTION). Installed by the migrator in every database it
-- deploys. The router shares a connection between concurrent calls only when
-- the comment below names this version (or version 2, which also released
-- advisory locks itself): the session must be clean when the statement ends,
-- temp tables included. The statement releases advisory locks itself, as a
-- plain function call beside this one (pg_advisory_unlock_all()): a PERFORM
-- here would start an executor at every call. For the same reason the temp
-- schema test is a plain expression, and only a session that has a temp
-- schema runs the catalog query. (Version 3: some 3 µs of PostgreSQL CPU a
-- call less than version 2; docs/BENCHMARKS.md.)
CREATE OR REPLACE FUNCTION public._stonescriptdb_gateway_after_call() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RESET ALL;
    DISCARD SEQUENCES;
    UNLISTEN *;
    IF pg_my_temp_schema() <> 0 THEN
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_my_temp_schema()) THEN
            DISCARD TEMP;
        END IF;
    END IF;
    RETURN false;
END $$;
COMMENT ON FUNCTION public._stonescriptdb_gateway_after_call() IS 'stonescriptdb-gateway after-call 3';

-- The router's cleanup after every /call, evaluated at the end of the call
-- statement (see shared/src/names.rs AFTER_CALL_FUNCTION). Installed by the
-- migrator in every database it deploys. The router shares a connection
-- between concurrent calls only when the comment below names this version:
-- the session must be clean when the statement ends, temp tables included.
CREATE OR REPLACE FUNCTION public._stonescriptdb_gateway_after_call() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RESET ALL;
    DISCARD SEQUENCES;
    UNLISTEN *;
    PERFORM pg_advisory_unlock_all();
    IF pg_my_temp_schema() <> 0
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_my_temp_schema()) THEN
        DISCARD TEMP;
    END IF;
    RETURN false;
END $$;
COMMENT ON FUNCTION public._stonescriptdb_gateway_after_call() IS 'stonescriptdb-gateway after-call 2';

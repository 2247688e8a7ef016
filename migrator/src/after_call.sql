-- The router's cleanup after every /call, evaluated at the end of the call
-- statement (see router/src/pool.rs AFTER_CALL_FUNCTION). Installed by the
-- migrator in every database it deploys.
CREATE OR REPLACE FUNCTION public._stonescriptdb_gateway_after_call() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RESET ALL;
    DISCARD SEQUENCES;
    UNLISTEN *;
    PERFORM pg_advisory_unlock_all();
    RETURN pg_my_temp_schema() <> 0;
END $$

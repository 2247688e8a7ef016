-- Objects every test database starts with (cloned from a template).
CREATE TYPE mood AS ENUM ('happy', 'sad', 'it''s complicated');
CREATE TYPE address AS (street text, city text, zip_code text);
CREATE DOMAIN email AS text CHECK (VALUE ~ '^[^@]+@[^@]+$');

-- echo_<type>(x) returns x unchanged: the type matrix.
CREATE FUNCTION echo_int2(x smallint) RETURNS smallint LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_int4(x integer) RETURNS integer LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_int8(x bigint) RETURNS bigint LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_numeric(x numeric) RETURNS numeric LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_numeric_10_2(x numeric(10,2)) RETURNS numeric LANGUAGE sql AS 'SELECT x::numeric(10,2)';
CREATE FUNCTION echo_float4(x real) RETURNS real LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_float8(x double precision) RETURNS double precision LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_bool(x boolean) RETURNS boolean LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_text(x text) RETURNS text LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_varchar(x varchar(20)) RETURNS varchar LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_uuid(x uuid) RETURNS uuid LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_date(x date) RETURNS date LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_time(x time) RETURNS time LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_timestamp(x timestamp) RETURNS timestamp LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_timestamptz(x timestamptz) RETURNS timestamptz LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_interval(x interval) RETURNS interval LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_json(x json) RETURNS json LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_jsonb(x jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_bytea(x bytea) RETURNS bytea LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_mood(x mood) RETURNS mood LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_email(x email) RETURNS email LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_address(x address) RETURNS address LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_int4_array(x integer[]) RETURNS integer[] LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_text_array(x text[]) RETURNS text[] LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_mood_array(x mood[]) RETURNS mood[] LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_address_array(x address[]) RETURNS address[] LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_int4_2d(x integer[][]) RETURNS integer[] LANGUAGE sql AS 'SELECT x';
CREATE FUNCTION echo_inet(x inet) RETURNS inet LANGUAGE sql AS 'SELECT x';

-- Type checks on the PostgreSQL side: the argument arrived as the declared type.
CREATE FUNCTION type_of_numeric(x numeric) RETURNS text LANGUAGE sql AS 'SELECT pg_typeof(x)::text || '':'' || x::text';
CREATE FUNCTION bytea_length(x bytea) RETURNS integer LANGUAGE sql AS 'SELECT length(x)';
CREATE FUNCTION address_city(a address) RETURNS text LANGUAGE sql AS 'SELECT (a).city';

-- Result shapes.
CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, name text, mood mood, created_at timestamptz DEFAULT '2024-01-02 03:04:05+00');
INSERT INTO users (email, name, mood) VALUES ('a@x.io', 'Ann', 'happy'), ('b@x.io', 'Bob', NULL), ('c@x.io', 'Cy', 'sad');
CREATE FUNCTION list_users() RETURNS TABLE (id integer, email text, name text, mood mood, created_at timestamptz)
  LANGUAGE sql AS 'SELECT id, email, name, mood, created_at FROM users ORDER BY id';
CREATE FUNCTION get_user_by_id(p_id integer) RETURNS SETOF users LANGUAGE sql AS 'SELECT * FROM users WHERE id = p_id';
CREATE FUNCTION add_user(p_email text, p_name text) RETURNS integer LANGUAGE sql
  AS 'INSERT INTO users (email, name) VALUES (p_email, p_name) RETURNING id';
CREATE FUNCTION no_rows() RETURNS SETOF integer LANGUAGE sql AS 'SELECT 1 WHERE false';
CREATE FUNCTION do_nothing() RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION make_address(street text, city text, zip text) RETURNS address LANGUAGE sql AS 'SELECT ROW(street, city, zip)::address';
CREATE FUNCTION split_name(full_name text, OUT first_name text, OUT last_name text) LANGUAGE sql
  AS 'SELECT split_part(full_name, '' '', 1), split_part(full_name, '' '', 2)';
CREATE FUNCTION many_rows(n integer) RETURNS TABLE (i integer, label text, ratio numeric, at date)
  LANGUAGE sql AS 'SELECT g, ''row '' || g, g / 3.0, DATE ''2024-01-01'' + g FROM generate_series(1, n) g';

-- Argument forms.
CREATE FUNCTION greet(name text, greeting text DEFAULT 'Hello') RETURNS text LANGUAGE sql AS 'SELECT greeting || '', '' || name';
CREATE FUNCTION pick(x integer) RETURNS text LANGUAGE sql AS 'SELECT ''int''';
CREATE FUNCTION pick(x text) RETURNS text LANGUAGE sql AS 'SELECT ''text''';
CREATE FUNCTION pick(x integer, y integer) RETURNS text LANGUAGE sql AS 'SELECT ''int,int''';
CREATE FUNCTION sum_all(VARIADIC xs integer[]) RETURNS integer LANGUAGE sql AS 'SELECT sum(v)::int FROM unnest(xs) v';
CREATE FUNCTION "MixedCase"() RETURNS text LANGUAGE sql AS 'SELECT ''mixed''';
CREATE SCHEMA app;
CREATE FUNCTION app.hello(who text) RETURNS text LANGUAGE sql AS 'SELECT ''hello '' || who';

-- Errors.
CREATE FUNCTION fail_with(msg text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%', msg USING DETAIL = 'detail of ' || msg, HINT = 'hint for ' || msg;
END $$;
CREATE FUNCTION internal_failure() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'something broke' USING ERRCODE = 'XX000';
END $$;
CREATE FUNCTION divide(a integer, b integer) RETURNS integer LANGUAGE sql AS 'SELECT a / b';

-- Session state.
CREATE FUNCTION set_session_path() RETURNS text LANGUAGE sql AS $$ SELECT set_config('search_path', 'pg_catalog', false) $$;
CREATE FUNCTION set_custom(v text) RETURNS text LANGUAGE sql AS $$ SELECT set_config('sdg.custom', v, false) $$;
CREATE FUNCTION get_custom() RETURNS text LANGUAGE sql AS $$ SELECT current_setting('sdg.custom', true) $$;
CREATE FUNCTION show_path() RETURNS text LANGUAGE sql AS $$ SELECT current_setting('search_path') $$;
CREATE FUNCTION make_temp() RETURNS void LANGUAGE plpgsql AS $$ BEGIN CREATE TEMP TABLE leaked (x int); END $$;
CREATE FUNCTION temp_exists() RETURNS boolean LANGUAGE sql AS $$ SELECT to_regclass('pg_temp.leaked') IS NOT NULL $$;
CREATE FUNCTION take_lock() RETURNS boolean LANGUAGE sql AS $$ SELECT pg_try_advisory_lock(4242) $$;
CREATE FUNCTION backend_pid() RETURNS integer LANGUAGE sql AS $$ SELECT pg_backend_pid() $$;
CREATE FUNCTION sleep_ms(ms integer) RETURNS text LANGUAGE sql AS $$ SELECT pg_sleep(ms / 1000.0)::text || 'slept' $$;
CREATE FUNCTION set_timeout_and_sleep(ms integer) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('statement_timeout', '0', false); PERFORM pg_sleep(ms / 1000.0); RETURN 'ok'; END $$;
CREATE SEQUENCE counter_seq;
CREATE FUNCTION next_counter() RETURNS bigint LANGUAGE sql AS $$ SELECT nextval('counter_seq') $$;
CREATE FUNCTION last_counter() RETURNS bigint LANGUAGE sql AS $$ SELECT lastval() $$;
CREATE FUNCTION lock_then_fail() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_lock(4343);
  RAISE EXCEPTION 'failed while holding a lock';
END $$;
CREATE FUNCTION listen_somewhere() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'LISTEN sdg_channel'; END $$;
CREATE FUNCTION listening() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM pg_listening_channels() $$;

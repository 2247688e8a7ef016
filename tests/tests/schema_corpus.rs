//! A table-driven corpus of declarative `tables/` changes (docs/SCHEMA.md):
//! every case registers a `before` schema, optionally puts data or
//! hand-made objects into the database, deploys an `after` schema and checks
//!
//! 1. the classes reported (safe / dataloss / incompatible) are exactly the
//!    expected ones, and a refused deployment (409) changed nothing;
//! 2. `force=true` applies the change, or fails with PostgreSQL's error and
//!    changes nothing when no force can make it possible;
//! 3. the database then has the same catalog as a fresh database registered
//!    with `after` (objects made by hand survive, and only they differ);
//! 4. deploying `after` again is no change at all.
//!
//! All cases run in one gateway, a few at a time; every failing case is
//! listed at the end. `CORPUS_FILTER=substring` runs only matching cases.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use stonescriptdb_tests::{cluster, new_platform, Gateway, SchemaDir};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_postgres::Client;

/// How many cases run at the same time.
const CONCURRENCY: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Safe,
    Dataloss,
    Incompatible,
}
use Class::*;

impl Class {
    fn list(self) -> &'static str {
        match self {
            Safe => "safe_changes",
            Dataloss => "dataloss_changes",
            Incompatible => "incompatible_changes",
        }
    }
}

const CLASSES: [Class; 3] = [Safe, Dataloss, Incompatible];

struct Case {
    name: &'static str,
    /// Schema files; see [`files`] for the format.
    before: String,
    /// SQL run on the database after registering `before`.
    setup: &'static str,
    after: String,
    /// The classes reported for `before` → `after`, exactly.
    expect: &'static [Class],
    /// Force cannot make the change possible: PostgreSQL refuses it.
    force_fails: bool,
    /// Only safe changes, but PostgreSQL refuses them (existing rows violate a
    /// new constraint): 409 `migration_failed` with or without force.
    safe_fails: bool,
    /// Substrings of catalog lines for objects `setup` made by hand: they
    /// must survive in the database and are left out of the comparison.
    survivors: &'static [&'static str],
    /// A query returning one boolean, true once the change was applied
    /// (data kept, defaults filled in, ...).
    verify: &'static str,
}

fn case(
    name: &'static str,
    before: impl Into<String>,
    after: impl Into<String>,
    expect: &'static [Class],
) -> Case {
    Case {
        name,
        before: before.into(),
        setup: "",
        after: after.into(),
        expect,
        force_fails: false,
        safe_fails: false,
        survivors: &[],
        verify: "",
    }
}

/// An unchanged schema: no change at all.
fn same(name: &'static str, schema: impl Into<String>) -> Case {
    let s = schema.into();
    case(name, s.clone(), s, &[])
}

/// The column `c` of table `t` changes from one declaration to another.
fn col(name: &'static str, from: &str, to: &str, expect: &'static [Class]) -> Case {
    case(name, t(&format!("c {from}")), t(&format!("c {to}")), expect)
}

/// `CREATE TABLE t (id int PRIMARY KEY, <cols>);`
fn t(cols: &str) -> String {
    format!("CREATE TABLE t (\n    id int PRIMARY KEY,\n    {cols}\n);\n")
}

impl Case {
    fn setup(mut self, sql: &'static str) -> Self {
        self.setup = sql;
        self
    }
    fn force_fails(mut self) -> Self {
        self.force_fails = true;
        self
    }
    fn safe_fails(mut self) -> Self {
        self.safe_fails = true;
        self
    }
    fn survivors(mut self, s: &'static [&'static str]) -> Self {
        self.survivors = s;
        self
    }
    fn verify(mut self, sql: &'static str) -> Self {
        self.verify = sql;
        self
    }
}

/// A schema written as one string: text before any `@@ path` line is
/// `tables/t.sql`, every `@@ path` line starts the file `path`.
fn files(text: &str) -> SchemaDir {
    let mut dir = SchemaDir::default();
    let mut path = "tables/t.sql".to_owned();
    let mut body = String::new();
    let mut flush = |path: &str, body: &mut String| {
        if !body.trim().is_empty() {
            dir.set(path, body);
        }
        body.clear();
    };
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("@@ ") {
            flush(&path, &mut body);
            path = p.trim().to_owned();
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&path, &mut body);
    dir
}

const MOOD: &str = "@@ types/mood.sql\nCREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');\n";
const MOODS: &str = "@@ types/mood.sql\nCREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');\n\
                     @@ types/mood2.sql\nCREATE TYPE mood2 AS ENUM ('sad', 'ok', 'happy');\n";
const DOMAIN: &str =
    "@@ types/positive.sql\nCREATE DOMAIN positive AS integer CHECK (VALUE > 0);\n";
const ADDRESS: &str = "@@ types/address.sql\nCREATE TYPE address AS (street text, city text);\n";

/// Parent table `p` in its own file (for foreign keys from `t`).
const P: &str = "@@ tables/p.sql\nCREATE TABLE p (\n    id int PRIMARY KEY,\n    name text\n);\n";

const PG_DUMP: &str = "--
-- PostgreSQL database dump
--

-- Dumped from database version 15.6

--
-- Name: t; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.t (
    id integer NOT NULL,
    name character varying(50) NOT NULL,
    qty integer DEFAULT 0,
    p_id integer,
    CONSTRAINT t_qty_check CHECK ((qty >= 0))
);


--
-- Name: t_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.t_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: t_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.t_id_seq OWNED BY public.t.id;


--
-- Name: t id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('public.t_id_seq'::regclass);


--
-- Name: t t_name_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.t
    ADD CONSTRAINT t_name_key UNIQUE (name);


--
-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.t
    ADD CONSTRAINT t_pkey PRIMARY KEY (id);


--
-- Name: t_name_lower_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX t_name_lower_idx ON public.t USING btree (lower((name)::text));


--
-- Name: t t_p_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.t
    ADD CONSTRAINT t_p_id_fkey FOREIGN KEY (p_id) REFERENCES public.p(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--
";

const PG_DUMP_COMPACT: &str = "CREATE TABLE t (
    id serial PRIMARY KEY,
    name varchar(50) NOT NULL UNIQUE,
    qty int DEFAULT 0 CHECK (qty >= 0),
    p_id int REFERENCES p (id) ON DELETE CASCADE
);
CREATE INDEX t_name_lower_idx ON t (lower(name));
";

fn cases() -> Vec<Case> {
    let p = |s: &str| format!("{P}@@ tables/t.sql\n{s}");
    vec![
        // ---- widening: safe ----
        col("widen int2 to int4", "smallint", "integer", &[Safe])
            .setup("INSERT INTO t VALUES (1, 7)")
            .verify("SELECT c = 7 FROM t"),
        col("widen int4 to int8", "integer", "bigint", &[Safe])
            .setup("INSERT INTO t VALUES (1, 2147483647)")
            .verify("SELECT c = 2147483647 FROM t"),
        col("widen int2 to int8", "int2", "int8", &[Safe]),
        col("widen int8 to numeric", "bigint", "numeric", &[Safe])
            .setup("INSERT INTO t VALUES (1, 9223372036854775807)")
            .verify("SELECT c = 9223372036854775807 FROM t"),
        col("widen int4 to numeric(12,0)", "integer", "numeric(12,0)", &[Safe])
            .setup("INSERT INTO t VALUES (1, -2147483648)"),
        col("widen numeric(10,2) to numeric(12,2)", "numeric(10,2)", "numeric(12,2)", &[Safe])
            .setup("INSERT INTO t VALUES (1, 12345678.91)")
            .verify("SELECT c = 12345678.91 FROM t"),
        col("widen numeric(10,2) to numeric(12,4)", "numeric(10,2)", "numeric(12,4)", &[Safe])
            .setup("INSERT INTO t VALUES (1, 12345678.91)"),
        col("widen varchar(10) to varchar(20)", "varchar(10)", "varchar(20)", &[Safe])
            .setup("INSERT INTO t VALUES (1, 'abcdefghij')")
            .verify("SELECT c = 'abcdefghij' FROM t"),
        col("widen varchar(10) to text", "varchar(10)", "text", &[Safe])
            .setup("INSERT INTO t VALUES (1, 'abc')"),
        col("widen varchar(10) to varchar", "varchar(10)", "varchar", &[Safe]),
        col("widen float4 to float8", "real", "double precision", &[Safe])
            .setup("INSERT INTO t VALUES (1, 1.5)")
            .verify("SELECT c = 1.5 FROM t"),
        col("widen timestamp to timestamptz", "timestamp", "timestamptz", &[Safe])
            .setup("INSERT INTO t VALUES (1, '2024-01-02 03:04:05')")
            .verify("SELECT c = '2024-01-02 03:04:05+00' FROM t"),
        col("widen date to timestamp", "date", "timestamp", &[Safe])
            .setup("INSERT INTO t VALUES (1, '2024-01-02')")
            .verify("SELECT c = '2024-01-02 00:00:00' FROM t"),
        // ---- narrowing: dataloss ----
        col("narrow int8 to int4", "bigint", "integer", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 5)")
            .verify("SELECT c = 5 FROM t"),
        col("narrow int8 to int4 overflowing", "bigint", "integer", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 10000000000)")
            .force_fails(),
        col("narrow int4 to int2", "integer", "smallint", &[Dataloss]),
        col("narrow int4 to int2 overflowing", "integer", "smallint", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 40000)")
            .force_fails(),
        col("narrow numeric to int8", "numeric", "bigint", &[Dataloss]),
        col("narrow numeric(12,2) to numeric(10,2)", "numeric(12,2)", "numeric(10,2)", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 12.5)")
            .verify("SELECT c = 12.5 FROM t"),
        col("narrow numeric(12,2) to numeric(10,2) overflowing", "numeric(12,2)", "numeric(10,2)", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 1234567890.12)")
            .force_fails(),
        col("narrow numeric(10,2) to numeric(10,4)", "numeric(10,2)", "numeric(10,4)", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 12.5)"),
        col("narrow numeric(10,4) to numeric(10,2)", "numeric(10,4)", "numeric(10,2)", &[Dataloss]),
        col("narrow varchar(20) to varchar(10)", "varchar(20)", "varchar(10)", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 'short')")
            .verify("SELECT c = 'short' FROM t"),
        col("narrow varchar(20) to varchar(10) too long", "varchar(20)", "varchar(10)", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 'much too long value')")
            .force_fails(),
        col("narrow text to varchar(10)", "text", "varchar(10)", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 'hello')"),
        col("narrow float8 to float4", "double precision", "real", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 1.5)"),
        col("narrow float8 to float4 out of range", "float8", "float4", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 1e300)")
            .force_fails(),
        col("narrow timestamptz to timestamp", "timestamptz", "timestamp", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, '2024-01-02 03:04:05+00')"),
        col("narrow timestamp to date", "timestamp", "date", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, '2024-01-02 03:04:05')")
            .verify("SELECT c = '2024-01-02' FROM t"),
        col("narrow numeric to numeric(10,2)", "numeric", "numeric(10,2)", &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 1.25)")
            .verify("SELECT c = 1.25 FROM t"),
        // ---- incompatible types ----
        col("incompatible int to text", "integer", "text", &[Incompatible])
            .setup("INSERT INTO t VALUES (1, 42)")
            .verify("SELECT c = '42' FROM t"),
        col("incompatible text to int", "text", "integer", &[Incompatible])
            .setup("INSERT INTO t VALUES (1, '42')")
            .verify("SELECT c = 42 FROM t"),
        col("incompatible text to int bad value", "text", "integer", &[Incompatible])
            .setup("INSERT INTO t VALUES (1, 'abc')")
            .force_fails(),
        col("incompatible bool to int", "boolean", "integer", &[Incompatible])
            .setup("INSERT INTO t VALUES (1, true)"),
        case(
            "incompatible enum to other enum",
            format!("{MOODS}@@ tables/t.sql\n{}", t("m mood")),
            format!("{MOODS}@@ tables/t.sql\n{}", t("m mood2")),
            &[Incompatible],
        )
        .setup("INSERT INTO t VALUES (1, 'ok')")
        .verify("SELECT m = 'ok'::mood2 FROM t"),
        col("incompatible int to int[]", "integer", "integer[]", &[Incompatible]),
        col("incompatible int[] to int", "int[]", "int", &[Incompatible]),
        col("incompatible uuid to text", "uuid", "text", &[Incompatible])
            .setup("INSERT INTO t VALUES (1, '6f1c1d0e-3a53-4b8a-9c55-2d8c2f0f4a11')"),
        case(
            "incompatible text to enum",
            format!("{MOOD}@@ tables/t.sql\n{}", t("m text")),
            format!("{MOOD}@@ tables/t.sql\n{}", t("m mood")),
            &[Incompatible],
        )
        .setup("INSERT INTO t VALUES (1, 'ok')")
        .verify("SELECT m = 'ok'::mood FROM t"),
        // ---- unchanged schemas of many types: no change at all ----
        same("unchanged bool", t("c bool NOT NULL DEFAULT false")),
        same("unchanged double precision", t("c double precision DEFAULT 0.5")),
        same("unchanged real", t("c real")),
        same("unchanged enum", format!("{MOOD}@@ tables/t.sql\n{}", t("m mood NOT NULL DEFAULT 'ok'"))),
        same("unchanged int[]", t("c int[] NOT NULL DEFAULT '{}'")),
        same("unchanged text[]", t("c text[] DEFAULT ARRAY['a', 'b']")),
        same("unchanged domain", format!("{DOMAIN}@@ tables/t.sql\n{}", t("n positive DEFAULT 1"))),
        same("unchanged numeric(10,2) with check", t("price numeric(10,2) NOT NULL CHECK (price > 0)")),
        same("unchanged timestamptz default now()", t("at timestamptz NOT NULL DEFAULT now()")),
        same("unchanged tsvector", t("doc tsvector")),
        same("unchanged jsonb", t("data jsonb NOT NULL DEFAULT '{}'::jsonb")),
        same(
            "unchanged uuid default gen_random_uuid()",
            "CREATE TABLE t (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), c text);\n",
        ),
        same("unchanged text collate C", t("c text COLLATE \"C\"")),
        same("unchanged char(3)", t("c char(3) NOT NULL DEFAULT 'EUR'")),
        same("unchanged bit(8)", t("c bit(8), v varbit(16)")),
        same("unchanged interval", t("c interval DEFAULT '1 day'")),
        same("unchanged inet", t("c inet, n cidr, m macaddr")),
        same("unchanged money", t("c money")),
        same("unchanged bytea", t("c bytea")),
        same("unchanged serial", "CREATE TABLE t (id serial PRIMARY KEY, c text);\n"),
        same("unchanged bigserial", "CREATE TABLE t (id bigserial PRIMARY KEY, c text);\n"),
        same("unchanged smallserial", "CREATE TABLE t (id smallserial PRIMARY KEY, c text);\n"),
        same(
            "unchanged identity always",
            "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, c text);\n",
        ),
        same(
            "unchanged identity by default",
            "CREATE TABLE t (id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 100 INCREMENT BY 10) PRIMARY KEY);\n",
        ),
        same(
            "unchanged generated stored column",
            t("price numeric(10,2), qty int, total numeric GENERATED ALWAYS AS (price * qty) STORED"),
        ),
        same("unchanged composite type column", format!("{ADDRESS}@@ tables/t.sql\n{}", t("home address"))),
        same(
            "unchanged indexes",
            t("a int, b text")
                + "CREATE UNIQUE INDEX t_a_b_idx ON t (a, b);\n\
                   CREATE INDEX t_lower_b_idx ON t (lower(b)) WHERE a > 0;\n\
                   CREATE INDEX t_b_hash_idx ON t USING hash (b);\n",
        ),
        same(
            "unchanged foreign keys",
            p("CREATE TABLE t (\n    id int PRIMARY KEY,\n    p_id int NOT NULL REFERENCES p ON DELETE CASCADE,\n    q_id int,\n    FOREIGN KEY (q_id) REFERENCES p (id) ON UPDATE SET NULL\n);\n"),
        ),
        same(
            "unchanged composite primary key and unique",
            "CREATE TABLE t (a int, b int, c text, PRIMARY KEY (a, b), UNIQUE (c, a));\n",
        ),
        same(
            "unchanged mixed case quoted names",
            "CREATE TABLE \"OrderItems\" (\"Id\" int PRIMARY KEY, \"Qty\" int NOT NULL DEFAULT 1);\n\
             CREATE INDEX \"OrderItems_Qty_idx\" ON \"OrderItems\" (\"Qty\");\n",
        ),
        same(
            "unchanged non-ascii names",
            "CREATE TABLE bücher (id int PRIMARY KEY, größe int CHECK (größe > 0), titel text UNIQUE);\n",
        ),
        same(
            "unchanged self-referencing fk",
            "CREATE TABLE t (id int PRIMARY KEY, parent_id int REFERENCES t (id));\n",
        ),
        same(
            "unchanged fk cycle",
            "@@ tables/a.sql\nCREATE TABLE a (id int PRIMARY KEY, b_id int);\n\
             ALTER TABLE a ADD CONSTRAINT a_b_fk FOREIGN KEY (b_id) REFERENCES b (id);\n\
             @@ tables/b.sql\nCREATE TABLE b (id int PRIMARY KEY, a_id int);\n\
             ALTER TABLE b ADD CONSTRAINT b_a_fk FOREIGN KEY (a_id) REFERENCES a (id);\n",
        ),
        same(
            "unchanged declared sequence",
            "CREATE SEQUENCE invoice_no_seq START WITH 1000 INCREMENT BY 5;\n\
             CREATE TABLE t (id int PRIMARY KEY, no bigint NOT NULL DEFAULT nextval('invoice_no_seq'));\n",
        ),
        // ---- spelling variants of the same schema: no change ----
        case(
            "spelling int integer int4",
            t("a int, b integer, c int4, d int8, e int2"),
            t("a int4, b int, c integer, d bigint, e smallint"),
            &[],
        ),
        case(
            "spelling varchar character varying",
            t("a varchar(20), b varchar, c char(2), d decimal(10,2)"),
            t("a character varying(20), b character varying, c character(2), d numeric(10,2)"),
            &[],
        ),
        case(
            "spelling timestamptz timestamp with time zone",
            t("a timestamptz, b timestamp, c timetz, d time"),
            t("a timestamp with time zone, b timestamp without time zone, c time with time zone, d time without time zone"),
            &[],
        ),
        case(
            "spelling bool float8 float4",
            t("a bool, b float8, c float4, d float"),
            t("a boolean, b double precision, c real, d double precision"),
            &[],
        ),
        case(
            "spelling unnamed vs named constraints",
            "CREATE TABLE t (id int PRIMARY KEY, c int CHECK (c > 0), u text UNIQUE);\n",
            "CREATE TABLE t (id int, c int, u text,\n    CONSTRAINT t_pkey PRIMARY KEY (id),\n    CONSTRAINT t_c_check CHECK (c > 0),\n    CONSTRAINT t_u_key UNIQUE (u));\n",
            &[],
        ),
        case(
            "spelling unnamed vs named foreign key",
            p("CREATE TABLE t (id int PRIMARY KEY, p_id int REFERENCES p);\n"),
            p("CREATE TABLE t (id int PRIMARY KEY, p_id int,\n    CONSTRAINT t_p_id_fkey FOREIGN KEY (p_id) REFERENCES public.p (id));\n"),
            &[],
        ),
        case(
            "spelling quoted lower-case names",
            t("c text"),
            "CREATE TABLE \"t\" (\"id\" int PRIMARY KEY, \"c\" text);\n",
            &[],
        ),
        case(
            "spelling upper-case unquoted names and keywords",
            t("c text NOT NULL DEFAULT 'x'"),
            "create table T (\n  ID INT primary key,\n  C TEXT not null default 'x'\n);\n",
            &[],
        ),
        case(
            "spelling public qualified",
            t("c text") + "CREATE INDEX t_c_idx ON t (c);\n",
            "CREATE TABLE public.t (id int PRIMARY KEY, c text);\nCREATE INDEX t_c_idx ON public.t USING btree (c);\n",
            &[],
        ),
        case(
            "spelling default and check expressions",
            t("price numeric DEFAULT 0 CHECK (price > 0), n int DEFAULT 0"),
            t("price numeric DEFAULT (0) CHECK ((price > (0)::numeric)), n int DEFAULT (0)"),
            &[],
        ),
        case(
            "spelling comments and whitespace",
            t("c text"),
            "-- the t table\n/* block\n   comment */\nCREATE   TABLE\n  t\n(\n  -- key\n  id int PRIMARY KEY, /* inline */\n  c text -- trailing\n)\n;\n",
            &[],
        ),
        case(
            "spelling pg_dump format",
            p(PG_DUMP_COMPACT),
            p(PG_DUMP),
            &[],
        ),
        case(
            "spelling pg_dump format reversed",
            p(PG_DUMP),
            p(PG_DUMP_COMPACT),
            &[],
        ),
        case(
            "spelling serial vs explicit sequence",
            "CREATE TABLE t (id serial PRIMARY KEY);\n",
            "CREATE SEQUENCE t_id_seq AS integer;\n\
             CREATE TABLE t (id integer NOT NULL DEFAULT nextval('t_id_seq'::regclass) PRIMARY KEY);\n\
             ALTER SEQUENCE t_id_seq OWNED BY t.id;\n",
            &[],
        ),
        case(
            "spelling table moved to another file",
            t("c text"),
            format!("@@ tables/renamed_file.sql\n{}", t("c text")),
            &[],
        ),
        case(
            "spelling two tables in one file vs two files",
            p("CREATE TABLE t (id int PRIMARY KEY, p_id int REFERENCES p (id));\n"),
            "CREATE TABLE p (id int PRIMARY KEY, name text);\n\
             CREATE TABLE t (id int PRIMARY KEY, p_id int REFERENCES p (id));\n",
            &[],
        ),
        // ---- columns ----
        case("add nullable column", t("c text"), t("c text, d int"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 'a')")
            .verify("SELECT d IS NULL AND c = 'a' FROM t"),
        case("add column with default", t("c text"), t("c text, d text NOT NULL DEFAULT 'new'"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
            .verify("SELECT bool_and(d = 'new') FROM t"),
        case(
            "add column with volatile default",
            t("c text"),
            t("c text, u uuid NOT NULL DEFAULT gen_random_uuid()"),
            &[Safe],
        )
        .setup("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .verify("SELECT count(DISTINCT u) = 2 FROM t"),
        // added nullable before the migrations and tightened after them
        // (a migration may fill it): on rows left without a value,
        // PostgreSQL refuses the NOT NULL and nothing changes
        case("add not null column without default on empty table", t("c text"), t("c text, d int NOT NULL"), &[Safe]),
        case("add not null column without default with rows", t("c text"), t("c text, d int NOT NULL"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 'a')")
            .safe_fails(),
        case("add identity column", t("c text"), t("c text, n bigint GENERATED BY DEFAULT AS IDENTITY"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
            .verify("SELECT count(DISTINCT n) = 2 FROM t"),
        case(
            "add generated stored column",
            t("a int"),
            t("a int, doubled int GENERATED ALWAYS AS (a * 2) STORED"),
            &[Safe],
        )
        .setup("INSERT INTO t VALUES (1, 21)")
        .verify("SELECT doubled = 42 FROM t"),
        case("set not null on column with nulls", t("c int"), t("c int NOT NULL"), &[Dataloss])
            .setup("INSERT INTO t VALUES (1, NULL)")
            .force_fails(),
        case(
            "set not null without nulls with default",
            t("c int DEFAULT 0"),
            t("c int NOT NULL DEFAULT 0"),
            &[Safe],
        )
        .setup("INSERT INTO t VALUES (1, 5)"),
        case("set not null without nulls without default", t("c int"), t("c int NOT NULL"), &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 5)")
            .verify("SELECT c = 5 FROM t"),
        case("drop not null", t("c int NOT NULL"), t("c int"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 5)"),
        case("widen and drop not null", t("c int NOT NULL"), t("c bigint"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 5)")
            .verify("SELECT c = 5 FROM t"),
        case("drop column", t("c text, d text"), t("c text"), &[Dataloss])
            .setup("INSERT INTO t VALUES (1, 'a', 'b')")
            .verify("SELECT c = 'a' FROM t"),
        case("rename column is add plus drop", t("c text"), t("c2 text"), &[Safe, Dataloss])
            .setup("INSERT INTO t VALUES (1, 'a')"),
        case("add default", t("c int"), t("c int DEFAULT 7"), &[Safe])
            .setup("INSERT INTO t VALUES (1, NULL)")
            .verify("SELECT c IS NULL FROM t"),
        case("change default", t("c int DEFAULT 7"), t("c int DEFAULT 8"), &[Safe]),
        case("change default expression", t("c timestamptz DEFAULT now()"), t("c timestamptz DEFAULT '2020-01-01'"), &[Safe]),
        case("drop default", t("c int DEFAULT 7"), t("c int"), &[Safe]),
        case("serial to integer drops the sequence", "CREATE TABLE t (id serial PRIMARY KEY);\n", "CREATE TABLE t (id integer PRIMARY KEY);\n", &[Safe, Dataloss])
            // the default's drop is a (safe) default change, the sequence's drop is dataloss
            .setup("INSERT INTO t DEFAULT VALUES")
            .verify("SELECT id = 1 FROM t"),
        case(
            "drop identity",
            "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, c text);\n",
            "CREATE TABLE t (id int PRIMARY KEY, c text);\n",
            &[Dataloss],
        ),
        case("collation change", t("c text"), t("c text COLLATE \"C\""), &[Safe])
            .setup("INSERT INTO t VALUES (1, 'a')"),
        case(
            "widen with a default, a check and an index on the column",
            t("c varchar(10) NOT NULL DEFAULT 'x' CHECK (c <> '')") + "CREATE INDEX t_c_idx ON t (c);\n",
            t("c varchar(20) NOT NULL DEFAULT 'x' CHECK (c <> '')") + "CREATE INDEX t_c_idx ON t (c);\n",
            &[Safe],
        )
        .setup("INSERT INTO t VALUES (1, 'abc')"),
        case(
            "widen a referenced primary key and its foreign key",
            "@@ tables/p.sql\nCREATE TABLE p (id int PRIMARY KEY);\n@@ tables/t.sql\nCREATE TABLE t (id int PRIMARY KEY, p_id int REFERENCES p (id));\n",
            "@@ tables/p.sql\nCREATE TABLE p (id bigint PRIMARY KEY);\n@@ tables/t.sql\nCREATE TABLE t (id int PRIMARY KEY, p_id bigint REFERENCES p (id));\n",
            &[Safe],
        )
        .setup("INSERT INTO p VALUES (1); INSERT INTO t VALUES (1, 1)"),
        case(
            "quoted mixed-case names widen",
            "CREATE TABLE \"OrderItems\" (\"Id\" int PRIMARY KEY, \"Qty\" int NOT NULL DEFAULT 1);\n",
            "CREATE TABLE \"OrderItems\" (\"Id\" int PRIMARY KEY, \"Qty\" bigint NOT NULL DEFAULT 1, \"Note\" text);\n\
             CREATE INDEX \"OrderItems_Qty_idx\" ON \"OrderItems\" (\"Qty\");\n",
            &[Safe],
        )
        .setup("INSERT INTO \"OrderItems\" VALUES (1, 3)"),
        case(
            "quoted mixed-case column dropped",
            "CREATE TABLE \"OrderItems\" (\"Id\" int PRIMARY KEY, \"Qty\" int);\n",
            "CREATE TABLE \"OrderItems\" (\"Id\" int PRIMARY KEY);\n",
            &[Dataloss],
        ),
        case(
            "non-ascii names add column",
            "CREATE TABLE bücher (id int PRIMARY KEY, größe int);\n",
            "CREATE TABLE bücher (id int PRIMARY KEY, größe bigint, année text DEFAULT 'é');\n\
             CREATE INDEX bücher_größe_idx ON bücher (größe);\n",
            &[Safe],
        )
        .setup("INSERT INTO bücher VALUES (1, 2)"),
        // ---- tables ----
        case("add table", t("c text"), t("c text") + "CREATE TABLE u (id int PRIMARY KEY);\n", &[Safe]),
        case(
            "add table referencing existing table",
            t("c text"),
            t("c text") + "@@ tables/u.sql\nCREATE TABLE u (id int PRIMARY KEY, t_id int NOT NULL REFERENCES t (id));\n",
            &[Safe],
        ),
        case(
            "drop table",
            t("c text") + "@@ tables/u.sql\nCREATE TABLE u (id int PRIMARY KEY);\n",
            t("c text"),
            &[Dataloss],
        )
        .setup("INSERT INTO u VALUES (1)"),
        case(
            "rename table is add plus drop",
            t("c text") + "@@ tables/u.sql\nCREATE TABLE u (id int PRIMARY KEY);\n",
            t("c text") + "@@ tables/v.sql\nCREATE TABLE v (id int PRIMARY KEY);\n",
            &[Safe, Dataloss],
        )
        .setup("INSERT INTO u VALUES (1)"),
        case(
            "drop table referenced by an undeclared foreign key",
            t("c text") + "@@ tables/u.sql\nCREATE TABLE u (id int PRIMARY KEY);\n",
            t("c text"),
            &[Dataloss],
        )
        // dropping u would need CASCADE, which would drop the hand-made foreign key
        .setup("CREATE TABLE hand_table (id int, u_id int REFERENCES u (id))")
        .force_fails(),
        case(
            "drop referenced table and its foreign key",
            p("CREATE TABLE t (id int PRIMARY KEY, p_id int REFERENCES p (id));\n"),
            "CREATE TABLE t (id int PRIMARY KEY, p_id int);\n",
            &[Safe, Dataloss],
        )
        .setup("INSERT INTO p VALUES (1, 'x'); INSERT INTO t VALUES (1, 1)"),
        case(
            "add declared sequence",
            t("c text"),
            "CREATE SEQUENCE invoice_no_seq;\n".to_owned() + &t("c text"),
            &[Safe],
        ),
        case(
            "drop declared sequence",
            "CREATE SEQUENCE invoice_no_seq;\n".to_owned() + &t("c text"),
            t("c text"),
            &[Dataloss],
        ),
        case(
            "sequence becomes owned by a column",
            "CREATE SEQUENCE t_no_seq;\n".to_owned() + &t("c bigint DEFAULT nextval('t_no_seq')"),
            "CREATE SEQUENCE t_no_seq;\n".to_owned()
                + &t("c bigint DEFAULT nextval('t_no_seq')")
                + "ALTER SEQUENCE t_no_seq OWNED BY t.c;\n",
            &[Safe],
        )
        .verify(
            "SELECT EXISTS (SELECT FROM pg_depend WHERE objid = 't_no_seq'::regclass \
             AND refobjid = 't'::regclass AND deptype = 'a')",
        ),
        case(
            "sequence no longer owned by a column",
            "CREATE SEQUENCE t_no_seq;\n".to_owned()
                + &t("c bigint DEFAULT nextval('t_no_seq')")
                + "ALTER SEQUENCE t_no_seq OWNED BY t.c;\n",
            "CREATE SEQUENCE t_no_seq;\n".to_owned() + &t("c bigint DEFAULT nextval('t_no_seq')"),
            &[Safe],
        )
        .verify("SELECT NOT EXISTS (SELECT FROM pg_depend WHERE objid = 't_no_seq'::regclass AND deptype = 'a')"),
        // ---- constraints and indexes ----
        case("drop primary key", t("c text"), "CREATE TABLE t (id int, c text);\n", &[Safe]),
        case(
            "change primary key columns",
            "CREATE TABLE t (a int, b int, PRIMARY KEY (a, b));\n",
            "CREATE TABLE t (a int, b int NOT NULL, PRIMARY KEY (a));\n",
            &[Safe],
        )
        .setup("INSERT INTO t VALUES (1, 1), (2, 1)"),
        case("add primary key", "CREATE TABLE t (id int NOT NULL, c text);\n", t("c text"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 'a')"),
        case(
            "add foreign key to existing column",
            p(&t("p_id int")),
            p(&t("p_id int REFERENCES p (id)")),
            &[Safe],
        )
        .setup("INSERT INTO p VALUES (1, 'x'); INSERT INTO t VALUES (1, 1)"),
        case(
            "add foreign key existing rows violate",
            p(&t("p_id int")),
            p(&t("p_id int REFERENCES p (id)")),
            &[Safe],
        )
        .setup("INSERT INTO t VALUES (1, 99)")
        .safe_fails(),
        case("drop foreign key", p(&t("p_id int REFERENCES p (id)")), p(&t("p_id int")), &[Safe]),
        case(
            "change foreign key action",
            p(&t("p_id int REFERENCES p (id)")),
            p(&t("p_id int REFERENCES p (id) ON DELETE CASCADE")),
            &[Safe],
        ),
        case(
            "add self-referencing foreign key",
            t("parent_id int"),
            t("parent_id int REFERENCES t (id)"),
            &[Safe],
        )
        .setup("INSERT INTO t VALUES (1, NULL), (2, 1)"),
        case(
            "add foreign key cycle",
            "@@ tables/a.sql\nCREATE TABLE a (id int PRIMARY KEY, b_id int);\n\
             @@ tables/b.sql\nCREATE TABLE b (id int PRIMARY KEY, a_id int);\n",
            "@@ tables/a.sql\nCREATE TABLE a (id int PRIMARY KEY, b_id int);\n\
             ALTER TABLE a ADD CONSTRAINT a_b_fk FOREIGN KEY (b_id) REFERENCES b (id);\n\
             @@ tables/b.sql\nCREATE TABLE b (id int PRIMARY KEY, a_id int);\n\
             ALTER TABLE b ADD CONSTRAINT b_a_fk FOREIGN KEY (a_id) REFERENCES a (id);\n",
            &[Safe],
        ),
        case("add check", t("c int"), t("c int CHECK (c > 0)"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 5)"),
        case("change check", t("c int CHECK (c > 0)"), t("c int CHECK (c > 1)"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 5)"),
        case("drop check", t("c int CHECK (c > 0)"), t("c int"), &[Safe]),
        case("add check existing rows violate", t("c int"), t("c int CHECK (c > 0)"), &[Safe])
            .setup("INSERT INTO t VALUES (1, -5)")
            .safe_fails(),
        case("add unique", t("c text"), t("c text UNIQUE"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 'a'), (2, 'b')"),
        case("add unique existing duplicates", t("c text"), t("c text UNIQUE"), &[Safe])
            .setup("INSERT INTO t VALUES (1, 'a'), (2, 'a')")
            .safe_fails(),
        case("drop unique", t("c text UNIQUE"), t("c text"), &[Safe]),
        case("add index", t("c text"), t("c text") + "CREATE INDEX t_c_idx ON t (c);\n", &[Safe]),
        case(
            "change index columns",
            t("a int, b int") + "CREATE INDEX t_x_idx ON t (a);\n",
            t("a int, b int") + "CREATE INDEX t_x_idx ON t (a, b);\n",
            &[Safe],
        ),
        case("drop index", t("c text") + "CREATE INDEX t_c_idx ON t (c);\n", t("c text"), &[Safe]),
        case(
            "add partial index",
            t("c text, done bool"),
            t("c text, done bool") + "CREATE INDEX t_open_idx ON t (c) WHERE NOT done;\n",
            &[Safe],
        ),
        case(
            "change partial index predicate",
            t("c text, done bool") + "CREATE INDEX t_open_idx ON t (c) WHERE NOT done;\n",
            t("c text, done bool") + "CREATE INDEX t_open_idx ON t (c) WHERE done IS NOT TRUE;\n",
            &[Safe],
        ),
        case(
            "add expression index",
            t("c text"),
            t("c text") + "CREATE UNIQUE INDEX t_lower_c_idx ON t (lower(c));\n",
            &[Safe],
        )
        .setup("INSERT INTO t VALUES (1, 'a'), (2, 'B')"),
        case(
            "index becomes unique",
            t("c text") + "CREATE INDEX t_c_idx ON t (c);\n",
            t("c text") + "CREATE UNIQUE INDEX t_c_idx ON t (c);\n",
            &[Safe],
        ),
        // ---- several classes at once ----
        case("add column and drop column", t("c text"), t("d text"), &[Safe, Dataloss]),
        case("add column and incompatible type", t("c int"), t("c text, d int"), &[Safe, Incompatible])
            .setup("INSERT INTO t VALUES (1, 3)"),
        case(
            "all three classes",
            t("a int, b bigint, c bool"),
            t("a text, b int, d int DEFAULT 1"),
            &[Safe, Dataloss, Incompatible],
        )
        .setup("INSERT INTO t VALUES (1, 2, 3, true)"),
        case("narrow and incompatible", t("a bigint, b int"), t("a int, b bool"), &[Dataloss, Incompatible]),
        // ---- objects made by hand survive ----
        case("undeclared column survives a forced change", t("c text, d text"), t("c text"), &[Dataloss])
            .setup("ALTER TABLE t ADD COLUMN hand_col text; INSERT INTO t VALUES (1, 'a', 'b', 'kept')")
            .survivors(&["hand_col"])
            .verify("SELECT hand_col = 'kept' FROM t"),
        case("undeclared index survives", t("c text"), t("c bigint"), &[Incompatible])
            .setup("CREATE INDEX hand_idx ON t (id, c)")
            .survivors(&["hand_idx"]),
        case("undeclared index survives a safe change", t("c text"), t("c text, d int"), &[Safe])
            .setup("CREATE INDEX hand_idx ON t (c)")
            .survivors(&["hand_idx"]),
        case(
            "undeclared table survives",
            t("c text") + "@@ tables/u.sql\nCREATE TABLE u (id int PRIMARY KEY);\n",
            t("c text, d int"),
            &[Safe, Dataloss],
        )
        .setup("CREATE TABLE hand_table (id int PRIMARY KEY, t_id int REFERENCES t (id)); INSERT INTO t VALUES (1, 'a'); INSERT INTO hand_table VALUES (1, 1)")
        .survivors(&["hand_table"])
        .verify("SELECT count(*) = 1 FROM hand_table"),
        case("undeclared constraint survives", t("c text"), t("c text, d int"), &[Safe])
            .setup("ALTER TABLE t ADD CONSTRAINT hand_check CHECK (c <> '')")
            .survivors(&["hand_check"]),
        case("undeclared sequence survives", t("c text"), t("c text"), &[])
            .setup("CREATE SEQUENCE hand_seq; ALTER TABLE t ADD COLUMN hand_no int DEFAULT nextval('hand_seq')")
            .survivors(&["hand_seq", "hand_no"]),
    ]
}

fn clip(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 3000 {
        let mut end = 3000;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

/// The classes whose list is non-empty in `v` (a `schema_validation` or the
/// 409's `details`); `Err` if a list is missing.
fn classes(v: &Value) -> Result<BTreeSet<Class>, String> {
    let mut out = BTreeSet::new();
    for c in CLASSES {
        let l = v[c.list()]
            .as_array()
            .ok_or_else(|| format!("{} missing", c.list()))?;
        if !l.is_empty() {
            out.insert(c);
        }
    }
    Ok(out)
}

/// Tables, columns, constraints, indexes and sequences of `public`, one line
/// each, sorted.
const CATALOG: &str = r#"
WITH rel AS (
    SELECT c.oid, c.relname, c.relkind FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace
       AND c.relname NOT LIKE '\_stonescriptdb\_gateway%'
)
SELECT 'table ' || r.relname || ' ' || r.relkind::text FROM rel r WHERE r.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT 'column ' || r.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
       || CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END
       || coalesce(' collate ' || co.collname, '')
  FROM rel r
  JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
 WHERE r.relkind IN ('r', 'p')
UNION ALL
SELECT 'constraint ' || r.relname || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
  FROM pg_constraint con JOIN rel r ON r.oid = con.conrelid
UNION ALL
SELECT 'index ' || r.relname || ' ' || ic.relname || ' ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN rel r ON r.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE NOT EXISTS (SELECT 1 FROM pg_constraint con
                    WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid)
UNION ALL
SELECT 'sequence ' || r.relname || ' ' || format_type(s.seqtypid, NULL)
       || ' increment ' || s.seqincrement || ' min ' || s.seqmin || ' max ' || s.seqmax
       || ' start ' || s.seqstart || ' cache ' || s.seqcache
       || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
       || coalesce((SELECT ' owned by ' || ot.relname || '.' || oa.attname || ' (' || dep.deptype::text || ')'
                      FROM pg_depend dep
                      JOIN pg_class ot ON ot.oid = dep.refobjid
                      JOIN pg_attribute oa ON oa.attrelid = dep.refobjid AND oa.attnum = dep.refobjsubid
                     WHERE dep.classid = 'pg_class'::regclass AND dep.objid = r.oid
                       AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')
                     LIMIT 1), '')
  FROM pg_sequence s JOIN rel r ON r.oid = s.seqrelid
ORDER BY 1
"#;

async fn catalog(c: &Client) -> Result<Vec<String>, String> {
    Ok(c.query(CATALOG, &[])
        .await
        .map_err(|e| format!("catalog query: {e:?}"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

fn catalog_diff(label_a: &str, a: &[String], label_b: &str, b: &[String]) -> String {
    let sa: BTreeSet<&String> = a.iter().collect();
    let sb: BTreeSet<&String> = b.iter().collect();
    let mut out = String::new();
    for l in sa.difference(&sb) {
        out.push_str(&format!("\n      only in {label_a}: {l}"));
    }
    for l in sb.difference(&sa) {
        out.push_str(&format!("\n      only in {label_b}: {l}"));
    }
    if out.is_empty() {
        out.push_str("\n      (same lines, different multiplicity)");
    }
    out
}

/// Run one case; `Err` says which step failed and what was seen.
async fn run(gw: &Gateway, case: &Case) -> Result<(), String> {
    let before = files(&case.before);
    let after = files(&case.after);
    let expect: BTreeSet<Class> = case.expect.iter().copied().collect();
    let destructive = expect.contains(&Dataloss) || expect.contains(&Incompatible);

    // 1. register `before`
    let p = new_platform();
    let (s, b) = gw.register(&p, None, &before).await;
    if s != 200 {
        return Err(format!("register before: {s} {}", clip(&b)));
    }
    let db = format!("{p}_main");
    let c = cluster().connect(&db).await;

    // 2. setup
    if !case.setup.is_empty() {
        c.batch_execute(case.setup)
            .await
            .map_err(|e| format!("setup: {e:?}"))?;
    }
    let snap = catalog(&c).await?;
    let unchanged = |when: &str, now: Vec<String>| -> Result<(), String> {
        if now == snap {
            Ok(())
        } else {
            Err(format!(
                "{when} changed the database:{}",
                catalog_diff("before", &snap, "after", &now)
            ))
        }
    };

    // 3. migrate without force
    let (s, b) = gw.migrate(&p, None, &after, false).await;
    let mut applied = false;
    if case.safe_fails {
        if s != 409 || b["error"] != "migration_failed" {
            return Err(format!(
                "no force: expected 409 migration_failed, got {s} {}",
                clip(&b)
            ));
        }
        unchanged("the failed deployment", catalog(&c).await?)?;
        let (s, b) = gw.migrate(&p, None, &after, true).await;
        if s != 409 || b["error"] != "migration_failed" {
            return Err(format!(
                "force: expected 409 migration_failed, got {s} {}",
                clip(&b)
            ));
        }
        unchanged("the failed forced deployment", catalog(&c).await?)?;
        return Ok(());
    }
    if destructive {
        if s != 409 || b["error"] != "schema_validation_failed" {
            return Err(format!(
                "no force: expected 409 schema_validation_failed with {expect:?}, got {s} {}",
                clip(&b)
            ));
        }
        let got = classes(&b["details"]).map_err(|e| format!("409: {e}: {}", clip(&b)))?;
        if got != expect {
            return Err(format!(
                "no force: classes {got:?}, expected {expect:?}: {}",
                clip(&b["details"])
            ));
        }
        unchanged("the refused deployment", catalog(&c).await?)?;
    } else {
        if s != 200 {
            return Err(format!(
                "no force: expected 200 with {expect:?}, got {s} {}",
                clip(&b)
            ));
        }
        let r = &b["databases"][0];
        let got = classes(&r["schema_validation"]).map_err(|e| format!("{e}: {}", clip(r)))?;
        if got != expect {
            return Err(format!(
                "no force: classes {got:?}, expected {expect:?}: {}",
                clip(&r["schema_validation"])
            ));
        }
        let work =
            r["tables_altered"].as_u64().unwrap_or(0) + r["tables_created"].as_u64().unwrap_or(0);
        if expect.is_empty() && r["tables_altered"] != 0 {
            return Err(format!("no change expected, but: {}", clip(r)));
        }
        if !expect.is_empty() && work == 0 {
            return Err(format!(
                "safe changes reported but nothing applied: {}",
                clip(r)
            ));
        }
        applied = true;
    }

    // 4. with force
    if !applied {
        let (s, b) = gw.migrate(&p, None, &after, true).await;
        if case.force_fails {
            if s != 409 || b["error"] != "migration_failed" {
                return Err(format!(
                    "force: expected 409 migration_failed (PostgreSQL refuses), got {s} {}",
                    clip(&b)
                ));
            }
            unchanged("the failed forced deployment", catalog(&c).await?)?;
            return Ok(());
        }
        if s != 200 {
            return Err(format!("force: expected 200, got {s} {}", clip(&b)));
        }
        let r = &b["databases"][0];
        let got = classes(&r["schema_validation"]).map_err(|e| format!("{e}: {}", clip(r)))?;
        if got != expect {
            return Err(format!(
                "force: classes {got:?}, expected {expect:?}: {}",
                clip(&r["schema_validation"])
            ));
        }
    } else if case.force_fails {
        return Err("force_fails set, but the change was applied without force".into());
    }
    if !case.verify.is_empty() {
        let ok: Option<bool> = c
            .query_one(case.verify, &[])
            .await
            .map_err(|e| format!("verify {:?}: {e:?}", case.verify))?
            .get(0);
        if ok != Some(true) {
            return Err(format!("verify {:?} gave {ok:?}", case.verify));
        }
    }

    // 5. the same catalog as a fresh database registered with `after`
    let q = new_platform();
    let (s, b) = gw.register(&q, None, &after).await;
    if s != 200 {
        return Err(format!("register after (fresh): {s} {}", clip(&b)));
    }
    let cq = cluster().connect(&format!("{q}_main")).await;
    let fresh = catalog(&cq).await?;
    drop(cq);
    let mine = catalog(&c).await?;
    let (kept, compared): (Vec<String>, Vec<String>) = mine
        .into_iter()
        .partition(|l| case.survivors.iter().any(|s| l.contains(s)));
    for s in case.survivors {
        if !kept.iter().any(|l| l.contains(s)) {
            return Err(format!("hand-made {s} is gone: {kept:?}"));
        }
    }
    let kept_before: Vec<&String> = snap
        .iter()
        .filter(|l| case.survivors.iter().any(|s| l.contains(s)))
        .collect();
    if kept.iter().collect::<Vec<_>>() != kept_before {
        return Err(format!(
            "hand-made objects changed:{}",
            catalog_diff(
                "setup",
                &kept_before.into_iter().cloned().collect::<Vec<_>>(),
                "now",
                &kept
            )
        ));
    }
    if compared != fresh {
        return Err(format!(
            "catalog differs from a fresh database registered with `after`:{}",
            catalog_diff("migrated", &compared, "fresh", &fresh)
        ));
    }

    // 6. idempotent
    let (s, b) = gw.migrate(&p, None, &after, false).await;
    if s != 200 {
        return Err(format!("re-migrate: expected 200, got {s} {}", clip(&b)));
    }
    let r = &b["databases"][0];
    let got =
        classes(&r["schema_validation"]).map_err(|e| format!("re-migrate: {e}: {}", clip(r)))?;
    if !got.is_empty() || r["tables_altered"] != 0 || r["status"] != "unchanged" {
        return Err(format!("re-migrate is not a no-op: {}", clip(r)));
    }
    drop(c);
    drop_databases(&[&db, &format!("{q}_main")]).await;
    Ok(())
}

async fn drop_databases(names: &[&str]) {
    let admin = cluster().connect("postgres").await;
    for n in names {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_corpus() {
    let all = cases();
    let mut names = BTreeSet::new();
    for c in &all {
        assert!(names.insert(c.name), "duplicate case name {:?}", c.name);
        assert!(
            !(c.force_fails && c.safe_fails),
            "{}: force_fails and safe_fails",
            c.name
        );
    }
    assert!(all.len() >= 80, "only {} cases", all.len());
    let filter = std::env::var("CORPUS_FILTER").unwrap_or_default();
    let selected: Vec<Case> = all
        .into_iter()
        .filter(|c| c.name.contains(filter.as_str()))
        .collect();
    let total = selected.len();

    let started = Instant::now();
    let gw = Arc::new(Gateway::start(&[]));
    let sem = Arc::new(Semaphore::new(CONCURRENCY));
    let mut set = JoinSet::new();
    let mut task_names = std::collections::HashMap::new();
    for (i, case) in selected.into_iter().enumerate() {
        let gw = gw.clone();
        let sem = sem.clone();
        let name = case.name;
        let handle = set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let t0 = Instant::now();
            let r = run(&gw, &case).await;
            eprintln!(
                "{} {:>5.1}s  {}",
                if r.is_ok() { "ok  " } else { "FAIL" },
                t0.elapsed().as_secs_f64(),
                case.name
            );
            (i, case.name, r)
        });
        task_names.insert(handle.id(), (i, name));
    }
    let mut failures: Vec<(usize, String)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((_, _, Ok(()))) => {}
            Ok((i, name, Err(e))) => failures.push((i, format!("{name}: {e}"))),
            Err(e) => {
                let (i, name) = task_names
                    .get(&e.id())
                    .copied()
                    .unwrap_or((usize::MAX, "?"));
                let msg = if e.is_panic() {
                    let p = e.into_panic();
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into())
                } else {
                    e.to_string()
                };
                failures.push((i, format!("{name}: panicked: {msg}")));
            }
        }
    }
    failures.sort();
    eprintln!(
        "schema corpus: {} of {total} cases passed in {:.1}s",
        total - failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(_, f)| format!("  - {f}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

//! The `tables/` DDL reader on real and odd DDL: types, expressions, names, constraints,
//! columns, sequences, and every error it gives.

use super::names::make_object_name;
use super::sequences::new_sequence;
use super::*;
use crate::sql;
use crate::tables::model::{Column, ConstraintKind, Identity, Table};

fn file(path: &str, text: &str) -> SqlFile {
    SqlFile {
        path: path.into(),
        statements: sql::split_statements(text).unwrap(),
        checksum: String::new(),
        wrapper: None,
    }
}
fn read(files: &[(&str, &str)]) -> Declared {
    let f: Vec<SqlFile> = files.iter().map(|(p, t)| file(p, t)).collect();
    match read_tables(&f) {
        Ok(d) => d,
        Err(e) => panic!("{e:?}"),
    }
}
fn model(text: &str) -> Model {
    read(&[("tables/t.sql", text)]).model
}
/// The only table of a one-file folder.
fn table(text: &str) -> Table {
    let m = model(text);
    assert_eq!(m.tables.len(), 1, "{m:?}");
    m.tables.into_values().next().unwrap()
}
fn err(files: &[(&str, &str)]) -> String {
    let f: Vec<SqlFile> = files.iter().map(|(p, t)| file(p, t)).collect();
    match read_tables(&f) {
        Err(e) => e.to_string(),
        Ok(d) => panic!("expected an error, got {d:?}"),
    }
}
fn err1(text: &str) -> String {
    err(&[("tables/t.sql", text)])
}
fn col<'a>(t: &'a Table, name: &str) -> &'a Column {
    t.column(name)
        .unwrap_or_else(|| panic!("no column {name} in {t:?}"))
}
/// `name: definition` of every constraint, in order.
fn cons(t: &Table) -> Vec<String> {
    let c = t.constraints.iter();
    c.map(|c| format!("{}: {}", c.name, c.definition)).collect()
}
fn idx(t: &Table) -> Vec<String> {
    t.indexes.iter().map(|i| i.definition.clone()).collect()
}
fn check(f: fn(&str) -> String, cases: &[(&str, &str)]) {
    for (input, want) in cases {
        assert_eq!(f(input), *want, "input: {input}");
    }
}

// ----- canonical_type -----

#[test]
fn type_integers_and_floats() {
    #[rustfmt::skip]
    check(canonical_type, &[
        ("int", "integer"), ("INTEGER", "integer"), ("int4", "integer"),
        ("pg_catalog.int4", "integer"), ("\"int4\"", "integer"),
        ("int2", "smallint"), ("SmallInt", "smallint"), ("int8", "bigint"), ("bigint", "bigint"),
        ("float", "double precision"), ("float8", "double precision"),
        ("double   precision", "double precision"), ("float(24)", "real"),
        ("float(1)", "real"), ("float(25)", "double precision"), ("float(53)", "double precision"),
        ("float4", "real"), ("real", "real"),
        ("serial", "integer"), ("bigserial", "bigint"), ("serial2", "smallint"),
    ]);
}

#[test]
fn type_numeric_character_bool() {
    #[rustfmt::skip]
    check(canonical_type, &[
        ("decimal", "numeric"), ("numeric", "numeric"), ("NUMERIC(10, 2)", "numeric(10,2)"),
        ("decimal(10,2)", "numeric(10,2)"), ("dec(5)", "numeric(5,0)"),
        ("bool", "boolean"), ("boolean", "boolean"),
        ("varchar", "character varying"), ("varchar(20)", "character varying(20)"),
        ("character varying (20)", "character varying(20)"),
        ("char varying(3)", "character varying(3)"),
        ("national character varying(4)", "character varying(4)"),
        ("char", "character(1)"), ("character", "character(1)"), ("char(5)", "character(5)"),
        ("nchar(2)", "character(2)"), ("bpchar(3)", "character(3)"), ("\"char\"", "\"char\""),
        ("text", "text"), ("bit", "bit(1)"), ("bit(8)", "bit(8)"), ("varbit", "bit varying"),
        ("bit varying(5)", "bit varying(5)"),
    ]);
}

#[test]
fn type_dates_and_times() {
    #[rustfmt::skip]
    check(canonical_type, &[
        ("timestamp", "timestamp without time zone"),
        ("timestamp without time zone", "timestamp without time zone"),
        ("timestamp(3)", "timestamp(3) without time zone"),
        ("TIMESTAMP (3) WITH TIME ZONE", "timestamp(3) with time zone"),
        ("timestamptz", "timestamp with time zone"), ("timestamptz(6)", "timestamp(6) with time zone"),
        ("timestamp with time zone", "timestamp with time zone"),
        ("time", "time without time zone"), ("timetz", "time with time zone"),
        ("time(2) with time zone", "time(2) with time zone"),
        ("date", "date"), ("interval", "interval"), ("interval(3)", "interval(3)"),
        ("INTERVAL YEAR TO MONTH", "interval year to month"), ("interval day", "interval day"),
    ]);
}

#[test]
fn type_arrays_user_types_and_others() {
    #[rustfmt::skip]
    check(canonical_type, &[
        ("int[]", "integer[]"), ("integer ARRAY", "integer[]"), ("int[][]", "integer[]"),
        ("text[3]", "text[]"), ("integer ARRAY[4]", "integer[]"), ("varchar(10)[]", "character varying(10)[]"),
        ("timestamptz[]", "timestamp with time zone[]"),
        ("json", "json"), ("JSONB", "jsonb"), ("uuid", "uuid"), ("bytea", "bytea"), ("inet", "inet"),
        ("cidr", "cidr"), ("tsvector", "tsvector"), ("money", "money"),
        ("public.mytype", "mytype"), ("Public.MyType", "mytype"), ("app.mood", "app.mood"),
        ("\"App\".\"Mood\"[]", "\"App\".\"Mood\"[]"), ("\"MyType\"", "\"MyType\""),
        ("public.\"my type\"", "\"my type\""), ("pg_catalog.text", "text"),
        ("vector(3)", "vector(3)"), ("public.year", "year"), ("\"user\"", "\"user\""),
    ]);
}

#[test]
fn type_garbage_does_not_panic() {
    assert_eq!(canonical_type("  Foo  Bar "), "foo bar");
    for s in [
        "",
        "(",
        "int[",
        "'x",
        "\"",
        "numeric(",
        "timestamp(3",
        "a.",
        "$$",
        "double",
    ] {
        let _ = canonical_type(s);
    }
    assert_eq!(canonical_type("double"), "double");
}

// ----- normalize_expr -----

#[test]
fn expr_whitespace_case_literals() {
    #[rustfmt::skip]
    check(normalize_expr, &[
        ("NOW( )", "now()"),
        ("  Price   >   0 ", "price > 0"),
        ("price>0", "price > 0"),
        ("(price > 0)", "price > 0"),
        ("((a > 0))", "(a > 0)"),
        ("(a) + (b)", "(a) + (b)"),
        ("'It''s  A' || \"Name\"", "'It''s  A' || \"Name\""),
        ("\"price\" * 2", "price * 2"),
        ("\"größe\" > größe", "größe > größe"), ("\"Größe\" + \"user\"", "\"Größe\" + \"user\""),
        ("a IN (1,2 , 3)", "a in (1, 2, 3)"),
        ("-1", "-1"), ("a > -1", "a > -1"), ("a-1", "a - 1"),
        ("$$x'y$$", "'x''y'"),
        ("CURRENT_TIMESTAMP", "current_timestamp"),
        ("x /* c */ = -- note\n 1", "x = 1"),
        ("E'A\\n'", "e'A\\n'"),
        ("coalesce(a,  b)", "coalesce(a, b)"),
        ("a = ANY (ARRAY[1,2])", "a = any (array[1, 2])"),
    ]);
}

#[test]
fn expr_casts_and_regclass() {
    #[rustfmt::skip]
    check(normalize_expr, &[
        ("0::INT", "0::integer"),
        ("'G'::public.mpaa_rating", "'G'::mpaa_rating"),
        ("'x' :: character   varying", "'x'::character varying"),
        ("nextval('public.film_film_id_seq'::regclass)", "nextval('film_film_id_seq'::regclass)"),
        ("nextval('Film_Id_Seq')", "nextval('film_id_seq'::regclass)"),
        ("nextval('\"Film_id_seq\"'::regclass)", "nextval('\"Film_id_seq\"'::regclass)"),
        ("nextval('app.s'::regclass)", "nextval('app.s'::regclass)"),
        ("'{}'::text[]", "'{}'::text[]"),
    ]);
}

// ----- tables -----

#[test]
fn columns_in_order_with_attributes() {
    let t = table(
        "CREATE TABLE Public.Orders (\n  id bigint NOT NULL,\n  note text DEFAULT 'x' NULL,\n  \
         total NUMERIC(10,2) DEFAULT (0) NOT NULL,\n  code varchar(8) COLLATE \"C\",\n  \
         d text COLLATE pg_catalog.\"default\" DEFAULT NULL,\n  at timestamptz DEFAULT now()\n)",
    );
    assert_eq!(t.name, QName::public("orders"));
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "note", "total", "code", "d", "at"]);
    assert!(col(&t, "id").not_null && !col(&t, "note").not_null);
    assert_eq!(col(&t, "note").default.as_deref(), Some("'x'"));
    assert_eq!(col(&t, "total").data_type, "numeric(10,2)");
    assert_eq!(col(&t, "total").default.as_deref(), Some("0"));
    assert_eq!(col(&t, "code").collation.as_deref(), Some("\"C\""));
    assert_eq!(col(&t, "code").data_type, "character varying(8)");
    assert_eq!(
        (col(&t, "d").collation.clone(), col(&t, "d").default.clone()),
        (None, None)
    );
    assert_eq!(col(&t, "at").data_type, "timestamp with time zone");
    assert_eq!(col(&t, "at").default.as_deref(), Some("now()"));
    assert!(t.constraints.is_empty() && t.indexes.is_empty());
}

#[test]
fn serial_variants() {
    let m = model(
        "CREATE TABLE t (a serial, b BIGSERIAL PRIMARY KEY, c smallserial, d serial4, \
         e serial8, f serial2)",
    );
    let t = &m.tables[&QName::public("t")];
    for (c, ty) in [
        ("a", "integer"),
        ("b", "bigint"),
        ("c", "smallint"),
        ("d", "integer"),
        ("e", "bigint"),
        ("f", "smallint"),
    ] {
        let column = col(t, c);
        assert_eq!(column.data_type, ty);
        assert!(column.not_null);
        let want = format!("nextval('t_{c}_seq'::regclass)");
        assert_eq!(column.default.as_deref(), Some(want.as_str()));
        let s = &m.sequences[&QName::public(&format!("t_{c}_seq"))];
        assert_eq!(s.data_type, ty);
        assert_eq!(s.owned_by, Some((QName::public("t"), c.to_string())));
        assert_eq!((s.increment, s.cache, s.cycle), (1, 1, false));
        assert_eq!((s.min_value, s.max_value, s.start), (None, None, None));
    }
    assert_eq!(m.sequences.len(), 6);
    let m = model("CREATE TABLE app.\"T\" (\"Id\" serial)");
    let t = &m.tables[&QName::new("app", "T")];
    let want = "nextval('app.\"T_Id_seq\"'::regclass)";
    assert_eq!(col(t, "Id").default.as_deref(), Some(want));
    assert!(m.sequences.contains_key(&QName::new("app", "T_Id_seq")));
}

#[test]
fn identity_columns() {
    let t = table(
        "CREATE TABLE t (a int GENERATED ALWAYS AS IDENTITY, b bigint GENERATED BY DEFAULT \
         AS IDENTITY (START WITH 10 INCREMENT BY 5 CACHE 2), c int)",
    );
    assert_eq!(col(&t, "a").identity, Some(Identity::Always));
    assert_eq!(col(&t, "b").identity, Some(Identity::ByDefault));
    assert!(col(&t, "a").not_null && col(&t, "b").not_null);
    assert_eq!(col(&t, "a").default, None);
    let m = model(
        "CREATE TABLE t (a int NOT NULL, b int NOT NULL, c int);\n\
         ALTER TABLE public.t ALTER COLUMN a ADD GENERATED ALWAYS AS IDENTITY (\n    \
         SEQUENCE NAME public.t_a_seq\n    START WITH 1\n    INCREMENT BY 1\n    NO MINVALUE\n    \
         NO MAXVALUE\n    CACHE 1\n);\n\
         ALTER TABLE t ALTER b ADD GENERATED BY DEFAULT AS IDENTITY",
    );
    let a = table(
        "CREATE TABLE t (a int GENERATED ALWAYS AS IDENTITY, b int \
         GENERATED BY DEFAULT AS IDENTITY, c int)",
    );
    assert_eq!(m.tables[&QName::public("t")], a);
    assert!(m.sequences.is_empty());
}

#[test]
fn generated_columns() {
    let t = table(
        "CREATE TABLE t (w numeric, h numeric, area numeric GENERATED ALWAYS AS (w * H) STORED, \
         v int GENERATED ALWAYS AS ((w + 1)) VIRTUAL NOT NULL)",
    );
    assert_eq!(col(&t, "area").generated.as_deref(), Some("w * h"));
    assert_eq!(col(&t, "area").default, None);
    assert_eq!(col(&t, "v").generated.as_deref(), Some("w + 1"));
    assert!(col(&t, "v").not_null);
}

#[test]
fn unnamed_constraint_names() {
    let t = table(
        "CREATE TABLE items (\n  id int PRIMARY KEY,\n  code text UNIQUE,\n  a int, b int,\n  \
         price numeric CHECK (price > 0),\n  owner_id int REFERENCES users,\n  \
         UNIQUE (a, b),\n  CHECK (a < b),\n  CHECK (b > 0),\n  CHECK (true),\n  \
         FOREIGN KEY (a, b) REFERENCES pairs (x, y)\n)",
    );
    #[rustfmt::skip]
    assert_eq!(cons(&t), [
        "items_a_b_fkey: FOREIGN KEY (a, b) REFERENCES pairs(x, y)",
        "items_a_b_key: UNIQUE (a, b)",
        "items_b_check: CHECK (b > 0)",
        "items_check: CHECK (a < b)",
        "items_check1: CHECK (true)",
        "items_code_key: UNIQUE (code)",
        "items_owner_id_fkey: FOREIGN KEY (owner_id) REFERENCES users",
        "items_pkey: PRIMARY KEY (id)",
        "items_price_check: CHECK (price > 0)",
    ]);
    assert!(col(&t, "id").not_null);
    let c = t.constraint("items_check").unwrap();
    assert_eq!(c.columns, ["a", "b"]);
    assert_eq!(
        t.constraint("items_check1").unwrap().columns,
        Vec::<String>::new()
    );
    let fk = t.constraint("items_a_b_fkey").unwrap();
    assert_eq!(fk.references, Some(QName::public("pairs")));
    assert_eq!(
        (fk.kind.clone(), fk.columns.clone()),
        (ConstraintKind::ForeignKey, vec!["a".into(), "b".into()])
    );
}

#[test]
fn named_constraints_and_attributes() {
    let t = table(
        "CREATE TABLE s.t (\n  id int CONSTRAINT t_id PRIMARY KEY,\n  \
         o int CONSTRAINT fk_o REFERENCES s.other (id) MATCH FULL ON DELETE CASCADE ON UPDATE \
         SET NULL DEFERRABLE INITIALLY DEFERRED,\n  p int,\n  \
         CONSTRAINT fk_p FOREIGN KEY (p) REFERENCES public.parent ON DELETE SET NULL (p) \
         NOT VALID,\n  CONSTRAINT positive CHECK (p > 0) NO INHERIT,\n  \
         CONSTRAINT u UNIQUE NULLS NOT DISTINCT (o) INCLUDE (p) WITH (fillfactor = 70) \
         USING INDEX TABLESPACE fast\n)",
    );
    #[rustfmt::skip]
    assert_eq!(cons(&t), [
        "fk_o: FOREIGN KEY (o) REFERENCES s.other(id) MATCH FULL ON UPDATE SET NULL ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED",
        "fk_p: FOREIGN KEY (p) REFERENCES parent ON DELETE SET NULL (p) NOT VALID",
        "positive: CHECK (p > 0) NO INHERIT",
        "t_id: PRIMARY KEY (id)",
        "u: UNIQUE NULLS NOT DISTINCT (o) INCLUDE (p)",
    ]);
    assert_eq!(t.name, QName::new("s", "t"));
    assert_eq!(
        t.constraint("fk_o").unwrap().references,
        Some(QName::new("s", "other"))
    );
}

#[test]
fn check_naming_follows_mentioned_columns() {
    let t = table(
        "CREATE TABLE t (a int CHECK (a > 0) CHECK (a < 10), b int CHECK (a <> b), \
         c int CHECK (lower(x::text) = 'y'), CHECK (c > 1))",
    );
    #[rustfmt::skip]
    assert_eq!(cons(&t), [
        "t_a_check: CHECK (a > 0)",
        "t_a_check1: CHECK (a < 10)",
        "t_c_check: CHECK (c > 1)",
        "t_check: CHECK (a <> b)",
        "t_check1: CHECK (lower(x::text) = 'y')",
    ]);
}

#[test]
fn exclude_constraints() {
    let t = table(
        "CREATE TABLE r (room int, during tsrange, \
         EXCLUDE USING gist (room WITH =, during WITH &&) WHERE (room > 0), \
         CONSTRAINT nx EXCLUDE (lower(during) WITH =))",
    );
    #[rustfmt::skip]
    assert_eq!(cons(&t), [
        "nx: EXCLUDE USING gist (lower(during) WITH =)",
        "r_room_during_excl: EXCLUDE USING gist (room WITH =, during WITH &&) WHERE (room > 0)",
    ]);
    assert_eq!(
        t.constraint("r_room_during_excl").unwrap().kind,
        ConstraintKind::Exclude
    );
    assert_eq!(
        t.constraint("r_room_during_excl").unwrap().columns,
        ["room", "during"]
    );
}

#[test]
fn long_names_are_truncated_like_postgres() {
    let long = "a".repeat(70);
    let t = table(&format!(
        "CREATE TABLE {long} (id int PRIMARY KEY, {c} int UNIQUE)",
        c = "b".repeat(40)
    ));
    assert_eq!(t.name.name, "a".repeat(63));
    assert_eq!(t.constraints[1].name, format!("{}_pkey", "a".repeat(58)));
    // 63 - 1 - 4 = 58 for both parts, taken from the longer first: 29 + 29.
    let want = format!("{}_{}_key", "a".repeat(29), "b".repeat(29));
    assert_eq!(t.constraints[0].name, want);
    assert!(t.constraints.iter().all(|c| c.name.len() <= 63));
    assert_eq!(
        make_object_name("t", Some("é".repeat(40).as_str()), "key").len(),
        62
    );
}

#[test]
fn quoted_mixed_case_and_non_ascii_names() {
    let t = table(
        "CREATE TABLE \"Sales\".\"Order Lines\" (\"ID\" int PRIMARY KEY, Qty int, \
         \"prix_€\" numeric CHECK (\"prix_€\" >= 0), café text UNIQUE, \"a\"\"b\" int)",
    );
    assert_eq!(t.name, QName::new("Sales", "Order Lines"));
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ID", "qty", "prix_€", "café", "a\"b"]);
    #[rustfmt::skip]
    assert_eq!(cons(&t), [
        "Order Lines_café_key: UNIQUE (\"café\")",
        "Order Lines_pkey: PRIMARY KEY (\"ID\")",
        "Order Lines_prix_€_check: CHECK (prix_€ >= 0)",
    ]);
}

#[test]
fn comments_in_odd_places() {
    let sql = "/* header */ CREATE /* x */ TABLE -- name next\n public . /* c */ t (\n  \
               -- first column\n  id /* type: */ int /* c */ PRIMARY /* k */ KEY, -- pk\n  \
               n text DEFAULT /* d */ 'a -- not a comment' -- c\n  /* multi\n line */ NOT NULL\n)";
    let t = table(sql);
    assert_eq!(t.name, QName::public("t"));
    assert_eq!(
        col(&t, "n").default.as_deref(),
        Some("'a -- not a comment'")
    );
    assert!(col(&t, "n").not_null);
    assert_eq!(cons(&t), ["t_pkey: PRIMARY KEY (id)"]);
}

#[test]
fn indexes_named_and_unnamed() {
    let t = table(
        "CREATE TABLE t (id int, email text, a int, b int, active bool);\n\
         CREATE INDEX ON t (email);\n\
         CREATE UNIQUE INDEX IF NOT EXISTS t_email_lower ON ONLY public.t USING btree \
         (LOWER(email)) WHERE active;\n\
         create index on T (a desc nulls first, b asc nulls last) include (id);\n\
         CREATE INDEX CONCURRENTLY ON t ((a + b), lower(email));\n\
         CREATE INDEX ix_g ON t USING gin (email gin_trgm_ops) WITH (fastupdate = off);\n\
         CREATE INDEX ON t (email COLLATE \"C\" text_pattern_ops DESC NULLS LAST)",
    );
    #[rustfmt::skip]
    assert_eq!(idx(&t), [
        "CREATE INDEX ix_g ON public.t USING gin (email gin_trgm_ops) WITH (fastupdate = off)",
        "CREATE INDEX t_a_b_id_idx ON public.t USING btree (a DESC, b) INCLUDE (id)",
        "CREATE INDEX t_email_idx ON public.t USING btree (email)",
        "CREATE INDEX t_email_idx1 ON public.t USING btree (email COLLATE \"C\" text_pattern_ops DESC NULLS LAST)",
        "CREATE UNIQUE INDEX t_email_lower ON public.t USING btree (lower(email)) WHERE (active)",
        "CREATE INDEX t_expr_expr1_idx ON public.t USING btree ((a + b), lower(email))",
    ]);
    assert!(t.index("t_email_lower").unwrap().unique);
    assert!(!t.index("t_email_idx").unwrap().unique);
}

#[test]
fn two_index_spellings_are_equal() {
    let a = table("CREATE TABLE t (a int, b text); CREATE INDEX i ON t (a, lower(b)) WHERE a > 0");
    let b = table(
        "CREATE TABLE t (a int, b text);\ncreate  index i on public.t using BTREE \
         (A ASC NULLS LAST, LOWER( \"b\" ))  where (A>0)",
    );
    assert_eq!(a, b);
}

#[test]
fn sequences_and_their_defaults() {
    let m = model(
        "CREATE TABLE t (id int);\n\
         CREATE SEQUENCE s1;\n\
         CREATE SEQUENCE IF NOT EXISTS app.s2 AS integer INCREMENT BY -2 MINVALUE -100 \
         MAXVALUE -1 START WITH -1 CACHE 20 CYCLE;\n\
         CREATE SEQUENCE s3 AS smallint START 5 NO MINVALUE NO MAXVALUE INCREMENT 1 NO CYCLE \
         OWNED BY t.id;\n\
         create sequence s4 minvalue 1 maxvalue 9223372036854775807 start with 1",
    );
    let s1 = &m.sequences[&QName::public("s1")];
    assert_eq!(*s1, new_sequence(QName::public("s1")));
    assert_eq!(s1.data_type, "bigint");
    let s2 = &m.sequences[&QName::new("app", "s2")];
    assert_eq!(
        (s2.data_type.as_str(), s2.increment, s2.cache, s2.cycle),
        ("integer", -2, 20, true)
    );
    assert_eq!(
        (s2.min_value, s2.max_value, s2.start),
        (Some(-100), None, None)
    );
    let s3 = &m.sequences[&QName::public("s3")];
    assert_eq!((s3.data_type.as_str(), s3.start), ("smallint", Some(5)));
    assert_eq!(s3.owned_by, Some((QName::public("t"), "id".into())));
    assert_eq!(
        m.sequences[&QName::public("s4")],
        new_sequence(QName::public("s4"))
    );
}

const PG_DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\
    SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\
    SELECT pg_catalog.set_config('search_path', '', false);\n\
    SET default_tablespace = '';\nSET default_table_access_method = heap;\n\n\
    --\n-- Name: film; Type: TABLE; Schema: public; Owner: postgres\n--\n\n\
    CREATE TABLE public.film (\n\
    \x20   film_id integer NOT NULL,\n\
    \x20   title character varying(255) NOT NULL,\n\
    \x20   description text,\n\
    \x20   language_id smallint NOT NULL,\n\
    \x20   rental_rate numeric(4,2) DEFAULT 4.99 NOT NULL,\n\
    \x20   rating public.mpaa_rating DEFAULT 'G'::public.mpaa_rating,\n\
    \x20   last_update timestamp with time zone DEFAULT now() NOT NULL,\n\
    \x20   special_features text[],\n\
    \x20   CONSTRAINT film_rental_rate_check CHECK ((rental_rate >= 0))\n\
    );\n\n\
    ALTER TABLE public.film OWNER TO postgres;\n\n\
    COMMENT ON TABLE public.film IS 'Films; with a semicolon';\n\n\
    CREATE SEQUENCE public.film_film_id_seq\n\
    \x20   AS integer\n    START WITH 1\n    INCREMENT BY 1\n    NO MINVALUE\n    NO MAXVALUE\n\
    \x20   CACHE 1;\n\n\
    ALTER SEQUENCE public.film_film_id_seq OWNER TO postgres;\n\
    ALTER SEQUENCE public.film_film_id_seq OWNED BY public.film.film_id;\n\n\
    ALTER TABLE ONLY public.film ALTER COLUMN film_id SET DEFAULT \
    nextval('public.film_film_id_seq'::regclass);\n\n\
    SELECT pg_catalog.setval('public.film_film_id_seq', 1000, true);\n\n\
    ALTER TABLE ONLY public.film\n    ADD CONSTRAINT film_pkey PRIMARY KEY (film_id);\n\n\
    CREATE INDEX film_title_idx ON public.film USING btree (title);\n\n\
    CREATE TRIGGER last_updated BEFORE UPDATE ON public.film FOR EACH ROW EXECUTE FUNCTION \
    public.last_updated();\n\n\
    ALTER TABLE ONLY public.film\n    ADD CONSTRAINT film_language_id_fkey FOREIGN KEY \
    (language_id) REFERENCES public.language(language_id) ON UPDATE CASCADE ON DELETE RESTRICT;\n\n\
    GRANT ALL ON TABLE public.film TO app;\n";

#[test]
fn pg_dump_output_of_a_real_table() {
    let m = model(PG_DUMP);
    let t = &m.tables[&QName::public("film")];
    let id = col(t, "film_id");
    assert_eq!(
        id.default.as_deref(),
        Some("nextval('film_film_id_seq'::regclass)")
    );
    assert!(id.not_null);
    assert_eq!(col(t, "rating").data_type, "mpaa_rating");
    assert_eq!(
        col(t, "rating").default.as_deref(),
        Some("'G'::mpaa_rating")
    );
    assert_eq!(col(t, "special_features").data_type, "text[]");
    #[rustfmt::skip]
    assert_eq!(cons(t), [
        "film_language_id_fkey: FOREIGN KEY (language_id) REFERENCES language(language_id) ON UPDATE CASCADE ON DELETE RESTRICT",
        "film_pkey: PRIMARY KEY (film_id)",
        "film_rental_rate_check: CHECK (rental_rate >= 0)",
    ]);
    assert_eq!(
        idx(t),
        ["CREATE INDEX film_title_idx ON public.film USING btree (title)"]
    );
    let s = &m.sequences[&QName::public("film_film_id_seq")];
    assert_eq!(s.owned_by, Some((QName::public("film"), "film_id".into())));
    assert_eq!(
        (s.data_type.as_str(), s.start, s.min_value),
        ("integer", None, None)
    );

    // The same table written by hand.
    let hand = model(
        "create table film (\n  film_id SERIAL primary key,\n  title varchar(255) not null,\n  \
         description TEXT,\n  language_id int2 not null references language (language_id) \
         on update cascade on delete restrict,\n  rental_rate decimal(4, 2) not null default 4.99 \
         check (rental_rate >= 0),\n  rating mpaa_rating default 'G'::mpaa_rating,\n  \
         last_update timestamptz not null default NOW(),\n  special_features text ARRAY\n);\n\
         create index film_title_idx on film (title);",
    );
    assert_eq!(m, hand);
}

#[test]
fn two_spellings_of_a_table_are_equal() {
    let a = model(
        "CREATE TABLE orders (id bigint PRIMARY KEY, user_id int NOT NULL REFERENCES users(id) \
         ON DELETE CASCADE, total numeric(10,2) DEFAULT 0 CHECK (total >= 0), code text UNIQUE)",
    );
    let b = model(
        "create table PUBLIC.\"orders\" (\n  \"id\" INT8 not null,\n  User_Id INTEGER not null,\n  \
         TOTAL NUMERIC (10 , 2) DEFAULT (0),\n  code TEXT,\n  \
         constraint orders_pkey primary key (id),\n  check ((total>=0)),\n  \
         foreign key (user_id) references public.users (id) on delete cascade\n);\n\
         alter table only orders add unique (code)",
    );
    assert_eq!(a, b);
}

#[test]
fn alter_table_forms() {
    let t = table(
        "CREATE TABLE t (a int, b int, c int);\n\
         ALTER TABLE IF EXISTS ONLY t ALTER COLUMN a SET DEFAULT 1, ALTER b SET NOT NULL, \
         ADD CONSTRAINT t_c_nn CHECK (c IS NOT NULL), ADD COLUMN d serial, OWNER TO x;\n\
         ALTER TABLE t ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE t ALTER COLUMN c SET STATISTICS 100, CLUSTER ON t_c_nn;\n\
         ALTER TABLE t ADD PRIMARY KEY (a), ALTER COLUMN a DROP DEFAULT",
    );
    assert_eq!(col(&t, "a").default, None);
    assert!(col(&t, "a").not_null && col(&t, "b").not_null);
    assert_eq!(col(&t, "d").data_type, "integer");
    assert_eq!(
        cons(&t),
        ["t_c_nn: CHECK (c is not null)", "t_pkey: PRIMARY KEY (a)"]
    );
}

#[test]
fn ignored_statements() {
    let t = table(
        "SET search_path = public;\nSELECT pg_catalog.set_config('search_path', '', false);\n\
         CREATE TABLE t (a int);\nCOMMENT ON COLUMN t.a IS 'x';\nGRANT SELECT ON t TO r;\n\
         CREATE VIEW v AS SELECT * FROM t;\nCREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW \
         EXECUTE FUNCTION f();\nCREATE FUNCTION f() RETURNS trigger AS $$BEGIN RETURN NEW; END$$ \
         LANGUAGE plpgsql;\nALTER TABLE t OWNER TO app;\nREVOKE ALL ON t FROM PUBLIC",
    );
    assert_eq!(t.columns.len(), 1);
}

#[test]
fn like_inherits_partition_by_with_tablespace_are_ignored() {
    let t = table(
        "CREATE UNLOGGED TABLE IF NOT EXISTS t (LIKE base INCLUDING ALL, a int) \
         INHERITS (base) PARTITION BY RANGE (a) WITH (fillfactor = 70) TABLESPACE fast",
    );
    assert_eq!(t.columns.len(), 1);
    let t = table("CREATE TABLE t ()");
    assert!(t.columns.is_empty());
}

#[test]
fn files_map_and_several_files() {
    let d = read(&[
        (
            "tables/a.sql",
            "CREATE TABLE a (id int); CREATE INDEX ON b (x)",
        ),
        (
            "tables/b.sql",
            "CREATE TABLE app.c (id int);\nCREATE TABLE b (x int)",
        ),
    ]);
    assert_eq!(d.files[&QName::public("a")], "tables/a.sql");
    assert_eq!(d.files[&QName::public("b")], "tables/b.sql");
    assert_eq!(d.files[&QName::new("app", "c")], "tables/b.sql");
    assert_eq!(d.model.tables[&QName::public("b")].indexes.len(), 1);
}

// ----- errors -----

#[test]
fn error_table_declared_twice() {
    let e = err(&[
        ("tables/a.sql", "CREATE TABLE t (a int)"),
        ("tables/b.sql", "-- again\n\nCREATE TABLE public.T (a int)"),
    ]);
    assert_eq!(
        e,
        "tables/b.sql line 3: table t is declared twice (also in tables/a.sql)"
    );
}

#[test]
fn a_file_may_declare_only_a_shared_sequence() {
    let d = read(&[
        ("tables/00_ids.sql", "CREATE SEQUENCE shared_ids START 1000"),
        (
            "tables/a.sql",
            "CREATE TABLE a (id bigint DEFAULT nextval('shared_ids') PRIMARY KEY)",
        ),
        (
            "tables/b.sql",
            "CREATE TABLE b (id bigint DEFAULT nextval('shared_ids') PRIMARY KEY)",
        ),
    ]);
    assert!(d.model.sequences.contains_key(&QName::public("shared_ids")));
    assert_eq!(
        d.sequence_files[&QName::public("shared_ids")],
        "tables/00_ids.sql"
    );
    assert_eq!(d.model.tables.len(), 2);
}

#[test]
fn error_file_without_table() {
    let e = err(&[
        ("tables/a.sql", "CREATE TABLE t (a int)"),
        ("tables/b.sql", "CREATE INDEX ON t (a)"),
    ]);
    assert!(
        e.starts_with("tables/b.sql line 1: declares no table or sequence"),
        "{e}"
    );
    let e = err(&[("tables/c.sql", "-- nothing\n")]);
    assert!(
        e.starts_with("tables/c.sql line 1: declares no table or sequence"),
        "{e}"
    );
}

#[test]
fn error_undeclared_tables_and_columns() {
    #[rustfmt::skip]
    check(err1, &[
        ("CREATE TABLE t (a int);\nCREATE INDEX i ON u (a)", "tables/t.sql line 2: table u is not declared in tables/"),
        ("CREATE TABLE t (a int);\n\nALTER TABLE ONLY app.u ADD CONSTRAINT k UNIQUE (a)", "tables/t.sql line 3: table app.u is not declared in tables/"),
        ("CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN b SET DEFAULT 1", "tables/t.sql line 2: column b of table t is not declared"),
        ("CREATE TABLE t (a int,\n UNIQUE (b))", "tables/t.sql line 2: column b of table t is not declared"),
        ("CREATE TABLE t (a int);\nCREATE INDEX ON t (b)", "tables/t.sql line 2: index t_b_idx: column b of table t is not declared"),
        ("CREATE TABLE t (a int);\nCREATE SEQUENCE s OWNED BY u.a", "tables/t.sql line 2: sequence s is OWNED BY u.a, but table u is not declared in tables/"),
        ("CREATE TABLE t (a int);\nALTER SEQUENCE s OWNED BY t.a", "tables/t.sql line 2: sequence s is not declared in tables/"),
    ]);
}

#[test]
fn error_duplicates() {
    #[rustfmt::skip]
    check(err1, &[
        ("CREATE TABLE t (\n  a int,\n  A text\n)", "tables/t.sql line 3: column a of table t is declared twice"),
        ("CREATE TABLE t (a int PRIMARY KEY,\n b int PRIMARY KEY)", "tables/t.sql line 2: multiple primary keys for table t"),
        ("CREATE TABLE t (a int CONSTRAINT k CHECK (a > 0),\n CONSTRAINT k CHECK (a < 9))", "tables/t.sql line 2: constraint k is declared twice (table t)"),
        ("CREATE TABLE t (a int);\nCREATE INDEX i ON t (a);\nCREATE INDEX i ON t (a)", "tables/t.sql line 3: index i is declared twice"),
        ("CREATE TABLE t (a int DEFAULT 1 DEFAULT 2)", "tables/t.sql line 1: multiple defaults for column a"),
        ("CREATE TABLE t (a int CONSTRAINT k)", "tables/t.sql line 1: column a: CONSTRAINT name without a constraint"),
        ("CREATE TABLE t (a serial DEFAULT 1)", "tables/t.sql line 1: column a: a serial column cannot have a default"),
    ]);
}

#[test]
fn error_unsupported_create_table_forms() {
    #[rustfmt::skip]
    check(err1, &[
        ("CREATE TABLE t AS SELECT 1", "tables/t.sql line 1: table t: CREATE TABLE ... AS is not supported in tables/; declare the columns"),
        ("CREATE TABLE t (a, b) AS SELECT 1, 2", "tables/t.sql line 1: table t: CREATE TABLE ... AS is not supported in tables/; declare the columns"),
        ("CREATE TABLE p1\n PARTITION OF p FOR VALUES IN (1)", "tables/t.sql line 2: table p1: CREATE TABLE ... PARTITION OF is not supported in tables/"),
        ("CREATE TEMP TABLE t (a int)", "tables/t.sql line 1: temporary tables cannot be declared in tables/"),
        ("CREATE TABLE t", "tables/t.sql line 1: table t: expected a parenthesized column list"),
    ]);
}

#[test]
fn error_syntax_in_create_table() {
    #[rustfmt::skip]
    check(err1, &[
        ("CREATE TABLE t (\n  a int,\n  b int FOO\n)", "tables/t.sql line 3: unexpected \"FOO\" in the definition of column b"),
        ("CREATE TABLE t (a int,, b int)", "tables/t.sql line 1: table t: empty element in the column list (stray comma?)"),
        ("CREATE TABLE t (a int,\n PRIMARY KEY)", "tables/t.sql line 2: expected a parenthesized column list"),
        ("CREATE TABLE t (a PRIMARY KEY)", "tables/t.sql line 1: expected a type for column a"),
        ("CREATE TABLE t (a int CHECK)", "tables/t.sql line 1: expected a parenthesized expression after CHECK"),
        ("CREATE TABLE t (a int REFERENCES)", "tables/t.sql line 1: expected a table name after REFERENCES"),
        ("CREATE TABLE t (a int GENERATED ALWAYS)", "tables/t.sql line 1: expected AS after GENERATED ..."),
        ("CREATE TABLE t (a int); CREATE SEQUENCE s INCREMENT 0", "tables/t.sql line 1: INCREMENT must not be zero"),
        ("CREATE TABLE t (a int);\nALTER TABLE t DROP COLUMN a", "tables/t.sql line 2: ALTER TABLE t DROP ...: tables/ declares the end state; change the CREATE TABLE instead"),
    ]);
}

#[test]
fn never_panics() {
    let corpus = "CREATE TABLE \"S\".t (id serial PRIMARY KEY, a numeric(10,2) DEFAULT -1.5 CHECK \
        (a > 0), b int REFERENCES u (id) ON DELETE SET NULL (b), c text COLLATE \"C\" UNIQUE, \
        d int GENERATED ALWAYS AS (a * 2) STORED, EXCLUDE USING gist (c WITH =), FOREIGN KEY \
        (b) REFERENCES v); CREATE UNIQUE INDEX ON \"S\".t ((a + 1) DESC) INCLUDE (b) WHERE b > 0; \
        CREATE SEQUENCE s AS int OWNED BY \"S\".t.b; ALTER TABLE \"S\".t ALTER b ADD GENERATED BY DEFAULT \
        AS IDENTITY (START 1)";
    let mut inputs: Vec<String> = corpus
        .char_indices()
        .map(|(i, _)| corpus[..i].to_string())
        .collect();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let words = [
        "(",
        ")",
        ",",
        "int",
        "CHECK",
        "DEFAULT",
        "PRIMARY",
        "KEY",
        "REFERENCES",
        "'x",
        "\"",
        "$$",
        "::",
        "-",
        "[",
        "]",
        "é",
        "NOT",
        "NULL",
        "GENERATED",
        "AS",
        "IDENTITY",
        "t",
        ".",
    ];
    for _ in 0..400 {
        let mut s = String::from("CREATE TABLE t (");
        for _ in 0..(seed % 24) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push_str(words[(seed % words.len() as u64) as usize]);
            s.push(' ');
        }
        inputs.push(s);
    }
    for s in &inputs {
        let _ = (canonical_type(s), normalize_expr(s));
        let statements: Vec<sql::Statement> = match sql::split_statements(s) {
            Ok(st) => st,
            Err(_) => vec![sql::Statement {
                text: s.clone(),
                line: 1,
            }],
        };
        let f = SqlFile {
            path: "tables/f.sql".into(),
            statements,
            checksum: String::new(),
            wrapper: None,
        };
        let _ = read_tables(&[f]);
    }
    let m = read(&[("tables/f.sql", corpus)]).model;
    assert_eq!(m.tables[&QName::new("S", "t")].constraints.len(), 6);
}

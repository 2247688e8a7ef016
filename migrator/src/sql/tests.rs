//! The SQL readers' tests: splitting, normalizing, routines, types, and the
//! readers built on the same lexer elsewhere (`tables/`' CREATE TABLE, a
//! seeder's INSERTs), from the text a schema author writes.

use super::*;
use crate::seed::inserts::{parse_insert, Values};
use crate::tables::create_table::{
    adds_foreign_key, classify_table_stmt, split_foreign_keys, TableStmt,
};

#[test]
fn statements_that_need_autocommit() {
    for s in [
        "CREATE INDEX CONCURRENTLY idx ON t (a)",
        "create unique index concurrently if not exists i on t(a)",
        "DROP INDEX CONCURRENTLY idx",
        "REINDEX TABLE CONCURRENTLY t",
        "VACUUM ANALYZE t",
    ] {
        assert!(needs_autocommit(s), "{s}");
    }
    for s in [
        "CREATE INDEX idx ON t (a)",
        "REINDEX TABLE t",
        "ALTER TABLE t ADD COLUMN concurrently int",
        "SELECT 'vacuum'",
        // refused before anything runs (sql::guard), never run after the commit
        "ALTER SYSTEM SET work_mem = '8MB'",
        "DROP DATABASE x",
    ] {
        assert!(!needs_autocommit(s), "{s}");
    }
}

/// Statements joined by " ¦ ".
fn split(sql: &str) -> String {
    let stmts = split_statements(sql).unwrap();
    stmts
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ¦ ")
}
fn lines(sql: &str) -> Vec<usize> {
    split_statements(sql)
        .unwrap()
        .iter()
        .map(|s| s.line)
        .collect()
}
fn err(sql: &str) -> String {
    split_statements(sql).unwrap_err().to_string()
}
fn n(s: &str) -> String {
    normalize(s)
}
fn qualified(schema: &Option<String>, name: &str) -> String {
    schema
        .as_ref()
        .map_or(name.to_string(), |s| format!("{s}.{name}"))
}
/// `Kind schema.name(types) -> returns ¦ decl|decl`
fn sig(sql: &str) -> String {
    let r = parse_routine(sql).unwrap();
    let ret = r.returns.map(|x| format!(" -> {x}")).unwrap_or_default();
    let name = qualified(&r.schema, &r.name);
    let (types, decls) = (r.arg_types.join(", "), r.args_text.join("|"));
    format!("{:?} {name}({types}){ret} ¦ {decls}", r.kind)
}
fn types(args: &str) -> String {
    let r = parse_routine(&format!("CREATE FUNCTION f({args}) RETURNS void AS $$ $$"));
    r.unwrap().arg_types.join(", ")
}
fn returns(tail: &str) -> String {
    let r = parse_routine(&format!("CREATE FUNCTION f() {tail}")).unwrap();
    r.returns.unwrap_or_else(|| "None".into())
}
fn ty(sql: &str) -> String {
    match parse_type(sql) {
        Ok(TypeDef::Enum {
            schema,
            name,
            labels,
        }) => {
            format!("Enum {} {}", qualified(&schema, &name), labels.join("|"))
        }
        Ok(TypeDef::Composite { schema, name }) => {
            format!("Composite {}", qualified(&schema, &name))
        }
        Ok(TypeDef::Domain { schema, name }) => format!("Domain {}", qualified(&schema, &name)),
        Ok(TypeDef::Other { schema, name }) => format!("Other {}", qualified(&schema, &name)),
        Err(e) => format!("Err {}", e.line),
    }
}
fn tbl(sql: &str) -> String {
    match classify_table_stmt(sql) {
        TableStmt::CreateTable {
            schema,
            name,
            references,
        } => {
            let refs: Vec<_> = references.iter().map(|(s, n)| qualified(s, n)).collect();
            format!("{} -> {}", qualified(&schema, &name), refs.join(", "))
        }
        TableStmt::Other => "Other".into(),
    }
}
fn ins(sql: &str) -> String {
    match parse_insert(sql) {
        Some(i) => format!(
            "{} ({})",
            qualified(&i.schema, &i.table),
            i.columns.join(", ")
        ),
        None => "None".into(),
    }
}
fn q(schema: Option<&str>, name: &str) -> (Option<String>, String) {
    (schema.map(str::to_string), name.to_string())
}
/// split_foreign_keys with schema-less deferred names.
fn defer(sql: &str, names: &[&str]) -> (String, Vec<String>) {
    let d: Vec<_> = names.iter().map(|x| q(None, x)).collect();
    split_foreign_keys(sql, &d).unwrap()
}
fn check(f: fn(&str) -> String, cases: &[(&str, &str)]) {
    for (input, want) in cases {
        assert_eq!(f(input), *want, "input: {input}");
    }
}

// ----- split_statements -----

#[test]
fn split_basic() {
    #[rustfmt::skip]
    check(split, &[
        ("SELECT 1;\n\n  SELECT 2 ;\nSELECT 3", "SELECT 1 ¦ SELECT 2 ¦ SELECT 3"),
        ("BEGIN; SELECT 1; COMMIT;", "BEGIN ¦ SELECT 1 ¦ COMMIT"),
    ]);
}

#[test]
fn split_semicolons_in_strings() {
    #[rustfmt::skip]
    check(split, &[
        ("INSERT INTO t VALUES ('a;b', 'it''s; ok');", "INSERT INTO t VALUES ('a;b', 'it''s; ok')"),
        ("SELECT 'x'';'';'; SELECT ';'", "SELECT 'x'';'';' ¦ SELECT ';'"),
    ]);
}

#[test]
fn split_e_strings_with_backslashes() {
    #[rustfmt::skip]
    check(split, &[
        (r"SELECT E'it\'s; \\'; SELECT e'a\\';", r"SELECT E'it\'s; \\' ¦ SELECT e'a\\'"),
        (r"SELECT 'C:\'; SELECT 4", r"SELECT 'C:\' ¦ SELECT 4"),
        (r"SELECT E'\\\'';", r"SELECT E'\\\''"),
    ]);
}

#[test]
fn split_other_string_prefixes() {
    #[rustfmt::skip]
    check(split, &[
        ("SELECT N'x;', B'01', X'f;'; SELECT 2", "SELECT N'x;', B'01', X'f;' ¦ SELECT 2"),
        ("SELECT U&'d\\0061;', U&\"a;\";", "SELECT U&'d\\0061;', U&\"a;\""),
    ]);
}

#[test]
fn split_quoted_identifiers() {
    #[rustfmt::skip]
    check(split, &[
        ("CREATE TABLE \"a;\"\"b\" (x int); SELECT 1", "CREATE TABLE \"a;\"\"b\" (x int) ¦ SELECT 1"),
        ("SELECT \"日本;\", \"é\"\"--\"; SELECT 2", "SELECT \"日本;\", \"é\"\"--\" ¦ SELECT 2"),
    ]);
}

#[test]
fn split_plpgsql_body() {
    let sql = "CREATE FUNCTION f(a int) RETURNS int AS $body$\nDECLARE x int := $1;\n\
               BEGIN\n  EXECUTE $q$ SELECT ';' $$ not end $$ $q$;\n  RETURN x; -- $body\n\
               END;\n$body$ LANGUAGE plpgsql;\nSELECT 2;";
    let s = split_statements(sql).unwrap();
    assert_eq!(s.len(), 2);
    assert!(s[0].text.ends_with("END;\n$body$ LANGUAGE plpgsql"));
    assert!(s[0]
        .text
        .contains("EXECUTE $q$ SELECT ';' $$ not end $$ $q$;"));
    assert_eq!((s[1].text.as_str(), s[1].line), ("SELECT 2", 8));
}

#[test]
fn split_params_are_not_dollar_quotes() {
    #[rustfmt::skip]
    check(split, &[
        ("PREPARE p(int) AS SELECT $1 + $2; SELECT 3", "PREPARE p(int) AS SELECT $1 + $2 ¦ SELECT 3"),
        ("SELECT $1$x; SELECT $12;", "SELECT $1$x ¦ SELECT $12"),
    ]);
}

#[test]
fn split_identifiers_containing_dollars() {
    check(
        split,
        &[(
            "SELECT a$b$c, x$$ FROM t$1; SELECT 2",
            "SELECT a$b$c, x$$ FROM t$1 ¦ SELECT 2",
        )],
    );
}

#[test]
fn split_dollar_tags() {
    #[rustfmt::skip]
    check(split, &[
        ("SELECT $fn_1$ a;$b$ ; $fn_1$; SELECT 2", "SELECT $fn_1$ a;$b$ ; $fn_1$ ¦ SELECT 2"),
        ("SELECT $é$;$é$; SELECT $$$$; SELECT $a$$$$a$", "SELECT $é$;$é$ ¦ SELECT $$$$ ¦ SELECT $a$$$$a$"),
    ]);
}

#[test]
fn split_comments_with_quotes_and_semicolons() {
    #[rustfmt::skip]
    check(split, &[
        ("-- it's; a\nSELECT 1 /* ; */ , '--;', '/*' -- x; 'y\n;\nSELECT 2", "SELECT 1 /* ; */ , '--;', '/*' ¦ SELECT 2"),
        ("SELECT a<>b--c;\n;SELECT 2", "SELECT a<>b ¦ SELECT 2"),
    ]);
}

#[test]
fn split_nested_block_comments() {
    check(
        split,
        &[(
            "/* a /* b; */ still; 'x */ SELECT 1; /*/ x */ SELECT 2;",
            "SELECT 1 ¦ SELECT 2",
        )],
    );
}

#[test]
fn split_drops_empty_and_comment_only() {
    #[rustfmt::skip]
    check(split, &[
        (";;  -- x\n ; /* y */; \n\n", ""),
        ("", ""),
        ("SELECT 1 -- no semicolon at the end", "SELECT 1"),
    ]);
}

#[test]
fn split_semicolon_inside_parens_splits() {
    check(split, &[("SELECT (1; SELECT 2)", "SELECT (1 ¦ SELECT 2)")]);
}

#[test]
fn split_begin_atomic_bodies() {
    let sql = "CREATE OR REPLACE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  \
               SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END;\n  SELECT a;\nEND;\n\
               CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;\nSELECT 3";
    let s: Vec<String> = split_statements(sql)
        .unwrap()
        .into_iter()
        .map(|s| s.text)
        .collect();
    assert_eq!(s.len(), 3, "{s:?}");
    assert!(s[0].ends_with("SELECT a;\nEND"));
    assert_eq!(
        s[1],
        "CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END"
    );
}

#[test]
fn split_line_numbers() {
    assert_eq!(lines("SELECT 1;\n\n  SELECT 2 ;\nSELECT 3"), [1, 3, 4]);
    assert_eq!(lines("-- c\n/* x\ny */\n\n  SELECT 1;"), [5]);
    assert_eq!(
        lines("SELECT 'a\nb';\n/* x\ny */\nSELECT $$\n;\n$$;\nSELECT 3;"),
        [1, 5, 8]
    );
    assert_eq!(lines("SELECT \"a\nb\", E'\\\n';\n\nSELECT 2"), [1, 5]);
}

#[test]
fn split_crlf_and_bom() {
    assert_eq!(lines("SELECT 1;\r\n\r\n-- c\r\nSELECT\r\n 2;"), [1, 4]);
    assert_eq!(
        split("\u{FEFF}SELECT 1;\r\nSELECT\r\n 2"),
        "SELECT 1 ¦ SELECT\r\n 2"
    );
}

#[test]
fn split_keeps_inner_comments_only() {
    let s = split_statements("-- lead\nSELECT 1 /* in */ , 2 -- tail\n;").unwrap();
    assert_eq!(
        (s[0].text.as_str(), s[0].line),
        ("SELECT 1 /* in */ , 2", 2)
    );
}

#[test]
fn split_unterminated() {
    #[rustfmt::skip]
    check(err, &[
        ("SELECT 1;\nSELECT 'abc;\n\n", "line 2: unterminated quoted string"),
        ("SELECT E'abc\\';", "line 1: unterminated quoted string"),
        ("SELECT 1;\n\nDO $x$ BEGIN END $y$;", "line 3: unterminated dollar-quoted string"),
        ("SELECT 1;\n--x\n$$", "line 3: unterminated dollar-quoted string"),
        ("/* a /* b */ SELECT 1;", "line 1: unterminated block comment"),
        ("\nSELECT \"abc", "line 2: unterminated quoted identifier"),
    ]);
    let e = split_statements("'").unwrap_err();
    assert_eq!(
        (e.line, e.message.as_str()),
        (1, "unterminated quoted string")
    );
    let _: &dyn std::error::Error = &e;
}

// ----- normalize -----

#[test]
fn normalize_whitespace_case_comments() {
    #[rustfmt::skip]
    check(n, &[
        ("CREATE  TABLE Foo (\n  id INT, -- the id\n  name TEXT /* n */\n);\n", "create table foo(id int,name text)"),
        ("SELECT f( a , b ) ;;  ", "select f(a,b)"),
        ("  ;  ", ""),
    ]);
}

#[test]
fn normalize_punctuation_and_operators() {
    #[rustfmt::skip]
    check(n, &[
        ("SELECT a + b = c", "select a+b=c"),
        ("SELECT a=-1, a = - 1", "select a= -1,a= -1"),
        ("SELECT x :: text, y := 1", "select x::text,y:=1"),
        ("SELECT a < = b, a <= b", "select a< =b,a<=b"),
    ]);
    assert_ne!(n("SELECT a b"), n("SELECT ab"));
}

#[test]
fn normalize_keeps_literals_exact() {
    assert_ne!(n("SELECT 'Hello'"), n("SELECT 'hello'"));
    assert_ne!(n("SELECT \"Col\""), n("SELECT \"col\""));
    assert_ne!(n("SELECT 'a  b'"), n("SELECT 'a b'"));
    assert_ne!(n("SELECT 'a' 'b'"), n("SELECT 'a''b'"));
    assert_ne!(n("SELECT \"a\" \"b\""), n("SELECT \"a\"\"b\""));
    assert_eq!(n("SELECT '--x', '/*y*/'"), "select '--x','/*y*/'");
}

#[test]
fn normalize_string_prefixes_and_numbers() {
    #[rustfmt::skip]
    check(n, &[
        ("SELECT E'X\\n', U&'d' , N'é', U&\"Q\"", "select e'X\\n',u&'d',n'é',u&\"Q\""),
        ("SELECT 1.5E-3, .5, 0X1F, 1_000, t.* ;", "select 1.5e-3,.5,0x1f,1_000,t.*"),
    ]);
    assert_ne!(n("SELECT E'X'"), n("SELECT E'x'"));
}

#[test]
fn normalize_function_body_is_code() {
    let a = "CREATE FUNCTION f() RETURNS int AS $body$\nBEGIN\n    -- hi\n    \
             RETURN  1;\nEND;\n$body$ LANGUAGE plpgsql;";
    let want = "create function f()returns int as $$begin return 1;end;$$ language plpgsql";
    #[rustfmt::skip]
    check(n, &[
        (a, want),
        ("create function f() returns int as $$ begin return 1; end; $$ language PLPGSQL", want),
    ]);
}

#[test]
fn normalize_body_literals_exact() {
    let body = |s: &str| {
        n(&format!(
            "CREATE FUNCTION f() RETURNS text AS $$ RETURN {s}; $$"
        ))
    };
    assert_ne!(body("'Hello'"), body("'hello'"));
    assert_eq!(body("'Hello'"), body("/* x */ 'Hello'"));
    assert_ne!(body("$q$Hello$q$"), body("$q$hello$q$"));
    assert_ne!(body("\"X\""), body("\"x\""));
    assert!(body("$q$ A $q$").ends_with("as $$return $q$ A $q$;$$"));
}

#[test]
fn normalize_do_and_sql_bodies() {
    #[rustfmt::skip]
    check(n, &[
        ("DO $x$ BEGIN PERFORM 1; END $x$;", "do $$begin perform 1;end$$"),
        ("DO LANGUAGE plpgsql $$ BEGIN NULL; END $$", "do language plpgsql $$begin null;end$$"),
        ("CREATE FUNCTION f() LANGUAGE 'sql' AS $$SELECT  1$$", "create function f()language 'sql' as $$select 1$$"),
        ("CREATE FUNCTION f() RETURNS TABLE(language text) LANGUAGE sql AS $$ SELECT 1 $$",
         "create function f()returns table(language text)language sql as $$select 1$$"),
    ]);
}

#[test]
fn normalize_other_languages_exact() {
    let py = |s: &str| {
        n(&format!(
            "CREATE FUNCTION f() LANGUAGE plpython3u AS $$ {s} $$"
        ))
    };
    assert_ne!(py("return X"), py("return x"));
    assert_eq!(
        py("return X"),
        "create function f()language plpython3u as $$ return X $$"
    );
}

#[test]
fn normalize_plain_dollar_literals_exact() {
    assert_ne!(
        n("INSERT INTO t VALUES ($$Hi$$)"),
        n("INSERT INTO t VALUES ($$hi$$)")
    );
    assert_ne!(
        n("COMMENT ON TABLE t IS $$Hi$$"),
        n("COMMENT ON TABLE t IS $$hi$$")
    );
}

#[test]
fn normalize_plpgsql_ranges_and_casts() {
    let a = "DO $$ BEGIN FOR i IN 1..10 LOOP x := i::text; END LOOP; END $$";
    let b = "DO $$ begin for i in 1 .. 10 loop x:=i :: TEXT; end loop; end $$";
    assert_eq!(n(a), n(b));
}

#[test]
fn normalize_is_idempotent() {
    for s in [
        "CREATE FUNCTION f(a int DEFAULT 1) RETURNS SETOF t AS $b$ SELECT a + -1 -- c\n $b$;",
        "select a<-b, x::int[], \"Q\"\"x\", E'\\'', $1 from t where a !~~ 'x' /* c */",
        "DO $$ BEGIN RAISE NOTICE 'Hi %', 1; END $$",
        "CREATE  TABLE Foo (\n  id INT, -- the id\n  name TEXT /* n */\n);\n",
    ] {
        assert_eq!(n(&n(s)), n(s), "{s}");
    }
}

#[test]
fn normalize_unterminated_input() {
    check(
        n,
        &[
            ("SELECT 'abc", "select 'abc"),
            ("DO $$ BEGIN", "do $$ BEGIN"),
        ],
    );
}

// ----- parse_routine -----

#[test]
fn routine_defaults_with_commas_and_parens() {
    let sql = "CREATE OR REPLACE FUNCTION public.Add_Item(\n  p_name varchar(500),\n  \
               p_tags text[] DEFAULT ARRAY['a,b', 'c)'],\n  x numeric(10,2) = 0.5,\n  \
               d timestamptz DEFAULT now(),\n  s text DEFAULT 'x, (y)'\n) RETURNS integer\n\
               LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$";
    let want = "Function public.add_item(varchar(500), text[], numeric(10,2), timestamptz, text) \
                -> integer ¦ p_name varchar(500)|p_tags text[]|x numeric(10,2)|d timestamptz|s text";
    assert_eq!(sig(sql), want);
}

#[test]
fn routine_procedure_modes() {
    let sql = "create procedure app.do_it(IN a int, OUT b text, InOut c bigint, \
               variadic d int[], e OUT int, f IN text)\nlanguage plpgsql as $$begin end$$";
    let want = "Procedure app.do_it(int, bigint, int[], text) ¦ \
                IN a int|OUT b text|InOut c bigint|variadic d int[]|e OUT int|f IN text";
    assert_eq!(sig(sql), want);
}

#[test]
fn routine_unnamed_args() {
    #[rustfmt::skip]
    check(types, &[
        ("integer, text, public.my_type, double precision", "integer, text, public.my_type, double precision"),
        ("out int, in text, inout \"T\"", "text, \"T\""),
        ("", ""),
    ]);
}

#[test]
fn routine_names_that_look_like_types() {
    #[rustfmt::skip]
    check(types, &[
        ("text text, integer integer, date date", "text, integer, date"),
        ("time time with time zone, double double precision", "time with time zone, double precision"),
        ("\"x\" int, interval interval, zone text", "int, interval, text"),
    ]);
}

#[test]
fn routine_multi_word_types() {
    #[rustfmt::skip]
    check(types, &[
        ("a character varying(255), b timestamp with time zone", "character varying(255), timestamp with time zone"),
        ("c time without time zone, d bit varying(8)", "time without time zone, bit varying(8)"),
        ("e interval day to second, f national character varying(3)", "interval day to second, national character varying(3)"),
        ("j timestamp(3) without time zone, l interval second(3)", "timestamp(3) without time zone, interval second(3)"),
        ("m char(2), o interval", "char(2), interval"),
    ]);
}

#[test]
fn routine_array_types_and_spacing() {
    #[rustfmt::skip]
    check(types, &[
        ("g character varying(20)[], h integer ARRAY", "character varying(20)[], integer ARRAY"),
        ("i int[][], j int ARRAY[3], k numeric ( 10 , 2 )", "int[][], int ARRAY[3], numeric(10,2)"),
    ]);
}

#[test]
fn routine_type_references_and_defaults() {
    #[rustfmt::skip]
    check(types, &[
        ("p users.id%TYPE, VARIADIC \"any\"", "users.id%TYPE, \"any\""),
        ("x numeric(10,2) DEFAULT round(1.5, 2), y text = 'a = b, c'", "numeric(10,2), text"),
        ("z int[] DEFAULT '{1,2}', w text DEFAULT E'\\', '", "int[], text"),
    ]);
}

#[test]
fn routine_quoted_and_non_ascii_names() {
    #[rustfmt::skip]
    check(sig, &[
        ("CREATE FUNCTION \"My S\".\"Fn \"\"é\"\"\"(\"日本\" text) RETURNS void AS 'x'",
         "Function My S.Fn \"é\"(text) -> void ¦ \"日本\" text"),
        ("CREATE FUNCTION café.Été(x \"MyType\"[]) RETURNS \"MyType\" AS $$$$",
         "Function café.Été(\"MyType\"[]) -> \"MyType\" ¦ x \"MyType\"[]"),
    ]);
}

#[test]
fn routine_three_part_name() {
    let sql = "CREATE FUNCTION db.s.f() RETURNS void AS $$ $$ LANGUAGE sql";
    assert_eq!(sig(sql), "Function s.f() -> void ¦ ");
}

#[test]
fn routine_comments_in_header() {
    let sql = "-- lead\nCREATE /* x */ OR REPLACE FUNCTION /* y */ s.f( -- args\n  a int, \
               /* b */ b text -- last\n) RETURNS /* r */ int AS $$ $$ LANGUAGE sql";
    assert_eq!(sig(sql), "Function s.f(int, text) -> int ¦ a int|b text");
}

#[test]
fn routine_returns_table() {
    let tail = "RETURNS TABLE (id int, total numeric(10,2), at timestamptz) LANGUAGE sql";
    assert_eq!(
        returns(tail),
        "TABLE(id int,total numeric(10,2),at timestamptz)"
    );
}

#[test]
fn routine_returns_clause_ends() {
    #[rustfmt::skip]
    check(returns, &[
        ("RETURNS SETOF public.users STABLE LANGUAGE sql AS $$ $$", "SETOF public.users"),
        ("RETURNS trigger AS $$ $$ LANGUAGE plpgsql", "trigger"),
        ("RETURNS int RETURNS NULL ON NULL INPUT IMMUTABLE RETURN 1", "int"),
        ("RETURNS timestamp with time zone\nLANGUAGE sql AS 'x'", "timestamp with time zone"),
        ("RETURNS double precision WITH (isStrict) AS 'x' LANGUAGE c", "double precision"),
        ("RETURNS text[] /* c */ SECURITY DEFINER SET search_path = public AS 'x'", "text[]"),
        ("RETURNS cost.set COST 10 AS $$ $$", "cost.set"),
        ("LANGUAGE sql AS $$ $$", "None"),
    ]);
}

#[test]
fn routine_errors() {
    let line = |s: &str| parse_routine(s).unwrap_err().line.to_string();
    #[rustfmt::skip]
    check(line, &[
        ("CREATE TABLE t (a int)", "1"),
        ("", "1"),
        ("SELECT f(1)", "1"),
        ("CREATE VIEW v AS SELECT 1", "1"),
        ("CREATE FUNCTION f RETURNS int", "1"),
        ("CREATE FUNCTION f(a int", "1"),
        ("CREATE FUNCTION (a)", "1"),
        ("CREATE FUNCTION\n\nf RETURNS int", "3"),
    ]);
}

// ----- parse_type -----

#[test]
fn type_enums() {
    #[rustfmt::skip]
    check(ty, &[
        ("CREATE TYPE app.\"Mood\" AS ENUM ('sad', 'it''s ok', 'x,y', '日本')", "Enum app.Mood sad|it's ok|x,y|日本"),
        ("CREATE TYPE e AS ENUM (E'a\\'b\\n', e'\\x41\\101\\u00e9\\\\', U&'x')", "Enum e a'b\n|AAé\\|x"),
        ("create type E as enum ()", "Enum e "),
    ]);
}

#[test]
fn type_composite_domain_other() {
    #[rustfmt::skip]
    check(ty, &[
        ("CREATE TYPE Addr AS (street text, zip varchar(10))", "Composite addr"),
        ("CREATE DOMAIN public.email AS citext CHECK (VALUE ~ '@')", "Domain public.email"),
        ("CREATE DOMAIN pos int CHECK (VALUE > 0)", "Domain pos"),
        ("CREATE TYPE fr AS RANGE (subtype = float8)", "Other fr"),
        ("CREATE TYPE b (INPUT = i, OUTPUT = o)", "Other b"),
        ("CREATE TYPE \"Shell\"", "Other Shell"),
    ]);
}

#[test]
fn type_errors() {
    #[rustfmt::skip]
    check(ty, &[
        ("CREATE TABLE t (a int)", "Err 1"),
        ("CREATE TYPE x AS ENUM 'a'", "Err 1"),
        ("CREATE TYPE x\nFOO", "Err 2"),
        ("CREATE VIEW v", "Err 1"),
        ("CREATE TYPE", "Err 1"),
    ]);
}

// ----- classify_table_stmt -----

#[test]
fn classify_references() {
    let sql = "CREATE UNLOGGED TABLE IF NOT EXISTS App.Orders (\n  id serial PRIMARY KEY,\n  \
               user_id int NOT NULL REFERENCES users(id),\n  s int REFERENCES \"Shop\".\"S\",\n  \
               note text DEFAULT 'REFERENCES x',\n  FOREIGN KEY (user_id) REFERENCES Users (id),\n  \
               CONSTRAINT fk FOREIGN KEY (p) REFERENCES public.products, p int REFERENCES orders\n)";
    assert_eq!(
        tbl(sql),
        "app.orders -> users, Shop.S, public.products, orders"
    );
}

#[test]
fn classify_table_variants() {
    #[rustfmt::skip]
    check(tbl, &[
        ("create temp table \"T\" as select 1", "T -> "),
        ("CREATE GLOBAL TEMPORARY TABLE x.\"é\" (a int REFERENCES \"日本\")", "x.é -> 日本"),
        ("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)", "p1 -> "),
    ]);
}

#[test]
fn classify_other_statements() {
    #[rustfmt::skip]
    check(tbl, &[
        ("CREATE INDEX i ON t (a)", "Other"),
        ("ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u", "Other"),
        ("COMMENT ON TABLE t IS 'x'", "Other"),
        ("CREATE FOREIGN TABLE ft (a int) SERVER s", "Other"),
        ("", "Other"),
    ]);
}

#[test]
fn foreign_key_alters_are_read_through_tokens() {
    for s in [
        "ALTER TABLE ONLY public.a ADD CONSTRAINT a_b_fkey FOREIGN KEY (b) REFERENCES public.b(id)",
        "alter table a\n  add foreign key (b) -- to b\n  references b",
        "ALTER TABLE a ADD COLUMN b int REFERENCES b",
    ] {
        assert!(adds_foreign_key(s), "{s}");
    }
    // REFERENCES or ADD only in a literal, a name or a comment (the
    // normalized-text reader counted the first two)
    for s in [
        "ALTER TABLE t ADD COLUMN note text DEFAULT 'references'",
        "ALTER TABLE my_references ADD COLUMN x int",
        "ALTER TABLE \"add\" ALTER COLUMN x SET DEFAULT 'references'",
        "ALTER TABLE t ADD COLUMN x text /* references */",
        "ALTER TABLE t ADD COLUMN x text DEFAULT $$ references $$",
        "CREATE TABLE t (a int REFERENCES u)",
        "COMMENT ON TABLE t IS 'alter table x add references'",
    ] {
        assert!(!adds_foreign_key(s), "{s}");
    }
}

// ----- split_foreign_keys -----

#[test]
fn fk_inline_reference() {
    let sql = "CREATE TABLE a (\n  id int PRIMARY KEY,\n  b_id int REFERENCES b(id) \
               ON DELETE CASCADE NOT NULL DEFAULT 1,\n  c_id int REFERENCES c\n)";
    let (t, alters) = defer(sql, &["B"]);
    let want = "CREATE TABLE a (\n  id int PRIMARY KEY,\n  b_id int NOT NULL DEFAULT 1,\n  \
                c_id int REFERENCES c\n)";
    assert_eq!(t, want);
    let want = "ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b(id) ON DELETE CASCADE";
    assert_eq!(alters, [want]);
}

#[test]
fn fk_named_inline_constraint() {
    let sql = "CREATE TABLE s.\"A\" (\"B Id\" bigint CONSTRAINT fk_b REFERENCES s.b (id) \
               MATCH FULL ON UPDATE SET NULL (\"B Id\") DEFERRABLE INITIALLY DEFERRED \
               CHECK (\"B Id\" > 0))";
    let (t, alters) = split_foreign_keys(sql, &[q(Some("S"), "b")]).unwrap();
    assert_eq!(
        t,
        "CREATE TABLE s.\"A\" (\"B Id\" bigint CHECK (\"B Id\" > 0))"
    );
    let want = "ALTER TABLE s.\"A\" ADD CONSTRAINT fk_b FOREIGN KEY (\"B Id\") REFERENCES \
                s.b (id) MATCH FULL ON UPDATE SET NULL (\"B Id\") DEFERRABLE INITIALLY DEFERRED";
    assert_eq!(alters, [want]);
}

#[test]
fn fk_table_level_constraint() {
    let sql = "CREATE TABLE a (\n  id int,\n  b_id int,\n  -- the b link\n  CONSTRAINT fk_b \
               FOREIGN KEY (b_id) REFERENCES b (id) ON DELETE SET NULL NOT DEFERRABLE,\n  \
               CHECK (id > 0)\n)";
    let (t, alters) = defer(sql, &["b"]);
    assert_eq!(
        t,
        "CREATE TABLE a (\n  id int,\n  b_id int,\n  CHECK (id > 0)\n)"
    );
    let want = "ALTER TABLE a ADD CONSTRAINT fk_b FOREIGN KEY (b_id) REFERENCES b (id) \
                ON DELETE SET NULL NOT DEFERRABLE";
    assert_eq!(alters, [want]);
}

#[test]
fn fk_leading_and_consecutive_elements() {
    let sql = "CREATE TABLE a (FOREIGN KEY (x) REFERENCES b, FOREIGN KEY (y) REFERENCES c, \
               x int, y int, FOREIGN KEY (x) REFERENCES b, FOREIGN KEY (y) REFERENCES b)";
    let (t, alters) = defer(sql, &["b", "c"]);
    assert_eq!(t, "CREATE TABLE a (x int, y int)");
    assert_eq!(alters.len(), 4);
    assert_eq!(alters[1], "ALTER TABLE a ADD FOREIGN KEY (y) REFERENCES c");
    let (t, _) = defer("CREATE TABLE a (FOREIGN KEY (x) REFERENCES b)", &["b"]);
    assert_eq!(t, "CREATE TABLE a ()");
}

#[test]
fn fk_schema_matching() {
    let sql =
        "CREATE TABLE a (x int REFERENCES public.b, y int REFERENCES o.b, z int REFERENCES b)";
    let (t, alters) = split_foreign_keys(sql, &[q(Some("public"), "b")]).unwrap();
    assert_eq!(t, "CREATE TABLE a (x int, y int REFERENCES o.b, z int)");
    assert_eq!(alters.len(), 2);
    let (t, alters) = defer(sql, &["B"]);
    assert_eq!(
        (t.as_str(), alters.len()),
        ("CREATE TABLE a (x int, y int, z int)", 3)
    );
    assert_eq!(defer(sql, &["c"]), (sql.to_string(), vec![]));
}

#[test]
fn fk_round_trip_keeps_everything_else() {
    let sql = "CREATE TABLE IF NOT EXISTS app.orders (\n    id bigserial PRIMARY KEY, -- pk\n    \
               customer_id bigint NOT NULL\n        REFERENCES app.customers(id) ON DELETE \
               RESTRICT,\n    note text DEFAULT 'REFERENCES x, FOREIGN KEY' CHECK (note <> ';'),\n    \
               parent_id bigint REFERENCES app.orders, -- self\n    UNIQUE (customer_id, id)\n)";
    let deferred = [q(Some("app"), "customers")];
    let (t, alters) = split_foreign_keys(sql, &deferred).unwrap();
    for part in [
        "CREATE TABLE IF NOT EXISTS app.orders (\n    id bigserial PRIMARY KEY, -- pk\n",
        "customer_id bigint NOT NULL,",
        "note text DEFAULT 'REFERENCES x, FOREIGN KEY' CHECK (note <> ';'),",
        "parent_id bigint REFERENCES app.orders, -- self\n    UNIQUE (customer_id, id)\n)",
    ] {
        assert!(t.contains(part), "missing {part:?} in {t}");
    }
    let want = "ALTER TABLE app.orders ADD FOREIGN KEY (customer_id) REFERENCES \
                app.customers(id) ON DELETE RESTRICT";
    assert_eq!(alters, [want]);
    assert_eq!(split_statements(&t).unwrap().len(), 1);
    assert_eq!(tbl(&t), "app.orders -> app.orders");
    assert_eq!(
        split_foreign_keys(&t, &deferred).unwrap(),
        (t.clone(), vec![])
    );
}

#[test]
fn fk_line_comments_stay_safe() {
    let sql =
        "CREATE TABLE a (\n  b_id int -- link\n    REFERENCES b,\n  x int REFERENCES b -- c\n)";
    let (t, alters) = defer(sql, &["b"]);
    assert_eq!(
        t,
        "CREATE TABLE a (\n  b_id int -- link\n,\n  x int -- c\n)"
    );
    assert_eq!(
        alters[0],
        "ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b"
    );
    assert_eq!(alters[1], "ALTER TABLE a ADD FOREIGN KEY (x) REFERENCES b");
    assert_eq!(n(&t), "create table a(b_id int,x int)");
}

#[test]
fn fk_partition_and_exclude() {
    let p = "CREATE TABLE p1 PARTITION OF p (CONSTRAINT f FOREIGN KEY (a) REFERENCES q) \
             FOR VALUES IN (1)";
    let (t, alters) = defer(p, &["q"]);
    assert_eq!(t, "CREATE TABLE p1 PARTITION OF p () FOR VALUES IN (1)");
    assert_eq!(
        alters,
        ["ALTER TABLE p1 ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES q"]
    );
    let x = "CREATE TABLE t (exclude int REFERENCES q, EXCLUDE USING gist (c WITH &&))";
    let want = "CREATE TABLE t (exclude int, EXCLUDE USING gist (c WITH &&))";
    assert_eq!(defer(x, &["q"]).0, want);
}

#[test]
fn fk_passthrough_and_errors() {
    let s = "CREATE TABLE t AS SELECT 1";
    assert_eq!(defer(s, &["t"]), (s.to_string(), vec![]));
    let line = |s: &str| split_foreign_keys(s, &[]).unwrap_err().to_string();
    #[rustfmt::skip]
    check(line, &[
        ("CREATE INDEX i ON t (a)", "line 1: not a CREATE TABLE statement"),
        ("CREATE TABLE t (\na text DEFAULT 'x", "line 2: unterminated quoted string"),
        ("CREATE TABLE t (a int", "line 1: unbalanced parentheses"),
    ]);
}

// ----- parse_insert -----

#[test]
fn insert_targets() {
    #[rustfmt::skip]
    check(ins, &[
        ("INSERT INTO Public.\"Users\" (ID, \"Name\", tags[1]) VALUES (1, 'a', 'b')", "public.Users (id, Name, tags)"),
        ("INSERT INTO t AS x (a) SELECT 1 ON CONFLICT DO NOTHING", "t (a)"),
        ("insert into t values (1)", "t ()"),
        ("INSERT INTO t (SELECT 1)", "t ()"),
        ("/* s */ INSERT INTO t DEFAULT VALUES", "t ()"),
    ]);
}

#[test]
fn insert_after_cte() {
    #[rustfmt::skip]
    check(ins, &[
        ("WITH x AS (INSERT INTO a VALUES (1) RETURNING 1) INSERT INTO b (c) SELECT 1", "b (c)"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "None"),
    ]);
}

#[test]
fn insert_rows_and_their_shape() {
    let i = parse_insert(
        "INSERT INTO roles (id, name) OVERRIDING SYSTEM VALUE VALUES (1, 'a'), (2, 'b;c') ON CONFLICT (id) DO NOTHING",
    )
    .unwrap();
    assert_eq!(
        i.values,
        Some(Values {
            rows: 2,
            width: 2,
            plain: true
        })
    );
    assert_eq!(i.source, "VALUES (1, 'a'), (2, 'b;c')");
    assert_eq!(i.column_list, "(id, name)");
    let i = parse_insert("WITH n AS (SELECT 1 AS v) INSERT INTO t SELECT v FROM n RETURNING *")
        .unwrap();
    assert_eq!(i.values, None);
    assert_eq!(i.prefix, "WITH n AS (SELECT 1 AS v) ");
    assert_eq!(i.source, "SELECT v FROM n");
    let i = parse_insert("INSERT INTO t VALUES ((SELECT 1 ON CONFLICT), 2)").unwrap();
    assert_eq!(i.source, "VALUES ((SELECT 1 ON CONFLICT), 2)");
    assert_eq!(
        i.values,
        Some(Values {
            rows: 1,
            width: 2,
            plain: true
        })
    );
    for (odd, rows) in [
        ("INSERT INTO t VALUES (1, DEFAULT), (2, 3)", 2),
        ("INSERT INTO t VALUES (1), (1, 2)", 2),
        ("INSERT INTO t (tags[1]) VALUES ('a')", 1),
    ] {
        let v = parse_insert(odd).unwrap().values.unwrap();
        assert_eq!((v.plain, v.rows), (false, rows), "{odd}");
    }
    assert_eq!(
        parse_insert("INSERT INTO t DEFAULT VALUES").unwrap().values,
        None
    );
    assert!(parse_insert("INSERT INTO t ON CONFLICT DO NOTHING").is_none());
}

#[test]
fn insert_other_statements() {
    for s in [
        "UPDATE t SET a = 1",
        "INSERT t VALUES (1)",
        "",
        "SELECT 'INSERT INTO t'",
    ] {
        assert_eq!(ins(s), "None", "{s}");
    }
}

// ----- a pg_dump-style file end to end -----

#[test]
fn pg_dump_style_file() {
    let dump = "--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\n\n\
        CREATE FUNCTION public.calc(p_id integer, OUT total numeric, VARIADIC x numeric[] \
        DEFAULT '{}'::numeric[]) RETURNS numeric\n    LANGUAGE plpgsql STABLE\n    \
        SET search_path TO 'public'\n    AS $_$\nBEGIN\n  SELECT sum(p) INTO total \
        WHERE id = $1; -- ;\nEND;\n$_$;\n\nCREATE TABLE public.orders (\n    id integer,\n    \
        c_id integer REFERENCES public.customers(id)\n);\n";
    let s = split_statements(dump).unwrap();
    assert_eq!(s.iter().map(|s| s.line).collect::<Vec<_>>(), [4, 6, 15]);
    let r = parse_routine(&s[1].text).unwrap();
    assert_eq!(
        (r.arg_types.join(", "), r.returns),
        ("integer, numeric[]".into(), Some("numeric".into()))
    );
    assert!(n(&s[1].text).ends_with("as $$begin select sum(p)into total where id=$1;end;$$"));
    assert_eq!(tbl(&s[2].text), "public.orders -> public.customers");
    let (t, _) = defer(&s[2].text, &["customers"]);
    assert_eq!(
        t,
        "CREATE TABLE public.orders (\n    id integer,\n    c_id integer\n)"
    );
}

// ----- robustness -----

#[test]
fn never_panics_on_prefixes_and_garbage() {
    let corpus = "CREATE OR REPLACE FUNCTION \"S\".f(a int DEFAULT 'x,(', OUT b text[], \
        c numeric(10,2) = 0.5)\nRETURNS TABLE(x int) AS $b$ BEGIN EXECUTE $q$ ';' $q$; \
        RETURN; END $b$ LANGUAGE plpgsql;\nCREATE TABLE t (id int CONSTRAINT k REFERENCES \
        u(id) ON DELETE SET NULL (id), FOREIGN KEY (id) REFERENCES v);\nCREATE TYPE e AS \
        ENUM ('a', E'\\x41\\u00e9\\101\\'', 'b''c'); /* /* n */ */ -- é日本\nINSERT INTO t \
        (id) VALUES ($1), (1e5), (.5), ('\\'); SELECT U&\"x\" :: int, a<=>b ..;\r\n";
    let deferred = [q(None, "u"), q(None, "v")];
    let mut inputs: Vec<String> = corpus
        .char_indices()
        .map(|(i, _)| corpus[..i].into())
        .collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet: Vec<char> = "'\"$;()[],.-*/\\eE&U:=<>_ab1 \n\té日".chars().collect();
    for _ in 0..300 {
        let mut s = String::new();
        for _ in 0..(seed % 40) {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
        }
        inputs.extend([
            format!("CREATE TABLE t ({s}"),
            format!("CREATE FUNCTION f({s}"),
            s,
        ]);
    }
    for s in &inputs {
        let _ = split_statements(s);
        let _ = n(&n(s));
        let _ = (parse_routine(s), parse_type(s), classify_table_stmt(s));
        let _ = (split_foreign_keys(s, &deferred), parse_insert(s));
    }
    assert_eq!(split_statements(corpus).unwrap().len(), 5);
}

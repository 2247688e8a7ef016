//! Which routines `/call` may reach in a database, in one place: the
//! router's overload lookup and the migrator's function listing
//! (`GET /platform/{p}/functions`) both build their SQL from
//! [`callable_where!`], so a function is listed exactly when `/call` can
//! resolve it. Only platform-created functions are callable: never system,
//! extension or gateway ones, never procedures.

/// `FROM … WHERE …` over `pg_proc p` joined to `pg_namespace n`: routines
/// of `prokind` `$kind` that the platform created, narrowed further by
/// `$and` (SQL text starting with `AND`, or `""`).
#[macro_export]
macro_rules! callable_where {
    ($kind:literal, $and:literal) => {
        concat!(
            "FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prokind = '",
            $kind,
            "' ",
            $and,
            "
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND p.proname NOT LIKE '\\_stonescriptdb\\_gateway%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')"
        )
    };
}

/// Every function `/call` can reach in the connected database, one row
/// each, by schema, name and signature: schema, name, signature
/// (`regprocedure`), result as PostgreSQL writes it, returns a set,
/// volatility word, variadic, and the arguments as a JSON array of
/// `{name, type, mode, default}` in declaration order (every argument:
/// `in`, `out`, `inout`, `variadic` or `table`; `default` is the default
/// expression of an input argument, or null).
pub const FUNCTIONS_SQL: &str = concat!(
    "\
SELECT n.nspname::text, p.proname::text, p.oid::regprocedure::text,
       pg_get_function_result(p.oid), p.proretset,
       CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END,
       p.provariadic <> 0,
       COALESCE((SELECT json_agg(json_build_object(
                    'name', NULLIF(p.proargnames[a.o], ''),
                    'type', format_type(a.t, NULL),
                    'mode', CASE COALESCE(p.proargmodes[a.o], 'i')
                              WHEN 'i' THEN 'in' WHEN 'o' THEN 'out' WHEN 'b' THEN 'inout'
                              WHEN 'v' THEN 'variadic' ELSE 'table' END,
                    'default', pg_get_function_arg_default(p.oid, a.o::int)) ORDER BY a.o)
                 FROM unnest(COALESCE(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY AS a(t, o)),
                '[]')::text
",
    callable_where!("f", ""),
    "
ORDER BY n.nspname, p.proname, p.oid::regprocedure::text"
);

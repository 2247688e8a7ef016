//! What the router knows about a database's callable functions: their
//! input-argument names and types, read from `pg_catalog` once and cached per
//! database, and the pure logic that picks one overload for a call.
//!
//! Only functions a platform created are callable: never those in
//! `pg_catalog`, `information_schema` or `pg_*` schemas, and never functions
//! that belong to an extension. An unqualified name resolves in `public`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio_postgres::Client;

use crate::average::MovingAverage;

/// One overload of a function, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `regprocedure` text, e.g. `public.get_user(integer)`, for messages.
    pub signature: String,
    /// Input arguments (IN, INOUT, VARIADIC), in order.
    pub args: Vec<Arg>,
    /// How many trailing input arguments have defaults.
    pub n_defaults: usize,
    /// The last argument is VARIADIC (its type is the array type).
    pub variadic: bool,
    /// `RETURNS void`: answered as `{"<name>": null}` whatever the language.
    pub returns_void: bool,
    /// `RETURNS SETOF`/`TABLE`: any number of rows. A function that returns
    /// no set answers exactly one row, which the call statement renders
    /// without an aggregate.
    pub returns_set: bool,
    /// A set-returning SQL function. PostgreSQL inlines it into the call
    /// statement, so with arguments as parameters its plan would depend on
    /// their values and be made again at every call (a custom plan); such
    /// calls go the JSON way, whose plan is made once.
    pub inlined_set: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// Empty for unnamed arguments.
    pub name: String,
    /// `format_type` of the declared type (schema-qualified when needed).
    pub type_sql: String,
    /// `pg_type.typcategory`.
    pub category: u8,
    /// A pseudo-type (anyelement, anyarray, ...): no JSON value converts to it.
    pub pseudo: bool,
    /// How a JSON value of this argument reaches the function.
    pub passing: Passing,
}

/// How an argument's JSON value is handed to PostgreSQL. Whatever the way,
/// the function receives what `json_to_record` would make of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passing {
    /// A parameter of its own in text format, converted by the type's input
    /// function, exactly as `json_to_record` converts a JSON scalar: a string
    /// without its quotes and escapes, other values as written (base types,
    /// enums, ranges and one domain over them; not arrays).
    Text,
    /// `json`/`jsonb` (or a domain over them): the JSON text as written.
    Json,
    /// Arrays, composites, pseudo-types, nested domains: only
    /// `json_to_record` builds these from JSON, so a call with such an
    /// argument goes the JSON way.
    Structured,
}

impl Candidate {
    fn required(&self) -> usize {
        self.args.len() - self.n_defaults.min(self.args.len())
    }
}

/// Functions of one database, keyed by the name the client called, with how
/// long a call of each keeps a connection busy.
#[derive(Default)]
pub struct FunctionCache {
    map: RwLock<HashMap<String, Arc<Cached>>>,
}

/// One cached function name: its overloads and the time a call keeps a
/// connection busy (µs; none until first timed).
pub struct Cached {
    pub candidates: Arc<Vec<Candidate>>,
    pub cost_us: MovingAverage,
}

impl FunctionCache {
    pub fn get(&self, name: &str) -> Option<Arc<Cached>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Cache the overloads of `name` (keeping its timing), or forget it.
    pub fn put(&self, name: &str, candidates: Arc<Vec<Candidate>>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if candidates.is_empty() {
            map.remove(name);
            return;
        }
        let cost_us = MovingAverage::new(3);
        if let Some(took) = map.get(name).and_then(|c| c.cost_us.get()) {
            cost_us.record(took);
        }
        map.insert(
            name.to_owned(),
            Arc::new(Cached {
                candidates,
                cost_us,
            }),
        );
    }
}

/// The routines `/call` may resolve `$1.$2` to (`$2` exact, or folded to
/// lower case) of one `prokind`, through the one filter the function
/// listing uses too ([`stonescriptdb_shared::callable`]), so the lookup,
/// the procedure check and the listing never disagree.
macro_rules! named {
    ($kind:literal) => {
        stonescriptdb_shared::callable_where!(
            $kind,
            "AND n.nspname = $1
  AND (p.proname = $2 OR p.proname = lower($2))"
        )
    };
}

const LOOKUP_SQL: &str = concat!(
    "\
SELECT p.oid, n.nspname::text, p.proname::text, p.oid::regprocedure::text,
       p.pronargdefaults::int4, p.provariadic <> 0,
       COALESCE(CASE WHEN p.proargmodes IS NULL THEN p.proargnames
            ELSE ARRAY(SELECT u.n FROM unnest(p.proargnames, p.proargmodes::text[]) WITH ORDINALITY AS u(n, m, o)
                       WHERE u.m IN ('i', 'b', 'v') ORDER BY u.o) END, '{}'::text[]),
       ARRAY(SELECT format_type(a.t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o) ORDER BY a.o),
       ARRAY(SELECT ty.typcategory::text FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)
             JOIN pg_type ty ON ty.oid = a.t ORDER BY a.o),
       ARRAY(SELECT ty.typtype = 'p' FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)
             JOIN pg_type ty ON ty.oid = a.t ORDER BY a.o),
       p.prorettype = 'pg_catalog.void'::pg_catalog.regtype,
       ARRAY(SELECT CASE
                WHEN b.typtype = 'd' OR b.typtype NOT IN ('b', 'e', 'r', 'm') THEN 's'
                WHEN b.oid IN ('pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype) THEN 'j'
                WHEN b.typcategory = 'A' THEN 's'
                ELSE 't' END
             FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)
             JOIN pg_type ty ON ty.oid = a.t
             JOIN pg_type b ON b.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END
             ORDER BY a.o),
       p.proretset AND p.prolang = (SELECT l.oid FROM pg_language l WHERE l.lanname = 'sql'),
       p.proretset
",
    named!("f"),
    "
ORDER BY p.proname = $2 DESC, p.oid"
);

/// A procedure the platform created under a name `/call` found no function
/// of (asked only then: the call is failing anyway).
const PROCEDURE_SQL: &str = concat!(
    "SELECT p.oid::regprocedure::text\n",
    named!("p"),
    "
ORDER BY p.proname = $2 DESC, p.oid
LIMIT 1"
);

/// The signature of a procedure `schema.name`, if there is one.
pub async fn procedure(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client.query_opt(PROCEDURE_SQL, &[&schema, &name]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// Read the overloads of `schema.name` from the catalog. An exact-case match
/// wins over the lower-cased name (PostgreSQL folds unquoted names).
pub async fn lookup(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<Vec<Candidate>, tokio_postgres::Error> {
    let rows = client.query(LOOKUP_SQL, &[&schema, &name]).await?;
    let mut out = Vec::with_capacity(rows.len());
    let exact = rows.iter().any(|r| r.get::<_, &str>(2) == name);
    for r in rows {
        let proname: String = r.get(2);
        if exact && proname != name {
            continue;
        }
        let names: Vec<Option<String>> = r.get(6);
        let types: Vec<String> = r.get(7);
        let cats: Vec<String> = r.get(8);
        let pseudo: Vec<bool> = r.get(9);
        let passing: Vec<String> = r.get(11);
        let args = types
            .into_iter()
            .enumerate()
            .map(|(i, type_sql)| Arg {
                name: names.get(i).cloned().flatten().unwrap_or_default(),
                type_sql,
                category: cats.get(i).and_then(|c| c.bytes().next()).unwrap_or(b'X'),
                pseudo: pseudo.get(i).copied().unwrap_or(false),
                passing: match passing.get(i).map(String::as_str) {
                    Some("t") => Passing::Text,
                    Some("j") => Passing::Json,
                    _ => Passing::Structured,
                },
            })
            .collect();
        out.push(Candidate {
            oid: r.get(0),
            schema: r.get(1),
            name: proname,
            signature: r.get(3),
            n_defaults: r.get::<_, i32>(4).max(0) as usize,
            variadic: r.get(5),
            returns_void: r.get(10),
            inlined_set: r.get(12),
            returns_set: r.get(13),
            args,
        });
    }
    Ok(out)
}

/// The shape of a call's arguments, as far as overload resolution cares.
#[derive(Debug)]
pub enum Shape<'a> {
    /// Raw JSON text of each positional argument.
    Positional(&'a [&'a str]),
    /// Names of the named arguments given.
    Named(&'a [&'a str]),
}

/// Why no single overload fits.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// No overload accepts these arguments; the message says why.
    NoMatch(String),
    /// Several fit equally well.
    Ambiguous(Vec<String>),
}

/// Pick the overload that fits `shape`. Arity (and argument names) first; if
/// several remain, prefer the one whose argument types best match the JSON
/// kinds given (number → numeric types, string → text-like, ...).
pub fn resolve<'c>(
    candidates: &'c [Candidate],
    shape: &Shape<'_>,
) -> Result<&'c Candidate, ResolveError> {
    let mut best: Vec<(&Candidate, u32)> = Vec::new();
    let mut reasons = Vec::new();
    for c in candidates {
        match fit(c, shape) {
            Ok(score) => best.push((c, score)),
            Err(reason) => reasons.push(format!("{}: {}", c.signature, reason)),
        }
    }
    let Some(top) = best.iter().map(|(_, s)| *s).max() else {
        return Err(ResolveError::NoMatch(reasons.join("; ")));
    };
    let winners: Vec<&Candidate> = best
        .iter()
        .filter(|(_, s)| *s == top)
        .map(|(c, _)| *c)
        .collect();
    if winners.len() == 1 {
        Ok(winners[0])
    } else {
        Err(ResolveError::Ambiguous(
            winners.iter().map(|c| c.signature.clone()).collect(),
        ))
    }
}

fn fit(c: &Candidate, shape: &Shape<'_>) -> Result<u32, String> {
    match shape {
        Shape::Positional(values) => {
            let n = values.len();
            let fixed = if c.variadic {
                c.args.len() - 1
            } else {
                c.args.len()
            };
            if n < c.required() {
                return Err(format!(
                    "needs at least {} argument(s), got {n}",
                    c.required()
                ));
            }
            if !c.variadic && n > c.args.len() {
                return Err(format!(
                    "takes at most {} argument(s), got {n}",
                    c.args.len()
                ));
            }
            let mut score = 1;
            for (i, raw) in values.iter().enumerate() {
                let arg = &c.args[i.min(c.args.len() - 1)];
                if arg.pseudo {
                    return Err(format!(
                        "argument {} has pseudo-type {}",
                        i + 1,
                        arg.type_sql
                    ));
                }
                // A value spread into a VARIADIC parameter is matched against
                // the element, which we only know as "array"; accept any kind.
                if c.variadic && i >= fixed {
                    continue;
                }
                score += kind_score(raw, arg.category).ok_or_else(|| {
                    format!(
                        "argument {} ({}) cannot take {}",
                        i + 1,
                        arg.type_sql,
                        kind_name(raw)
                    )
                })?;
            }
            Ok(score)
        }
        Shape::Named(names) => {
            for given in names.iter() {
                match c.args.iter().find(|a| a.name == *given) {
                    None => return Err(format!("has no argument named {given:?}")),
                    Some(a) if a.pseudo => {
                        return Err(format!("argument {given:?} has pseudo-type {}", a.type_sql))
                    }
                    Some(_) => {}
                }
            }
            for a in &c.args[..c.required()] {
                if a.name.is_empty() {
                    return Err("has unnamed arguments; call it with a positional array".into());
                }
                if !names.contains(&a.name.as_str()) {
                    return Err(format!("argument {:?} is required", a.name));
                }
            }
            Ok(1)
        }
    }
}

fn kind_name(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// How well a JSON value of this kind fits a type category: 3 natural,
/// 1 convertible, None impossible. Categories: A array, B bool, C composite,
/// D date/time, E enum, G geometric, I network, N numeric, S string,
/// T timespan, U user-defined (json, jsonb, uuid, bytea...), V bit string.
fn kind_score(raw: &str, category: u8) -> Option<u32> {
    let natural = match raw.as_bytes().first() {
        Some(b'n') => return Some(1), // null fits anything
        Some(b'"') => matches!(
            category,
            b'S' | b'D' | b'T' | b'E' | b'I' | b'V' | b'G' | b'U'
        ),
        Some(b't' | b'f') => category == b'B',
        Some(b'[') => category == b'A',
        Some(b'{') => category == b'C',
        _ => category == b'N',
    };
    if natural {
        return Some(3);
    }
    let convertible = match raw.as_bytes().first() {
        // "5" -> int, "true" -> bool, "(1,x)" -> composite, "{1,2}" -> array
        Some(b'"') => true,
        // numbers and booleans convert to text and json
        Some(b't' | b'f') | Some(b'-' | b'0'..=b'9') => matches!(category, b'S' | b'U'),
        Some(b'[') | Some(b'{') => category == b'U',
        _ => false,
    };
    convertible.then_some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(sig: &str, args: &[(&str, &str, u8)], n_defaults: usize, variadic: bool) -> Candidate {
        Candidate {
            oid: 1,
            schema: "public".into(),
            name: "f".into(),
            signature: sig.into(),
            args: args
                .iter()
                .map(|(n, t, c)| Arg {
                    name: n.to_string(),
                    type_sql: t.to_string(),
                    category: *c,
                    pseudo: false,
                    passing: Passing::Text,
                })
                .collect(),
            n_defaults,
            variadic,
            returns_void: false,
            returns_set: false,
            inlined_set: false,
        }
    }

    #[test]
    fn arity_and_defaults() {
        let cs = [cand(
            "f(integer,text)",
            &[("a", "integer", b'N'), ("b", "text", b'S')],
            1,
            false,
        )];
        assert!(resolve(&cs, &Shape::Positional(&["1"])).is_ok());
        assert!(resolve(&cs, &Shape::Positional(&["1", "\"x\""])).is_ok());
        assert!(
            matches!(resolve(&cs, &Shape::Positional(&[])), Err(ResolveError::NoMatch(m)) if m.contains("at least 1"))
        );
        assert!(
            matches!(resolve(&cs, &Shape::Positional(&["1", "2", "3"])), Err(ResolveError::NoMatch(m)) if m.contains("at most 2"))
        );
    }

    #[test]
    fn overloads_by_arity_then_kind() {
        let cs = [
            cand("f(integer)", &[("a", "integer", b'N')], 0, false),
            cand("f(text)", &[("a", "text", b'S')], 0, false),
            cand(
                "f(integer,integer)",
                &[("a", "integer", b'N'), ("b", "integer", b'N')],
                0,
                false,
            ),
        ];
        assert_eq!(
            resolve(&cs, &Shape::Positional(&["5"])).unwrap().signature,
            "f(integer)"
        );
        assert_eq!(
            resolve(&cs, &Shape::Positional(&["\"5\""]))
                .unwrap()
                .signature,
            "f(text)"
        );
        assert_eq!(
            resolve(&cs, &Shape::Positional(&["1", "2"]))
                .unwrap()
                .signature,
            "f(integer,integer)"
        );
        assert!(
            matches!(resolve(&cs, &Shape::Positional(&["null"])), Err(ResolveError::Ambiguous(v)) if v.len() == 2)
        );
    }

    #[test]
    fn named_arguments() {
        let cs = [cand(
            "f(integer,text)",
            &[("id", "integer", b'N'), ("label", "text", b'S')],
            1,
            false,
        )];
        assert!(resolve(&cs, &Shape::Named(&["id"])).is_ok());
        assert!(resolve(&cs, &Shape::Named(&["label", "id"])).is_ok());
        assert!(
            matches!(resolve(&cs, &Shape::Named(&["label"])), Err(ResolveError::NoMatch(m)) if m.contains("\"id\" is required"))
        );
        assert!(
            matches!(resolve(&cs, &Shape::Named(&["id", "nope"])), Err(ResolveError::NoMatch(m)) if m.contains("nope"))
        );
    }

    #[test]
    fn variadic_accepts_spread_or_array() {
        let cs = [cand(
            "f(text,integer[])",
            &[("p", "text", b'S'), ("xs", "integer[]", b'A')],
            0,
            true,
        )];
        assert!(resolve(&cs, &Shape::Positional(&["\"a\"", "[1,2]"])).is_ok());
        assert!(resolve(&cs, &Shape::Positional(&["\"a\"", "1", "2", "3"])).is_ok());
        assert!(resolve(&cs, &Shape::Positional(&["\"a\""])).is_err());
    }

    #[test]
    fn impossible_kinds_are_rejected() {
        let cs = [cand("f(integer)", &[("a", "integer", b'N')], 0, false)];
        assert!(
            matches!(resolve(&cs, &Shape::Positional(&["[1]"])), Err(ResolveError::NoMatch(m)) if m.contains("an array"))
        );
        // a string may still convert ("5" -> 5): PostgreSQL decides
        assert!(resolve(&cs, &Shape::Positional(&["\"5\""])).is_ok());
    }
}

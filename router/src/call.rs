//! `POST /call`: run one function of one database and answer its rows.
//!
//! The hot path is one pooled connection and one round trip. Each argument
//! travels as a parameter of its own in text format, cast to the type the
//! catalog gives (`f($1::integer, $2::text)`), so PostgreSQL's input
//! functions convert it as `json_to_record` would a JSON scalar; a call with
//! an argument only `json_to_record` can build (arrays, composites, VARIADIC)
//! sends the arguments as one JSON text parameter that PostgreSQL unpacks
//! with the argument types from the catalog (arrays, composites, enums,
//! domains, numerics of any precision...). PostgreSQL runs the function and
//! renders every row as JSON: the router never parses a value; it splices
//! PostgreSQL's JSON text into the response. Statements are prepared once per
//! connection and kept in a bounded cache (least recently used out). Session
//! state a function may leave behind (settings, temp tables, advisory locks,
//! LISTEN) is reset by the end of the same statement (the after-call
//! function), or, in databases deployed by older versions, by a reset
//! pipelined after it. Where the after-call function is current, connections
//! are shared between concurrent calls (`pool::Lease`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use futures_util::TryStreamExt;
use serde_json::value::RawValue;
use stonescriptdb_shared::names;
use stonescriptdb_shared::wire::CallRequest;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

use crate::catalog::{self, Candidate, Passing, ResolveError, Shape};
use crate::control::Control;
use crate::error::RouterError;
use crate::pool::{DbPool, Lease, Pools};

/// Settings a function may have changed (`SET`, `set_config(..., false)`)
/// and the session's sequence cache (`currval`/`lastval`) are reset by this
/// batch, pipelined right behind every call so it costs no extra round trip. Session advisory locks are released inside the call
/// statement itself (see [`build`]), which also reports whether the session
/// has used temporary tables or LISTEN.
const RESET_SETTINGS: &str = "RESET ALL; DISCARD SEQUENCES";

/// Everything else a function can leave in a session. Run after a failed call
/// (advisory locks survive a rollback) and after calls on a session that has
/// used temporary tables or LISTEN.
const CLEAN_SESSION: &str =
    "RESET ALL; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; UNLISTEN *";

/// The schema an unqualified function name resolves in.
const DEFAULT_SCHEMA: &str = "public";

/// Handle a parsed `/call` body; returns the JSON response body.
pub async fn call(
    pools: &Arc<Pools>,
    control: &Control,
    body: &[u8],
    authorize: impl FnOnce(&str) -> Result<(), RouterError>,
) -> Result<Vec<u8>, RouterError> {
    let req: CallRequest = stonescriptdb_shared::request::parse_json(body, "/call")
        .map_err(RouterError::BadRequest)?;
    authorize(&req.platform)?;
    let database = database_name(&req)?;
    let (schema, fname) = names::validate_function_name(&req.function)
        .map_err(|e| RouterError::BadRequest(e.to_string()))?;
    let schema = schema.unwrap_or(DEFAULT_SCHEMA);
    let args = Args::parse(req.params)?;

    // Who owns the database is the catalog's to say (cached with the pool);
    // a database of another platform answers exactly like a missing one.
    let db =
        match pools.get(&database) {
            Some(db) => db,
            None => {
                let route = control.lookup(&database).await?.ok_or_else(|| {
                    RouterError::DatabaseNotFound {
                        database: database.clone(),
                    }
                })?;
                pools.pool_for(&database, &route)
            }
        };
    if db.route.platform != req.platform {
        return Err(RouterError::DatabaseNotFound { database });
    }
    let call = Call {
        pools,
        database: &database,
        key: &req.function,
        schema,
        fname,
        args: &args,
    };
    match call.attempt(&db).await {
        // A statement planned before the database changed under it (DDL by
        // hand, a missed notification): fresh connections, once.
        Err(RunError::Plan(_)) => {
            pools.invalidate(&database);
            let fresh = pools.pool_for(&database, &db.route);
            call.attempt(&fresh).await.map_err(RunError::into_inner)
        }
        other => other.map_err(RunError::into_inner),
    }
}

/// One `/call`, tried on a database's pool.
struct Call<'a> {
    pools: &'a Arc<Pools>,
    database: &'a str,
    key: &'a str,
    schema: &'a str,
    fname: &'a str,
    args: &'a Args<'a>,
}

impl Call<'_> {
    async fn attempt(&self, db: &Arc<DbPool>) -> Result<Vec<u8>, RunError> {
        let cached = db.functions.get(self.key);
        let cost_us = cached
            .as_ref()
            .and_then(|c| c.cost_us.get())
            .unwrap_or(u64::MAX);
        let asked = std::time::Instant::now();
        let leased = self.pools.lease(db, self.database, cost_us).await;
        self.pools.wait.observe(asked.elapsed());
        let mut conn = leased.map_err(RunError::Final)?;
        let result = self.attempt_on(db, &conn, cached).await;
        // Reached only when the call was not abandoned (see `Lease`).
        conn.done();
        result
    }

    async fn attempt_on(
        &self,
        db: &Arc<DbPool>,
        conn: &Lease,
        cached: Option<Arc<catalog::Cached>>,
    ) -> Result<Vec<u8>, RunError> {
        let ctx = Ctx {
            db,
            conn,
            database: self.database,
            key: self.key,
            schema: self.schema,
            fname: self.fname,
            args: self.args,
        };
        let fresh = cached.is_none();
        let candidates = match &cached {
            Some(c) => c.candidates.clone(),
            None => ctx.reload().await.map_err(RunError::Final)?,
        };
        match ctx.run(&candidates).await {
            Ok(body) => {
                // Time calls on shared connections: it decides what may share.
                // (Not the first call of a name: it also read the catalog.)
                if let (Some(used), Some(entry)) = (conn.lane(), &cached) {
                    entry.cost_us.record(used.cost_us());
                }
                Ok(body)
            }
            // A cached signature may be stale (the function was replaced since):
            // re-read the catalog and, if it changed, try once more.
            Err(RunError::Stale(e)) | Err(RunError::Resolve(e)) if !fresh => {
                let reloaded = ctx.reload().await.map_err(RunError::Final)?;
                if reloaded == candidates {
                    return Err(RunError::Final(e));
                }
                conn.statements.clear();
                ctx.run(&reloaded).await
            }
            Err(e) => Err(e),
        }
    }
}

fn database_name(req: &CallRequest<'_>) -> Result<String, RouterError> {
    names::call_database(
        &req.platform,
        req.tenant_id.as_deref(),
        req.database.as_deref(),
        req.schema_name.as_deref(),
        req.uuid.as_deref(),
    )
    .map_err(RouterError::BadRequest)
}

/// Deepest nesting of arrays/objects accepted in `params`.
const MAX_PARAMS_DEPTH: usize = 64;

/// Nesting depth of a JSON text (arrays and objects), ignoring brackets
/// inside strings. Linear, no allocation.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The call's arguments, still raw JSON.
enum Args<'a> {
    Positional(Vec<&'a str>),
    Named(BTreeMap<&'a str, &'a str>, &'a str),
}

impl<'a> Args<'a> {
    fn parse(params: Option<&'a RawValue>) -> Result<Self, RouterError> {
        let Some(raw) = params else {
            return Ok(Self::Positional(Vec::new()));
        };
        let text = raw.get();
        if json_depth(text) > MAX_PARAMS_DEPTH {
            return Err(RouterError::BadRequest(format!(
                "params are nested deeper than {MAX_PARAMS_DEPTH} levels"
            )));
        }
        match text.as_bytes().first() {
            Some(b'[') => {
                let items: Vec<&'a RawValue> = serde_json::from_str(text)
                    .map_err(|e| RouterError::BadRequest(format!("invalid params: {e}")))?;
                Ok(Self::Positional(
                    items.into_iter().map(RawValue::get).collect(),
                ))
            }
            Some(b'{') => {
                let NamedArgs { map, repeated } = serde_json::from_str(text).map_err(|e| {
                    RouterError::BadRequest(format!(
                        "invalid params: {e} (argument names must be plain strings without escapes)"
                    ))
                })?;
                if let Some(name) = repeated {
                    return Err(RouterError::BadRequest(format!(
                        "params names argument {name:?} more than once; give each named argument once"
                    )));
                }
                if map.is_empty() {
                    return Ok(Self::Positional(Vec::new()));
                }
                Ok(Self::Named(
                    map.into_iter().map(|(k, v)| (k, v.get())).collect(),
                    text,
                ))
            }
            Some(b'n') => Ok(Self::Positional(Vec::new())),
            _ => Err(RouterError::BadRequest(
                "params must be an array of positional arguments or an object of named arguments"
                    .into(),
            )),
        }
    }
}

/// The object form of `params`, read once: its names borrowed from the
/// body, and the first name given twice (a JSON object may repeat a key;
/// which value would win is a guess no caller should rely on). Values stay
/// raw JSON: a `json`/`jsonb` argument is passed exactly as given.
struct NamedArgs<'a> {
    map: BTreeMap<&'a str, &'a RawValue>,
    repeated: Option<&'a str>,
}

impl<'de> serde::Deserialize<'de> for NamedArgs<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = NamedArgs<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of named arguments")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = NamedArgs {
                    map: BTreeMap::new(),
                    repeated: None,
                };
                while let Some((k, v)) = m.next_entry::<&'de str, &'de RawValue>()? {
                    if out.map.insert(k, v).is_some() && out.repeated.is_none() {
                        out.repeated = Some(k);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Visit)
    }
}

struct Ctx<'a> {
    db: &'a DbPool,
    conn: &'a Lease,
    database: &'a str,
    key: &'a str,
    schema: &'a str,
    fname: &'a str,
    args: &'a Args<'a>,
}

enum RunError {
    /// Might be caused by a stale cached signature.
    Stale(RouterError),
    /// A prepared statement (or a session's cached plan) outlived the
    /// tables it reads: another connection answers correctly.
    Plan(RouterError),
    /// No cached overload fits (a new overload may exist).
    Resolve(RouterError),
    Final(RouterError),
}

impl RunError {
    fn into_inner(self) -> RouterError {
        match self {
            Self::Stale(e) | Self::Plan(e) | Self::Resolve(e) | Self::Final(e) => e,
        }
    }
}

impl Ctx<'_> {
    async fn reload(&self) -> Result<Arc<Vec<Candidate>>, RouterError> {
        let found = catalog::lookup(&self.conn.client, self.schema, self.fname)
            .await
            .map_err(|e| RouterError::from_pg(self.database, None, &e))?;
        let found = Arc::new(found);
        self.db.functions.put(self.key, found.clone());
        Ok(found)
    }

    fn not_found(&self) -> RouterError {
        RouterError::FunctionNotFound {
            database: self.database.to_owned(),
            message: format!(
                "function {}.{} does not exist in database {}",
                self.schema, self.fname, self.database
            ),
        }
    }

    /// No function by that name: a procedure by that name is not callable
    /// (400 saying what to do), anything else is not found (404).
    async fn missing(&self) -> RouterError {
        match catalog::procedure(&self.conn.client, self.schema, self.fname).await {
            Ok(Some(signature)) => RouterError::NotCallable {
                database: self.database.to_owned(),
                message: format!(
                    "{signature} is a procedure, not a function: /call runs functions (SELECT * FROM f(...)), a procedure runs only with CALL. A function may CALL it (e.g. a PL/pgSQL function whose body runs CALL {}.{}(...)), or define it as a function",
                    self.schema, self.fname
                ),
            },
            _ => self.not_found(),
        }
    }

    async fn run(&self, candidates: &[Candidate]) -> Result<Vec<u8>, RunError> {
        if candidates.is_empty() {
            return Err(RunError::Resolve(self.missing().await));
        }
        let names: Vec<&str>;
        let shape = match self.args {
            Args::Positional(v) => Shape::Positional(v),
            Args::Named(m, _) => {
                names = m.keys().copied().collect();
                Shape::Named(&names)
            }
        };
        let cand = catalog::resolve(candidates, &shape).map_err(|e| {
            let err = match e {
                ResolveError::NoMatch(why) => RouterError::BadRequest(format!(
                    "no overload of {}.{} accepts these arguments: {why}",
                    self.schema, self.fname
                )),
                ResolveError::Ambiguous(list) => RouterError::Ambiguous {
                    message: format!(
                        "call of {}.{} is ambiguous: {} overloads fit; pass arguments whose JSON types tell them apart, or use named arguments",
                        self.schema,
                        self.fname,
                        list.len()
                    ),
                    candidates: list,
                },
            };
            RunError::Resolve(err)
        })?;
        let after = if self.conn.after_call_fn {
            AFTER_CALL_FN
        } else {
            AFTER_CALL
        };
        let (sql, params) = build(cand, self.args, after);
        let client = &self.conn.client;
        let stmt = match self.conn.statements.get(&sql) {
            Some(stmt) => stmt,
            None => {
                let stmt = client
                    .prepare(&sql)
                    .await
                    .map_err(|e| self.classify(cand, &e))?;
                self.conn.statements.put(sql, stmt.clone());
                stmt
            }
        };
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let params = refs.as_slice();
        // With the database's after-call function, the cleanup is part of
        // the call statement: one round trip, one statement.
        let (result, reset) = if self.conn.after_call_fn {
            (one_row(client, &stmt, params).await, Ok(()))
        } else {
            tokio::join!(
                one_row(client, &stmt, params),
                client.batch_execute(RESET_SETTINGS)
            )
        };
        let row = match result {
            Ok(Some(row)) => row,
            failed => {
                // Best effort: a broken connection is discarded by the pool anyway.
                let _ = client.batch_execute(CLEAN_SESSION).await;
                return Err(match failed {
                    Err(e) => self.classify(cand, &e),
                    // The statement of a function that returned no set met
                    // one that does (replaced by hand since): read the
                    // catalog again.
                    Ok(_) => RunError::Stale(RouterError::Internal(format!(
                        "{} answered another number of rows than its catalog entry says",
                        cand.signature
                    ))),
                });
            }
        };
        reset.map_err(|e| RunError::Final(RouterError::from_pg(self.database, None, &e)))?;
        let dirty: bool = row.get(3);
        if dirty {
            client
                .batch_execute(CLEAN_SESSION)
                .await
                .map_err(|e| RunError::Final(RouterError::from_pg(self.database, None, &e)))?;
        }
        let rows: Option<&str> = row.get(0);
        let count: i64 = row.get(1);
        let rows = rows.unwrap_or("");
        let mut out = Vec::with_capacity(rows.len() + 40);
        out.extend_from_slice(b"{\"rows\":[");
        out.extend_from_slice(rows.as_bytes());
        out.extend_from_slice(b"],\"row_count\":");
        out.extend_from_slice(count.to_string().as_bytes());
        out.push(b'}');
        Ok(out)
    }

    fn classify(&self, cand: &Candidate, e: &tokio_postgres::Error) -> RunError {
        let err = RouterError::from_pg(self.database, Some(&cand.signature), e);
        if stale_plan(e) {
            return RunError::Plan(err);
        }
        match e.code() {
            Some(c)
                if *c == SqlState::UNDEFINED_FUNCTION
                    || *c == SqlState::AMBIGUOUS_FUNCTION
                    || *c == SqlState::DATATYPE_MISMATCH
                    || *c == SqlState::UNDEFINED_OBJECT
                    || *c == SqlState::FEATURE_NOT_SUPPORTED
                    || *c == SqlState::CANNOT_COERCE
                    || *c == SqlState::INVALID_SQL_STATEMENT_NAME =>
            {
                RunError::Stale(err)
            }
            _ => RunError::Final(err),
        }
    }
}

/// The one row of a call statement, or None when it answered another number
/// of rows (only a statement written for a function that returns no set can,
/// once the function is replaced by one that does).
async fn one_row(
    client: &tokio_postgres::Client,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    let mut rows = std::pin::pin!(client.query_raw(stmt, params.iter().copied()).await?);
    let mut first = None;
    while let Some(row) = rows.try_next().await? {
        if first.is_some() {
            return Ok(None);
        }
        first = Some(row);
    }
    Ok(first)
}

/// Errors PostgreSQL raises when a statement (or a session's cached plan of
/// a function) was planned for a row type that changed since: DDL the
/// router was not told about. A fresh connection plans it again.
fn stale_plan(e: &tokio_postgres::Error) -> bool {
    let Some(db) = e.as_db_error() else {
        return false;
    };
    let m = db.message();
    match db.code().code() {
        "0A000" => m.contains("cached plan must not change result type"),
        "42703" => m.contains("has been dropped"),
        "42804" => m.contains("of type record has wrong type") || m.contains("has wrong type"),
        "XX000" => m.starts_with("cache lookup failed for"),
        _ => false,
    }
}

/// A parameter sent in text format, whatever its type: PostgreSQL's input
/// function of the type reads it. `None` is NULL. One per argument, or the
/// single JSON text of the JSON way.
#[derive(Debug)]
struct TextParam<'a>(Option<Cow<'a, str>>);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(v) => {
                out.extend_from_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// The statement for one call form of `cand`, and its parameters: one per
/// argument, or one JSON text for them all (the JSON way).
fn build<'a>(cand: &Candidate, args: &Args<'a>, after: &str) -> (String, Vec<TextParam<'a>>) {
    match text_args(cand, args) {
        Some((call_args, params)) => (statement(cand, &call_args, None, after), params),
        None => {
            let (sql, param) = build_json(cand, args, after);
            let params = param
                .map(|p| TextParam(Some(Cow::Owned(p))))
                .into_iter()
                .collect();
            (sql, params)
        }
    }
}

/// The call's arguments as `$n::type` parameters in text format, or None
/// when one of them must go the JSON way (see [`Passing`]).
fn text_args<'a>(cand: &Candidate, args: &Args<'a>) -> Option<(String, Vec<TextParam<'a>>)> {
    let mut call_args = String::new();
    let mut params = Vec::new();
    let mut push = |arg: &catalog::Arg, name: Option<&str>, raw: &'a str| -> Option<()> {
        let value = text_value(arg.passing, raw)?;
        if !params.is_empty() {
            call_args.push_str(", ");
        }
        if let Some(n) = name {
            let _ = write!(call_args, "{} => ", names::quote_ident(n));
        }
        params.push(TextParam(value));
        let _ = write!(call_args, "${}::{}", params.len(), arg.type_sql);
        Some(())
    };
    match args {
        Args::Positional(values) if values.is_empty() => {}
        _ if cand.variadic || cand.inlined_set => return None,
        Args::Positional(values) => {
            for (arg, raw) in cand.args.iter().zip(values) {
                push(arg, None, raw)?;
            }
        }
        Args::Named(map, _) => {
            for (name, raw) in map {
                let arg = cand.args.iter().find(|a| a.name == *name)?;
                push(arg, Some(name), raw)?;
            }
        }
    }
    Some((call_args, params))
}

/// What `json_to_record` would hand an argument's input function, as text:
/// `Some(None)` for NULL, None when the value must go the JSON way.
fn text_value(passing: Passing, raw: &str) -> Option<Option<Cow<'_, str>>> {
    if raw == "null" {
        return Some(None);
    }
    match passing {
        Passing::Structured => None,
        // json_to_record re-escapes a JSON string for json/jsonb, which may
        // spell its escapes otherwise: those go the JSON way.
        Passing::Json if raw.starts_with('"') && raw.contains('\\') => None,
        Passing::Json => Some(Some(Cow::Borrowed(raw))),
        Passing::Text if raw.starts_with('"') => {
            let s = match serde_json::from_str::<&str>(raw) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(serde_json::from_str::<String>(raw).ok()?),
            };
            // a NUL cannot travel in text; json_to_record refuses it its own way
            (!s.contains('\0')).then_some(Some(s))
        }
        Passing::Text => Some(Some(Cow::Borrowed(raw))),
    }
}

/// The call statement of `cand` with `call_args`; `record` is the
/// `json_to_record` column list when the arguments travel as JSON.
fn statement(cand: &Candidate, call_args: &str, record: Option<&str>, after: &str) -> String {
    let func = format!(
        "{}.{}",
        names::quote_ident(&cand.schema),
        names::quote_ident(&cand.name)
    );
    // A void result is one null, whatever the language (PL/pgSQL's void
    // renders as ""). The cast keeps the statement honest: once the
    // function returns something else, it fails and the catalog is re-read.
    let rows = if cand.returns_void {
        format!(
            "SELECT NULL::text AS {} FROM {func}({call_args}) AS _sdg_v(_sdg_void) WHERE _sdg_v._sdg_void::pg_catalog.void IS NULL OR true",
            names::quote_ident(&cand.name)
        )
    } else {
        format!("SELECT * FROM {func}({call_args})")
    };
    // A set is aggregated into one row, so that `after` runs once, when the
    // last row is rendered. A function that returns no set answers exactly one
    // row, rendered in the statement's own select list ahead of `after`:
    // PostgreSQL runs a function in FROM to completion before it projects a
    // row, and evaluates a select list in order, so the row is rendered with
    // the settings the function left and `after` resets them only then. (The
    // aggregate costs PostgreSQL some 2 µs a call: docs/BENCHMARKS.md.)
    let select = if cand.returns_set {
        "string_agg(row_to_json(_sdg_r)::text, ','), count(*)"
    } else {
        "row_to_json(_sdg_r)::text, 1::int8"
    };
    match record {
        None => format!("SELECT {select}, {after} FROM ({rows}) AS _sdg_r"),
        Some(cols) => format!(
            "SELECT {select}, {after} \
             FROM json_to_record($1::text::json) AS _sdg_a({cols}), \
             LATERAL ({rows}) AS _sdg_r"
        ),
    }
}

/// The JSON way: the statement for one call form of `cand`, and its single JSON parameter.
///
/// ```sql
/// SELECT string_agg(row_to_json(_sdg_r)::text, ','), count(*), <AFTER>
/// FROM json_to_record($1::text::json) AS _sdg_a("1" integer, "2" text[]),
///      LATERAL (SELECT * FROM "public"."fn"(_sdg_a."1", _sdg_a."2")) AS _sdg_r
/// ```
///
/// (`SELECT row_to_json(_sdg_r)::text, 1::int8, <AFTER>` for a function that
/// returns no set.) `<AFTER>` ([`AFTER_CALL`], [`AFTER_CALL_FN`]) is
/// evaluated after the function ran and its rows were rendered: it releases
/// session advisory locks and resets the session, or says whether the
/// session now holds temp tables or LISTEN registrations.
fn build_json(cand: &Candidate, args: &Args<'_>, after: &str) -> (String, Option<String>) {
    let mut cols = String::new();
    let mut call_args = String::new();
    let param = match args {
        Args::Positional(values) if values.is_empty() => None,
        Args::Positional(values) => {
            let fixed = if cand.variadic {
                cand.args.len() - 1
            } else {
                values.len()
            };
            let mut obj =
                String::with_capacity(values.iter().map(|v| v.len() + 8).sum::<usize>() + 2);
            obj.push('{');
            for (i, v) in values.iter().take(fixed).enumerate() {
                push_arg(
                    &mut cols,
                    &mut call_args,
                    &mut obj,
                    i,
                    &cand.args[i].type_sql,
                    v,
                    false,
                );
            }
            if cand.variadic {
                let rest = &values[fixed..];
                let last = cand.args.len() - 1;
                let value = if rest.len() == 1 && rest[0].starts_with('[') {
                    rest[0].to_owned()
                } else {
                    format!("[{}]", rest.join(","))
                };
                push_arg(
                    &mut cols,
                    &mut call_args,
                    &mut obj,
                    last,
                    &cand.args[last].type_sql,
                    &value,
                    true,
                );
            }
            obj.push('}');
            Some(obj)
        }
        Args::Named(map, raw) => {
            for (i, name) in map.keys().enumerate() {
                let arg = cand
                    .args
                    .iter()
                    .find(|a| a.name == *name)
                    .expect("resolved by name");
                let q = names::quote_ident(name);
                if i > 0 {
                    cols.push_str(", ");
                    call_args.push_str(", ");
                }
                let _ = write!(cols, "{q} {}", arg.type_sql);
                let _ = write!(call_args, "{q} => _sdg_a.{q}");
            }
            Some((*raw).to_owned())
        }
    };
    let record = param.as_ref().map(|_| cols.as_str());
    let sql = statement(cand, &call_args, record, after);
    (sql, param)
}

/// Output columns 2 and 3 of every call statement; see [`build`].
/// (Two columns: the void of the unlock, then the flag.)
const AFTER_CALL: &str = "pg_advisory_unlock_all(), \
     pg_my_temp_schema() <> 0 OR EXISTS (SELECT FROM pg_listening_channels())";

/// [`AFTER_CALL`] in databases with the current after-call function
/// (`names::AFTER_CALL_FUNCTION`, a version of
/// `names::AFTER_CALL_CLEAN_VERSIONS`): advisory locks are released by the
/// statement itself, and the function resets settings, sequences, LISTEN
/// and temp tables and returns false, so no reset statement follows the
/// call.
const AFTER_CALL_FN: &str = "pg_advisory_unlock_all(), public._stonescriptdb_gateway_after_call()";

fn push_arg(
    cols: &mut String,
    call_args: &mut String,
    obj: &mut String,
    i: usize,
    type_sql: &str,
    value: &str,
    variadic: bool,
) {
    if i > 0 {
        cols.push_str(", ");
        call_args.push_str(", ");
        obj.push(',');
    }
    let n = i + 1;
    let _ = write!(cols, "\"{n}\" {type_sql}");
    let _ = write!(
        call_args,
        "{}_sdg_a.\"{n}\"",
        if variadic { "VARIADIC " } else { "" }
    );
    let _ = write!(obj, "\"{n}\":{value}");
}

/// Everything `/call` does with a body before touching a database, against
/// a fixed set of overloads: for the property tests in `fuzz`.
#[cfg(test)]
pub fn fuzz_entry(body: &[u8]) {
    use crate::catalog::Arg;
    let Ok(req) = serde_json::from_slice::<CallRequest>(body) else {
        return;
    };
    let _ = database_name(&req);
    if names::validate_function_name(&req.function).is_err() {
        return;
    }
    let Ok(args) = Args::parse(req.params) else {
        return;
    };
    let arg = |name: &str, ty: &str, cat: u8| Arg {
        name: name.into(),
        type_sql: ty.into(),
        category: cat,
        pseudo: false,
        passing: if cat == b'A' {
            Passing::Structured
        } else {
            Passing::Text
        },
    };
    let candidates = vec![
        Candidate {
            oid: 1,
            schema: "public".into(),
            name: "f".into(),
            signature: "f(integer,text)".into(),
            args: vec![arg("a", "integer", b'N'), arg("b", "text", b'S')],
            n_defaults: 1,
            variadic: false,
            returns_void: false,
            returns_set: true,
            inlined_set: false,
        },
        Candidate {
            oid: 2,
            schema: "public".into(),
            name: "f".into(),
            signature: "f(text,integer[])".into(),
            args: vec![arg("a", "text", b'S'), arg("xs", "integer[]", b'A')],
            n_defaults: 0,
            variadic: true,
            returns_void: false,
            returns_set: false,
            inlined_set: false,
        },
        Candidate {
            oid: 3,
            schema: "public".into(),
            name: "f".into(),
            signature: "f()".into(),
            args: vec![],
            n_defaults: 0,
            variadic: false,
            returns_void: true,
            returns_set: false,
            inlined_set: false,
        },
    ];
    let names_vec: Vec<&str>;
    let shape = match &args {
        Args::Positional(v) => Shape::Positional(v),
        Args::Named(m, _) => {
            names_vec = m.keys().copied().collect();
            Shape::Named(&names_vec)
        }
    };
    if let Ok(c) = catalog::resolve(&candidates, &shape) {
        let (sql, params) = build(c, &args, AFTER_CALL);
        let select = if c.returns_set {
            "SELECT string_agg("
        } else {
            "SELECT row_to_json("
        };
        assert!(sql.starts_with(select), "{sql}");
        if sql.contains("json_to_record") {
            // the JSON way: one parameter, always valid JSON
            assert_eq!(params.len(), 1, "{sql}");
            let p = params[0].0.as_deref().unwrap();
            assert!(serde_json::from_str::<serde_json::Value>(p).is_ok(), "{p}");
        } else {
            // one parameter per argument, each placeholder in the statement
            for n in 1..=params.len() {
                assert!(sql.contains(&format!("${n}::")), "{sql}");
            }
            assert!(!sql.contains(&format!("${}::", params.len() + 1)), "{sql}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Arg;

    fn cand(args: &[(&str, &str)], variadic: bool) -> Candidate {
        Candidate {
            oid: 1,
            schema: "public".into(),
            name: "get_user".into(),
            signature: "public.get_user()".into(),
            args: args
                .iter()
                .map(|(n, t)| Arg {
                    name: n.to_string(),
                    type_sql: t.to_string(),
                    category: b'S',
                    pseudo: false,
                    passing: match *t {
                        "jsonb" | "json" => Passing::Json,
                        t if t.ends_with("[]") => Passing::Structured,
                        _ => Passing::Text,
                    },
                })
                .collect(),
            n_defaults: 0,
            variadic,
            returns_void: false,
            returns_set: false,
            inlined_set: false,
        }
    }

    #[test]
    fn positional_values_are_bound_not_spliced() {
        let c = cand(&[("id", "integer"), ("tag", "text")], false);
        let evil = r#""x'); DROP TABLE users; --""#;
        let (sql, param) = build_json(&c, &Args::Positional(vec!["1", evil]), AFTER_CALL);
        assert!(!sql.contains("DROP"), "{sql}");
        assert!(sql.contains(r#"_sdg_a("1" integer, "2" text)"#), "{sql}");
        assert!(
            sql.contains(r#""public"."get_user"(_sdg_a."1", _sdg_a."2")"#),
            "{sql}"
        );
        assert_eq!(param.unwrap(), format!(r#"{{"1":1,"2":{evil}}}"#));
    }

    #[test]
    fn the_statement_calls_the_function_the_migrator_installs() {
        assert!(AFTER_CALL_FN.ends_with(names::AFTER_CALL_FUNCTION));
    }

    #[test]
    fn json_depth_ignores_brackets_in_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth("[1,[2,{\"a\":[3]}]]"), 4);
        assert_eq!(json_depth("[\"[[[[\\\"]]\"]"), 1);
        assert_eq!(json_depth(&"[".repeat(100)), 100);
    }

    #[test]
    fn no_args_has_no_parameter() {
        let (sql, params) = build(&cand(&[], false), &Args::Positional(vec![]), AFTER_CALL);
        assert!(params.is_empty());
        assert!(sql.contains(r#"FROM "public"."get_user"()"#), "{sql}");
    }

    #[test]
    fn named_args_use_named_notation() {
        let c = cand(&[("id", "integer"), ("tag", "text")], false);
        let raw = r#"{"tag":"a","id":1}"#;
        let map: BTreeMap<&str, &str> = [("tag", "\"a\""), ("id", "1")].into_iter().collect();
        let (sql, param) = build_json(&c, &Args::Named(map, raw), AFTER_CALL);
        assert!(
            sql.contains(r#""id" => _sdg_a."id", "tag" => _sdg_a."tag""#),
            "{sql}"
        );
        assert_eq!(param.unwrap(), raw);
    }

    #[test]
    fn variadic_spread_is_packed_into_an_array() {
        let c = cand(&[("p", "text"), ("xs", "integer[]")], true);
        let (sql, params) = build(&c, &Args::Positional(vec!["\"a\"", "1", "2"]), AFTER_CALL);
        assert!(sql.contains(r#"VARIADIC _sdg_a."2""#), "{sql}");
        assert_eq!(json_param(&sql, params), r#"{"1":"a","2":[1,2]}"#);
        let (_, param) = build_json(&c, &Args::Positional(vec!["\"a\"", "[3,4]"]), AFTER_CALL);
        assert_eq!(param.unwrap(), r#"{"1":"a","2":[3,4]}"#);
    }

    /// The text-way parameters' values (the statement must not go the JSON way).
    fn texts(sql: &str, params: Vec<TextParam<'_>>) -> Vec<Option<String>> {
        assert!(!sql.contains("json_to_record"), "went the JSON way: {sql}");
        params
            .into_iter()
            .map(|p| p.0.map(Cow::into_owned))
            .collect()
    }

    /// The JSON way's one parameter.
    fn json_param(sql: &str, params: Vec<TextParam<'_>>) -> String {
        assert!(sql.contains("json_to_record"), "went the text way: {sql}");
        match <[_; 1]>::try_from(params) {
            Ok([TextParam(Some(p))]) => p.into_owned(),
            other => panic!("not one JSON parameter: {other:?}"),
        }
    }

    #[test]
    fn scalar_arguments_are_text_parameters_of_the_declared_types() {
        let c = cand(
            &[("id", "integer"), ("tag", "text"), ("meta", "jsonb")],
            false,
        );
        let evil = r#""x'); DROP TABLE users; --""#;
        let (sql, params) = build(
            &c,
            &Args::Positional(vec!["1", evil, "{\"a\": [1]}"]),
            AFTER_CALL,
        );
        assert!(
            !sql.contains("DROP") && !sql.contains("json_to_record"),
            "{sql}"
        );
        assert!(
            sql.contains(r#"FROM "public"."get_user"($1::integer, $2::text, $3::jsonb)"#),
            "{sql}"
        );
        let v = texts(&sql, params);
        assert_eq!(v[0].as_deref(), Some("1"));
        assert_eq!(v[1].as_deref(), Some("x'); DROP TABLE users; --"));
        assert_eq!(v[2].as_deref(), Some("{\"a\": [1]}"));
    }

    #[test]
    fn text_values_are_what_json_to_record_would_read() {
        let t = |raw| text_value(Passing::Text, raw);
        assert_eq!(t("null"), Some(None));
        assert_eq!(t("12.50"), Some(Some("12.50".into())));
        assert_eq!(t("true"), Some(Some("true".into())));
        assert_eq!(t(r#""a\"b\u00e9""#), Some(Some("a\"bé".into())));
        // an object for a text argument: its JSON text
        assert_eq!(t(r#"{"k":1}"#), Some(Some(r#"{"k":1}"#.into())));
        // a NUL cannot be a text parameter
        assert_eq!(t(r#""a\u0000b""#), None);
        let j = |raw| text_value(Passing::Json, raw);
        assert_eq!(j(r#""plain""#), Some(Some(r#""plain""#.into())));
        assert_eq!(
            j(r#""\u00e9""#),
            None,
            "escapes are the JSON way's to spell"
        );
        assert_eq!(j("null"), Some(None));
        assert_eq!(text_value(Passing::Structured, "[1]"), None);
        assert_eq!(text_value(Passing::Structured, "null"), Some(None));
    }

    #[test]
    fn arrays_composites_and_variadic_go_the_json_way() {
        let c = cand(&[("id", "integer"), ("tags", "text[]")], false);
        let (sql, params) = build(&c, &Args::Positional(vec!["1", r#"["a"]"#]), AFTER_CALL);
        assert_eq!(json_param(&sql, params), r#"{"1":1,"2":["a"]}"#);
        // unless the array argument is null
        let (sql, params) = build(&c, &Args::Positional(vec!["1", "null"]), AFTER_CALL);
        assert_eq!(texts(&sql, params), [Some("1".to_string()), None]);
        let v = cand(&[("p", "text"), ("xs", "integer[]")], true);
        let (sql, params) = build(&v, &Args::Positional(vec!["\"a\""]), AFTER_CALL);
        json_param(&sql, params);
    }

    #[test]
    fn named_scalar_arguments_are_named_parameters() {
        let c = cand(&[("id", "integer"), ("tag", "text")], false);
        let raw = r#"{"tag":"a","id":1}"#;
        let map: BTreeMap<&str, &str> = [("tag", "\"a\""), ("id", "1")].into_iter().collect();
        let (sql, params) = build(&c, &Args::Named(map, raw), AFTER_CALL);
        assert!(
            sql.contains(r#"("id" => $1::integer, "tag" => $2::text)"#),
            "{sql}"
        );
        assert_eq!(
            texts(&sql, params),
            [Some("1".to_string()), Some("a".to_string())]
        );
    }
}

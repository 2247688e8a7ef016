//! `GET /platform/{platform}/functions`: the functions `/call` can reach
//! in one of the platform's databases, with their signatures — what a
//! client code generator or an IDE needs. The database is addressed as
//! `/call` addresses it (`tenant_id`, `database`, or `schema_name` with
//! `uuid`; none: `{platform}_main`), and the functions are read with
//! [`stonescriptdb_shared::callable::FUNCTIONS_SQL`], built on the filter
//! the router's lookup uses, so a listed function is one `/call` resolves.

use stonescriptdb_shared::callable::FUNCTIONS_SQL;
use stonescriptdb_shared::catalog::DbKind;
use stonescriptdb_shared::names;
use stonescriptdb_shared::wire::{
    ArgMode, FunctionArgument, FunctionColumn, FunctionInfo, FunctionsResponse,
};

use crate::error::{pg_message, MigratorError};
use crate::state::{json, Answer, Req, State};

/// One argument as [`FUNCTIONS_SQL`] renders it.
#[derive(serde::Deserialize)]
struct RawArg {
    name: Option<String>,
    #[serde(rename = "type")]
    type_name: String,
    mode: ArgMode,
    default: Option<String>,
}

pub async fn functions(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let platform = r.path_platform()?.to_owned();
    let (tenant_id, database) = (r.query("tenant_id"), r.query("database"));
    let (schema_name, uuid) = (r.query("schema_name"), r.query("uuid"));
    let name = names::call_database(
        &platform,
        tenant_id.as_deref(),
        database.as_deref(),
        schema_name.as_deref(),
        uuid.as_deref(),
    )
    .map_err(MigratorError::BadRequest)?;
    r.grant.may(&platform)?;
    let callable: Vec<DbKind> = DbKind::ALL
        .iter()
        .copied()
        .filter(|k| k.callable())
        .collect();
    // another platform's database answers like a missing one
    crate::provision::owned(state, &platform, &name, &callable).await?;
    let client = state.admin.connect(Some(&name)).await?;
    let rows = client
        .query(FUNCTIONS_SQL, &[])
        .await
        .map_err(|e| MigratorError::DatabaseUnavailable(format!("{name}: {}", pg_message(&e))))?;
    let mut functions = Vec::with_capacity(rows.len());
    for row in rows {
        let args: Vec<RawArg> = serde_json::from_str(row.get(7)).map_err(|e| {
            MigratorError::Internal(format!(
                "reading the arguments of {}: {e}",
                row.get::<_, &str>(2)
            ))
        })?;
        functions.push(FunctionInfo {
            schema: row.get(0),
            name: row.get(1),
            signature: row.get(2),
            returns: row.get(3),
            returns_set: row.get(4),
            volatility: row.get::<_, &str>(5).parse().map_err(|e| {
                MigratorError::Internal(format!("reading a function's volatility: {e}"))
            })?,
            variadic: row.get(6),
            columns: args
                .iter()
                .filter(|a| a.mode.output())
                .map(|a| FunctionColumn {
                    name: a.name.clone(),
                    type_name: a.type_name.clone(),
                })
                .collect(),
            arguments: args
                .into_iter()
                .filter(|a| a.mode.input())
                .map(|a| FunctionArgument {
                    name: a.name,
                    type_name: a.type_name,
                    mode: a.mode,
                    default: a.default,
                })
                .collect(),
        });
    }
    Ok(json(
        200,
        &FunctionsResponse {
            platform,
            database: name,
            count: functions.len(),
            functions,
        },
    ))
}

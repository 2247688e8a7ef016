//! The end of a database's and a platform's life:
//! `DELETE /admin/databases/{name}?confirm={name}[&backup=true]` drops one
//! tenant, v2 or adopted database (the admin token, or a deploy or
//! platform token of the platform the catalog says owns it; another
//! platform's database answers like one that does not exist), and
//! `DELETE /admin/platforms/{platform}?confirm={platform}[&backup=true]`
//! (admin token) offboards a platform: every database the catalog records
//! as its own (templates and scratch databases included), its two roles,
//! and its catalog rows. The confirmation must repeat the name exactly.
//!
//! A drop waits briefly for a running deployment of the database (the
//! deployment's own advisory lock), then goes through the catalog's
//! `drops` room: `dropping` under a lease and announced (routers drop
//! their pools), backed up when asked (`backup`), `DROP DATABASE … WITH
//! (FORCE)`, forgotten and announced, one history record from start to
//! end. What a stopped migrator left half-way — a `dropping` row, a
//! platform marked offboarding — is finished by [`resume`] at start, and
//! a `dropping` row whose lease is free by whoever asks to drop it again.

use std::time::{Duration, Instant};

use serde_json::Value;
use stonescriptdb_shared::catalog::{DbKind, DbState};
use stonescriptdb_shared::names::{self, quote_ident};
use stonescriptdb_shared::wire::{
    DropResponse, DroppedDatabase, LifecycleStatus, OffboardResponse,
};
use tokio_postgres::Client;

use crate::catalog::{Caller, Database, Dropping, Platform};
use crate::error::{bad_name, pg_message, MigratorError};
use crate::exec::{LOCK_CLASS, LOCK_OBJ};
use crate::state::{json, Answer, Req, State};

/// Longest a drop waits for a running deployment of its database.
const DEPLOYMENT_WAIT: Duration = Duration::from_secs(5);
/// Who a drop or offboarding finished at start is recorded as asked by.
const RESUMED_BY: &str = "migrator";

/// The `confirm` query parameter of a drop of `name`, read before
/// anything is looked up: it must equal `name` exactly.
fn confirmation(confirm: Option<&str>, what: &str, name: &str) -> Result<(), MigratorError> {
    match confirm {
        None => Err(MigratorError::BadRequest(format!(
            "confirm is missing: add ?confirm={name} to {what} {name}; nothing was changed"
        ))),
        Some(c) if c != name => Err(MigratorError::BadRequest(format!(
            "confirm={c:?} is not {name:?}: confirm must repeat the name exactly to {what} it; nothing was changed"
        ))),
        Some(_) => Ok(()),
    }
}

/// A DELETE carries its confirmation in the query string, never a body
/// (a `{"confirm": …}` body is refused rather than ignored).
fn no_body(r: &Req, route: &str) -> Result<(), MigratorError> {
    if r.body.is_empty() {
        Ok(())
    } else {
        Err(MigratorError::BadRequest(format!(
            "{route} takes no body: confirm and backup are query parameters; nothing was changed"
        )))
    }
}

/// Why a database the caller may see cannot be dropped through the
/// route; `None` when it can.
fn not_droppable(d: &Database) -> Option<String> {
    match d.kind {
        DbKind::V1 | DbKind::V2 | DbKind::Adopted => None,
        DbKind::Template => Some(format!(
            "{} is the template database of a stored schema version: it is dropped with its platform (DELETE /admin/platforms/{{platform}}) or when a newer version's template replaces it; nothing was dropped",
            d.name
        )),
        DbKind::Scratch => Some(format!(
            "{} is the scratch database of a dry run: the gateway drops it itself; nothing was dropped",
            d.name
        )),
    }
}

/// Does a backup of a database of this kind hold anything? Templates (a
/// stored version, kept in the catalog; they take no connections) and
/// scratch databases get none.
fn holds_data(kind: DbKind) -> bool {
    kind.callable()
}

/// `DELETE /admin/databases/{name}?confirm={name}[&backup=true]`.
pub async fn drop_database(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    no_body(r, "DELETE /admin/databases/{name}")?;
    let name = r.params.first().cloned().unwrap_or_default();
    names::validate_database_name(&name).map_err(bad_name)?;
    confirmation(r.query("confirm").as_deref(), "drop", &name)?;
    let backup = r.query_flag("backup")?;
    let catalog = state.catalog()?;
    // The catalog says who owns it; another platform's answers like none.
    let d = match catalog.database(&name).await? {
        Some(d) if r.grant.may(&d.platform).is_ok() => d,
        _ => return Err(MigratorError::DatabaseNotFound(name)),
    };
    if let Some(why) = not_droppable(&d) {
        return Err(MigratorError::BadRequest(why));
    }
    let admin = state.admin.connect(None).await?;
    let dropped = match d.state {
        DbState::Ready => drop_one(state, &admin, &d, &r.caller, backup).await?,
        DbState::Creating => return Err(MigratorError::BeingCreated(name)),
        // met half-way: a stopped migrator's drop is finished here
        DbState::Dropping => match catalog.claim_drop(&name, &r.caller).await? {
            Some(dropping) => finish(state, &admin, dropping, None).await?,
            None => return Err(MigratorError::DatabaseNotFound(name)),
        },
    };
    Ok(json(
        200,
        &DropResponse {
            status: LifecycleStatus::Dropped,
            database: dropped.database,
            platform: dropped.platform,
            kind: dropped.kind,
            backup: dropped.backup,
        },
    ))
}

/// `DELETE /admin/platforms/{platform}?confirm={platform}[&backup=true]`.
pub async fn offboard(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    no_body(r, "DELETE /admin/platforms/{platform}")?;
    let platform = r.path_platform()?.to_owned();
    confirmation(r.query("confirm").as_deref(), "offboard", &platform)?;
    let backup = r.query_flag("backup")?;
    r.grant.operator()?;
    let p = crate::provision::known_platform(state, &platform).await?;
    let catalog = state.catalog()?;
    if let Some(job) = catalog.live_job_of(&platform).await? {
        return Err(MigratorError::JobRunning(job));
    }
    catalog.mark_offboarding(&platform).await?;
    let out = offboard_marked(state, &p, &r.caller, backup).await?;
    Ok(json(200, &out))
}

/// Offboard `p`, marked offboarding already: drop each of its databases,
/// its roles, then its catalog rows.
async fn offboard_marked(
    state: &State,
    p: &Platform,
    caller: &Caller,
    backup: bool,
) -> Result<OffboardResponse, MigratorError> {
    let catalog = state.catalog()?;
    let admin = state.admin.connect(None).await?;
    let mut databases = Vec::new();
    for d in catalog.all_databases_of(&p.name).await? {
        let dropped = match d.state {
            DbState::Ready => {
                drop_one(state, &admin, &d, caller, backup && holds_data(d.kind)).await?
            }
            DbState::Dropping => match catalog.claim_drop(&d.name, caller).await? {
                Some(dropping) => finish(state, &admin, dropping, None).await?,
                None => {
                    return Err(MigratorError::DeploymentRunning(format!(
                        "{} is being dropped by another request; platform {} stays marked for offboarding, which ends when asked again or at the next migrator start",
                        d.name, p.name
                    )))
                }
            },
            DbState::Creating => {
                if catalog.resolve_dead_creation(&admin, &d.name).await? {
                    continue;
                }
                return Err(MigratorError::BeingCreated(d.name));
            }
        };
        databases.push(dropped);
    }
    let mut roles = Vec::new();
    for role in [&p.app_role, &p.owner_role] {
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)))
            .await
            .map_err(|e| {
                MigratorError::DatabaseUnavailable(format!(
                    "cannot drop role {role} of platform {}: {}; its databases are gone, the offboarding ends when asked again",
                    p.name,
                    pg_message(&e)
                ))
            })?;
        roles.push(role.clone());
    }
    catalog.forget_platform(&p.name).await?;
    let backups = databases.iter().filter_map(|d| d.backup.clone()).collect();
    Ok(OffboardResponse {
        status: LifecycleStatus::Offboarded,
        platform: p.name.clone(),
        databases,
        roles,
        backups,
    })
}

/// Drop `d` (recorded ready): wait for a running deployment of it, mark
/// it dropping, back it up if asked, drop it, forget it.
async fn drop_one(
    state: &State,
    admin: &Client,
    d: &Database,
    caller: &Caller,
    backup: bool,
) -> Result<DroppedDatabase, MigratorError> {
    let lock = match d.kind {
        DbKind::V1 | DbKind::V2 | DbKind::Adopted => hold_deployment_lock(state, &d.name).await?,
        // a ready template or scratch database is never deployed into
        DbKind::Template | DbKind::Scratch => None,
    };
    let dropping = state.catalog()?.begin_drop(d, caller, backup).await?;
    finish(state, admin, dropping, lock).await
}

/// A session in `database` holding the lock every deployment of it takes
/// (`exec`), so none runs under the drop; `None` when the database is not
/// in PostgreSQL any more (the drop only forgets it). Waits
/// [`DEPLOYMENT_WAIT`] for a running deployment, then 409.
async fn hold_deployment_lock(
    state: &State,
    database: &str,
) -> Result<Option<Client>, MigratorError> {
    let client = match state.admin.connect(Some(database)).await {
        Ok(c) => c,
        Err(MigratorError::DatabaseNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let started = Instant::now();
    loop {
        let held: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LOCK_CLASS, &LOCK_OBJ],
            )
            .await
            .map_err(|e| {
                MigratorError::DatabaseUnavailable(format!("{database}: {}", pg_message(&e)))
            })?
            .get(0);
        if held {
            return Ok(Some(client));
        }
        if started.elapsed() >= DEPLOYMENT_WAIT {
            return Err(MigratorError::DeploymentRunning(format!(
                "a deployment of {database} is running (waited {} s); nothing was dropped: try again once it has finished",
                DEPLOYMENT_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rest of a drop marked `dropping`: the backup (asked for by the
/// request, or by the one a stopped migrator served; a failed one puts
/// the database back, nothing dropped), the drop, the catalog.
async fn finish(
    state: &State,
    admin: &Client,
    dropping: Dropping,
    lock: Option<Client>,
) -> Result<DroppedDatabase, MigratorError> {
    let catalog = state.catalog()?;
    let backup = if dropping.backup && holds_data(dropping.kind) {
        let dumped =
            crate::backup::dump(&state.backups, state.admin.config(), admin, &dropping.name).await;
        match dumped {
            Ok(path) => Some(path.display().to_string()),
            Err(e) => {
                let body = serde_json::to_value(e.to_wire().1).unwrap_or(Value::Null);
                catalog.cancel_drop(dropping, &body).await?;
                return Err(e);
            }
        }
    } else {
        None
    };
    // A failure here leaves the row `dropping` with its lease freed: the
    // next DELETE of it, or the next migrator, finishes the drop.
    crate::provision::drop_database(state, admin, &dropping.name).await?;
    drop(lock);
    let dropped = DroppedDatabase {
        database: dropping.name.clone(),
        platform: dropping.platform.clone(),
        kind: dropping.kind,
        backup: backup.clone(),
    };
    catalog.finish_drop(dropping, backup.as_deref()).await?;
    Ok(dropped)
}

/// At start: finish the drops and offboardings a stopped migrator left
/// (live migrators' are left alone). An offboarding cannot know whether
/// its request asked for backups, so it backs up every database it still
/// has to drop. Returns what was finished, and what could not be.
pub async fn resume(state: &State) -> Vec<String> {
    let mut lines = Vec::new();
    let caller = Caller {
        token_name: RESUMED_BY.to_owned(),
        ..Caller::default()
    };
    let finished = async {
        let catalog = state.catalog()?;
        let admin = state.admin.connect(None).await?;
        for name in catalog.dropping_names().await? {
            if let Some(dropping) = catalog.claim_drop(&name, &caller).await? {
                let lock = hold_deployment_lock(state, &name).await;
                let out = match lock {
                    Ok(lock) => finish(state, &admin, dropping, lock).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                lines.push(match out {
                    Ok(()) => format!("finished the drop of {name} a stopped migrator left"),
                    Err(e) => format!(
                        "could not finish the drop of {name}: {}",
                        e.to_wire().1.message
                    ),
                });
            }
        }
        for name in catalog.offboarding().await? {
            let Some(p) = catalog.platform(&name).await? else {
                continue;
            };
            lines.push(match offboard_marked(state, &p, &caller, true).await {
                Ok(o) => format!(
                    "finished offboarding platform {name} ({} databases dropped)",
                    o.databases.len()
                ),
                Err(e) => format!(
                    "could not finish offboarding platform {name}: {}",
                    e.to_wire().1.message
                ),
            });
        }
        Ok::<_, MigratorError>(())
    }
    .await;
    if let Err(e) = finished {
        lines.push(format!(
            "could not look for unfinished drops: {}",
            e.to_wire().1.message
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmation_must_repeat_the_name_exactly() {
        let e = |r: Result<(), MigratorError>| r.unwrap_err().to_wire().1.message;
        let m = e(confirmation(None, "drop", "shop_t1"));
        assert!(
            m.contains("confirm is missing") && m.contains("confirm=shop_t1"),
            "{m}"
        );
        for wrong in ["SHOP_T1", "shop_t2", "shop_t1 ", "shop"] {
            let m = e(confirmation(Some(wrong), "drop", "shop_t1"));
            assert!(
                m.contains("exactly") && m.contains("nothing was changed"),
                "{m}"
            );
        }
        assert!(confirmation(Some("shop_t1"), "drop", "shop_t1").is_ok());
    }

    fn db(kind: DbKind) -> Database {
        Database {
            name: "x".into(),
            platform: "p".into(),
            kind,
            state: DbState::Ready,
            tenant_id: None,
            schema_name: None,
            database_id: None,
            schema_version: None,
            pinned: false,
            created_at: String::new(),
        }
    }

    #[test]
    fn only_platform_databases_are_dropped_through_the_route() {
        for k in [DbKind::V1, DbKind::V2, DbKind::Adopted] {
            assert_eq!(not_droppable(&db(k)), None);
            assert!(holds_data(k));
        }
        for k in [DbKind::Template, DbKind::Scratch] {
            assert!(not_droppable(&db(k)).is_some());
            assert!(!holds_data(k));
        }
    }
}

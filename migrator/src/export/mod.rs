//! `GET /admin/databases/{database}/export` (admin token): a live database
//! on the gateway's server as a schema folder the gateway deploys — the
//! way for a team with an existing database to start. `pg_dump
//! --schema-only` ([`crate::pg_dump`]) of the database, split by
//! [`split`] into `extensions/`, `types/`, `tables/`, `functions/` and
//! `migrations/000_exported.sql` using what [`facts`] reads of its
//! dependencies, answered as a gzip tar: `postgresql/…` and
//! `export-report.json` (what moved where and why, what was not exported).
//! Registering the folder into an empty database gives the same schema.
//! `POST /admin/adopt` is how the gateway takes the database itself over.

mod facts;
mod split;

use std::io::Write;
use std::process::Stdio;

use flate2::write::GzEncoder;
use flate2::Compression;
use stonescriptdb_shared::names;
use tar::{Builder, EntryType, Header};

use crate::error::{bad_name, pg_message, MigratorError};
use crate::pg_dump::PgDump;
use crate::state::{Reply, Req, State};

/// pg_dump's arguments: the schema only, no owners (the gateway's roles
/// own what it deploys), no tablespaces, nothing secret; the gateway's own
/// tracking tables left out. Besides, `--lock-wait-timeout` of
/// `DEPLOY_LOCK_TIMEOUT_MS`: an export fails rather than wait behind a
/// migration holding a table.
const ARGUMENTS: &[&str] = &[
    "--schema-only",
    "--no-owner",
    "--no-tablespaces",
    "--no-password",
    "--exclude-table=*._stonescriptdb_gateway*",
];

/// The export's answer: a gzip tar.
pub const CONTENT_TYPE: &str = "application/gzip";

pub async fn export(state: &State, r: &mut Req) -> Result<Reply, MigratorError> {
    r.grant.operator()?;
    let name = r.params.first().cloned().unwrap_or_default();
    names::validate_database_name(&name).map_err(bad_name)?;
    if let Some(why) = crate::operator::reserved(state, &name) {
        return Err(MigratorError::BadRequest(format!(
            "{name} cannot be exported: {why}"
        )));
    }
    let admin = state.admin.connect(None).await?;
    if state
        .admin
        .all_databases(&admin)
        .await?
        .binary_search(&name)
        .is_err()
    {
        return Err(MigratorError::DatabaseNotFound(name));
    }
    let failed = |why: String| MigratorError::Internal(format!("export of {name} failed: {why}"));
    let client = state.admin.connect(Some(&name)).await?;
    let facts = facts::read(&client)
        .await
        .map_err(|e| failed(pg_message(&e)))?;
    let pg_dump = PgDump::locate(&state.backups.tls, state.admin.config(), &admin, &name)
        .await
        .map_err(failed)?;
    let mut args: Vec<String> = ARGUMENTS.iter().map(|a| a.to_string()).collect();
    if state.admin.lock_timeout_ms() > 0 {
        args.push(format!(
            "--lock-wait-timeout={}",
            state.admin.lock_timeout_ms()
        ));
    }
    let dump = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pg_dump.run(&args, Stdio::piped())
    })
    .await
    .map_err(|e| failed(format!("the export task failed: {e}")))?
    .map_err(failed)?;
    let text =
        String::from_utf8(dump).map_err(|e| failed(format!("pg_dump wrote no UTF-8: {e}")))?;
    let entries = split::entries(&text).map_err(failed)?;
    let admin_role = state.admin.config().get_user().unwrap_or("").to_owned();
    let exported = split::split(&name, &entries, &facts, &admin_role);
    let archive = pack(&exported).map_err(|e| failed(format!("packing the folder: {e}")))?;
    Ok(Reply::Bytes(CONTENT_TYPE, archive))
}

/// `postgresql/…` and `export-report.json`, as a gzip tar.
fn pack(exported: &split::Exported) -> std::io::Result<Vec<u8>> {
    let mut tar = Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mut add = |path: &str, data: &[u8]| {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        tar.append_data(&mut h, path, data)
    };
    for (path, text) in &exported.files {
        add(&format!("postgresql/{path}"), text.as_bytes())?;
    }
    let mut report = serde_json::to_vec_pretty(&exported.report).map_err(std::io::Error::other)?;
    report.write_all(b"\n")?;
    add("export-report.json", &report)?;
    tar.into_inner()?.finish()
}

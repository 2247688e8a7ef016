//! The one "existing or new database" decision of every route that names
//! the database it deploys into (`/register`, `/admin/create-tenant`,
//! `/database/create`, `/admin/database/create`). A database the catalog
//! records is deployed into when the route allows it (`/register` of the
//! platform's ready database of that kind) and is 409
//! `database_already_exists` otherwise; a new one is previewed in a
//! throwaway database on a dry run, else created: a v2 database of its
//! schema's latest version from that version's template
//! ([`crate::templates`]), any other (an older version pinned at creation,
//! v1) by a full deployment. Runs over many databases ([`crate::fleet`]) only ever deploy
//! into recorded ones.

use stonescriptdb_shared::auth::Grant;
use stonescriptdb_shared::catalog::{DbKind, DbState};
use stonescriptdb_shared::wire::DeploymentReport;

use crate::catalog::{NewDatabase, Platform, SchemaVersion};
use crate::deploy::{Mode, Options};
use crate::error::MigratorError;
use crate::provision::{self, Request};
use crate::schema::Parsed;
use crate::state::State;

/// The database a request names.
pub struct Wanted<'a> {
    pub name: String,
    pub kind: DbKind,
    pub tenant_id: Option<String>,
    /// A v2 database: the schema it is made from.
    pub schema: Option<FromSchema<'a>>,
    /// The platform's ready database of `kind` by that name is deployed
    /// into (`/register`); false: a recorded database is 409.
    pub deploy_existing: bool,
    pub dry_run: bool,
    /// Data-losing `tables/` changes allowed (`/register`).
    pub force: bool,
}

/// The schema version a v2 database is made from.
#[derive(Clone, Copy)]
pub struct FromSchema<'a> {
    pub name: &'a str,
    pub version: &'a SchemaVersion,
    /// None: the schema's own database.
    pub database_id: Option<&'a str>,
    /// Asked for explicitly: the database is pinned to it.
    pub pinned: bool,
    /// The latest version: the only one with a template; any other gets a
    /// full deployment.
    pub latest: bool,
}

/// Whose database it is.
#[derive(Clone, Copy)]
pub enum Owner<'a> {
    /// A platform the catalog records.
    Known(&'a Platform),
    /// `/register`: the platform of that name, recorded with its roles on
    /// its first real deployment (`grant` says whether it may be).
    FirstUse(&'a str, &'a Grant),
}

impl Owner<'_> {
    fn name(&self) -> &str {
        match self {
            Owner::Known(p) => &p.name,
            Owner::FirstUse(name, _) => name,
        }
    }

    /// The platform as recorded, when it is.
    async fn recorded(&self, state: &State) -> Result<Option<Platform>, MigratorError> {
        match self {
            Owner::Known(p) => Ok(Some((*p).clone())),
            Owner::FirstUse(name, _) => state.catalog()?.platform(name).await,
        }
    }
}

/// Deploy `parsed` into the database `wanted` names, existing or new (see
/// the module's documentation).
pub async fn deploy(
    state: &State,
    owner: Owner<'_>,
    wanted: Wanted<'_>,
    parsed: &Parsed,
    req: Request<'_>,
) -> Result<DeploymentReport, MigratorError> {
    let recorded = state.catalog()?.database(&wanted.name).await?;
    match recorded {
        Some(d)
            if wanted.deploy_existing
                && d.platform == owner.name()
                && d.state == DbState::Ready
                && d.kind == wanted.kind =>
        {
            let platform = match owner {
                Owner::Known(p) => p.clone(),
                Owner::FirstUse(name, _) => provision::known_platform(state, name).await?,
            };
            let opts = Options {
                mode: Mode::Register,
                force: wanted.force,
                allow: crate::step::Allowed::NONE,
                dry_run: wanted.dry_run,
                rollback: false,
            };
            let (report, _) =
                provision::deploy_existing(state, &platform, &d.name, parsed, opts, req, None)
                    .await?;
            Ok(report)
        }
        Some(_) => Err(MigratorError::DatabaseAlreadyExists(wanted.name)),
        None if wanted.dry_run => {
            let platform = owner.recorded(state).await?;
            provision::dry_run_new(
                state,
                owner.name(),
                platform.as_ref(),
                &wanted.name,
                parsed,
                wanted.force,
                req,
            )
            .await
        }
        None => {
            let platform = match owner {
                Owner::Known(p) => p.clone(),
                Owner::FirstUse(name, grant) => {
                    let admin = state.admin.connect(None).await?;
                    crate::roles::ensure_platform(state, &admin, grant, name).await?
                }
            };
            let new = NewDatabase {
                tenant_id: wanted.tenant_id,
                schema_name: wanted.schema.map(|s| s.name.to_owned()),
                database_id: wanted.schema.and_then(|s| s.database_id.map(str::to_owned)),
                schema_version: wanted.schema.map(|s| s.version.version),
                pinned: wanted.schema.is_some_and(|s| s.pinned),
                ..NewDatabase::new(
                    &wanted.name,
                    &platform.name,
                    wanted.kind,
                    &platform.owner_role,
                )
            };
            match wanted.schema {
                Some(s) if s.latest => {
                    crate::templates::create(state, &platform, s.name, s.version, new, parsed, req)
                        .await
                }
                // no template: an older version, or not v2
                _ => provision::create_new(state, &platform, new, parsed, req).await,
            }
        }
    }
}

//! Moving an older installation into the control catalog. Before the
//! catalog, the migrator kept its state in files under `DATA_DIR`: each
//! platform's roles and the databases created owned by them
//! (`credentials/<p>.json`), the v2 registry (`<p>/platform.json` and
//! `<p>/<schema>/v<N>.tar.gz`), and the last v1 schema (`<p>/v1/schema.tar.gz`).
//!
//! [`plan`] (pure) decides which existing database belongs to which
//! platform: one listed in a platform's credentials file or v2 registry
//! belongs to it; otherwise a v1 name (`{p}_main`, `{p}_{tenant}`) that only
//! one known platform's naming can produce does. Everything else is
//! reported, never guessed: `myapp_admin_main` is `myapp`'s tenant
//! `admin_main` and `myapp_admin`'s main database alike. The migrator applies
//! the plan once per `DATA_DIR` at start (`Migrator::import_legacy`), and
//! `--check-upgrade` prints it without changing anything. (Its own module:
//! it uses the catalog, the roles and the admin connection alike.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use stonescriptdb_shared::catalog::DbKind;
use stonescriptdb_shared::names;

/// `credentials/<platform>.json` of an older installation.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub owner_role: String,
    pub owner_password: String,
    pub app_role: String,
    pub app_password: String,
    #[serde(default)]
    pub databases: BTreeSet<String>,
}

/// One version in an older v2 registry.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistryVersion {
    pub version: u32,
    pub checksum: String,
    #[serde(default)]
    pub has_tables: bool,
    #[serde(default)]
    pub has_functions: bool,
    #[serde(default)]
    pub has_migrations: bool,
    #[serde(default)]
    pub has_seeders: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistrySchema {
    #[serde(default)]
    pub versions: Vec<RegistryVersion>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RegistryDatabase {
    pub id: String,
    pub schema_name: String,
    #[serde(default)]
    pub version: u32,
}

/// `<platform>/platform.json` of an older installation.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Registry {
    #[serde(default)]
    pub schemas: BTreeMap<String, RegistrySchema>,
    #[serde(default)]
    pub databases: BTreeMap<String, RegistryDatabase>,
}

/// What an older installation left for one platform.
#[derive(Clone, Default)]
pub struct LegacyPlatform {
    pub credentials: Option<Credentials>,
    pub registry: Option<Registry>,
    pub has_v1_schema: bool,
}

/// Everything an older installation left under `DATA_DIR`, by platform.
#[derive(Clone, Default)]
pub struct Legacy {
    pub platforms: BTreeMap<String, LegacyPlatform>,
    /// Files that could not be read (reported, not fatal).
    pub problems: Vec<String>,
}

/// Read the files an older installation left in `data_dir`.
pub fn read(data_dir: &Path) -> Legacy {
    let mut legacy = Legacy::default();
    let valid = |n: &str| names::validate_platform(n).is_ok();
    if let Ok(entries) = std::fs::read_dir(data_dir.join("credentials")) {
        for e in entries.flatten() {
            let path = e.path();
            let Some(p) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|n| valid(n))
                .map(str::to_owned)
            else {
                continue;
            };
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|d| serde_json::from_slice::<Credentials>(&d).map_err(|e| e.to_string()))
            {
                Ok(c) => legacy.platforms.entry(p).or_default().credentials = Some(c),
                Err(e) => legacy.problems.push(format!("{}: {e}", path.display())),
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !valid(&name) || !e.path().is_dir() {
                continue;
            }
            let file = e.path().join("platform.json");
            if file.exists() {
                match std::fs::read(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|d| serde_json::from_slice::<Registry>(&d).map_err(|e| e.to_string()))
                {
                    Ok(r) => legacy.platforms.entry(name.clone()).or_default().registry = Some(r),
                    Err(err) => legacy.problems.push(format!("{}: {err}", file.display())),
                }
            }
            if e.path().join("v1").join("schema.tar.gz").is_file() {
                legacy.platforms.entry(name).or_default().has_v1_schema = true;
            }
        }
    }
    legacy
}

/// Name an older installation gave the template database of a v2 schema version.
pub fn legacy_template_name(platform: &str, schema: &str, version: u32, checksum: &str) -> String {
    let h =
        crate::schema::sha256_hex(format!("{platform}/{schema}/{version}/{checksum}").as_bytes());
    format!("sdg_tpl_{}", &h[..24])
}

/// One database the plan gives to a platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    pub database: String,
    pub platform: String,
    #[serde(skip)]
    pub kind: DbKind,
    pub why: String,
    #[serde(skip)]
    pub tenant_id: Option<String>,
    #[serde(skip)]
    pub schema_name: Option<String>,
    #[serde(skip)]
    pub database_id: Option<String>,
    #[serde(skip)]
    pub schema_version: Option<i32>,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub attributed: Vec<Attribution>,
    /// Databases more than one platform could own: `(database, platforms)`.
    pub ambiguous: Vec<(String, Vec<String>)>,
    /// Databases no known platform's naming produces.
    pub unattributed: Vec<String>,
    /// Databases the catalog already records.
    pub already_recorded: Vec<String>,
}

/// Decide who owns each of `existing` (PostgreSQL's databases): see the
/// module documentation. `recorded` are databases the catalog has already;
/// `reserved` are never attributed (the catalog, the admin database, …).
pub fn plan(
    legacy: &Legacy,
    existing: &[String],
    recorded: &BTreeSet<String>,
    reserved: &BTreeSet<String>,
) -> Plan {
    let mut out = Plan::default();
    for db in existing {
        if reserved.contains(db) {
            continue;
        }
        if recorded.contains(db) {
            out.already_recorded.push(db.clone());
            continue;
        }
        // explicit records first: credentials files and v2 registries
        let mut explicit: Vec<Attribution> = Vec::new();
        for (p, lp) in &legacy.platforms {
            if let Some(r) = &lp.registry {
                if let Some(d) = r.databases.get(db) {
                    explicit.push(Attribution {
                        database: db.clone(),
                        platform: p.clone(),
                        kind: DbKind::V2,
                        why: format!("listed in {p}'s v2 registry"),
                        tenant_id: None,
                        schema_name: Some(d.schema_name.clone()),
                        database_id: Some(d.id.clone()),
                        schema_version: i32::try_from(d.version).ok(),
                    });
                    continue;
                }
                let template = r.schemas.iter().find_map(|(s, e)| {
                    e.versions
                        .iter()
                        .find(|v| legacy_template_name(p, s, v.version, &v.checksum) == *db)
                        .map(|v| (s.clone(), v.version))
                });
                if let Some((s, v)) = template {
                    explicit.push(Attribution {
                        database: db.clone(),
                        platform: p.clone(),
                        kind: DbKind::Template,
                        why: format!("template of {p}'s schema {s} version {v}"),
                        tenant_id: None,
                        schema_name: Some(s),
                        database_id: None,
                        schema_version: i32::try_from(v).ok(),
                    });
                    continue;
                }
            }
            if lp
                .credentials
                .as_ref()
                .is_some_and(|c| c.databases.contains(db))
            {
                let tenant = names::v1_tenant_of(p, db);
                explicit.push(Attribution {
                    database: db.clone(),
                    platform: p.clone(),
                    kind: if tenant.is_some() {
                        DbKind::V1
                    } else {
                        DbKind::Adopted
                    },
                    why: format!("listed in {p}'s credentials file"),
                    tenant_id: tenant.flatten(),
                    schema_name: None,
                    database_id: None,
                    schema_version: None,
                });
            }
        }
        match explicit.len() {
            1 => {
                out.attributed.extend(explicit);
                continue;
            }
            0 => {}
            _ => {
                out.ambiguous.push((
                    db.clone(),
                    explicit.into_iter().map(|a| a.platform).collect(),
                ));
                continue;
            }
        }
        let by_name: Vec<(&String, Option<String>)> = legacy
            .platforms
            .keys()
            .filter_map(|p| names::v1_tenant_of(p, db).map(|t| (p, t)))
            .collect();
        match by_name.as_slice() {
            [] => out.unattributed.push(db.clone()),
            [(p, tenant)] => out.attributed.push(Attribution {
                database: db.clone(),
                platform: (*p).clone(),
                kind: DbKind::V1,
                why: match tenant {
                    None => format!("{p}'s main database by its name"),
                    Some(t) => format!("{p}'s tenant {t} by its name; no other known platform's naming produces it"),
                },
                tenant_id: tenant.clone(),
                schema_name: None,
                database_id: None,
                schema_version: None,
            }),
            many => out.ambiguous.push((
                db.clone(),
                many.iter().map(|(p, _)| (*p).clone()).collect(),
            )),
        }
    }
    out
}

impl Plan {
    /// The report operators read (`--check-upgrade`, the migrator's log).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.attributed {
            out.push(format!(
                "record {} as platform {}'s ({}; {})",
                a.database,
                a.platform,
                a.kind.as_str(),
                a.why
            ));
        }
        for (db, ps) in &self.ambiguous {
            out.push(format!(
                "NOT recorded: {db} could belong to {} (attribute it with POST /admin/adopt)",
                ps.join(" or ")
            ));
        }
        for db in &self.unattributed {
            out.push(format!(
                "NOT recorded: {db} matches no known platform (unreachable through the gateway until adopted)"
            ));
        }
        for db in &self.already_recorded {
            out.push(format!("already recorded: {db}"));
        }
        out
    }
}

/// Apply the import of `data_dir`'s legacy files once (a `legacy_imports`
/// row marks it done): platforms with their roles and passwords, v2
/// schemas with every version, last v1 schemas, and the databases the plan
/// attributes, each handed to its platform's owner role. Returns the
/// report's lines, or `None` when this `DATA_DIR` was imported before.
pub async fn import(
    catalog: &crate::catalog::Catalog,
    admin: &crate::admin::Admin,
    connection_limit: i32,
    data_dir: &Path,
) -> Result<Option<Vec<String>>, crate::error::MigratorError> {
    use crate::error::MigratorError;
    let key = std::fs::canonicalize(data_dir)
        .unwrap_or_else(|_| data_dir.to_path_buf())
        .display()
        .to_string();
    if catalog.imported(&key).await? {
        return Ok(None);
    }
    let legacy = read(data_dir);
    let client = admin.connect(None).await?;
    let (plan, existing_owner) = plan_for(catalog, admin, &client, &legacy).await?;
    let mut lines: Vec<String> = legacy
        .problems
        .iter()
        .map(|p| format!("unreadable: {p}"))
        .collect();
    let mut platforms = BTreeMap::new();
    for (name, lp) in &legacy.platforms {
        let v2 = lp.registry.is_some();
        let wanted = match &lp.credentials {
            Some(c) => crate::catalog::Platform {
                name: name.clone(),
                owner_role: c.owner_role.clone(),
                owner_password: c.owner_password.clone(),
                app_role: c.app_role.clone(),
                app_password: c.app_password.clone(),
                v2,
            },
            None => crate::roles::new_platform(name, v2)?,
        };
        let (p, new) = catalog.insert_platform(&wanted).await?;
        crate::roles::ensure_roles(&client, &p, connection_limit).await?;
        if new && lp.credentials.is_none() {
            crate::roles::set_passwords(&client, &p).await?;
        }
        if v2 {
            catalog.mark_v2(name).await?;
        }
        if new {
            lines.push(format!("platform {name} recorded"));
        }
        if let Some(reg) = &lp.registry {
            for (schema, entry) in &reg.schemas {
                for v in &entry.versions {
                    let path = data_dir
                        .join(name)
                        .join(schema)
                        .join(format!("v{}.tar.gz", v.version));
                    let Ok(raw) = std::fs::read(&path) else {
                        lines.push(format!(
                            "unreadable: {} (version {} of {name}/{schema} not imported)",
                            path.display(),
                            v.version
                        ));
                        continue;
                    };
                    let meta = crate::catalog::SchemaVersion {
                        version: 0,
                        checksum: v.checksum.clone(),
                        archive_sha256: crate::schema::sha256_hex(&raw),
                        uploaded_at: String::new(),
                        has_tables: v.has_tables,
                        has_functions: v.has_functions,
                        has_migrations: v.has_migrations,
                        has_seeders: v.has_seeders,
                    };
                    catalog
                        .add_schema_version(name, schema, &raw, &meta)
                        .await?;
                }
            }
        }
        if lp.has_v1_schema {
            let path = data_dir.join(name).join("v1").join("schema.tar.gz");
            if let Ok(raw) = std::fs::read(&path) {
                // its version 1; V1_ARCHIVES_KEPT applies from the next one
                let sha = crate::schema::sha256_hex(&raw);
                catalog
                    .keep_v1_archive(name, &raw, &sha, None, u32::MAX)
                    .await?;
            }
        }
        platforms.insert(name.clone(), p);
    }
    for a in &plan.attributed {
        let Some(p) = platforms.get(&a.platform) else {
            continue;
        };
        if a.kind == DbKind::Template {
            // A template cannot be connected to; one made before platform
            // roles existed would copy admin-owned objects: left for a rebuild.
            if existing_owner.get(&a.database) != Some(&p.owner_role) {
                lines.push(format!(
                    "NOT recorded: {} is an older template not owned by {}; it is rebuilt on demand and may be dropped",
                    a.database, p.owner_role
                ));
                continue;
            }
            let report_path = data_dir
                .join(&a.platform)
                .join(a.schema_name.as_deref().unwrap_or(""))
                .join(format!("v{}.template.json", a.schema_version.unwrap_or(0)));
            if let Some(report) = std::fs::read(&report_path)
                .ok()
                .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            {
                catalog
                    .set_template(
                        &a.platform,
                        a.schema_name.as_deref().unwrap_or(""),
                        a.schema_version.unwrap_or(0),
                        Some((&a.database, &report)),
                    )
                    .await?;
            }
        } else {
            admin.hand_over(&client, &a.database, &p.owner_role).await?;
        }
        catalog
            .record_existing(&crate::catalog::NewDatabase {
                name: a.database.clone(),
                platform: a.platform.clone(),
                kind: a.kind,
                tenant_id: a.tenant_id.clone(),
                schema_name: a.schema_name.clone(),
                database_id: a.database_id.clone(),
                schema_version: a.schema_version,
                pinned: false,
                owner_role: p.owner_role.clone(),
            })
            .await
            .map_err(|e| match e {
                MigratorError::DatabaseAlreadyExists(d) => {
                    MigratorError::Internal(format!("{d} is recorded for another platform already"))
                }
                other => other,
            })?;
    }
    lines.extend(plan.lines());
    catalog
        .mark_imported(&key, &serde_json::json!({ "lines": lines }))
        .await?;
    Ok(Some(lines))
}

/// The plan for this server: PostgreSQL's databases, what the catalog
/// records, and the names never attributed. Also each database's owner.
pub async fn plan_for(
    catalog: &crate::catalog::Catalog,
    admin: &crate::admin::Admin,
    client: &tokio_postgres::Client,
    legacy: &Legacy,
) -> Result<(Plan, BTreeMap<String, String>), crate::error::MigratorError> {
    let owners: BTreeMap<String, String> = client
        .query(
            "SELECT datname::text, pg_get_userbyid(datdba)::text FROM pg_database ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| {
            crate::error::MigratorError::DatabaseUnavailable(crate::error::pg_message(&e))
        })?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let existing = admin.all_databases(client).await?;
    let recorded = catalog.recorded_names().await?;
    let mut reserved: BTreeSet<String> = ["postgres", "template0", "template1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    reserved.insert(catalog.name.clone());
    if let Some(db) = admin.admin_database() {
        reserved.insert(db.to_owned());
    }
    let scratch: Vec<String> = existing
        .iter()
        .filter(|d| d.starts_with(crate::catalog::SCRATCH_PREFIX))
        .cloned()
        .collect();
    reserved.extend(scratch);
    Ok((plan(legacy, &existing, &recorded, &reserved), owners))
}

/// `--check-upgrade`: the import's report for `data_dir`, computed without
/// changing anything (the catalog is read if it exists, never created).
pub async fn check(
    admin: &crate::admin::Admin,
    config: &stonescriptdb_shared::config::Config,
) -> Result<Vec<String>, crate::error::MigratorError> {
    use crate::error::{pg_message, MigratorError};
    let (catalog_name, data_dir) = (config.catalog_db.as_str(), config.data_dir.as_path());
    let unavailable = |e: tokio_postgres::Error| MigratorError::DatabaseUnavailable(pg_message(&e));
    let legacy = read(data_dir);
    let client = admin.connect(None).await?;
    let existing = admin.all_databases(&client).await?;
    let mut recorded = BTreeSet::new();
    let mut lines = Vec::new();
    if existing.iter().any(|d| d == catalog_name) {
        let c = admin.connect(Some(catalog_name)).await?;
        let has_table = c
            .query_one("SELECT to_regclass('public.databases') IS NOT NULL", &[])
            .await
            .map_err(unavailable)?
            .get::<_, bool>(0);
        if has_table {
            recorded = c
                .query("SELECT name FROM databases", &[])
                .await
                .map_err(unavailable)?
                .iter()
                .map(|r| r.get(0))
                .collect();
        }
        let key = std::fs::canonicalize(data_dir)
            .unwrap_or_else(|_| data_dir.to_path_buf())
            .display()
            .to_string();
        let imported = has_table
            && c.query_opt(
                "SELECT 1 FROM pg_tables WHERE tablename = 'legacy_imports'",
                &[],
            )
            .await
            .map_err(unavailable)?
            .is_some()
            && c.query_opt("SELECT 1 FROM legacy_imports WHERE data_dir = $1", &[&key])
                .await
                .map_err(unavailable)?
                .is_some();
        lines.push(format!(
            "control catalog {catalog_name} exists{}",
            if imported {
                "; this DATA_DIR was imported into it already"
            } else {
                ""
            }
        ));
        if has_table {
            let limits = crate::archive::Limits::from(&config.archive);
            lines.extend(
                crate::rights::check(
                    &c,
                    &client,
                    config.platform_connection_limit,
                    &config.extensions_allowed,
                    &limits,
                )
                .await?,
            );
        }
    } else {
        lines.push(format!(
            "control catalog {catalog_name} does not exist yet; the migrator creates it at start"
        ));
    }
    lines.extend(legacy.problems.iter().map(|p| format!("unreadable: {p}")));
    lines.push(format!(
        "{} platform(s) found in {}: {}",
        legacy.platforms.len(),
        data_dir.display(),
        legacy
            .platforms
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut reserved: BTreeSet<String> = ["postgres", "template0", "template1", catalog_name]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(db) = admin.admin_database() {
        reserved.insert(db.to_owned());
    }
    reserved.extend(
        existing
            .iter()
            .filter(|d| d.starts_with(crate::catalog::SCRATCH_PREFIX))
            .cloned(),
    );
    lines.extend(plan(&legacy, &existing, &recorded, &reserved).lines());
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(dbs: &[&str]) -> Credentials {
        Credentials {
            owner_role: "o".into(),
            owner_password: "x".into(),
            app_role: "a".into(),
            app_password: "y".into(),
            databases: dbs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn legacy(platforms: &[(&str, LegacyPlatform)]) -> Legacy {
        Legacy {
            platforms: platforms
                .iter()
                .map(|(n, p)| (n.to_string(), p.clone()))
                .collect(),
            problems: vec![],
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_shared_prefix_is_reported_not_guessed() {
        let l = legacy(&[
            ("myapp", LegacyPlatform::default()),
            ("myapp_admin", LegacyPlatform::default()),
        ]);
        let p = plan(
            &l,
            &names(&[
                "myapp_main",
                "myapp_admin_main",
                "myapp_t1",
                "other_main",
                "postgres",
            ]),
            &BTreeSet::new(),
            &["postgres".to_string()].into(),
        );
        let got: Vec<(&str, &str)> = p
            .attributed
            .iter()
            .map(|a| (a.database.as_str(), a.platform.as_str()))
            .collect();
        assert_eq!(got, [("myapp_main", "myapp"), ("myapp_t1", "myapp")]);
        assert_eq!(
            p.ambiguous,
            [(
                "myapp_admin_main".to_string(),
                names(&["myapp", "myapp_admin"])
            )]
        );
        assert_eq!(p.unattributed, names(&["other_main"]));
        assert_eq!(p.attributed[1].tenant_id.as_deref(), Some("t1"));
    }

    #[test]
    fn explicit_records_win_over_names() {
        let l = legacy(&[
            ("myapp", LegacyPlatform::default()),
            (
                "myapp_admin",
                LegacyPlatform {
                    credentials: Some(creds(&["myapp_admin_main"])),
                    ..Default::default()
                },
            ),
        ]);
        let p = plan(
            &l,
            &names(&["myapp_admin_main"]),
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        assert_eq!(p.attributed.len(), 1);
        assert_eq!(p.attributed[0].platform, "myapp_admin");
        assert_eq!(p.attributed[0].kind, DbKind::V1);
        assert!(p.ambiguous.is_empty());
    }

    #[test]
    fn v2_registry_databases_and_templates_keep_their_schema() {
        let mut reg = Registry::default();
        reg.schemas.insert(
            "tenant_db".into(),
            RegistrySchema {
                versions: vec![RegistryVersion {
                    version: 1,
                    checksum: "abc".into(),
                    has_tables: true,
                    has_functions: false,
                    has_migrations: false,
                    has_seeders: false,
                }],
            },
        );
        reg.databases.insert(
            "app_tenant_db_7".into(),
            RegistryDatabase {
                id: "7".into(),
                schema_name: "tenant_db".into(),
                version: 1,
            },
        );
        let l = legacy(&[(
            "app",
            LegacyPlatform {
                registry: Some(reg),
                ..Default::default()
            },
        )]);
        let tpl = legacy_template_name("app", "tenant_db", 1, "abc");
        let p = plan(
            &l,
            &[
                "app_tenant_db_7".to_string(),
                tpl.clone(),
                "app_main".into(),
            ],
            &["app_main".to_string()].into(),
            &BTreeSet::new(),
        );
        assert_eq!(p.attributed.len(), 2);
        assert_eq!(p.attributed[0].kind, DbKind::V2);
        assert_eq!(p.attributed[0].database_id.as_deref(), Some("7"));
        assert_eq!(p.attributed[1].kind, DbKind::Template);
        assert_eq!(p.attributed[1].database, tpl);
        assert_eq!(p.already_recorded, names(&["app_main"]));
        assert!(p
            .lines()
            .iter()
            .any(|l| l.starts_with("already recorded: app_main")));
    }
}

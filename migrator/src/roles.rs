//! Per-platform PostgreSQL roles: `sdg_{platform}_owner` owns the platform's
//! databases and runs the SQL it uploads (migrations, functions, seeders),
//! never as superuser; `sdg_{platform}_app`, a member of it, is what the
//! router's `/call` connects as. Their generated passwords live in
//! `DATA_DIR/credentials/<platform>.json` (mode 0600), never in logs.
//! Databases created before roles existed keep working as they were (owned by
//! the admin role); only databases listed in the file use the platform roles.

use std::io::Read;
use std::path::PathBuf;

use stonescriptdb_shared::names::{self, quote_ident};
use stonescriptdb_shared::wire::PlatformCredentials;
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::{pg_message, MigratorError};
use crate::store::write_atomic_mode;

pub struct Roles {
    data_dir: PathBuf,
    lock: Mutex<()>,
}

fn random_password() -> Result<String, MigratorError> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| MigratorError::Internal(format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Roles {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            lock: Mutex::new(()),
        }
    }

    pub fn load(&self, platform: &str) -> Result<Option<PlatformCredentials>, MigratorError> {
        let path = PlatformCredentials::path(&self.data_dir, platform);
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| {
                MigratorError::Internal(format!("{} is corrupt: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(MigratorError::Internal(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    fn save(&self, creds: &PlatformCredentials) -> Result<(), MigratorError> {
        let path = PlatformCredentials::path(&self.data_dir, &creds.platform);
        let data =
            serde_json::to_vec_pretty(creds).map_err(|e| MigratorError::Internal(e.to_string()))?;
        write_atomic_mode(&path, &data, 0o600)
            .map_err(|e| MigratorError::Internal(format!("cannot write {}: {e}", path.display())))
    }

    /// The platform's credentials, creating the roles (and the file) on
    /// first use; roles missing from the server are created again.
    pub async fn ensure(
        &self,
        admin: &Client,
        platform: &str,
    ) -> Result<PlatformCredentials, MigratorError> {
        let _guard = self.lock.lock().await;
        let creds = match self.load(platform)? {
            Some(c) => c,
            None => {
                let (owner_role, app_role) = names::platform_roles(platform)
                    .map_err(|e| MigratorError::BadRequest(e.to_string()))?;
                let c = PlatformCredentials {
                    platform: platform.to_owned(),
                    owner_role,
                    owner_password: random_password()?,
                    app_role,
                    app_password: random_password()?,
                    databases: Default::default(),
                };
                self.save(&c)?;
                c
            }
        };
        let existing: Vec<String> = admin
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
                &[&vec![creds.owner_role.clone(), creds.app_role.clone()]],
            )
            .await
            .map_err(|e| MigratorError::DatabaseUnavailable(pg_message(&e)))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let lit = |p: &str| format!("'{}'", p.replace('\'', "''"));
        let mut statements = Vec::new();
        if !existing.contains(&creds.owner_role) {
            statements.push(format!(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}",
                quote_ident(&creds.owner_role),
                lit(&creds.owner_password)
            ));
        }
        if !existing.contains(&creds.app_role) {
            statements.push(format!(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {} IN ROLE {}",
                quote_ident(&creds.app_role),
                lit(&creds.app_password),
                quote_ident(&creds.owner_role)
            ));
        }
        for s in statements {
            match admin.batch_execute(&s).await {
                Ok(()) => {}
                // created concurrently by another migrator request
                Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
                Err(e) => {
                    return Err(MigratorError::DatabaseUnavailable(format!(
                        "cannot create the roles of platform {platform} (the gateway's role needs CREATEROLE): {}",
                        pg_message(&e)
                    )))
                }
            }
        }
        Ok(creds)
    }

    /// Record that `database` is owned by the platform's owner role.
    pub async fn add_database(&self, platform: &str, database: &str) -> Result<(), MigratorError> {
        let _guard = self.lock.lock().await;
        let mut creds = self.load(platform)?.ok_or_else(|| {
            MigratorError::Internal(format!("no credentials for platform {platform}"))
        })?;
        if creds.databases.insert(database.to_owned()) {
            self.save(&creds)?;
        }
        Ok(())
    }

    /// Forget a database (dropped after a failed creation).
    pub async fn remove_database(
        &self,
        platform: &str,
        database: &str,
    ) -> Result<(), MigratorError> {
        let _guard = self.lock.lock().await;
        if let Some(mut creds) = self.load(platform)? {
            if creds.databases.remove(database) {
                self.save(&creds)?;
            }
        }
        Ok(())
    }
}

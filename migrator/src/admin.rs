//! Database-level operations through the admin connection: does a database
//! exist, create it, drop it, list a platform's databases, and open a
//! connection to one database for a deployment.

use stonescriptdb_shared::names::quote_ident;
use tokio_postgres::{Client, NoTls};

use crate::error::{pg_message, MigratorError};

#[derive(Clone)]
pub struct Admin {
    base: tokio_postgres::Config,
}

impl Admin {
    /// `lock_timeout` / `statement_timeout` (ms, 0 = none) apply to every
    /// migrator connection, so a deployment that waits on a busy table fails
    /// cleanly instead of queueing `/call` traffic behind its lock.
    pub fn new(
        mut base: tokio_postgres::Config,
        lock_timeout_ms: u128,
        statement_timeout_ms: u128,
    ) -> Self {
        // If the migrator dies mid-deployment, PostgreSQL notices within a
        // second (even inside a long statement), rolls the deployment back and
        // releases its lock instead of running on for nobody.
        base.options(format!(
            "-c search_path=public -c client_connection_check_interval=1000 \
             -c lock_timeout={lock_timeout_ms} -c statement_timeout={statement_timeout_ms}"
        ));
        Self { base }
    }

    /// A connection to `dbname` (the admin database when `None`).
    pub async fn connect(&self, dbname: Option<&str>) -> Result<Client, MigratorError> {
        self.connect_with(dbname, None).await
    }

    /// A connection to `dbname` as another role (a platform's owner role).
    pub async fn connect_as(
        &self,
        dbname: &str,
        user: &str,
        password: &str,
    ) -> Result<Client, MigratorError> {
        self.connect_with(Some(dbname), Some((user, password)))
            .await
    }

    async fn connect_with(
        &self,
        dbname: Option<&str>,
        login: Option<(&str, &str)>,
    ) -> Result<Client, MigratorError> {
        let mut cfg = self.base.clone();
        if let Some(db) = dbname {
            cfg.dbname(db);
        }
        if let Some((user, password)) = login {
            cfg.user(user).password(password);
        }
        let (client, conn) = cfg.connect(NoTls).await.map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) {
                MigratorError::DatabaseNotFound(dbname.unwrap_or_default().to_owned())
            } else {
                MigratorError::DatabaseUnavailable(format!(
                    "cannot connect to {}: {}",
                    dbname.unwrap_or("the admin database"),
                    pg_message(&e)
                ))
            }
        })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    pub async fn exists(&self, client: &Client, name: &str) -> Result<bool, MigratorError> {
        let rows = client
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|e| MigratorError::DatabaseUnavailable(pg_message(&e)))?;
        Ok(!rows.is_empty())
    }

    /// Create `name` (owned by `owner` when given, which also revokes
    /// CONNECT from PUBLIC); `Ok(false)` if it already existed.
    pub async fn create(
        &self,
        client: &Client,
        name: &str,
        owner: Option<&str>,
    ) -> Result<bool, MigratorError> {
        let owner_sql = owner
            .map(|o| format!(" OWNER {}", quote_ident(o)))
            .unwrap_or_default();
        match client
            .batch_execute(&format!("CREATE DATABASE {}{owner_sql}", quote_ident(name)))
            .await
        {
            Ok(()) => {
                if owner.is_some() {
                    self.restrict(client, name).await?;
                }
                Ok(true)
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
                Ok(false)
            }
            Err(e) => Err(MigratorError::DatabaseUnavailable(format!(
                "cannot create database {name}: {}",
                pg_message(&e)
            ))),
        }
    }

    /// Only the owner (and the roles it grants to) may connect to `name`.
    pub async fn restrict(&self, client: &Client, name: &str) -> Result<(), MigratorError> {
        client
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                quote_ident(name)
            ))
            .await
            .map_err(|e| {
                MigratorError::DatabaseUnavailable(format!(
                    "cannot restrict database {name}: {}",
                    pg_message(&e)
                ))
            })
    }

    /// Drop `name`, disconnecting anyone still connected (PostgreSQL 13+).
    pub async fn drop(&self, client: &Client, name: &str) -> Result<(), MigratorError> {
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(name)
            ))
            .await
            .map_err(|e| {
                MigratorError::DatabaseUnavailable(format!(
                    "cannot drop database {name}: {}",
                    pg_message(&e)
                ))
            })
    }

    /// Databases whose name starts with `{platform}_`, sorted.
    pub async fn platform_databases(
        &self,
        client: &Client,
        platform: &str,
    ) -> Result<Vec<String>, MigratorError> {
        let pattern = format!("{}\\_%", platform.replace('_', "\\_"));
        let rows = client
            .query(
                "SELECT datname::text FROM pg_database WHERE datname LIKE $1 AND NOT datistemplate ORDER BY 1",
                &[&pattern],
            )
            .await
            .map_err(|e| MigratorError::DatabaseUnavailable(pg_message(&e)))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

//! Database-level operations through the admin connection: does a database
//! exist, create it, drop it, list a platform's databases, and open a
//! connection to one database for a deployment.

use stonescriptdb_shared::names::quote_ident;
use stonescriptdb_startup::tls::PgTls;
use tokio_postgres::Client;

use crate::error::{pg_message, MigratorError};

#[derive(Clone)]
pub struct Admin {
    base: tokio_postgres::Config,
    tls: PgTls,
    lock_timeout_ms: u128,
}

impl Admin {
    /// `lock_timeout` / `statement_timeout` (ms, 0 = none) apply to every
    /// migrator connection, so a deployment that waits on a busy table fails
    /// cleanly instead of queueing `/call` traffic behind its lock.
    pub fn new(
        mut base: tokio_postgres::Config,
        tls: PgTls,
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
        Self {
            base,
            tls,
            lock_timeout_ms,
        }
    }

    /// How long a migrator connection waits for a lock (ms, 0 = for ever):
    /// `DEPLOY_LOCK_TIMEOUT_MS`.
    pub fn lock_timeout_ms(&self) -> u128 {
        self.lock_timeout_ms
    }

    /// The TLS connector of every migrator connection (`DB_SSLMODE`).
    pub fn tls(&self) -> &PgTls {
        &self.tls
    }

    /// The admin connection settings (with the migrator's session options).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.base
    }

    /// The admin database (`DB_NAME`) the gateway connects to for maintenance.
    pub fn admin_database(&self) -> Option<&str> {
        self.base.get_dbname()
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
        let (client, conn) = cfg.connect(self.tls.clone()).await.map_err(|e| {
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

    /// Create `name` (a copy of `template` when given), owned by the
    /// gateway's role; with `owner` (a platform's owner role) it gets that
    /// role's rights ([`Admin::settle`]). `Ok(false)` if it already existed.
    pub async fn create(
        &self,
        client: &Client,
        name: &str,
        owner: Option<&str>,
        template: Option<&str>,
    ) -> Result<bool, MigratorError> {
        let template_sql = template
            .map(|t| format!(" TEMPLATE {}", quote_ident(t)))
            .unwrap_or_default();
        match client
            .batch_execute(&format!(
                "CREATE DATABASE {}{template_sql}",
                quote_ident(name)
            ))
            .await
        {
            Ok(()) => {
                if let Some(owner) = owner {
                    // a copy of a template already has the template's
                    // public schema, which the owner role owns; the
                    // database (ours, we created it) needs its grants
                    if template.is_none() {
                        self.give_public_schema(name, owner).await?;
                    }
                    self.grant(client, name, owner).await?;
                }
                Ok(true)
            }
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
            {
                Ok(false)
            }
            Err(e) => Err(MigratorError::DatabaseUnavailable(format!(
                "cannot create database {name}: {}",
                pg_message(&e)
            ))),
        }
    }

    /// The rights of a platform database (docs/SECURITY.md): the database
    /// belongs to the gateway's role, so no platform can drop, rename or
    /// reconfigure it, even with a statement our reader missed; the
    /// platform's owner role gets `CONNECT, TEMPORARY, CREATE` on it and
    /// owns its `public` schema (and so everything it creates there);
    /// PUBLIC gets nothing. Applied after every creation and clone
    /// (database-level rights are not copied from a template), on adoption
    /// and, for older installations, at start. Idempotent. Ownership moves
    /// first (moving it rewrites the old owner's grants into the new
    /// owner's), the owner role's `CREATE` comes last: a database whose
    /// owner role has it has had every step (`rights::unsettled`).
    pub async fn settle(
        &self,
        client: &Client,
        name: &str,
        owner: &str,
    ) -> Result<(), MigratorError> {
        client
            .batch_execute(&format!(
                "ALTER DATABASE {} OWNER TO CURRENT_USER",
                quote_ident(name)
            ))
            .await
            .map_err(|e| rights_failed(name, e))?;
        self.give_public_schema(name, owner).await?;
        self.grant(client, name, owner).await
    }

    /// The owner role owns the `public` schema of `name` (and PUBLIC may
    /// not create in it).
    async fn give_public_schema(&self, name: &str, owner: &str) -> Result<(), MigratorError> {
        let inside = self.connect(Some(name)).await?;
        inside
            .batch_execute(&format!(
                "ALTER SCHEMA public OWNER TO {}; REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                quote_ident(owner)
            ))
            .await
            .map_err(|e| rights_failed(name, e))
    }

    /// PUBLIC loses every right on `name`; the owner role gets `CONNECT,
    /// TEMPORARY, CREATE` (the last step of [`Admin::settle`]).
    async fn grant(&self, client: &Client, name: &str, owner: &str) -> Result<(), MigratorError> {
        let (db, role) = (quote_ident(name), quote_ident(owner));
        client
            .batch_execute(&format!(
                "REVOKE ALL ON DATABASE {db} FROM PUBLIC;
                 GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {db} TO {role}"
            ))
            .await
            .map_err(|e| rights_failed(name, e))
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

    /// `pg_database_size` of `name`; `None` when PostgreSQL has no such
    /// database (the listing reports what the catalog records).
    pub async fn size(&self, client: &Client, name: &str) -> Result<Option<i64>, MigratorError> {
        let row = client
            .query_one(
                "SELECT (SELECT pg_database_size(oid) FROM pg_database WHERE datname = $1)",
                &[&name],
            )
            .await
            .map_err(|e| MigratorError::DatabaseUnavailable(pg_message(&e)))?;
        Ok(row.get(0))
    }

    /// Names of every database of the server but templates, sorted.
    pub async fn all_databases(&self, client: &Client) -> Result<Vec<String>, MigratorError> {
        let rows = client
            .query(
                "SELECT datname::text FROM pg_database WHERE NOT datistemplate ORDER BY 1",
                &[],
            )
            .await
            .map_err(|e| MigratorError::DatabaseUnavailable(pg_message(&e)))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Hand `database` to a platform's owner role: the rights of a
    /// platform database ([`Admin::settle`]; the database itself then
    /// belongs to the gateway), and every schema, relation, routine and type
    /// in it that the gateway's admin role owns (extension members and
    /// system schemas excepted). Returns how many objects moved.
    pub async fn hand_over(
        &self,
        admin: &Client,
        database: &str,
        owner_role: &str,
    ) -> Result<u64, MigratorError> {
        let fail = |e: tokio_postgres::Error| {
            MigratorError::DatabaseUnavailable(format!(
                "cannot hand {database} to {owner_role}: {}",
                pg_message(&e)
            ))
        };
        self.settle(admin, database, owner_role).await?;
        let db = self.connect(Some(database)).await?;
        db.batch_execute(HAND_OVER_FN).await.map_err(fail)?;
        let n: i64 = db
            .query_one("SELECT pg_temp.sdg_hand_over($1)", &[&owner_role])
            .await
            .map_err(fail)?
            .get(0);
        Ok(n.max(0) as u64)
    }
}

fn rights_failed(name: &str, e: tokio_postgres::Error) -> MigratorError {
    MigratorError::DatabaseUnavailable(format!(
        "cannot set the rights of database {name}: {}",
        pg_message(&e)
    ))
}

/// Moves what the current (admin) role owns in a database to `new_owner`.
/// Tables go before sequences: a sequence a table owns moves with it, and an
/// identity sequence cannot move on its own.
const HAND_OVER_FN: &str = r#"
CREATE FUNCTION pg_temp.sdg_hand_over(new_owner name) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    me oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
    r record;
    n bigint := 0;
BEGIN
    FOR r IN
        SELECT ns.nspname FROM pg_namespace ns
        WHERE ns.nspowner = me AND ns.nspname NOT LIKE 'pg\_%' AND ns.nspname <> 'information_schema'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                          AND d.objid = ns.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, new_owner);
        n := n + 1;
    END LOOP;
    FOR r IN
        SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
        WHERE c.relowner = me AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND ns.nspname NOT LIKE 'pg\_%' AND ns.nspname <> 'information_schema'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY c.relkind = 'S', c.oid
    LOOP
        CONTINUE WHEN r.relkind = 'S' AND (
            (SELECT relowner FROM pg_class WHERE oid = r.oid) <> me
            OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                       AND d.objid = r.oid AND d.deptype = 'i'));
        EXECUTE format('ALTER %s %s OWNER TO %I',
            CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                           WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
            r.oid::regclass, new_owner);
        n := n + 1;
    END LOOP;
    FOR r IN
        SELECT p.oid FROM pg_proc p JOIN pg_namespace ns ON ns.oid = p.pronamespace
        WHERE p.proowner = me AND ns.nspname NOT LIKE 'pg\_%' AND ns.nspname <> 'information_schema'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.oid::regprocedure, new_owner);
        n := n + 1;
    END LOOP;
    FOR r IN
        SELECT t.oid, t.typtype FROM pg_type t JOIN pg_namespace ns ON ns.oid = t.typnamespace
        WHERE t.typowner = me AND t.typtype IN ('e', 'd', 'r', 'c')
          AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
          AND ns.nspname NOT LIKE 'pg\_%' AND ns.nspname <> 'information_schema'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                          AND d.objid = t.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
            CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.oid::regtype, new_owner);
        n := n + 1;
    END LOOP;
    RETURN n;
END $f$;
"#;

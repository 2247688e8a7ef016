//! The handle on the control catalog: [`Catalog`] opens the catalog
//! database (creating it when missing, closing it to every role but the
//! gateway's), keeps its connection pool, and brings its schema to the
//! newest version of the versioned DDL (`v1.sql` … `v4.sql`), applied in
//! order under an advisory lock so several migrators may start at once.
//! Also the helpers every room shares: the error mapping ([`pg`],
//! [`unavailable`]) and timestamps as RFC 3339 text ([`ts`]).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use stonescriptdb_shared::catalog::LEASE_CLASS;
use stonescriptdb_shared::names::quote_ident;
use stonescriptdb_startup::tls::PgTls;
use tokio_postgres::error::SqlState;

use crate::error::{pg_message, MigratorError};

/// The catalog's versioned DDL, applied in order; a later version is a new
/// file, never an edit of an applied one.
const VERSIONS: &[(i32, &str)] = &[
    (1, include_str!("v1.sql")),
    (2, include_str!("v2.sql")),
    (3, include_str!("v3.sql")),
    (4, include_str!("v4.sql")),
];

/// The advisory lock `(LEASE_CLASS, 0)` serializing schema upgrades. Never
/// a lease: lease numbers come from the `leases` sequence, which starts at 1.
const UPGRADE_LOCK: i32 = 0;
const _: () = assert!(UPGRADE_LOCK < 1);

/// The DDL versions a catalog at version `current` (0: none applied) lacks,
/// in the order to apply them.
fn pending(current: i32) -> impl Iterator<Item = &'static (i32, &'static str)> {
    VERSIONS
        .iter()
        .filter(move |(version, _)| *version > current)
}

/// Timestamps as RFC 3339 UTC.
const TS: &str = "YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"";

/// `column` (a `timestamptz`) as RFC 3339 UTC text, for a select list.
pub(super) fn ts(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', '{TS}')")
}

/// The catalog cannot answer: 503, naming the catalog.
pub(super) fn unavailable(e: impl std::fmt::Display) -> MigratorError {
    MigratorError::DatabaseUnavailable(format!("control catalog: {e}"))
}

/// A catalog column (`table.column`) that holds one of an enum's words,
/// read back.
pub(super) fn word<T>(r: &tokio_postgres::Row, i: usize, column: &str) -> Result<T, MigratorError>
where
    T: std::str::FromStr<Err = stonescriptdb_shared::words::UnknownWord>,
{
    r.get::<_, &str>(i)
        .parse()
        .map_err(|e| MigratorError::Internal(format!("the catalog's {column}: {e}")))
}

/// A PostgreSQL error of a catalog statement (its message, detail and hint kept).
pub(super) fn pg(e: tokio_postgres::Error) -> MigratorError {
    unavailable(pg_message(&e))
}

pub struct Catalog {
    pool: Pool,
    pub name: String,
    /// `HISTORY_RETENTION_DAYS`: deployment records older than this are
    /// removed as new ones are written.
    pub(super) history_days: u32,
}

impl Catalog {
    /// Connect to the catalog database `name` (creating it, and applying
    /// its DDL, when missing). `admin` is a connection to the admin database.
    /// Only the gateway's own role (and superusers) may connect to it: it
    /// holds the platforms' role passwords. That is checked at every start,
    /// for a catalog created by hand or by an older version too, and PUBLIC's
    /// `CONNECT`/`TEMPORARY` revoked; a catalog the gateway cannot close is
    /// not opened. Deployment records are kept `history_days` days.
    pub async fn open(
        base: &tokio_postgres::Config,
        tls: &PgTls,
        admin: &tokio_postgres::Client,
        name: &str,
        history_days: u32,
    ) -> Result<Catalog, MigratorError> {
        let exists = !admin
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(pg)?
            .is_empty();
        if !exists {
            match admin
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
                .await
            {
                Ok(()) => {}
                // another migrator created it at the same moment
                Err(e)
                    if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                        || e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                Err(e) => {
                    return Err(unavailable(format!(
                        "cannot create the catalog database {name} (the gateway's role needs CREATEDB): {}",
                        pg_message(&e)
                    )))
                }
            }
        }
        // PUBLIC's rights, explicit or PostgreSQL's default ones (a NULL acl).
        let public_may_connect: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_database d,
                        aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                        WHERE d.datname = $1 AND a.grantee = 0
                          AND a.privilege_type IN ('CONNECT', 'TEMPORARY'))",
                &[&name],
            )
            .await
            .map_err(pg)?
            .get(0);
        if public_may_connect {
            let revoke = format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                quote_ident(name)
            );
            admin.batch_execute(&revoke).await.map_err(|e| {
                unavailable(format!(
                    "the catalog database {name} lets every role connect (PUBLIC has CONNECT or TEMPORARY) and the gateway's role cannot revoke that: {}; run `{revoke}` as its owner",
                    pg_message(&e)
                ))
            })?;
        }
        let mut cfg = base.clone();
        cfg.dbname(name);
        cfg.connect_timeout(Duration::from_secs(5));
        let mgr = Manager::from_config(
            cfg,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // A deployment holds one connection (its lease) for as long as it
        // runs, a creation two: the wait is bounded so that a burst beyond
        // the pool answers 503 instead of waiting on itself.
        let pool = Pool::builder(mgr)
            .max_size(32)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(unavailable)?;
        let catalog = Catalog {
            pool,
            name: name.to_owned(),
            history_days,
        };
        catalog.upgrade_schema().await?;
        Ok(catalog)
    }

    /// A connection to the catalog database (for the rooms, and for readers
    /// outside this module that query the catalog together with
    /// PostgreSQL's own catalogs, e.g. `rights`).
    pub(crate) async fn conn(&self) -> Result<Object, MigratorError> {
        self.pool
            .get()
            .await
            .map_err(|e| unavailable(format!("cannot connect to {}: {e}", self.name)))
    }

    /// Apply the catalog DDL versions this database lacks.
    async fn upgrade_schema(&self) -> Result<(), MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        tx.query(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LEASE_CLASS, &UPGRADE_LOCK],
        )
        .await
        .map_err(pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS catalog_version (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg)?;
        let current: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM catalog_version", &[])
            .await
            .map_err(pg)?
            .get(0);
        for (version, ddl) in pending(current) {
            tx.batch_execute(ddl).await.map_err(|e| {
                unavailable(format!(
                    "applying catalog version {version}: {}",
                    pg_message(&e)
                ))
            })?;
            tx.execute(
                "INSERT INTO catalog_version (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }
}

/// How many columns a select list has (commas inside parentheses or
/// quotes separate none), for the rooms' tests of where they read.
#[cfg(test)]
pub(super) fn select_list_len(list: &str) -> usize {
    let (mut depth, mut quoted, mut columns) = (0, false, 1);
    for c in list.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => columns += 1,
            _ => {}
        }
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_select_list_counts_its_columns_not_its_commas() {
        assert_eq!(select_list_len("a"), 1);
        assert_eq!(select_list_len("a, b"), 2);
        assert_eq!(select_list_len(&format!("a, {}, b", ts("t"))), 3);
        assert_eq!(select_list_len("a, coalesce(b, 0), 'x,y'"), 3);
    }

    fn versions(current: i32) -> Vec<i32> {
        pending(current).map(|(v, _)| *v).collect()
    }

    #[test]
    fn versions_are_numbered_from_one_without_gaps() {
        let numbers: Vec<i32> = VERSIONS.iter().map(|(v, _)| *v).collect();
        let expected: Vec<i32> = (1..=VERSIONS.len() as i32).collect();
        assert_eq!(numbers, expected);
    }

    #[test]
    fn a_new_catalog_gets_every_version_in_order() {
        let newest = VERSIONS.len() as i32;
        assert_eq!(versions(0), (1..=newest).collect::<Vec<_>>());
    }

    #[test]
    fn a_catalog_gets_only_the_versions_it_lacks() {
        let newest = VERSIONS.len() as i32;
        assert_eq!(versions(1), (2..=newest).collect::<Vec<_>>());
        assert!(versions(newest).is_empty());
        // a catalog a newer migrator upgraded is left alone
        assert!(versions(newest + 1).is_empty());
    }

    #[test]
    fn each_version_is_the_file_of_its_number() {
        for (version, ddl) in VERSIONS {
            assert!(
                ddl.starts_with(&format!("-- Control catalog, version {version}")),
                "version {version} does not start with its own header"
            );
        }
    }

    #[test]
    fn lease_numbers_start_at_one_so_never_meet_the_upgrade_lock() {
        // An ascending sequence starts at 1, and a cycling one restarts
        // there, unless a version says otherwise.
        let said: Vec<&str> = VERSIONS
            .iter()
            .flat_map(|(_, ddl)| ddl.lines())
            .filter(|l| l.contains("SEQUENCE leases"))
            .collect();
        assert_eq!(said, vec!["CREATE SEQUENCE leases AS integer CYCLE;"]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            ts("t.created_at"),
            "to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        );
    }
}

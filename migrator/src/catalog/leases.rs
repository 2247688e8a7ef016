//! Leases: how a migrator says "this creation, this deployment is mine
//! and I am alive". A lease is a number from the catalog's `leases`
//! sequence, written on the row it guards, and the session-level advisory
//! lock `(LEASE_CLASS, number)` held by the catalog session doing the work.
//! PostgreSQL frees the lock when that session ends, however the migrator
//! ends: a guarded row whose lock is free belongs to a migrator that
//! stopped, and whoever takes the lock may resolve it.

use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::Object;
use stonescriptdb_shared::catalog::LEASE_CLASS;
use tokio_postgres::GenericClient;

use super::handle::pg;
use crate::error::MigratorError;

/// What a guarded operation records at its end, in one transaction on the
/// lease's session ([`Lease::finish`]).
pub(super) type Work<'c, T> =
    Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>>;

/// A catalog session holding an advisory-lock lease. Dropped without
/// [`Lease::release`] (a cancelled request), its connection is closed rather
/// than returned to the pool, so PostgreSQL frees the lease.
pub(super) struct Lease {
    conn: Option<Object>,
    pub(super) number: i32,
}

/// The next lease number (the sequence cycles, never reaching 0).
pub(super) async fn next(c: &impl GenericClient) -> Result<i32, tokio_postgres::Error> {
    Ok(c.query_one("SELECT nextval('leases')::integer", &[])
        .await?
        .get(0))
}

/// Take the lease `number` for the session of `c`, waiting for it (a
/// number just drawn is nobody else's). Inside a transaction, it outlives
/// the commit: it is the session's.
pub(super) async fn take(c: &impl GenericClient, number: i32) -> Result<(), tokio_postgres::Error> {
    c.query_one("SELECT pg_advisory_lock($1, $2)", &[&LEASE_CLASS, &number])
        .await?;
    Ok(())
}

/// Take the lease `number` if it is free (its holder stopped): `true` if
/// the session of `c` holds it now.
pub(super) async fn claim(
    c: &impl GenericClient,
    number: i32,
) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT pg_try_advisory_lock($1, $2)",
        &[&LEASE_CLASS, &number],
    )
    .await?
    .get(0))
}

/// Free the lease `number` the session of `c` holds: `true` if it held it.
pub(super) async fn unclaim(
    c: &impl GenericClient,
    number: i32,
) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT pg_advisory_unlock($1, $2)",
        &[&LEASE_CLASS, &number],
    )
    .await?
    .get(0))
}

impl Lease {
    /// The lease `number`, which the session of `conn` has taken.
    pub(super) fn held(conn: Object, number: i32) -> Lease {
        Lease {
            conn: Some(conn),
            number,
        }
    }

    /// The session holding the lease, to record what it guards.
    pub(super) fn conn(&self) -> &tokio_postgres::Client {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until released")
    }

    /// Record the end of what the lease guards: `work` (given the lease's
    /// session and number) runs in one transaction, committed, and the
    /// lease is freed. If it fails it is rolled back and the error
    /// returned; the connection is then closed, which frees the lease too.
    pub(super) async fn finish<T: Send>(
        self,
        work: impl for<'c> FnOnce(&'c tokio_postgres::Client, i32) -> Work<'c, T>,
    ) -> Result<T, MigratorError> {
        let done = {
            let c = self.conn();
            c.batch_execute("BEGIN").await.map_err(pg)?;
            match work(c, self.number).await {
                Ok(v) => c.batch_execute("COMMIT").await.map(|()| v),
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            }
        };
        let v = done.map_err(pg)?;
        self.release().await;
        Ok(v)
    }

    /// Free the lease and give the connection back; a connection that
    /// cannot say it freed the lease is closed instead.
    pub(super) async fn release(mut self) {
        if let Some(c) = self.conn.take() {
            if !unclaim(&**c, self.number).await.unwrap_or(false) {
                drop(Object::take(c));
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            drop(Object::take(c));
        }
    }
}

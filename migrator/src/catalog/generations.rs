//! Generations: the catalog's counter of committed changes to databases.
//! A change is announced in the transaction that records it: the SQL
//! function `announce` (`v1.sql`) takes the next generation, writes it on
//! the database's row and notifies routers on `CHANNEL`, so generations
//! become visible in commit order and a router polling "newer than N"
//! misses nothing.

use tokio_postgres::GenericClient;

use super::handle::{pg, Catalog};
use crate::error::MigratorError;

/// Announce a committed change to `database` inside the transaction of
/// `c`; returns its generation.
pub(super) async fn announce_in(
    c: &impl GenericClient,
    database: &str,
) -> Result<i64, tokio_postgres::Error> {
    Ok(c.query_one("SELECT announce($1)", &[&database])
        .await?
        .get(0))
}

impl Catalog {
    /// Tell routers to drop what they cached about these databases; returns
    /// the last generation taken (0 for none).
    pub async fn announce(&self, databases: &[String]) -> Result<i64, MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let mut g = 0;
        for d in databases {
            g = announce_in(&*tx, d).await.map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(g)
    }
}

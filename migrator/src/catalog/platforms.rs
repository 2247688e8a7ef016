//! Platforms and their roles: the record of each platform (its owner and
//! app roles with their passwords, whether it registered through the v2
//! API), the name-space rules between platforms (a platform `p` owns every
//! database name `p_…` no shorter-named platform may take), and platform
//! tokens (their generation and the key they are derived from).

use stonescriptdb_shared::names::quote_ident;

use super::handle::{pg, ts, unavailable, Catalog};
use crate::error::MigratorError;

/// A platform and its PostgreSQL roles.
#[derive(Clone, PartialEq, Eq)]
pub struct Platform {
    pub name: String,
    pub owner_role: String,
    pub owner_password: String,
    pub app_role: String,
    pub app_password: String,
    /// Registered through `POST /platform/register`.
    pub v2: bool,
}

/// Without the passwords: a platform may be logged.
impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("name", &self.name)
            .field("owner_role", &self.owner_role)
            .field("app_role", &self.app_role)
            .field("v2", &self.v2)
            .finish_non_exhaustive()
    }
}

/// `$1` (a database name) falls under the name prefix `p_` of a registered
/// platform `p` other than, and longer than, `$2` (the platform creating it).
/// Also asked by `databases` inside the transaction recording a creation.
pub(super) const RESERVED_SQL: &str =
    "SELECT 1 FROM platforms WHERE name <> $2 AND length(name) > length($2)
    AND starts_with($1, name || '_') LIMIT 1";

/// The catalog's single-column foreign keys to `platforms` that do not
/// cascade, but `databases` (whose rows go one by one, each with its
/// database): the table (regclass text, quoted as needed) and column.
const REFERENCING_SQL: &str = "\
SELECT c.conrelid::regclass::text, a.attname::text
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'f' AND c.confrelid = 'platforms'::regclass AND c.confdeltype <> 'c'
  AND cardinality(c.conkey) = 1 AND c.conrelid <> 'databases'::regclass
ORDER BY 1";

impl Catalog {
    pub async fn platform(&self, name: &str) -> Result<Option<Platform>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT name, owner_role, owner_password, app_role, app_password, v2_registered_at IS NOT NULL
                 FROM platforms WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| Platform {
            name: r.get(0),
            owner_role: r.get(1),
            owner_password: r.get(2),
            app_role: r.get(3),
            app_password: r.get(4),
            v2: r.get(5),
        }))
    }

    /// Would databases named `prefix_…` (a v2 schema's, `{except}_{schema}`)
    /// fall under the name prefix of a registered platform longer than
    /// `except`: one whose `name_` starts `prefix_` (all of them would),
    /// or one named `prefix_…` (some would)?
    pub async fn platform_under(&self, prefix: &str, except: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT 1 FROM platforms WHERE name <> $2 AND length(name) > length($2)
                    AND (starts_with($1 || '_', name || '_') OR starts_with(name, $1 || '_')) LIMIT 1",
                &[&prefix, &except],
            )
            .await
            .map_err(pg)?;
        Ok(row.is_some())
    }

    /// Does the database name `name` fall under the name prefix of a
    /// registered platform longer than `platform` (so it is not `platform`'s
    /// to create)?
    pub async fn reserved(&self, name: &str, platform: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(RESERVED_SQL, &[&name, &platform])
            .await
            .map_err(pg)?;
        Ok(row.is_some())
    }

    /// Is `name` an existing platform's name plus `_…`?
    pub async fn extends_a_platform(&self, name: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT 1 FROM platforms WHERE starts_with($1, name || '_') LIMIT 1",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.is_some())
    }

    /// The platform's token generation and when it was issued (RFC 3339),
    /// if a token was ever issued.
    pub async fn token_generation(
        &self,
        platform: &str,
    ) -> Result<Option<(i32, String)>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!(
                    "SELECT generation, {} FROM platform_tokens WHERE platform = $1",
                    ts("created_at")
                ),
                &[&platform],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Issue the platform's token: the current generation (the first one if
    /// none was issued), or the next one when `rotate`.
    pub async fn issue_token(
        &self,
        platform: &str,
        rotate: bool,
    ) -> Result<(i32, String), MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                &format!(
                    "INSERT INTO platform_tokens (platform, generation) VALUES ($1, 1)
                     ON CONFLICT (platform) DO UPDATE SET
                       generation = platform_tokens.generation + CASE WHEN $2 THEN 1 ELSE 0 END,
                       created_at = CASE WHEN $2 THEN now() ELSE platform_tokens.created_at END
                     RETURNING generation, {}",
                    ts("created_at")
                ),
                &[&platform, &rotate],
            )
            .await
            .map_err(pg)?;
        Ok((row.get(0), row.get(1)))
    }

    /// The key kept in the catalog for platform tokens (made on first use).
    pub async fn token_key(&self, fresh: &str) -> Result<String, MigratorError> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO token_key (key) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&fresh],
        )
        .await
        .map_err(pg)?;
        let row = conn
            .query_one("SELECT key FROM token_key", &[])
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }

    /// Record `p` unless a platform of that name exists; returns the
    /// recorded one and whether it was new.
    pub async fn insert_platform(&self, p: &Platform) -> Result<(Platform, bool), MigratorError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "INSERT INTO platforms (name, owner_role, owner_password, app_role, app_password, v2_registered_at)
                 VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END) ON CONFLICT (name) DO NOTHING",
                &[&p.name, &p.owner_role, &p.owner_password, &p.app_role, &p.app_password, &p.v2],
            )
            .await
            .map_err(pg)?;
        let recorded = self
            .platform(&p.name)
            .await?
            .ok_or_else(|| unavailable(format!("platform {} vanished", p.name)))?;
        Ok((recorded, n == 1))
    }

    /// Mark a platform registered through the v2 API; `false` if it was.
    pub async fn mark_v2(&self, name: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "UPDATE platforms SET v2_registered_at = now() WHERE name = $1 AND v2_registered_at IS NULL",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(n == 1)
    }

    /// Mark `name` as being offboarded (kept when it already was): from
    /// now on it gets no new database, and a migrator that stops before
    /// the offboarding ends leaves it to the next one. `false` when there
    /// is no such platform.
    pub async fn mark_offboarding(&self, name: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "UPDATE platforms SET offboarding_since = coalesce(offboarding_since, now()) WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(n == 1)
    }

    /// Platforms whose offboarding has not ended.
    pub async fn offboarding(&self) -> Result<Vec<String>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT name FROM platforms WHERE offboarding_since IS NOT NULL ORDER BY name",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The last step of an offboarding, once the platform's databases and
    /// roles are gone: every catalog row that references the platform
    /// (found through the catalog's own foreign keys, so a table a later
    /// catalog version adds goes too; `ON DELETE CASCADE` ones go with the
    /// platform), then the platform, in one transaction. Refused while a
    /// database row of the platform remains. The deployment history is
    /// kept: it names platforms, it does not reference them.
    pub async fn forget_platform(&self, name: &str) -> Result<(), MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let left: i64 = tx
            .query_one(
                "SELECT count(*) FROM databases WHERE platform = $1",
                &[&name],
            )
            .await
            .map_err(pg)?
            .get(0);
        if left > 0 {
            return Err(unavailable(format!(
                "platform {name} still has {left} database(s) in the catalog; not forgotten"
            )));
        }
        let referencing = tx.query(REFERENCING_SQL, &[]).await.map_err(pg)?;
        for r in referencing {
            let (table, column): (String, String) = (r.get(0), r.get(1));
            tx.execute(
                &format!("DELETE FROM {table} WHERE {} = $1", quote_ident(&column)),
                &[&name],
            )
            .await
            .map_err(pg)?;
        }
        tx.execute("DELETE FROM platforms WHERE name = $1", &[&name])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_is_logged_without_its_passwords() {
        let p = Platform {
            name: "shop".into(),
            owner_role: "sdg_shop_owner".into(),
            owner_password: "owner-secret-1".into(),
            app_role: "sdg_shop_app".into(),
            app_password: "app-secret-2".into(),
            v2: true,
        };
        let logged = format!("{p:?}");
        assert!(!logged.contains("owner-secret-1"), "{logged}");
        assert!(!logged.contains("app-secret-2"), "{logged}");
        assert!(logged.contains("sdg_shop_owner") && logged.contains("sdg_shop_app"));
    }
}

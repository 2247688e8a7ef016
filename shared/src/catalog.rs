//! The control catalog's contract between the binaries (docs/OPERATIONS.md): the
//! migrator owns and writes the catalog database (`CATALOG_DB`, default
//! `stonescriptdb_gateway`); routers read who owns a database from it, LISTEN
//! on its channel and poll its generations. The SQL both sides run against it
//! and the notification payload live here so they cannot drift apart.

/// Default name of the catalog database (`CATALOG_DB`).
pub const DEFAULT_CATALOG_DB: &str = "stonescriptdb_gateway";

/// The channel the migrator NOTIFYs on after every committed change to a
/// database (deployment, creation, adoption, drop) and routers LISTEN on.
pub const CHANNEL: &str = "stonescriptdb_gateway";

/// Advisory-lock class (first key of the two-key form) of leases: a
/// migrator session holds `(LEASE_CLASS, lease)` while it creates a database
/// or runs a deployment, so anyone can tell a live operation from one whose
/// migrator died (`pg_locks`).
pub const LEASE_CLASS: i32 = 0x5344_474C; // "SDGL"

words! {
    /// Kind of a database the catalog records (and `/admin/adopt` answers).
    pub enum DbKind {
        /// `{platform}_main` / `{platform}_{tenant_id}` (`/register`).
        V1 = "v1",
        /// `{platform}_{schema_name}_{database_id}` (`/database/create`).
        V2 = "v2",
        /// A v2 schema version deployed once, copied by `CREATE DATABASE … TEMPLATE`.
        Template = "template",
        /// A throwaway database a dry run deploys into, dropped afterwards.
        Scratch = "scratch",
        /// A database an operator attributed with `/admin/adopt`.
        Adopted = "adopted",
    }
}

impl DbKind {
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// Can `/call` reach databases of this kind?
    pub const fn callable(self) -> bool {
        matches!(self, Self::V1 | Self::V2 | Self::Adopted)
    }
}

words! {
    /// Where a database is in its life.
    pub enum DbState {
        /// Being created under a lease; not reachable yet.
        Creating = "creating",
        Ready = "ready",
        /// Being dropped under a lease (`DELETE /admin/databases/{name}`,
        /// offboarding): not reachable; finished by whoever finds its lease free.
        Dropping = "dropping",
    }
}

words! {
    /// Kind of a type `types/` declares, as each database's tracking table
    /// `_stonescriptdb_gateway_types` records it.
    pub enum TypeKind {
        Enum = "enum",
        Composite = "composite",
        Domain = "domain",
        /// Any other `CREATE TYPE` (range, base, shell).
        Other = "other",
    }
}

/// What a notification on [`CHANNEL`] asks routers to forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// One database changed: drop its cached ownership, function catalog,
    /// prepared statements and connections.
    Database {
        name: String,
        generation: Option<i64>,
    },
    /// Everything (payload `*`).
    All,
}

/// The payload the migrator sends: `{"database":"…","generation":N}`.
pub fn payload(database: &str, generation: i64) -> String {
    serde_json::json!({ "database": database, "generation": generation }).to_string()
}

/// Read a notification payload: the migrator's JSON, or what an operator
/// types by hand after manual DDL (`NOTIFY stonescriptdb_gateway, 'myapp_main'`,
/// or `'*'` for every database). `None` for an empty or unreadable payload.
pub fn parse_payload(payload: &str) -> Option<Notice> {
    let p = payload.trim();
    if p == "*" {
        return Some(Notice::All);
    }
    if p.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(p).ok()?;
        let name = v.get("database")?.as_str()?.to_owned();
        return Some(Notice::Database {
            name,
            generation: v.get("generation").and_then(serde_json::Value::as_i64),
        });
    }
    (!p.is_empty()).then(|| Notice::Database {
        name: p.to_owned(),
        generation: None,
    })
}

/// Who owns a ready database that `/call` may reach, and the login role
/// `/call` uses there: `$1` database name → platform, app role, app password.
pub const ROUTE_SQL: &str = "\
SELECT d.platform, p.app_role, p.app_password
FROM databases d JOIN platforms p ON p.name = d.platform
WHERE d.name = $1 AND d.state = 'ready' AND d.kind IN ('v1', 'v2', 'adopted')";

/// The catalog's current generation (routers start from it).
pub const GENERATION_SQL: &str = "SELECT value FROM generation";

/// The routers' backstop to notifications, every `CATALOG_POLL_MS`:
/// databases whose generation moved past `$1` (kind `g`), and databases
/// with a deployment whose migrator died before it could record the result
/// and announce it (kind `d`, the deployment id as the number).
pub const POLL_SQL: &str = "\
SELECT 'g', name, generation FROM databases WHERE generation > $1
UNION ALL
SELECT 'd', database, id FROM deployments
WHERE status = 'running' AND NOT EXISTS (
  SELECT 1 FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = 1396983628::oid AND l.objid = deployments.lease::oid)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_hand_written_ones_are_understood() {
        assert_eq!(
            parse_payload(&payload("myapp_main", 42)),
            Some(Notice::Database {
                name: "myapp_main".into(),
                generation: Some(42)
            })
        );
        assert_eq!(
            parse_payload(" myapp_main "),
            Some(Notice::Database {
                name: "myapp_main".into(),
                generation: None
            })
        );
        assert_eq!(parse_payload("*"), Some(Notice::All));
        assert_eq!(parse_payload(""), None);
        assert_eq!(parse_payload("{not json"), None);
    }

    #[test]
    fn the_poll_query_names_the_lease_class() {
        assert!(POLL_SQL.contains(&format!("{}::oid", LEASE_CLASS)));
    }

    #[test]
    fn kinds_round_trip() {
        for &k in DbKind::ALL {
            assert_eq!(DbKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(DbKind::ALL.len(), 5);
        assert_eq!(DbKind::parse("V1"), None);
        // what ROUTE_SQL spells out
        for k in DbKind::ALL.iter().filter(|k| k.callable()) {
            assert!(ROUTE_SQL.contains(&format!("'{k}'")));
        }
        assert!(!DbKind::Template.callable() && DbKind::Adopted.callable());
    }
}

//! Request and response bodies of the HTTP API, as serde types, so the router,
//! the migrator and the tests agree on every field.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `POST /call`. Borrows from the request body: parsing allocates nothing for
/// plain strings, and `params` stays raw JSON so numbers keep their exact text
/// (a `numeric` argument beyond f64 precision reaches PostgreSQL unchanged).
#[derive(Debug, Deserialize, Serialize)]
pub struct CallRequest<'a> {
    #[serde(borrow)]
    pub platform: Cow<'a, str>,
    /// Tenant id; clients send it as a string or a number.
    #[serde(
        borrow,
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub tenant_id: Option<Cow<'a, str>>,
    /// A full database name of this platform (v2), instead of `tenant_id`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub function: Cow<'a, str>,
    /// A positional array or an object of named arguments; absent = none.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub params: Option<&'a RawValue>,
}

fn string_or_number<'de: 'a, 'a, D>(d: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a non-negative integer")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            if v < 0 {
                return Err(E::custom("tenant_id must not be negative"));
            }
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

/// `POST /call` success: one JSON object per row, keyed by column name.
/// (The router writes this shape directly from PostgreSQL's JSON text; the
/// struct is what clients and tests read it into.)
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CallResponse {
    pub rows: Vec<serde_json::Value>,
    pub row_count: u64,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct HealthResponse {
    /// `healthy` or `unhealthy` (PostgreSQL unreachable; answered with 503).
    pub status: String,
    /// `connected` or `unreachable`.
    pub postgres: String,
    /// PostgreSQL's `server_version`, when connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    /// `up` or `down` (the migrator's Unix socket accepts connections or not).
    pub migrator: String,
    pub version: String,
    pub pools: PoolsStats,
}

/// Connection-pool figures for `/health` (and later `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PoolsStats {
    /// Open connections across all pools.
    pub total_connections: usize,
    /// `MAX_TOTAL_CONNECTIONS`.
    pub max_total_connections: usize,
    /// `MAX_CONNECTIONS_PER_POOL`.
    pub max_connections_per_pool: usize,
    /// Requests answered 503 `pool_exhausted` since start.
    pub exhausted_total: u64,
    /// One entry per live pool, keyed by database name.
    pub databases: BTreeMap<String, PoolStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PoolStats {
    /// Open connections of this pool.
    pub size: usize,
    /// Of those, idle ones.
    pub available: usize,
    /// Requests waiting for a connection right now.
    pub waiting: usize,
}

/// `POST /admin/create-tenant`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CreateTenantRequest {
    pub platform: String,
    pub tenant_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_request_borrows_and_keeps_raw_params() {
        let body = r#"{"platform":"app","tenant_id":42,"function":"f","params":[1.000000000000000000001,"x"]}"#;
        let req: CallRequest = serde_json::from_str(body).unwrap();
        assert!(matches!(req.platform, Cow::Borrowed("app")));
        assert_eq!(req.tenant_id.as_deref(), Some("42"));
        assert_eq!(
            req.params.unwrap().get(),
            r#"[1.000000000000000000001,"x"]"#
        );
        let req: CallRequest =
            serde_json::from_str(r#"{"platform":"app","tenant_id":null,"function":"f"}"#).unwrap();
        assert!(req.tenant_id.is_none() && req.params.is_none());
        assert!(serde_json::from_str::<CallRequest>(
            r#"{"platform":"app","tenant_id":-1,"function":"f"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<CallRequest>(r#"{"platform":"app"}"#).is_err());
    }
}

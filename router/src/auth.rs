//! Optional bearer tokens on top of the IP allowlist: one per platform for
//! `/call` (`CALL_TOKENS`), one for schema routes and `/metrics`
//! (`ADMIN_TOKEN`). Off when not configured, as the seeds' clients send none.
//! Tokens are compared in constant time.

use std::collections::BTreeMap;

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;

use crate::error::RouterError;

#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub call: BTreeMap<String, String>,
    pub admin: Option<String>,
}

/// Equal-length comparison whose time does not depend on where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(AUTHORIZATION)?.as_bytes();
    let rest = v
        .strip_prefix(b"Bearer ")
        .or_else(|| v.strip_prefix(b"bearer "))?;
    Some(rest.trim_ascii())
}

fn check(expected: &str, headers: &HeaderMap, what: &str) -> Result<(), RouterError> {
    match bearer(headers) {
        Some(given) if ct_eq(given, expected.as_bytes()) => Ok(()),
        Some(_) => Err(RouterError::Unauthorized(format!(
            "wrong bearer token for {what}"
        ))),
        None => Err(RouterError::Unauthorized(format!(
            "{what} needs a bearer token (Authorization: Bearer ...)"
        ))),
    }
}

impl Tokens {
    /// `/call` of `platform`.
    pub fn check_call(&self, platform: &str, headers: &HeaderMap) -> Result<(), RouterError> {
        match self.call.get(platform) {
            Some(t) => check(t, headers, &format!("/call of platform {platform}")),
            None => Ok(()),
        }
    }

    /// Schema routes and `/metrics`.
    pub fn check_admin(&self, headers: &HeaderMap) -> Result<(), RouterError> {
        match &self.admin {
            Some(t) => check(t, headers, "this route"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn tokens() {
        let t = Tokens {
            call: [("app".to_string(), "s3cret-token-0123456".to_string())].into(),
            admin: Some("admin-token-0123456789".into()),
        };
        let mut h = HeaderMap::new();
        assert!(t.check_call("other", &h).is_ok());
        assert!(t.check_call("app", &h).is_err());
        assert!(t.check_admin(&h).is_err());
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret-token-0123456"),
        );
        assert!(t.check_call("app", &h).is_ok());
        assert!(t.check_admin(&h).is_err());
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret-token-0123457"),
        );
        assert!(t.check_call("app", &h).is_err());
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }
}

//! Bearer tokens on top of the IP allowlist (the rules live in
//! `stonescriptdb_shared::auth`): the router checks `/call` tokens and the
//! admin token of `/metrics` itself, and turns away schema requests whose
//! token is none of the configured schema tokens before forwarding them.
//! Which platform a deploy token may act for is the migrator's to check,
//! once it has read the request.

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use stonescriptdb_shared::auth::{Denied, Tokens};

use crate::error::RouterError;

fn authorization(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(AUTHORIZATION).map(|v| v.as_bytes())
}

fn denied(d: Denied) -> RouterError {
    match d {
        Denied::Unauthorized(m) => RouterError::Unauthorized(m),
        Denied::Forbidden(m) => RouterError::Forbidden(m),
    }
}

/// `/call` of `platform`.
pub fn check_call(tokens: &Tokens, platform: &str, headers: &HeaderMap) -> Result<(), RouterError> {
    tokens
        .check_call(platform, authorization(headers))
        .map_err(denied)
}

/// A schema route: any configured schema token (or none configured).
pub fn check_schema(tokens: &Tokens, headers: &HeaderMap) -> Result<(), RouterError> {
    tokens
        .schema_grant(authorization(headers))
        .map(|_| ())
        .map_err(denied)
}

/// `/metrics`: the admin token, when one is configured.
pub fn check_admin(tokens: &Tokens, headers: &HeaderMap) -> Result<(), RouterError> {
    match &tokens.admin {
        None => Ok(()),
        Some(_) if tokens.is_admin(authorization(headers)) => Ok(()),
        Some(_) => Err(RouterError::Unauthorized(
            "this route needs the admin token (Authorization: Bearer <ADMIN_TOKEN>)".into(),
        )),
    }
}

/// May this request see database names (`/health`)? Anyone when no token
/// is configured; else the admin token only.
pub fn sees_names(tokens: &Tokens, headers: &HeaderMap) -> bool {
    !tokens.any() || tokens.is_admin(authorization(headers))
}

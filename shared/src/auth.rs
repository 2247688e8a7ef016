//! Bearer tokens on top of the IP allowlist (docs/SECURITY.md), all
//! optional: `CALL_TOKENS` (per platform, for `/call`), `DEPLOY_TOKENS`
//! (per platform, several allowed, for the schema routes of that platform)
//! and `ADMIN_TOKEN` (every platform's schema routes, the operator routes,
//! `/metrics`). Once `ADMIN_TOKEN` or any deploy token is configured, every
//! schema route needs one of them; once `CALL_TOKENS` is, every platform's
//! `/call` needs its token unless `CALL_OPEN_PLATFORMS` lists it. Tokens are
//! compared in constant time.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::DeployToken;

/// Name deployments record when no schema token is configured.
pub const ANONYMOUS: &str = "anonymous";
/// Name deployments record for `ADMIN_TOKEN`.
pub const ADMIN: &str = "admin";
/// Who asked, for a tokenless request of an `OPEN_DEPLOY_PLATFORMS` platform.
pub const OPEN: &str = "open";

/// Equal-length comparison whose time does not depend on where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(value: Option<&[u8]>) -> Option<&[u8]> {
    let v = value?;
    let rest = v
        .strip_prefix(b"Bearer ")
        .or_else(|| v.strip_prefix(b"bearer "))?;
    Some(rest.trim_ascii())
}

/// The tokens `/admin/platform-token` issues start with this:
/// `sdgpt.{platform}.{generation}.{mac}`, the mac derived from the
/// platform, its token generation and a key only the gateway holds.
pub const PLATFORM_TOKEN_PREFIX: &str = "sdgpt.";

/// What a platform token says of itself, to be checked against the key and
/// the platform's current generation before it grants anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformClaim {
    pub platform: String,
    pub generation: i32,
    /// The whole token, to compare with the one the gateway would issue.
    pub token: String,
}

/// Read a bearer token shaped like a platform token (not checked).
pub fn platform_claim(token: &[u8]) -> Option<PlatformClaim> {
    let text = std::str::from_utf8(token).ok()?;
    let rest = text.strip_prefix(PLATFORM_TOKEN_PREFIX)?;
    let mut parts = rest.split('.');
    let (platform, generation, mac) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || mac.is_empty() {
        return None;
    }
    crate::names::validate_platform(platform).ok()?;
    Some(PlatformClaim {
        platform: platform.to_owned(),
        generation: generation.parse().ok()?,
        token: text.to_owned(),
    })
}

/// What a schema-route token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Recorded as who asked: `admin`, `deploy:<platform>[#n]`,
    /// `platform-token:<platform>`, `open`, `anonymous`.
    pub name: String,
    /// `None`: every platform (the admin token, or no token configured).
    pub platform: Option<String>,
    /// The operator's token (or no token configured at all).
    pub admin: bool,
    /// A platform token, not checked yet: the migrator checks it against its
    /// key and the platform's generation before the request goes on.
    pub claim: Option<PlatformClaim>,
    /// No token, for platforms listed in `OPEN_DEPLOY_PLATFORMS`: good for
    /// those platforms only, and on their register, upload and listing
    /// routes only (the migrator checks the route).
    pub open: Vec<String>,
}

impl Grant {
    fn of(name: &str, platform: Option<String>, admin: bool) -> Grant {
        Grant {
            name: name.to_owned(),
            platform,
            admin,
            claim: None,
            open: Vec::new(),
        }
    }
}

/// Why a request's token does not grant it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: none, or one that is not configured.
    Unauthorized(String),
    /// 403: a valid token of another platform, or not the admin token.
    Forbidden(String),
}

#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub call: BTreeMap<String, String>,
    /// Platforms whose register, schema upload and listings need no token
    /// (`OPEN_DEPLOY_PLATFORMS`).
    pub open_deploy: BTreeSet<String>,
    /// Platforms whose `/call` needs no token although `CALL_TOKENS` is set
    /// (`CALL_OPEN_PLATFORMS`).
    pub call_open: BTreeSet<String>,
    pub deploy: Vec<DeployToken>,
    pub admin: Option<String>,
}

impl Tokens {
    /// Do schema routes need a token?
    pub fn schema_tokens(&self) -> bool {
        self.admin.is_some() || !self.deploy.is_empty()
    }

    /// Is any token configured at all?
    pub fn any(&self) -> bool {
        self.schema_tokens() || !self.call.is_empty()
    }

    /// Is `authorization` the admin token?
    pub fn is_admin(&self, authorization: Option<&[u8]>) -> bool {
        match (&self.admin, bearer(authorization)) {
            (Some(t), Some(given)) => ct_eq(given, t.as_bytes()),
            _ => false,
        }
    }

    /// What the `Authorization` header of a schema-route request grants.
    /// With no schema token configured, everyone is the admin (a bearer the
    /// gateway does not know is ignored: today's StoneScriptPHP CLI always
    /// sends one). A platform token is a claim the migrator checks.
    pub fn schema_grant(&self, authorization: Option<&[u8]>) -> Result<Grant, Denied> {
        if !self.schema_tokens() {
            return Ok(Grant::of(ANONYMOUS, None, true));
        }
        let Some(given) = bearer(authorization) else {
            if !self.open_deploy.is_empty() {
                return Ok(Grant {
                    open: self.open_deploy.iter().cloned().collect(),
                    ..Grant::of(OPEN, None, false)
                });
            }
            return Err(Denied::Unauthorized(
                "schema routes need a bearer token (Authorization: Bearer <ADMIN_TOKEN, a DEPLOY_TOKENS token or a platform token>)"
                    .into(),
            ));
        };
        if self.is_admin(authorization) {
            return Ok(Grant::of(ADMIN, None, true));
        }
        // every token is compared, so the time does not tell which matched
        let mut found = None;
        for t in &self.deploy {
            if ct_eq(given, t.token.as_bytes()) {
                found = Some(t);
            }
        }
        match (found, platform_claim(given)) {
            (Some(t), _) => Ok(Grant::of(&t.name, Some(t.platform.clone()), false)),
            (None, Some(claim)) => Ok(Grant {
                claim: Some(claim.clone()),
                ..Grant::of(
                    &format!("platform-token:{}", claim.platform),
                    Some(claim.platform),
                    false,
                )
            }),
            (None, None) => Err(Denied::Unauthorized(
                "wrong bearer token for schema routes".into(),
            )),
        }
    }

    /// `/call` of `platform`: no token while `CALL_TOKENS` is unset; once
    /// it is, the platform's own token, unless `CALL_OPEN_PLATFORMS` lists
    /// the platform (a platform nobody gave a token is refused, not open).
    pub fn check_call(&self, platform: &str, authorization: Option<&[u8]>) -> Result<(), Denied> {
        if self.call.is_empty() {
            return Ok(());
        }
        let Some(expected) = self.call.get(platform) else {
            if self.call_open.contains(platform) {
                return Ok(());
            }
            return Err(Denied::Unauthorized(format!(
                "/call of platform {platform} needs a bearer token, and CALL_TOKENS has none for it (the operator adds one, or lists the platform in CALL_OPEN_PLATFORMS)"
            )));
        };
        match bearer(authorization) {
            Some(given) if ct_eq(given, expected.as_bytes()) => Ok(()),
            Some(_) => Err(Denied::Unauthorized(format!(
                "wrong bearer token for /call of platform {platform}"
            ))),
            None => Err(Denied::Unauthorized(format!(
                "/call of platform {platform} needs a bearer token (Authorization: Bearer ...)"
            ))),
        }
    }
}

impl Grant {
    /// A tokenless grant of the `OPEN_DEPLOY_PLATFORMS` platforms.
    pub fn is_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// May this grant act for `platform`?
    pub fn may(&self, platform: &str) -> Result<(), Denied> {
        if self.is_open() {
            return if self.open.iter().any(|p| p == platform) {
                Ok(())
            } else {
                Err(Denied::Unauthorized(format!(
                    "platform {platform} needs a bearer token (it is not listed in OPEN_DEPLOY_PLATFORMS)"
                )))
            };
        }
        match &self.platform {
            None => Ok(()),
            Some(p) if p == platform => Ok(()),
            Some(p) => Err(Denied::Forbidden(format!(
                "this token is for platform {p}; it cannot act for platform {platform}"
            ))),
        }
    }

    /// Operator routes: the admin token only.
    pub fn operator(&self) -> Result<(), Denied> {
        if self.admin {
            Ok(())
        } else {
            Err(Denied::Forbidden(
                "this route needs the admin token (ADMIN_TOKEN)".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_deploy_tokens;

    fn tokens() -> Tokens {
        Tokens {
            call: [("app".to_string(), "s3cret-token-0123456".to_string())].into(),
            call_open: ["public_app".to_string()].into(),
            open_deploy: Default::default(),
            deploy: parse_deploy_tokens("app:deploy-app-000000001,app:deploy-app-000000002")
                .unwrap(),
            admin: Some("admin-token-0123456789".into()),
        }
    }

    #[test]
    fn call_tokens() {
        let t = tokens();
        // once CALL_TOKENS is set, a platform without a token is refused...
        assert!(matches!(
            t.check_call("other", None),
            Err(Denied::Unauthorized(m)) if m.contains("CALL_OPEN_PLATFORMS")
        ));
        // ...unless the operator lists it as open
        assert!(t.check_call("public_app", None).is_ok());
        // without CALL_TOKENS every platform is open
        assert!(Tokens::default().check_call("other", None).is_ok());
        assert!(t.check_call("app", None).is_err());
        assert!(t
            .check_call("app", Some(b"Bearer s3cret-token-0123456"))
            .is_ok());
        assert!(t
            .check_call("app", Some(b"Bearer s3cret-token-0123457"))
            .is_err());
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn schema_grants() {
        let t = tokens();
        assert!(matches!(t.schema_grant(None), Err(Denied::Unauthorized(_))));
        assert!(matches!(
            t.schema_grant(Some(b"Bearer s3cret-token-0123456")),
            Err(Denied::Unauthorized(_))
        ));
        let admin = t
            .schema_grant(Some(b"Bearer admin-token-0123456789"))
            .unwrap();
        assert!(admin.admin && admin.may("anything").is_ok() && admin.name == "admin");
        let second = t
            .schema_grant(Some(b"Bearer deploy-app-000000002"))
            .unwrap();
        assert_eq!(second.name, "deploy:app#2");
        assert!(second.may("app").is_ok());
        assert!(matches!(second.may("other"), Err(Denied::Forbidden(_))));
        assert!(second.operator().is_err());
        let open = Tokens::default().schema_grant(None).unwrap();
        assert_eq!(open.name, ANONYMOUS);
        assert!(open.operator().is_ok());
        // with no schema token configured a bearer the gateway does not know is ignored
        let any = Tokens::default()
            .schema_grant(Some(b"Bearer whatever"))
            .unwrap();
        assert!(any.admin);
    }

    #[test]
    fn platform_tokens_are_claims_and_open_platforms_need_none() {
        let t = tokens();
        let g = t.schema_grant(Some(b"Bearer sdgpt.shop.3.abcdef")).unwrap();
        assert_eq!(g.name, "platform-token:shop");
        assert_eq!(
            g.claim,
            Some(PlatformClaim {
                platform: "shop".into(),
                generation: 3,
                token: "sdgpt.shop.3.abcdef".into()
            })
        );
        assert!(g.may("shop").is_ok() && g.may("other").is_err() && g.operator().is_err());
        for bad in [
            "sdgpt.shop.x.ab",
            "sdgpt.Shop.1.ab",
            "sdgpt.shop.1.",
            "sdgpt.shop.1.a.b",
        ] {
            assert!(platform_claim(bad.as_bytes()).is_none(), "{bad}");
        }
        let open = Tokens {
            open_deploy: ["demo".to_string()].into(),
            ..tokens()
        };
        let g = open.schema_grant(None).unwrap();
        assert!(g.may("demo").is_ok());
        assert!(matches!(g.may("app"), Err(Denied::Unauthorized(_))));
        assert!(g.operator().is_err());
    }
}

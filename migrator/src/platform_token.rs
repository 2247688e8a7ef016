//! Platform tokens (`POST /admin/platform-token`), as today's StoneScriptPHP
//! asks for them: the same token every time until it is rotated. A token
//! is `sdgpt.{platform}.{generation}.{mac}`, the mac an HMAC-SHA256 of the
//! platform and its generation under a key only the gateway holds
//! (`PLATFORM_TOKEN_SECRET`, else a key kept in the control catalog). The
//! catalog keeps the generation and when it was issued, never a token;
//! rotating bumps the generation, so the old token stops working at once on
//! every route (each request's claim is checked against the catalog here).

use sha2::{Digest, Sha256};
use stonescriptdb_shared::auth::{ct_eq, PlatformClaim, PLATFORM_TOKEN_PREFIX};
use stonescriptdb_shared::wire::{PlatformTokenRequest, PlatformTokenResponse};

use crate::error::MigratorError;
use crate::state::{json, Answer, Req, State};

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The token of `platform` at `generation` under `key`.
pub fn token(key: &[u8], platform: &str, generation: i32) -> String {
    let mac = hmac_sha256(key, format!("{platform}\n{generation}").as_bytes());
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("{PLATFORM_TOKEN_PREFIX}{platform}.{generation}.{hex}")
}

/// The key tokens are derived from: `PLATFORM_TOKEN_SECRET`, else the
/// catalog's (made on first use), read once per process — it never changes.
async fn key(state: &State) -> Result<&[u8], MigratorError> {
    let key = state
        .token_key
        .get_or_try_init(|| async {
            if let Some(secret) = &state.platform_token_secret {
                return Ok(secret.as_bytes().to_vec());
            }
            let fresh = crate::roles::random_hex()?;
            Ok::<_, MigratorError>(state.catalog()?.token_key(&fresh).await?.into_bytes())
        })
        .await?;
    Ok(key)
}

/// Check a platform token a request carries: issued by this gateway, for
/// the platform's current generation.
pub async fn check(state: &State, claim: &PlatformClaim) -> Result<(), MigratorError> {
    let wrong = || {
        MigratorError::Unauthorized(format!(
            "this platform token of {} is not valid (rotated, or never issued by this gateway)",
            claim.platform
        ))
    };
    let current = state.catalog()?.token_generation(&claim.platform).await?;
    match current {
        Some((generation, _)) if generation == claim.generation => {
            let expected = token(key(state).await?, &claim.platform, generation);
            if ct_eq(expected.as_bytes(), claim.token.as_bytes()) {
                Ok(())
            } else {
                Err(wrong())
            }
        }
        _ => Err(wrong()),
    }
}

/// `POST /admin/platform-token {platform, rotate?}` → 201 `{platform,
/// token, created_at}`: the admin token or one of the platform's own; the
/// same token until `rotate: true` issues the next one.
pub async fn issue(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let body: PlatformTokenRequest = r.json("platform token")?;
    stonescriptdb_shared::names::validate_platform(&body.platform)
        .map_err(|e| MigratorError::BadRequest(e.to_string()))?;
    r.grant.may(&body.platform)?;
    crate::provision::known_platform(state, &body.platform).await?;
    let (generation, created_at) = state
        .catalog()?
        .issue_token(&body.platform, body.rotate)
        .await?;
    let token = token(key(state).await?, &body.platform, generation);
    if body.rotate {
        slog::info!(state.log, "platform token rotated"; "platform" => &body.platform, "generation" => generation);
    }
    Ok(json(
        201,
        &PlatformTokenResponse {
            platform: body.platform,
            token,
            created_at,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // test case 2
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // a key longer than a block is hashed first (test case 6)
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_token_names_its_platform_and_generation_and_depends_on_the_key() {
        let t = token(b"k1-0123456789abcdef", "shop", 3);
        assert!(t.starts_with("sdgpt.shop.3."), "{t}");
        assert_eq!(t, token(b"k1-0123456789abcdef", "shop", 3));
        assert_ne!(t, token(b"k2-0123456789abcdef", "shop", 3));
        assert_ne!(t, token(b"k1-0123456789abcdef", "shop", 4));
        let claim = stonescriptdb_shared::auth::platform_claim(t.as_bytes()).unwrap();
        assert_eq!((claim.platform.as_str(), claim.generation), ("shop", 3));
    }
}

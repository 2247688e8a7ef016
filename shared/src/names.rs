//! Naming rules for platforms, tenants, schemas and databases (docs/API.md, "Names").
//!
//! Database names are built here and nowhere else: v1 `{platform}_main` or
//! `{platform}_{tenant_id}`, v2 `{platform}_{schema_name}_{database_id}`. A
//! name longer than PostgreSQL's 63-byte identifier limit is rejected, never
//! truncated (PostgreSQL would silently truncate it and two tenants could end
//! up in one database).

use std::fmt;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A naming rule as the OpenAPI document states it: a regular expression
/// and a length limit in bytes. `validate_*` below are the rules themselves;
/// a test checks the two agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRule {
    pub pattern: &'static str,
    pub max_len: usize,
}

/// [`validate_platform`], plus [`platform_roles`]' 53-byte limit.
pub const PLATFORM: NameRule = NameRule {
    pattern: "^[a-z][a-z0-9_]*$",
    max_len: MAX_IDENTIFIER_BYTES - "sdg__owner".len(),
};
/// [`validate_schema_name`].
pub const SCHEMA_NAME: NameRule = NameRule {
    pattern: "^[a-z][a-z0-9_]*$",
    max_len: MAX_IDENTIFIER_BYTES,
};
/// [`validate_tenant_id`].
pub const TENANT_ID: NameRule = NameRule {
    pattern: "^[a-z0-9_-]+$",
    max_len: MAX_IDENTIFIER_BYTES,
};
/// [`validate_database_id`].
pub const DATABASE_ID: NameRule = TENANT_ID;
/// [`validate_uuid`].
pub const UUID: NameRule = NameRule {
    pattern: "^[a-z0-9]+(-[a-z0-9]+)*$",
    max_len: MAX_IDENTIFIER_BYTES,
};
/// [`validate_uuid_either`] (`/v2/migrate`'s uuid).
pub const UUID_EITHER: NameRule = NameRule {
    pattern: "^[a-z0-9]+([-_][a-z0-9]+)*$",
    max_len: MAX_IDENTIFIER_BYTES,
};
/// [`validate_database_name`].
pub const DATABASE: NameRule = NameRule {
    pattern: "^[a-z][a-z0-9_-]*$",
    max_len: MAX_IDENTIFIER_BYTES,
};
/// [`validate_function_name`] (each part at most 63 bytes).
pub const FUNCTION: NameRule = NameRule {
    pattern: "^[A-Za-z_][A-Za-z0-9_]{0,62}([.][A-Za-z_][A-Za-z0-9_]{0,62})?$",
    max_len: 2 * MAX_IDENTIFIER_BYTES + 1,
};

/// Which rule a name broke; `Display` is the message sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    pub field: &'static str,
    pub rule: String,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.rule)
    }
}

impl std::error::Error for NameError {}

fn err(field: &'static str, rule: impl Into<String>) -> NameError {
    NameError {
        field,
        rule: rule.into(),
    }
}

/// `[a-z][a-z0-9_]*`: platform and schema names.
fn check_lower_ident(field: &'static str, value: &str) -> Result<(), NameError> {
    let mut bytes = value.bytes();
    match bytes.next() {
        None => return Err(err(field, "must not be empty")),
        Some(b'a'..=b'z') => {}
        Some(_) => {
            return Err(err(
                field,
                format!("{value:?} must start with a lowercase letter (a-z)"),
            ))
        }
    }
    if bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        check_len(field, value)
    } else {
        Err(err(
            field,
            format!(
                "{value:?} may contain only lowercase letters, digits and '_' ([a-z][a-z0-9_]*)"
            ),
        ))
    }
}

/// `[a-z0-9_-]+`: tenant ids and v2 database ids.
fn check_id(field: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(err(field, "must not be empty"));
    }
    if value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        check_len(field, value)
    } else {
        Err(err(
            field,
            format!(
                "{value:?} may contain only lowercase letters, digits, '_' and '-' ([a-z0-9_-]+)"
            ),
        ))
    }
}

fn check_len(field: &'static str, value: &str) -> Result<(), NameError> {
    if value.len() > MAX_IDENTIFIER_BYTES {
        Err(err(
            field,
            format!(
                "is {} bytes long; PostgreSQL names are limited to {MAX_IDENTIFIER_BYTES} bytes",
                value.len()
            ),
        ))
    } else {
        Ok(())
    }
}

pub fn validate_platform(platform: &str) -> Result<(), NameError> {
    check_lower_ident("platform", platform)
}

pub fn validate_schema_name(schema_name: &str) -> Result<(), NameError> {
    check_lower_ident("schema_name", schema_name)
}

pub fn validate_tenant_id(tenant_id: &str) -> Result<(), NameError> {
    check_id("tenant_id", tenant_id)
}

pub fn validate_database_id(database_id: &str) -> Result<(), NameError> {
    check_id("database_id", database_id)
}

/// A tenant's uuid as today's StoneScriptPHP sends it: lowercase letters and
/// digits in groups joined by single hyphens (`[a-z0-9]+(-[a-z0-9]+)*`). No
/// underscores, so mapping hyphens to underscores cannot make two uuids meet.
pub fn validate_uuid(uuid: &str) -> Result<(), NameError> {
    uuid_groups(uuid, &['-'], "single hyphens ([a-z0-9]+(-[a-z0-9]+)*)")
}

/// The uuid rules: lowercase letters and digits in non-empty groups joined
/// by one of `joiners` (`said`: how the message names them), and the length.
fn uuid_groups(uuid: &str, joiners: &[char], said: &str) -> Result<(), NameError> {
    let groups_ok = !uuid.is_empty()
        && uuid.split(joiners).all(|g| {
            !g.is_empty()
                && g.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !groups_ok {
        return Err(err(
            "uuid",
            format!("{uuid:?} must be lowercase letters and digits in groups joined by {said}"),
        ));
    }
    check_len("uuid", uuid)
}

fn joined(parts: &[&str]) -> Result<String, NameError> {
    let name = parts.join("_");
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(err(
            "database name",
            format!(
                "{name:?} would be {} bytes long; PostgreSQL database names are limited to {MAX_IDENTIFIER_BYTES} bytes (shorten the platform or id; names are never truncated)",
                name.len()
            ),
        ));
    }
    Ok(name)
}

/// v1 database: `{platform}_main` without a tenant, else `{platform}_{tenant_id}`.
pub fn v1_database_name(platform: &str, tenant_id: Option<&str>) -> Result<String, NameError> {
    validate_platform(platform)?;
    match tenant_id {
        None => joined(&[platform, "main"]),
        Some(tenant) => {
            validate_tenant_id(tenant)?;
            joined(&[platform, tenant])
        }
    }
}

/// v2 database: `{platform}_{schema_name}_{database_id}`.
pub fn v2_database_name(
    platform: &str,
    schema_name: &str,
    database_id: &str,
) -> Result<String, NameError> {
    validate_platform(platform)?;
    validate_schema_name(schema_name)?;
    validate_database_id(database_id)?;
    joined(&[platform, schema_name, database_id])
}

/// Today's StoneScriptPHP addressing: `{platform}_{schema_name}` without a
/// uuid, else `{platform}_{schema_name}_{uuid with hyphens as underscores}`.
pub fn uuid_database_name(
    platform: &str,
    schema_name: &str,
    uuid: Option<&str>,
) -> Result<String, NameError> {
    validate_platform(platform)?;
    validate_schema_name(schema_name)?;
    match uuid {
        None => joined(&[platform, schema_name]),
        Some(u) => {
            validate_uuid(u)?;
            joined(&[platform, schema_name, &u.replace('-', "_")])
        }
    }
}

/// `/v2/migrate`'s uuid: the uuid rule, underscores accepted where hyphens
/// go (StoneScriptPHP's `gateway:migrate-tenant` sends the uuid so); the
/// uuid with hyphens.
pub fn validate_uuid_either(uuid: &str) -> Result<String, NameError> {
    uuid_groups(
        uuid,
        &['-', '_'],
        "single hyphens or underscores ([a-z0-9]+([-_][a-z0-9]+)*)",
    )?;
    Ok(uuid.replace('_', "-"))
}

/// The database of `/v2/migrate`'s uuid ([`validate_uuid_either`]): both
/// spellings name the same database `{platform}_{schema_name}_{uuid with
/// hyphens as underscores}`.
pub fn uuid_either_database_name(
    platform: &str,
    schema_name: &str,
    uuid: &str,
) -> Result<String, NameError> {
    let hyphens = validate_uuid_either(uuid)?;
    uuid_database_name(platform, schema_name, Some(&hyphens))
}

/// The database a `/call` (or the function listing) addresses: one of
/// `tenant_id` (v1; neither → `{platform}_main`), `database` (a full name),
/// or `schema_name` with an optional `uuid` ([`uuid_database_name`]). `Err`
/// is the 400's message.
pub fn call_database(
    platform: &str,
    tenant_id: Option<&str>,
    database: Option<&str>,
    schema_name: Option<&str>,
    uuid: Option<&str>,
) -> Result<String, String> {
    if let Some(schema) = schema_name {
        if tenant_id.is_some() || database.is_some() {
            return Err(
                "give one of tenant_id, database, or schema_name (with uuid), not several".into(),
            );
        }
        return uuid_database_name(platform, schema, uuid).map_err(|e| e.to_string());
    }
    if uuid.is_some() {
        return Err("uuid goes with schema_name (the database is {platform}_{schema_name}_{uuid}); not with tenant_id or database".into());
    }
    match (tenant_id, database) {
        (Some(_), Some(_)) => Err("give either tenant_id or database, not both".into()),
        (_, Some(db)) => {
            validate_platform(platform)
                .and_then(|()| validate_database_name(db))
                .map_err(|e| e.to_string())?;
            Ok(db.to_owned())
        }
        (tenant, None) => v1_database_name(platform, tenant).map_err(|e| e.to_string()),
    }
}

/// A full database name given by a client (the `database` field of
/// `/call`, `/admin/adopt`): `[a-z][a-z0-9_-]*`, at most 63 bytes. Whether
/// the platform owns it is the control catalog's to say, never the name's.
pub fn validate_database_name(database: &str) -> Result<(), NameError> {
    match database.bytes().next() {
        None => return Err(err("database", "must not be empty")),
        Some(b'a'..=b'z') => {}
        Some(_) => {
            return Err(err(
                "database",
                format!("{database:?} must start with a lowercase letter (a-z)"),
            ))
        }
    }
    check_id("database", database)
}

/// The tenant id under which `database` is one of `platform`'s v1 names:
/// `Some(None)` for `{platform}_main`, `Some(Some(t))` for
/// `{platform}_{t}`, `None` when the platform's naming cannot produce it.
/// (Several platforms' naming may produce the same name: this never says
/// who owns a database.)
pub fn v1_tenant_of(platform: &str, database: &str) -> Option<Option<String>> {
    let rest = database.strip_prefix(platform)?.strip_prefix('_')?;
    if rest == "main" {
        return Some(None);
    }
    v1_database_name(platform, Some(rest))
        .ok()
        .filter(|n| n == database)
        .map(|_| Some(rest.to_owned()))
}

/// Function names accepted by `/call`: `name` or `schema.name`, each part made
/// of `[A-Za-z0-9_]` and not starting with a digit.
pub fn validate_function_name(name: &str) -> Result<(Option<&str>, &str), NameError> {
    let (schema, func) = match name.split_once('.') {
        Some((s, f)) => (Some(s), f),
        None => (None, name),
    };
    for part in schema.iter().chain(std::iter::once(&func)) {
        let ok_chars = part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let ok_start = part
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        if !ok_chars || !ok_start {
            return Err(err(
                "function",
                format!("{name:?} must be a name or schema.name made of [A-Za-z0-9_] (not starting with a digit)"),
            ));
        }
        check_len("function", part)?;
    }
    Ok((schema, func))
}

/// The PostgreSQL roles of a platform: `sdg_{platform}_owner` owns its
/// databases and runs its uploaded SQL; `sdg_{platform}_app`, a member of the
/// owner role, is what `/call` connects as.
pub fn platform_roles(platform: &str) -> Result<(String, String), NameError> {
    validate_platform(platform)?;
    let owner = format!("sdg_{platform}_owner");
    if owner.len() > MAX_IDENTIFIER_BYTES {
        return Err(err(
            "platform",
            format!("{platform:?} is too long for its role names (at most 53 bytes)"),
        ));
    }
    Ok((owner, format!("sdg_{platform}_app")))
}

/// Levenshtein distance between two names (by characters), for "did you
/// mean" messages.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate nearest to `name`, at most `max` edits away and not equal
/// to it (the first of equals wins).
pub fn nearest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Quote an identifier for SQL the way PostgreSQL's `quote_ident` does when
/// quoting is forced: wrap in double quotes, double any embedded quote.
/// A SQL string literal: `'…'` with quotes doubled (the server's
/// `standard_conforming_strings`, on since PostgreSQL 9.1: backslashes are
/// plain characters).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for c in ident.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The function the migrator installs in every database it deploys and the
/// router ends each call statement with (`migrator/src/after_call.sql`).
pub const AFTER_CALL_FUNCTION: &str = "public._stonescriptdb_gateway_after_call()";

/// The comment on the current version of [`AFTER_CALL_FUNCTION`]: a database
/// whose function lacks it gets it replaced at its next deployment.
pub const AFTER_CALL_VERSION: &str = "stonescriptdb-gateway after-call 3";

/// The versions of [`AFTER_CALL_FUNCTION`] that leave a session clean when
/// the call statement also releases advisory locks (version 2 released them
/// itself as well; it stays until the database's next deployment). In a
/// database with none of them, the router gives each call a connection of
/// its own and resets the session with statements of its own.
pub const AFTER_CALL_CLEAN_VERSIONS: [&str; 2] =
    ["stonescriptdb-gateway after-call 2", AFTER_CALL_VERSION];

#[cfg(test)]
mod tests {
    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"'a\b'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn a_uuid_names_its_schemas_database_with_underscores() {
        assert_eq!(
            uuid_database_name("shop", "tenant", Some("0f1e-a2b3")).unwrap(),
            "shop_tenant_0f1e_a2b3"
        );
        assert_eq!(
            uuid_database_name("shop", "tenant", None).unwrap(),
            "shop_tenant"
        );
        for bad in ["", "a_b", "a--b", "-a", "a-", "A1", "a b"] {
            assert!(validate_uuid(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}-{}", "a".repeat(40), "b".repeat(20));
        assert!(uuid_database_name("shop", "tenant", Some(&long)).is_err());
    }

    #[test]
    fn migrate_takes_a_uuid_with_hyphens_or_underscores_alike() {
        for u in ["0f1e-a2b3", "0f1e_a2b3", "0f1e-a2b3_c4"] {
            let want = if u.len() > 9 {
                "shop_tenant_0f1e_a2b3_c4"
            } else {
                "shop_tenant_0f1e_a2b3"
            };
            assert_eq!(
                uuid_either_database_name("shop", "tenant", u).unwrap(),
                want
            );
        }
        for bad in ["", "a__b", "a-_b", "_a", "a_", "A1", "a b"] {
            let e = uuid_either_database_name("shop", "tenant", bad).unwrap_err();
            assert_eq!(e.field, "uuid", "{bad:?}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(uuid_either_database_name("shop", "Tenant", "a1").is_err());
    }

    use super::*;

    #[test]
    fn v1_names() {
        assert_eq!(v1_database_name("myapp", None).unwrap(), "myapp_main");
        assert_eq!(
            v1_database_name("myapp", Some("tenant_001")).unwrap(),
            "myapp_tenant_001"
        );
        assert_eq!(
            v1_database_name("myapp", Some("3f2b8c1e-0d4a-4b7e-9a61-2c5d8e9f0a1b")).unwrap(),
            "myapp_3f2b8c1e-0d4a-4b7e-9a61-2c5d8e9f0a1b"
        );
        assert_eq!(v1_database_name("a1", Some("42")).unwrap(), "a1_42");
    }

    #[test]
    fn bad_names_say_which_rule() {
        let e = v1_database_name("MyApp", None).unwrap_err();
        assert_eq!(e.field, "platform");
        assert!(e.to_string().contains("lowercase"), "{e}");
        assert_eq!(
            v1_database_name("1app", None).unwrap_err().field,
            "platform"
        );
        assert_eq!(v1_database_name("", None).unwrap_err().field, "platform");
        assert_eq!(
            v1_database_name("app", Some("x;drop")).unwrap_err().field,
            "tenant_id"
        );
        assert_eq!(
            v1_database_name("app", Some("")).unwrap_err().field,
            "tenant_id"
        );
        assert_eq!(
            v1_database_name("app", Some("Ab")).unwrap_err().field,
            "tenant_id"
        );
        assert_eq!(
            v1_database_name("app", Some("a\"b")).unwrap_err().field,
            "tenant_id"
        );
    }

    #[test]
    fn long_names_are_rejected_not_truncated() {
        let platform = "p".repeat(40);
        let tenant = "t".repeat(22); // 40 + 1 + 22 = 63: fits exactly
        assert_eq!(
            v1_database_name(&platform, Some(&tenant)).unwrap().len(),
            63
        );
        let tenant = "t".repeat(23);
        let e = v1_database_name(&platform, Some(&tenant)).unwrap_err();
        assert!(e.to_string().contains("64 bytes"), "{e}");
        assert!(v2_database_name(&platform, "tenant_db", &"x".repeat(12)).is_ok()); // 63
        assert!(v2_database_name(&platform, "tenant_db", &"x".repeat(13)).is_err()); // 64
        assert_eq!(
            v2_database_name("app", "tenant_db", "7").unwrap(),
            "app_tenant_db_7"
        );
    }

    #[test]
    fn database_names_and_v1_tenants() {
        assert!(validate_database_name("app_tenant_db_1").is_ok());
        assert!(validate_database_name("legacy-crm").is_ok());
        for bad in ["", "_sdg_dry_x", "App_main", "a b", "a\"b", &"x".repeat(64)] {
            assert!(validate_database_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(v1_tenant_of("myapp", "myapp_main"), Some(None));
        assert_eq!(
            v1_tenant_of("myapp", "myapp_admin_main"),
            Some(Some("admin_main".into()))
        );
        assert_eq!(v1_tenant_of("myapp_admin", "myapp_admin_main"), Some(None));
        assert_eq!(v1_tenant_of("myapp", "myappx_main"), None);
        assert_eq!(v1_tenant_of("myapp", "myapp_"), None);
    }

    #[test]
    fn nearest_names_for_did_you_mean() {
        assert_eq!(edit_distance("GATWAY_HOST", "GATEWAY_HOST"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let known = ["GATEWAY_HOST", "GATEWAY_PORT", "DB_HOST"];
        assert_eq!(nearest("GATWAY_HOST", known, 2), Some("GATEWAY_HOST"));
        assert_eq!(nearest("DB_HOTS", known, 2), Some("DB_HOST"));
        assert_eq!(nearest("HOME", known, 2), None);
        assert_eq!(
            nearest("DB_HOST", known, 2),
            None,
            "itself is no suggestion"
        );
    }

    #[test]
    fn a_call_names_one_database_one_way() {
        let db = |t, d, s, u| call_database("shop", t, d, s, u);
        assert_eq!(db(None, None, None, None).unwrap(), "shop_main");
        assert_eq!(db(Some("t1"), None, None, None).unwrap(), "shop_t1");
        assert_eq!(db(None, Some("other_x"), None, None).unwrap(), "other_x");
        assert_eq!(db(None, None, Some("store"), None).unwrap(), "shop_store");
        assert_eq!(
            db(None, None, Some("store"), Some("ab-12")).unwrap(),
            "shop_store_ab_12"
        );
        assert!(db(Some("t1"), Some("shop_t1"), None, None)
            .unwrap_err()
            .contains("not both"));
        assert!(db(Some("t1"), None, Some("store"), None)
            .unwrap_err()
            .contains("not several"));
        assert!(db(None, None, None, Some("ab"))
            .unwrap_err()
            .contains("uuid goes with schema_name"));
        assert!(db(Some("T1"), None, None, None).is_err());
        assert!(call_database("Shop", None, Some("shop_main"), None, None).is_err());
    }

    #[test]
    fn function_names() {
        assert_eq!(
            validate_function_name("get_users").unwrap(),
            (None, "get_users")
        );
        assert_eq!(
            validate_function_name("app.Get_Users2").unwrap(),
            (Some("app"), "Get_Users2")
        );
        for bad in [
            "", "a b", "a;b", "a.b.c", "fn()", "x'y", ".f", "s.", "1abc", "a-b",
        ] {
            assert!(validate_function_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("simple"), "\"simple\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}

//! Strict request reading (docs/API.md): a JSON field, form field or query
//! parameter a route does not define is refused naming it and listing the
//! ones the route accepts, and a wrongly typed value names its field. A typo
//! must never reach another tenant or skip a safety switch such as `dry_run`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::wire::{FLAG_FALSE, FLAG_TRUE};

/// Parse a JSON request body into `T` (whose serde attributes deny unknown
/// fields). On failure the message names the field at fault: serde's own
/// message for unknown or missing fields lists the accepted ones, and a
/// wrongly typed value is prefixed with its path (`force: invalid type…`).
/// The happy path is a plain `serde_json::from_slice`; the field path is
/// only worked out for a body that failed.
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, String> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(e) => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let located = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(pe) => {
                    let path = pe.path().to_string();
                    let inner = pe.into_inner().to_string();
                    if path == "." || path.is_empty() || inner.contains("unknown field") {
                        inner
                    } else {
                        format!("{path}: {inner}")
                    }
                }
                Ok(_) => e.to_string(),
            };
            Err(format!("invalid {what} body: {located}"))
        }
    }
}

/// Decode `%XX` escapes and `+` (a space) of one query-string component.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("malformed percent escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// A query string, read strictly: each parameter at most once; what a
/// route does not define, or gives no value, is refused by [`Query::check`].
#[derive(Debug, Default)]
pub struct Query {
    params: BTreeMap<String, String>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, String> {
        let mut params = BTreeMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k)?;
            let v = percent_decode(v)?;
            if params.insert(k.clone(), v).is_some() {
                return Err(format!("query parameter {k:?} is given more than once"));
            }
        }
        Ok(Query { params })
    }

    /// `Err` naming the first parameter that is not `accepted` (with the
    /// accepted ones), or the first without a value: every parameter the
    /// API defines has a pattern or a number, so `?platform=` is a mistake
    /// (an unset shell variable), never "every platform".
    pub fn check(&self, accepted: &[&str]) -> Result<(), String> {
        if let Some(k) = self.params.keys().find(|k| !accepted.contains(&k.as_str())) {
            return Err(unknown("query parameter", k, accepted));
        }
        match self.params.iter().find(|(_, v)| v.is_empty()) {
            Some((k, _)) => Err(format!(
                "query parameter {k:?} is empty: give it a value or leave it out"
            )),
            None => Ok(()),
        }
    }

    /// Take a parameter (after [`Query::check`], never an empty one).
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.params.remove(name)
    }
}

/// A form boolean: `true`, `false`, `1` or `0`, in any case (the seeds'
/// `force=true`, PHP's `"1"`). Anything else, empty included, is `None`:
/// `-F dry_run=` from an unset shell variable must not deploy for real, and
/// `yes`/`on` are guesses.
pub fn form_flag(value: &str) -> Option<bool> {
    let is = |list: &[&str]| list.iter().any(|w| w.eq_ignore_ascii_case(value));
    if is(FLAG_TRUE) {
        Some(true)
    } else if is(FLAG_FALSE) {
        Some(false)
    } else {
        None
    }
}

/// The message for a field a route does not define.
pub fn unknown(what: &str, name: &str, accepted: &[&str]) -> String {
    if accepted.is_empty() {
        format!("unknown {what} {name:?}: this route takes none")
    } else {
        format!("unknown {what} {name:?}; accepted: {}", accepted.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        platform: String,
        #[serde(default)]
        force: bool,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Req>(br#"{"platform":"a","forse":true}"#, "test").unwrap_err();
        assert!(e.contains("unknown field `forse`"), "{e}");
        assert!(e.contains("`platform`") && e.contains("`force`"), "{e}");
        let e = parse_json::<Req>(br#"{"platform":"a","force":"yes"}"#, "test").unwrap_err();
        assert!(
            e.starts_with("invalid test body: force: invalid type"),
            "{e}"
        );
        let e = parse_json::<Req>(br#"{"force":true}"#, "test").unwrap_err();
        assert!(e.contains("missing field `platform`"), "{e}");
        assert!(parse_json::<Req>(br#"{"platform":"a"}"#, "test").is_ok());
    }

    #[test]
    fn duplicate_top_level_keys_are_refused_naming_the_key() {
        let e = parse_json::<Req>(br#"{"platform":"a","force":false,"force":true}"#, "test")
            .unwrap_err();
        assert!(e.contains("duplicate field `force`"), "{e}");
        let e = parse_json::<Req>(br#"{"platform":"a","platform":"b"}"#, "test").unwrap_err();
        assert!(e.contains("duplicate field `platform`"), "{e}");
    }

    #[test]
    fn queries_are_decoded_and_strict() {
        let mut q = Query::parse(Some("platform=my%61pp&schema=a+b")).unwrap();
        assert!(q.check(&["platform", "schema"]).is_ok());
        assert_eq!(q.take("platform").as_deref(), Some("myapp"));
        assert_eq!(q.take("schema").as_deref(), Some("a b"));
        let q = Query::parse(Some("platfrom=x")).unwrap();
        let e = q.check(&["platform"]).unwrap_err();
        assert!(
            e.contains("\"platfrom\"") && e.contains("accepted: platform"),
            "{e}"
        );
        let e = Query::parse(Some("platform="))
            .unwrap()
            .check(&["platform"]);
        assert!(e.unwrap_err().contains("empty"));
        assert!(Query::parse(Some("a=1&a=2")).is_err());
        assert!(Query::parse(Some("a=%zz")).is_err());
        assert!(Query::parse(Some("a=%ff")).is_err());
        assert!(Query::parse(None).unwrap().check(&[]).is_ok());
    }

    #[test]
    fn form_flags_are_true_false_1_or_0_in_any_case() {
        for (v, want) in [
            ("true", Some(true)),
            ("TRUE", Some(true)),
            ("True", Some(true)),
            ("1", Some(true)),
            ("false", Some(false)),
            ("False", Some(false)),
            ("0", Some(false)),
            ("", None),
            ("yes", None),
            ("no", None),
            ("on", None),
            ("off", None),
            ("2", None),
            ("truee", None),
        ] {
            assert_eq!(form_flag(v), want, "{v:?}");
        }
    }
}

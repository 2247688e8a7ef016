//! A `multipart/form-data` upload read strictly (docs/API.md): a field the route
//! does not define is refused naming it and listing the accepted ones, a
//! field given twice is refused, and a flag that is not `true`, `false`,
//! `1` or `0` (any case) names itself — an empty one too, so `-F dry_run=`
//! from an unset shell variable never deploys for real. Nothing is deployed
//! before the whole form passed.

use std::collections::HashMap;

use stonescriptdb_shared::request::{form_flag, unknown};

use crate::error::MigratorError;
use crate::multipart::{self, Field};

pub struct Form {
    fields: HashMap<String, Field>,
}

impl Form {
    /// Parse `body` sent with `content_type`; every field must be one of `accepted`.
    pub fn parse(
        content_type: &str,
        body: &[u8],
        accepted: &[&str],
    ) -> Result<Form, MigratorError> {
        let boundary = multipart::boundary(content_type).ok_or_else(|| {
            MigratorError::UnsupportedMediaType(format!(
                "expected multipart/form-data (fields {}), got {content_type:?}",
                accepted.join(", ")
            ))
        })?;
        let fields = multipart::parse(body, &boundary)
            .map_err(|m| MigratorError::BadRequest(format!("invalid multipart body: {m}")))?;
        let mut names: Vec<&String> = fields.keys().collect();
        names.sort();
        if let Some(bad) = names.into_iter().find(|n| !accepted.contains(&n.as_str())) {
            return Err(MigratorError::BadRequest(unknown(
                "form field",
                bad,
                accepted,
            )));
        }
        Ok(Form { fields })
    }

    /// A text field, trimmed; empty counts as absent.
    pub fn text(&mut self, name: &str) -> Result<Option<String>, MigratorError> {
        match self.fields.remove(name) {
            None => Ok(None),
            Some(f) => {
                let text = String::from_utf8(f.data).map_err(|_| {
                    MigratorError::BadRequest(format!("field {name} is not UTF-8 text"))
                })?;
                // an empty value (an unset shell variable) is not "absent":
                // `tenant_id=` must not widen a /migrate to every database
                match text.trim() {
                    "" => Err(MigratorError::BadRequest(format!(
                        "field {name} is empty: leave the field out, or give it a value"
                    ))),
                    t => Ok(Some(t.to_owned())),
                }
            }
        }
    }

    /// One of two alias fields (`schema_name` or `name`), not both.
    pub fn text_either(&mut self, a: &str, b: &str) -> Result<Option<String>, MigratorError> {
        match (self.text(a)?, self.text(b)?) {
            (Some(_), Some(_)) => Err(MigratorError::BadRequest(format!(
                "give field {a} or {b}, not both"
            ))),
            (x, y) => Ok(x.or(y)),
        }
    }

    /// A boolean field (absent: false; present, it must say which).
    pub fn flag(&mut self, name: &str) -> Result<bool, MigratorError> {
        let Some(field) = self.fields.remove(name) else {
            return Ok(false);
        };
        let text = String::from_utf8_lossy(&field.data);
        form_flag(text.trim()).ok_or_else(|| {
            MigratorError::BadRequest(format!(
                "field {name} must be true, false, 1 or 0 (any case), got {:?}; leave the field out for false",
                text.trim()
            ))
        })
    }

    /// A positive whole number (`1`, `42`; not `0`, `-1`, `+1`, `01`,
    /// `1.0` or beyond `i32`), absent as `None`.
    pub fn positive(&mut self, name: &str) -> Result<Option<i32>, MigratorError> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        let digits = text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
        match text.parse::<i32>() {
            Ok(n) if digits => Ok(Some(n)),
            _ => Err(MigratorError::BadRequest(format!(
                "field {name} must be a positive whole number, got {text:?}"
            ))),
        }
    }

    /// A file field that may be absent.
    pub fn optional_file(&mut self, name: &str) -> Option<Vec<u8>> {
        self.fields.remove(name).map(|f| f.data)
    }

    /// The file field (`schema`, or `file` as in the v2 API), not both.
    pub fn file(&mut self, a: &str, b: &str) -> Result<Vec<u8>, MigratorError> {
        match (self.fields.remove(a), self.fields.remove(b)) {
            (Some(_), Some(_)) => Err(MigratorError::BadRequest(format!(
                "give field {a} or {b}, not both"
            ))),
            (Some(f), None) | (None, Some(f)) => Ok(f.data),
            (None, None) => Err(MigratorError::BadRequest(format!(
                "missing the schema file field ({a})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, v) in fields {
            b.extend_from_slice(
                format!("--XyZ\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                    .as_bytes(),
            );
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        b
    }

    const CT: &str = "multipart/form-data; boundary=XyZ";

    #[test]
    fn unknown_fields_are_named_with_the_accepted_ones() {
        let e = Form::parse(
            CT,
            &body(&[("platform", "a"), ("dryrun", "true")]),
            &["platform", "dry_run"],
        )
        .err()
        .unwrap();
        let (status, b) = e.to_wire();
        assert_eq!(status, 400);
        assert!(
            b.message.contains("\"dryrun\"") && b.message.contains("platform, dry_run"),
            "{}",
            b.message
        );
    }

    #[test]
    fn flags_take_true_false_1_0_and_refuse_the_rest_empty_included() {
        let fields = [
            ("a", "TRUE"),
            ("b", "1"),
            ("c", "False"),
            ("d", "0"),
            ("e", ""),
            ("f", "yes"),
            ("g", "on"),
        ];
        let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        let mut f = Form::parse(CT, &body(&fields), &names).unwrap();
        assert!(f.flag("a").unwrap() && f.flag("b").unwrap());
        assert!(!f.flag("c").unwrap() && !f.flag("d").unwrap());
        assert!(!f.flag("absent").unwrap());
        for bad in ["e", "f", "g"] {
            let m = f.flag(bad).unwrap_err().to_wire().1.message;
            assert!(
                m.starts_with(&format!("field {bad} must be true, false, 1 or 0")),
                "{m}"
            );
        }
    }

    #[test]
    fn flags_and_aliases() {
        let mut f = Form::parse(
            CT,
            &body(&[("force", "yes please"), ("schema_name", "a"), ("name", "b")]),
            &["force", "schema_name", "name"],
        )
        .unwrap();
        assert!(f
            .flag("force")
            .unwrap_err()
            .to_wire()
            .1
            .message
            .contains("force"));
        assert!(f.text_either("schema_name", "name").is_err());
        assert!(Form::parse("application/json", b"{}", &["x"]).is_err());
    }

    #[test]
    fn a_positive_number_is_plain_digits_from_one() {
        let fields = [
            ("a", "1"),
            ("b", "2147483647"),
            ("c", "0"),
            ("d", "-1"),
            ("e", "+1"),
            ("f", "01"),
            ("g", "1.0"),
            ("h", "abc"),
            ("i", "2147483648"),
            ("j", ""),
        ];
        let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        let mut f = Form::parse(CT, &body(&fields), &names).unwrap();
        assert_eq!(f.positive("a").unwrap(), Some(1));
        assert_eq!(f.positive("b").unwrap(), Some(i32::MAX));
        assert_eq!(f.positive("absent").unwrap(), None);
        for bad in ["c", "d", "e", "f", "g", "h", "i", "j"] {
            let m = f.positive(bad).unwrap_err().to_wire().1.message;
            assert!(m.starts_with(&format!("field {bad} ")), "{m}");
        }
    }
}

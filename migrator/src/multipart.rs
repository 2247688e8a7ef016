//! `multipart/form-data` bodies (RFC 7578), parsed from a body already read
//! into memory under a size cap. Fields are returned by name; a name given
//! twice is refused (which one would win is a guess a client should not rely on).

use std::collections::HashMap;

/// One form field: its bytes and, for file fields, the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub data: Vec<u8>,
    pub filename: Option<String>,
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 200)
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn param(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Parse the body; `Err` says what is malformed.
pub fn parse(body: &[u8], boundary: &str) -> Result<HashMap<String, Field>, String> {
    let delim = format!("--{boundary}");
    let mut fields = HashMap::new();
    let mut pos = find(body, delim.as_bytes(), 0).ok_or("multipart body has no boundary line")?;
    loop {
        pos += delim.len();
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(fields);
        }
        // skip the CRLF after the boundary
        if body.get(pos..pos + 2) != Some(b"\r\n") {
            return Err("malformed multipart boundary line".into());
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("multipart part without header end")?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| "multipart headers are not UTF-8")?;
        let next = find(body, format!("\r\n{delim}").as_bytes(), head_end + 4)
            .ok_or("multipart part is not terminated")?;
        let data = body[head_end + 4..next].to_vec();
        let disposition = head
            .split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or("multipart part without Content-Disposition")?;
        let name = param(disposition, "name").ok_or("multipart part without a name")?;
        let filename = param(disposition, "filename");
        if fields.contains_key(&name) {
            return Err(format!("field {name:?} is given more than once"));
        }
        fields.insert(name, Field { data, filename });
        pos = next + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_file_fields() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"platform\"\r\n\r\nmyapp\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"schema\"; filename=\"s.tar.gz\"\r\nContent-Type: application/gzip\r\n\r\n\x1f\x8b\r\n--X\x00\r\n--XyZ--\r\n";
        let b = boundary("multipart/form-data; boundary=XyZ").unwrap();
        let f = parse(body, &b).unwrap();
        assert_eq!(f["platform"].data, b"myapp");
        assert_eq!(f["schema"].filename.as_deref(), Some("s.tar.gz"));
        assert_eq!(f["schema"].data, b"\x1f\x8b\r\n--X\x00");
    }

    #[test]
    fn rejects_malformed() {
        assert!(boundary("application/json").is_none());
        assert!(boundary("multipart/form-data").is_none());
        assert!(parse(b"nothing here", "b").is_err());
        assert!(parse(
            b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nunterminated",
            "b"
        )
        .is_err());
        assert!(parse(b"--b\r\nX: y\r\n\r\nv\r\n--b--", "b").is_err());
        let twice = b"--b\r\nContent-Disposition: form-data; name=\"force\"\r\n\r\nfalse\r\n\
--b\r\nContent-Disposition: form-data; name=\"force\"\r\n\r\ntrue\r\n--b--\r\n";
        assert!(parse(twice, "b").unwrap_err().contains("more than once"));
    }
}

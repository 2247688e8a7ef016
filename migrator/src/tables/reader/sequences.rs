//! `CREATE SEQUENCE` / `ALTER SEQUENCE` options (also those of an identity
//! column), with options equal to their defaults left out as the catalog
//! reader leaves them out.

use super::expressions::parse_type;
use super::names::qname_of;
use crate::sql::lex::Kind;
use crate::sql::view::View;
use crate::sql::SqlError;
use crate::tables::model::{QName, Sequence};

pub(super) fn new_sequence(name: QName) -> Sequence {
    Sequence {
        name,
        data_type: "bigint".into(),
        increment: 1,
        min_value: None,
        max_value: None,
        start: None,
        cache: 1,
        cycle: false,
        owned_by: None,
    }
}

/// Options equal to their defaults become None (as the catalog reader does).
pub(super) fn seq_defaults(s: &mut Sequence) {
    *s = Sequence::without_defaults(s.clone());
}

/// A signed integer at `i`: (value, index after).
pub(super) fn number(p: View, i: usize) -> Result<(i64, usize), SqlError> {
    let neg = p.sym(i, "-");
    let k = i + usize::from(neg || p.sym(i, "+"));
    let t = p
        .get(k)
        .filter(|t| t.kind == Kind::Number)
        .ok_or_else(|| p.err(k, "expected a number"))?;
    let digits = t.text(p.src).replace('_', "");
    let v: i64 = format!("{}{digits}", if neg { "-" } else { "" })
        .parse()
        .map_err(|_| p.err(k, format!("{} is not a valid integer", t.text(p.src))))?;
    Ok((v, k + 1))
}

/// The line of an `OWNED BY` clause, for checking it once every table is known.
pub(super) type OwnedAt = Option<usize>;

/// Sequence options from `i` to the end of `p`. `owned` is set to the clause's position when
/// an `OWNED BY t.c` is read.
pub(super) fn seq_options(
    p: View,
    mut i: usize,
    s: &mut Sequence,
    owned: &mut OwnedAt,
) -> Result<(), SqlError> {
    while i < p.len() {
        match p.word(i).as_str() {
            "as" => {
                let (t, _, end) =
                    parse_type(p, i + 1).ok_or_else(|| p.err(i + 1, "expected a type after AS"))?;
                if !matches!(t.as_str(), "smallint" | "integer" | "bigint") {
                    return Err(p.err(i + 1, "sequence type must be smallint, integer or bigint"));
                }
                (s.data_type, i) = (t, end);
            }
            "increment" => {
                let (v, end) = number(p, i + 1 + usize::from(p.is(i + 1, "by")))?;
                if v == 0 {
                    return Err(p.err(i, "INCREMENT must not be zero"));
                }
                (s.increment, i) = (v, end);
            }
            "minvalue" => (s.min_value, i) = number(p, i + 1).map(|(v, e)| (Some(v), e))?,
            "maxvalue" => (s.max_value, i) = number(p, i + 1).map(|(v, e)| (Some(v), e))?,
            "no" if p.is(i + 1, "minvalue") => (s.min_value, i) = (None, i + 2),
            "no" if p.is(i + 1, "maxvalue") => (s.max_value, i) = (None, i + 2),
            "no" if p.is(i + 1, "cycle") => (s.cycle, i) = (false, i + 2),
            "cycle" => (s.cycle, i) = (true, i + 1),
            "start" => {
                let k = i + 1 + usize::from(p.is(i + 1, "with"));
                (s.start, i) = number(p, k).map(|(v, e)| (Some(v), e))?;
            }
            "restart" => {
                i += 1 + usize::from(p.is(i + 1, "with"));
                if p.get(i).is_some_and(|t| t.kind == Kind::Number)
                    || p.sym(i, "-")
                    || p.sym(i, "+")
                {
                    i = number(p, i)?.1;
                }
            }
            "cache" => {
                let (v, end) = number(p, i + 1)?;
                if v < 1 {
                    return Err(p.err(i, "CACHE must be at least 1"));
                }
                (s.cache, i) = (v, end);
            }
            "owned" if p.is(i + 1, "by") => {
                if p.is(i + 2, "none") {
                    (s.owned_by, i) = (None, i + 3);
                    continue;
                }
                let (mut parts, end) = p
                    .qname(i + 2)
                    .filter(|(parts, _)| parts.len() >= 2)
                    .ok_or_else(|| p.err(i + 2, "expected OWNED BY table.column or NONE"))?;
                let col = parts.pop().unwrap_or_default();
                s.owned_by = Some((qname_of(parts), col));
                *owned = Some(p.line(i));
                i = end;
            }
            "sequence" if p.is(i + 1, "name") => {
                i = p
                    .qname(i + 2)
                    .ok_or_else(|| p.err(i + 2, "expected a sequence name"))?
                    .1;
            }
            "logged" | "unlogged" => i += 1,
            _ => return Err(p.unexpected(i, "sequence options")),
        }
    }
    seq_defaults(s);
    Ok(())
}

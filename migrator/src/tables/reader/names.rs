//! Names PostgreSQL chooses for unnamed constraints, indexes and serial
//! sequences (`makeObjectName`, `ChooseRelationName`,
//! `ChooseIndexColumnNames`), and qualified relation names read into
//! [`QName`]s.

use crate::sql::view::{clip, qualified, View, MAX_IDENT};
use crate::tables::model::{ident, QName};

/// A table/sequence name at `i`: (name, index after it).
pub(super) fn rel_name(p: View, i: usize) -> Option<(QName, usize)> {
    let (parts, end) = p.qname(i)?;
    Some((qname_of(parts), end))
}

/// The relation a qualified name's parts name (`db.schema.name` keeps the last two; an
/// unqualified name is in `public`).
pub(super) fn qname_of(parts: Vec<String>) -> QName {
    let (schema, name) = qualified(parts);
    QName { schema, name }
}

/// PostgreSQL's makeObjectName: `name1[_name2][_label]` with name1/name2 shortened (the
/// longer first) so the whole fits 63 bytes.
pub(super) fn make_object_name(name1: &str, name2: Option<&str>, label: &str) -> String {
    let mut overhead = usize::from(name2.is_some());
    if !label.is_empty() {
        overhead += label.len() + 1;
    }
    let avail = MAX_IDENT.saturating_sub(overhead);
    let (mut n1, mut n2) = (name1.len(), name2.map_or(0, str::len));
    while n1 + n2 > avail {
        if n1 > n2 {
            n1 -= 1;
        } else {
            n2 = n2.saturating_sub(1);
        }
    }
    let mut out = clip(name1, n1).to_string();
    if let Some(n) = name2 {
        out.push('_');
        out.push_str(clip(n, n2));
    }
    if !label.is_empty() {
        out.push('_');
        out.push_str(label);
    }
    out
}

/// ChooseRelationName/ChooseConstraintName: the first of `label`, `label1`, `label2`... whose
/// name is not `taken`.
pub(super) fn choose_name(
    name1: &str,
    name2: Option<&str>,
    label: &str,
    taken: impl Fn(&str) -> bool,
) -> String {
    let mut pass = 0u32;
    loop {
        let l = if pass == 0 {
            label.to_string()
        } else {
            format!("{label}{pass}")
        };
        let name = make_object_name(name1, name2, &l);
        if !taken(&name) || pass > 100_000 {
            return name;
        }
        pass += 1;
    }
}

/// ChooseIndexColumnNames: repeated names get a number (`expr`, `expr1`).
pub(super) fn index_column_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let mut cur = n.clone();
        let mut i = 1;
        while out.contains(&cur) {
            cur = format!(
                "{}{i}",
                clip(n, MAX_IDENT.saturating_sub(i.to_string().len()))
            );
            i += 1;
        }
        out.push(cur);
    }
    out
}

pub(super) fn idents(cols: &[String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

//! What a migration statement makes of the tables `tables/` declares: the
//! tables and sequences it creates, the columns it adds, and what it
//! renames. A deployment creates what `tables/` declares before the pending
//! migrations run, except what one of them makes itself (docs/SCHEMA.md);
//! only top-level statements are read (dynamic SQL is not).

use super::lex::sig_tokens;
use super::view::{qualified, View};

/// `(schema, name)`, unqualified names in `public`.
pub type Name = (String, String);

/// One thing a migration statement does to tables or sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    CreatesTable(Name),
    CreatesSequence(Name),
    AddsColumn(Name, String),
    RenamesColumn(Name, String, String),
    /// (old, new): the new name is in the old one's schema.
    RenamesTable(Name, Name),
}

/// The effects of one statement (none for anything else).
pub fn effects(stmt: &str) -> Vec<Effect> {
    let toks = sig_tokens(stmt);
    let v = View::new(stmt, &toks);
    let name_at = |i: usize| v.qname(i).map(|(p, next)| (qualified(p), next));
    let if_not_exists = |i: usize| v.opt(i, &["if", "not", "exists"]);
    if v.is(0, "create") {
        let k = v.past_persistence(1);
        let created = match v.word(k).as_str() {
            "table" => name_at(if_not_exists(k + 1)).map(|(n, _)| Effect::CreatesTable(n)),
            "sequence" => name_at(if_not_exists(k + 1)).map(|(n, _)| Effect::CreatesSequence(n)),
            _ => None,
        };
        return created.into_iter().collect();
    }
    if !(v.is(0, "alter") && v.is(1, "table")) {
        return Vec::new();
    }
    let mut k = 2;
    k = v.opt(k, &["if", "exists"]);
    k = v.opt(k, &["only"]);
    let Some((table, next)) = name_at(k) else {
        return Vec::new();
    };
    let actions = v.sub(next, v.len());
    let mut out = Vec::new();
    for a in actions.parts() {
        let ident = |i: usize| a.ident(i);
        if a.is(0, "add") {
            const NOT_COLUMNS: [&str; 6] = [
                "constraint",
                "primary",
                "unique",
                "check",
                "foreign",
                "exclude",
            ];
            if a.any(1, &NOT_COLUMNS) {
                continue;
            }
            let mut i = a.opt(1, &["column"]);
            i = a.opt(i, &["if", "not", "exists"]);
            if let Some(c) = ident(i) {
                out.push(Effect::AddsColumn(table.clone(), c));
            }
        } else if a.is(0, "rename") {
            if a.is(1, "to") {
                if let Some(n) = ident(2) {
                    out.push(Effect::RenamesTable(table.clone(), (table.0.clone(), n)));
                }
            } else if a.is(1, "constraint") {
                continue;
            } else {
                let i = a.opt(1, &["column"]);
                if let (Some(from), true, Some(to)) = (ident(i), a.is(i + 1, "to"), ident(i + 2)) {
                    out.push(Effect::RenamesColumn(table.clone(), from, to));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        let (a, b) = s.split_once('.').unwrap_or(("public", s));
        (a.into(), b.into())
    }

    #[test]
    fn creations_additions_and_renames_are_read() {
        assert_eq!(
            effects("CREATE TABLE IF NOT EXISTS app.orders (id int)"),
            [Effect::CreatesTable(n("app.orders"))]
        );
        assert_eq!(
            effects("create unlogged table Log (x int)"),
            [Effect::CreatesTable(n("log"))]
        );
        assert_eq!(
            effects("CREATE SEQUENCE order_no START 100"),
            [Effect::CreatesSequence(n("order_no"))]
        );
        assert_eq!(
            effects("ALTER TABLE orgs ADD COLUMN slug text, ADD COLUMN IF NOT EXISTS \"Tag\" text, ADD CONSTRAINT u UNIQUE (slug), ADD note text"),
            [
                Effect::AddsColumn(n("orgs"), "slug".into()),
                Effect::AddsColumn(n("orgs"), "Tag".into()),
                Effect::AddsColumn(n("orgs"), "note".into()),
            ]
        );
        assert_eq!(
            effects("ALTER TABLE IF EXISTS ONLY public.users RENAME COLUMN name TO full_name"),
            [Effect::RenamesColumn(
                n("users"),
                "name".into(),
                "full_name".into()
            )]
        );
        assert_eq!(
            effects("alter table users rename email to mail"),
            [Effect::RenamesColumn(
                n("users"),
                "email".into(),
                "mail".into()
            )]
        );
        assert_eq!(
            effects("ALTER TABLE app.people RENAME TO persons"),
            [Effect::RenamesTable(n("app.people"), n("app.persons"))]
        );
        for s in [
            "ALTER TABLE t RENAME CONSTRAINT a TO b",
            "ALTER TABLE t ALTER COLUMN x SET NOT NULL",
            "UPDATE orgs SET slug = lower(name)",
            "DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD COLUMN x int'; END $$",
            "CREATE INDEX i ON t (x)",
        ] {
            assert!(effects(s).is_empty(), "{s}");
        }
    }
}

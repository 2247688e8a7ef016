//! Definitions as PostgreSQL writes them (`pg_get_constraintdef`,
//! `pg_get_indexdef`, `pg_get_expr`) and as the `tables/` reader normalizes
//! them, read through the tokenizer like every other SQL text: which
//! identifiers a definition mentions, the columns a foreign key references,
//! whether it is `NOT VALID`, and a definition moved from one schema to
//! another. String literals,
//! dollar quotes and comments are never mistaken for names.

use super::ident::ident;
use super::lex::{sig_tokens, Kind};
use super::view::{string_value, View};

/// Does `text` (an expression or definition) mention the identifier `name`
/// (its value: unquoted words folded to lower case, quoted ones exact)?
/// Every identifier counts, function and type names too: over-matching only
/// costs a rebuild.
pub fn mentions(text: &str, name: &str) -> bool {
    let toks = sig_tokens(text);
    let v = View::new(text, &toks);
    (0..v.len()).any(|i| v.ident(i).as_deref() == Some(name))
}

/// Every identifier `text` mentions (values: unquoted words folded to lower
/// case, quoted ones exact).
pub fn identifiers(text: &str) -> std::collections::BTreeSet<String> {
    let toks = sig_tokens(text);
    let v = View::new(text, &toks);
    (0..v.len()).filter_map(|i| v.ident(i)).collect()
}

/// The referenced columns of a `FOREIGN KEY (...) REFERENCES t(a, b) ...`
/// definition; None when it names none (or is not a foreign key).
pub fn fk_referenced_columns(definition: &str) -> Option<Vec<String>> {
    let toks = sig_tokens(definition);
    let v = View::new(definition, &toks);
    let at = (0..v.len()).find(|&i| v.is(i, "references"))?;
    let (_, open) = v.qname(at + 1)?;
    let close = v.close(open)?;
    let cols: Option<Vec<String>> = v
        .sub(open + 1, close)
        .parts()
        .iter()
        .map(|c| c.ident(0).filter(|_| c.len() == 1))
        .collect();
    cols.filter(|c| !c.is_empty())
}

/// Does a constraint definition end in `NOT VALID` (added without checking
/// the existing rows)?
pub fn not_valid(definition: &str) -> bool {
    let toks = sig_tokens(definition);
    let v = View::new(definition, &toks);
    let n = v.len();
    n >= 2 && v.is(n - 2, "not") && v.is(n - 1, "valid")
}

/// `text` with every relation or type name qualified by schema `from`
/// qualified by `to` instead: `from.x` and `"from".x`, and inside regclass
/// literals (`'from.s'::regclass`). Nothing else changes — not a `from.`
/// inside another literal, a quoted name or a comment, nor `x_from.`, nor
/// a function call `from.f(…)` (functions, an extension's included, stay
/// where they are; `REFERENCES from.t (…)` is a table).
pub fn requalify(text: &str, from: &str, to: &str) -> String {
    let toks = sig_tokens(text);
    let v = View::new(text, &toks);
    let (mut out, mut pos) = (String::with_capacity(text.len()), 0);
    for (i, t) in toks.iter().enumerate() {
        let call = v.sym(i + 3, "(") && !(i > 0 && v.is(i - 1, "references"));
        let qualifier = v.ident(i).as_deref() == Some(from)
            && v.sym(i + 1, ".")
            && !(i > 0 && v.sym(i - 1, "."))
            && !call;
        let regclass = t.kind == Kind::Str
            && t.text(text).starts_with('\'')
            && v.sym(i + 1, "::")
            && v.is(i + 2, "regclass");
        let new = if qualifier {
            ident(to)
        } else if regclass {
            let body = string_value(text, t);
            let moved = requalify(&body, from, to);
            if moved == body {
                continue;
            }
            format!("'{}'", moved.replace('\'', "''"))
        } else {
            continue;
        };
        out.push_str(text.get(pos..t.start).unwrap_or(""));
        out.push_str(&new);
        pos = t.end;
    }
    out.push_str(text.get(pos..).unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_reads_names_not_literals_or_comments() {
        assert!(mentions("CHECK ((qty > 0))", "qty"));
        assert!(mentions("CHECK ((t.qty > 0))", "qty"));
        assert!(mentions("CHECK ((\"Qty\" > 0))", "Qty"));
        assert!(mentions("CHECK ((QTY > 0))", "qty"));
        // a quoted name is exact; an unquoted one is folded
        assert!(!mentions("CHECK ((\"Qty\" > 0))", "qty"));
        assert!(!mentions("CHECK ((Qty > 0))", "Qty"));
        assert!(mentions("CHECK ((\"a\"\"b\" > 0))", "a\"b"));
        // the hand reader matched these by reading into literals and comments
        assert!(!mentions("CHECK ((note <> E'it\\'s qty'))", "qty"));
        assert!(!mentions("CHECK ((note <> $$qty$$))", "qty"));
        assert!(!mentions("CHECK ((note <> $t$ 'x' qty $t$))", "qty"));
        assert!(!mentions("(note <> 'x') -- qty", "qty"));
        assert!(!mentions("(note /* qty */ <> 'x')", "qty"));
        assert!(!mentions("CHECK ((\"qty total\" > 0))", "qty"));
        assert!(mentions("lower(qty$1)", "qty$1"));
    }

    #[test]
    fn referenced_columns_through_tokens() {
        let cols = |d: &str| fk_referenced_columns(d);
        assert_eq!(
            cols("FOREIGN KEY (a, b) REFERENCES t(x, \"Y\") ON DELETE CASCADE"),
            Some(vec!["x".to_owned(), "Y".to_owned()])
        );
        assert_eq!(cols("CHECK (true)"), None);
        assert_eq!(cols("FOREIGN KEY (a) REFERENCES t"), None);
        // quoted names holding the characters the hand reader cut at
        assert_eq!(
            cols("FOREIGN KEY (a) REFERENCES \"we(ird\"(\"a,b\", \"c)\")"),
            Some(vec!["a,b".to_owned(), "c)".to_owned()])
        );
        assert_eq!(
            cols("FOREIGN KEY (a) REFERENCES app.\"T\"(id) MATCH FULL"),
            Some(vec!["id".to_owned()])
        );
        // any spacing and case, and no REFERENCES inside a literal
        assert_eq!(
            cols("foreign key (a) references\n\tt (ID)"),
            Some(vec!["id".to_owned()])
        );
        assert_eq!(cols("CHECK ((note <> 'REFERENCES t(x)'))"), None);
    }

    #[test]
    fn not_valid_is_the_last_two_words() {
        assert!(not_valid("CHECK ((qty > 0)) NOT VALID"));
        assert!(not_valid("FOREIGN KEY (a) REFERENCES t(id) not\n valid"));
        assert!(!not_valid("CHECK ((qty > 0))"));
        assert!(!not_valid("CHECK ((note <> 'NOT VALID'))"));
        assert!(!not_valid("CHECK ((note <> 'x')) -- NOT VALID"));
        assert!(!not_valid("VALID"));
    }

    #[test]
    fn requalify_moves_names_and_regclass_literals_only() {
        let r = |t: &str| requalify(t, "public", "_s");
        assert_eq!(
            r("CREATE INDEX i ON public.t USING btree (a)"),
            "CREATE INDEX i ON _s.t USING btree (a)"
        );
        assert_eq!(r("x_public.t"), "x_public.t");
        assert_eq!(r("\"public\".t"), "_s.t");
        assert_eq!(r("PUBLIC.t"), "_s.t");
        assert_eq!(
            r("nextval('public.t_id_seq'::regclass)"),
            "nextval('_s.t_id_seq'::regclass)"
        );
        // literals, quoted names and comments that merely contain `public.`
        assert_eq!(
            r("CHECK ((note <> 'public.x'))"),
            "CHECK ((note <> 'public.x'))"
        );
        assert_eq!(r("\"a.public\".t"), "\"a.public\".t");
        assert_eq!(r("\"Public\".t"), "\"Public\".t");
        assert_eq!(r("(a) -- public.t"), "(a) -- public.t");
        assert_eq!(r("$$public.t$$"), "$$public.t$$");
        // a schema that needs quotes is quoted
        assert_eq!(requalify("_s.t", "_s", "My App"), "\"My App\".t");
        assert_eq!(
            requalify("'_s.t_seq'::regclass", "_s", "My App"),
            "'\"My App\".t_seq'::regclass"
        );
    }
}

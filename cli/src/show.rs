//! How answers print: aligned tables for listings, a deployment report as
//! a summary plus its plan as a table (what a dry run is read for), and a
//! fleet migration's NDJSON progress as a bar on a terminal or one line per
//! database otherwise. `--json` prints the gateway's answer as it is.

use std::io::{IsTerminal, Write};

use serde_json::Value;

/// Text of a JSON value for a table cell (`-` for none).
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// Rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// The counts of a deployment report worth a line, in order.
const COUNTS: &[(&str, &str)] = &[
    ("extensions_installed", "extensions installed"),
    ("types_deployed", "types deployed"),
    ("tables_created", "tables created"),
    ("tables_altered", "tables altered"),
    ("migrations_applied", "migrations applied"),
    ("functions_created", "functions created"),
    ("functions_updated", "functions updated"),
    ("functions_dropped", "functions dropped"),
];

/// One database's report: status, counts, the blocking changes, and the
/// plan (a dry run's, or the steps a deployment ran) as a table.
pub fn report(r: &Value) -> String {
    summary(r) + &plan(r)
}

/// A report's status, counts, error, blocking changes, notes and what a
/// rollback kept.
fn summary(r: &Value) -> String {
    let mut out = format!("{}: {}\n", cell(&r["database"]), cell(&r["status"]));
    let counts: Vec<String> = COUNTS
        .iter()
        .filter_map(|(k, label)| {
            r[*k]
                .as_u64()
                .filter(|n| *n > 0)
                .map(|n| format!("{n} {label}"))
        })
        .collect();
    if !counts.is_empty() {
        out.push_str(&format!("  {}\n", counts.join(", ")));
    }
    if let Some(e) = r.get("error").filter(|e| !e.is_null()) {
        let msg = e["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| cell(e));
        out.push_str(&format!("  error: {msg}\n"));
    }
    let v = &r["schema_validation"];
    for (key, label) in [
        ("dataloss_changes", "data-losing change"),
        ("incompatible_changes", "incompatible change"),
    ] {
        for c in v[key].as_array().into_iter().flatten() {
            out.push_str(&format!("  {label}: {}\n", cell(c)));
        }
    }
    for note in r["notes"].as_array().into_iter().flatten() {
        out.push_str(&format!("  note: {}\n", cell(note)));
    }
    for kept in r["kept"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  kept: {} {} ({})\n",
            cell(&kept["kind"]),
            cell(&kept["name"]),
            cell(&kept["why"])
        ));
    }
    out
}

/// A report's plan as an indented table (empty without one).
fn plan(r: &Value) -> String {
    let Some(plan) = r["plan"].as_array().filter(|p| !p.is_empty()) else {
        return String::new();
    };
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|s| {
            vec![
                cell(&s["phase"]),
                cell(&s["class"]),
                cell(&s["object"]),
                cell(&s["reason"]),
            ]
        })
        .collect();
    table(&["PHASE", "CLASS", "OBJECT", "WHY"], &rows)
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect()
}

/// A `/register`, `/migrate` or `/v2/migrate` answer: each database's
/// summary, its plan (once, when every database has the same one), then
/// the request's status.
pub fn deployment(body: &Value) -> String {
    let mut out = String::new();
    let reports = body["databases"]
        .as_array()
        .or_else(|| body["results"].as_array())
        .cloned()
        .unwrap_or_else(|| vec![body.clone()]);
    let plans: Vec<String> = reports.iter().map(plan).collect();
    let shared = reports.len() > 1 && plans.iter().all(|p| *p == plans[0]);
    for (r, p) in reports.iter().zip(&plans) {
        out.push_str(&summary(r));
        if !shared {
            out.push_str(p);
        }
    }
    if shared && !plans[0].is_empty() {
        out.push_str(&format!(
            "the plan of each of the {} databases:\n",
            reports.len()
        ));
        out.push_str(&plans[0]);
    }
    if let Some(status) = body["status"].as_str() {
        let ms = body["execution_time_ms"]
            .as_u64()
            .map(|m| format!(" in {m} ms"))
            .unwrap_or_default();
        out.push_str(&format!("{status}{ms}\n"));
    }
    out
}

/// What an export held: files per folder, what moved to the migration and
/// why, what was not exported.
pub fn export(report: &Value, out: &std::path::Path) -> String {
    let mut t = format!(
        "{} exported into {}\n",
        cell(&report["database"]),
        out.display()
    );
    if let Some(files) = report["files"].as_object() {
        let list: Vec<String> = files
            .iter()
            .map(|(f, n)| format!("{f}/ {}", cell(n)))
            .collect();
        t.push_str(&format!("  {}\n", list.join(", ")));
    }
    for m in report["moved_to_migrations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        t.push_str(&format!(
            "  moved to {}: {} {} ({})\n",
            cell(&m["to"]),
            cell(&m["kind"]).to_lowercase(),
            cell(&m["object"]),
            cell(&m["why"])
        ));
    }
    for l in report["not_exported"].as_array().into_iter().flatten() {
        t.push_str(&format!(
            "  not exported: {} {} ({})\n",
            cell(&l["kind"]).to_lowercase(),
            cell(&l["object"]),
            cell(&l["why"])
        ));
    }
    t
}

/// Progress of a fleet migration read as NDJSON lines: a bar redrawn in
/// place on a terminal, a plain line per database otherwise.
pub struct Progress {
    total: Option<usize>,
    done: usize,
    failed: usize,
    tty: bool,
}

impl Progress {
    pub fn new(total: Option<usize>) -> Progress {
        Progress {
            total,
            done: 0,
            failed: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// One database finished (`report` is its line).
    pub fn database(&mut self, report: &Value) {
        self.done += 1;
        let status = cell(&report["status"]);
        if status == "failed" {
            self.failed += 1;
        }
        let mut err = std::io::stderr().lock();
        let of = self.total.map(|t| format!("/{t}")).unwrap_or_default();
        if self.tty {
            let bar = match self.total {
                Some(t) if t > 0 => {
                    let width = 30;
                    let filled = (self.done.min(t) * width) / t;
                    format!("[{}{}] ", "#".repeat(filled), "-".repeat(width - filled))
                }
                _ => String::new(),
            };
            let _ = write!(
                err,
                "\r\x1b[2K{bar}{}{of} databases, {} failed — {} {status}",
                self.done,
                self.failed,
                cell(&report["database"])
            );
        } else {
            let _ = writeln!(
                err,
                "[{}{of}] {} {status}",
                self.done,
                cell(&report["database"])
            );
        }
        let _ = err.flush();
    }

    /// The run ended: leave the bar's line.
    pub fn finish(&self) {
        if self.tty && self.done > 0 {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let t = table(
            &["NAME", "STATE"],
            &[
                vec!["shop_main".into(), "ready".into()],
                vec!["x".into(), "-".into()],
            ],
        );
        assert_eq!(t, "NAME       STATE\nshop_main  ready\nx          -\n");
    }

    #[test]
    fn a_dry_runs_plan_prints_as_a_table_under_its_counts() {
        let r = json!({
            "database": "shop_main", "status": "dry_run", "tables_created": 1,
            "migrations_applied": 0,
            "schema_validation": {"dataloss_changes": ["drop column notes.body"]},
            "plan": [
                {"phase": "tables", "class": "safe", "object": "notes", "reason": "new table", "sql": []},
                {"phase": "functions", "object": "ping()", "reason": "new", "sql": []}
            ]
        });
        let text = report(&r);
        assert_eq!(
            text,
            "shop_main: dry_run\n  1 tables created\n  data-losing change: drop column notes.body\n  \
             PHASE      CLASS  OBJECT  WHY\n  tables     safe   notes   new table\n  \
             functions  -      ping()  new\n"
        );
    }
}

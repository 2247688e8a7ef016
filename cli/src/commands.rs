//! Each command: build the request the gateway's API documents
//! (docs/API.md), send it, print the answer (a summary, or the JSON with
//! `--json`). A failed request prints what the gateway said, with the
//! blocking changes of a 409, and exits non-zero.

use reqwest::Method;
use serde_json::{json, Value};

use crate::args::*;
use crate::client::{query_value, Failure, Gateway};
use crate::pack::pack;
use crate::show::{self, cell, table, Progress};

/// What a command prints when it succeeds.
pub struct Output {
    pub text: String,
}

/// How to print: the JSON as it came, or the summary `summary` builds.
fn output(json_mode: bool, body: &Value, summary: impl FnOnce(&Value) -> String) -> Output {
    let text = if json_mode {
        serde_json::to_string_pretty(body).unwrap_or_default() + "\n"
    } else {
        summary(body)
    };
    Output { text }
}

/// A form field list plus the archive, as multipart.
fn form(fields: &[(&str, String)], archive: Option<Vec<u8>>) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.clone());
    }
    if let Some(a) = archive {
        let part = reqwest::multipart::Part::bytes(a).file_name("schema.tar.gz");
        form = form.part("schema", part);
    }
    form
}

/// A 409's blocking changes (under `schema_validation`, at the top or in
/// `details`), printed before the failure line.
fn explain(gw: &Gateway, answer: &crate::client::Answer) -> Failure {
    let b = &answer.body;
    let details = &b["details"];
    let text = if b["schema_validation"].is_object() {
        // 409 schema_validation_failed: the blocking changes and the plan
        show::report(&json!({
            "database": b["database"],
            "status": "blocked",
            "schema_validation": b["schema_validation"],
            "plan": details["plan"],
        }))
    } else if details["results"].is_array() || details["databases"].is_array() {
        // a migration over many databases: each one's report
        show::deployment(details)
    } else {
        String::new()
    };
    let line = gw.failure(answer).0;
    Failure(if text.is_empty() {
        line
    } else {
        format!("{text}{line}")
    })
}

/// Send, and turn a failed answer into the explained failure.
async fn send(gw: &Gateway, req: reqwest::RequestBuilder) -> Result<Value, Failure> {
    let resp = gw.open(req).await?;
    let answer = crate::client::read(resp).await?;
    if (200..300).contains(&answer.status) {
        Ok(answer.body)
    } else {
        Err(explain(gw, &answer))
    }
}

pub async fn run(gw: &Gateway, json_mode: bool, command: Command) -> Result<Output, Failure> {
    match command {
        Command::Register(c) => register(gw, json_mode, c).await,
        Command::Migrate(c) => migrate(gw, json_mode, c).await,
        Command::Create(c) => {
            let mut body = json!({"platform": c.platform, "schema_name": c.schema,
                                  "database_id": c.database, "dry_run": c.dry_run});
            if let Some(v) = c.version {
                body["version"] = version_value(&v)?;
            }
            let b = send(gw, gw.request(Method::POST, "/database/create").json(&body)).await?;
            Ok(output(json_mode, &b, |b| {
                let mut t = show::report(b);
                if let Some(n) = b["message"].as_str() {
                    t.push_str(&format!("{n}\n"));
                }
                t
            }))
        }
        Command::Call(c) => {
            let params: Vec<Value> = c
                .args
                .iter()
                .map(|a| serde_json::from_str(a).unwrap_or_else(|_| Value::String(a.clone())))
                .collect();
            let mut body =
                json!({"platform": c.platform, "function": c.function, "params": params});
            if let Some(t) = c.tenant {
                body["tenant_id"] = json!(t);
            }
            if let Some(d) = c.database {
                body["database"] = json!(d);
            }
            let b = send(gw, gw.call_request().json(&body)).await?;
            Ok(output(json_mode, &b, |b| {
                let rows = b["rows"].as_array().cloned().unwrap_or_default();
                let mut header: Vec<String> = Vec::new();
                for r in &rows {
                    for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
                        if !header.contains(k) {
                            header.push(k.clone());
                        }
                    }
                }
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| header.iter().map(|h| cell(&r[h])).collect())
                    .collect();
                let h: Vec<&str> = header.iter().map(String::as_str).collect();
                let mut t = if h.is_empty() {
                    String::new()
                } else {
                    table(&h, &cells)
                };
                t.push_str(&format!(
                    "({} row{})\n",
                    rows.len(),
                    if rows.len() == 1 { "" } else { "s" }
                ));
                t
            }))
        }
        Command::Databases(c) => {
            let mut path = format!("/admin/databases?platform={}", query_value(&c.platform));
            if c.size {
                path.push_str("&size=true");
            }
            let b = send(gw, gw.request(Method::GET, &path)).await?;
            Ok(output(json_mode, &b, |b| {
                let rows: Vec<Vec<String>> = b["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        let last = &i["last_deployment"];
                        let mut row = vec![
                            cell(&i["name"]),
                            cell(&i["kind"]),
                            cell(&i["state"]),
                            cell(&i["schema_version"]),
                            cell(&i["pinned"]),
                            if last.is_object() {
                                format!(
                                    "{} {} {}",
                                    cell(&last["at"]),
                                    cell(&last["operation"]),
                                    cell(&last["status"])
                                )
                            } else {
                                "-".into()
                            },
                        ];
                        if c.size {
                            row.push(cell(&i["size_bytes"]));
                        }
                        row
                    })
                    .collect();
                let mut header = vec![
                    "NAME",
                    "KIND",
                    "STATE",
                    "VERSION",
                    "PINNED",
                    "LAST DEPLOYMENT",
                ];
                if c.size {
                    header.push("BYTES");
                }
                table(&header, &rows)
            }))
        }
        Command::Versions(c) => {
            let path = match &c.schema {
                Some(s) => format!(
                    "/platform/{}/schemas/{}/versions",
                    query_value(&c.platform),
                    query_value(s)
                ),
                None => format!("/platform/{}/versions", query_value(&c.platform)),
            };
            let b = send(gw, gw.request(Method::GET, &path)).await?;
            Ok(output(json_mode, &b, |b| {
                let rows: Vec<Vec<String>> = b["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        vec![
                            cell(&v["version"]),
                            cell(&v["uploaded_at"]),
                            cell(&v["size"]),
                            cell(&v["databases"]),
                            cell(&v["latest"]),
                            cell(&v["archive_sha256"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "VERSION",
                        "UPLOADED",
                        "BYTES",
                        "DATABASES",
                        "LATEST",
                        "SHA256",
                    ],
                    &rows,
                )
            }))
        }
        Command::Rollback(c) => {
            let m = Migrate {
                platform: c.platform,
                tenant: c.tenant,
                schema: c.schema,
                database: c.database,
                version: Some(c.version.to_string()),
                dry_run: c.dry_run,
                force: c.force,
                allow: Vec::new(),
                dir: None,
            };
            migrate(gw, json_mode, m).await
        }
        Command::Drop(c) => {
            let (path, name) = match (&c.database, &c.platform) {
                (Some(d), None) => (format!("/admin/databases/{}", query_value(d)), d.clone()),
                (None, Some(p)) => (format!("/admin/platforms/{}", query_value(p)), p.clone()),
                _ => {
                    return Err(Failure(
                        "give --database NAME (drop one database) or --platform P (offboard a platform), not both".into(),
                    ))
                }
            };
            let mut path = format!("{path}?confirm={}", query_value(&c.confirm));
            if c.backup {
                path.push_str("&backup=true");
            }
            let b = send(gw, gw.request(Method::DELETE, &path)).await?;
            Ok(output(json_mode, &b, |b| {
                let mut t = format!("dropped {name}\n");
                for f in b["backups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(b.get("backup"))
                {
                    if !f.is_null() {
                        t.push_str(&format!("backup: {}\n", cell(f)));
                    }
                }
                t
            }))
        }
        Command::Deployments(c) => {
            let mut path = format!("/admin/deployments?limit={}", c.limit);
            if let Some(p) = &c.platform {
                path.push_str(&format!("&platform={}", query_value(p)));
            }
            if let Some(d) = &c.database {
                path.push_str(&format!("&database={}", query_value(d)));
            }
            let b = send(gw, gw.request(Method::GET, &path)).await?;
            Ok(output(json_mode, &b, |b| {
                let rows: Vec<Vec<String>> = b["deployments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        vec![
                            cell(&d["id"]),
                            cell(&d["started_at"]),
                            cell(&d["database"]),
                            cell(&d["operation"]),
                            cell(&d["status"]),
                            d["duration_ms"]
                                .as_u64()
                                .map(|m| format!("{m} ms"))
                                .unwrap_or_else(|| "-".into()),
                            cell(&d["requested_by"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "STARTED",
                        "DATABASE",
                        "OPERATION",
                        "STATUS",
                        "TOOK",
                        "BY",
                    ],
                    &rows,
                )
            }))
        }
        Command::Functions(c) => {
            let mut path = format!("/platform/{}/functions", query_value(&c.platform));
            let mut sep = '?';
            for (k, v) in [("tenant_id", &c.tenant), ("database", &c.database)] {
                if let Some(v) = v {
                    path.push_str(&format!("{sep}{k}={}", query_value(v)));
                    sep = '&';
                }
            }
            let b = send(gw, gw.request(Method::GET, &path)).await?;
            Ok(output(json_mode, &b, |b| {
                let mut t = String::new();
                for f in b["functions"].as_array().into_iter().flatten() {
                    let args: Vec<String> = f["arguments"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let mode = match a["mode"].as_str() {
                                Some("in") | None => String::new(),
                                Some(m) => format!("{} ", m.to_uppercase()),
                            };
                            let name = a["name"]
                                .as_str()
                                .map(|n| format!("{n} "))
                                .unwrap_or_default();
                            let default = a["default"]
                                .as_str()
                                .map(|d| format!(" = {d}"))
                                .unwrap_or_default();
                            format!("{mode}{name}{}{default}", cell(&a["type"]))
                        })
                        .collect();
                    let qualified = match f["schema"].as_str() {
                        Some("public") | None => cell(&f["name"]),
                        Some(s) => format!("{s}.{}", cell(&f["name"])),
                    };
                    t.push_str(&format!(
                        "{qualified}({}) → {}  [{}]\n",
                        args.join(", "),
                        cell(&f["returns"]),
                        cell(&f["volatility"])
                    ));
                }
                t
            }))
        }
        Command::Status(_) => {
            // /health answers 503 with its body when PostgreSQL is down: show it
            let resp = gw.open(gw.request(Method::GET, "/health")).await?;
            let answer = crate::client::read(resp).await?;
            if !answer.body.is_object() {
                return Err(gw.failure(&answer));
            }
            let out = output(json_mode, &answer.body, |b| {
                format!(
                    "gateway {} at {}: {} (postgres: {}, migrator: {})\n",
                    cell(&b["version"]),
                    gw.url(""),
                    cell(&b["status"]),
                    cell(&b["postgres"]),
                    cell(&b["migrator"])
                )
            });
            if answer.status >= 300 {
                return Err(Failure(format!("{}{} unhealthy", out.text, answer.status)));
            }
            Ok(out)
        }
        Command::Pull(c) => {
            if let Some(p) = &c.platform {
                let path = format!("/admin/databases?platform={}", query_value(p));
                let b = send(gw, gw.request(Method::GET, &path)).await?;
                let owned = b["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|i| i["name"] == c.database.as_str());
                if !owned {
                    return Err(Failure(format!(
                        "platform {p} has no database {}",
                        c.database
                    )));
                }
            }
            let path = format!("/admin/databases/{}/export", query_value(&c.database));
            let resp = gw.open(gw.request(Method::GET, &path)).await?;
            if !resp.status().is_success() {
                let answer = crate::client::read(resp).await?;
                return Err(explain(gw, &answer));
            }
            let archive = resp
                .bytes()
                .await
                .map_err(|e| Failure(format!("the export broke off: {e}")))?;
            let report = crate::pack::unpack(&archive, &c.out)?;
            Ok(output(json_mode, &report, |r| show::export(r, &c.out)))
        }
        Command::Check(c) => crate::check::check(&c.dir).map(|text| Output { text }),
    }
}

/// `--version`: a number, or `latest` (v2 only).
fn version_value(v: &str) -> Result<Value, Failure> {
    if v == "latest" {
        return Ok(json!("latest"));
    }
    v.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| json!(n))
        .ok_or_else(|| {
            Failure(format!(
                "--version must be a positive number or latest, got {v:?}"
            ))
        })
}

async fn register(gw: &Gateway, json_mode: bool, c: Register) -> Result<Output, Failure> {
    let archive = pack(&c.dir)?;
    if let Some(schema) = c.schema {
        if c.tenant.is_some() || c.dry_run {
            return Err(Failure(
                "--schema stores a version; --tenant and --dry-run belong to v1 register (create databases with `create`)".into(),
            ));
        }
        let path = format!("/platform/{}/schema", query_value(&c.platform));
        let b = send(
            gw,
            gw.request(Method::POST, &path)
                .multipart(form(&[("schema_name", schema)], Some(archive))),
        )
        .await?;
        return Ok(output(json_mode, &b, |b| {
            let new = if b["new_version"] == json!(false) {
                " (the same as the latest: nothing stored)"
            } else {
                ""
            };
            format!(
                "{} version {}{new}\n",
                cell(&b["schema_name"]),
                cell(&b["version"])
            )
        }));
    }
    let mut fields = vec![("platform", c.platform)];
    if let Some(t) = c.tenant {
        fields.push(("tenant_id", t));
    }
    if c.dry_run {
        fields.push(("dry_run", "true".into()));
    }
    let b = send(
        gw,
        gw.request(Method::POST, "/register")
            .multipart(form(&fields, Some(archive))),
    )
    .await?;
    Ok(output(json_mode, &b, show::deployment))
}

async fn migrate(gw: &Gateway, json_mode: bool, c: Migrate) -> Result<Output, Failure> {
    let Some(schema) = c.schema else {
        // v1: a folder, or a kept archive by number
        if c.database.is_some() || !c.allow.is_empty() {
            return Err(Failure(
                "--database and --allow go with --schema (v2)".into(),
            ));
        }
        let mut fields = vec![("platform", c.platform)];
        if let Some(t) = c.tenant {
            fields.push(("tenant_id", t));
        }
        if c.force {
            fields.push(("force", "true".into()));
        }
        if c.dry_run {
            fields.push(("dry_run", "true".into()));
        }
        let archive = match (&c.dir, &c.version) {
            (Some(dir), None) => Some(pack(dir)?),
            (None, Some(v)) => {
                fields.push(("version", v.clone()));
                None
            }
            _ => {
                return Err(Failure(
                    "give the schema folder, or --version N of a kept archive (not both)".into(),
                ))
            }
        };
        let b = send(
            gw,
            gw.request(Method::POST, "/migrate")
                .multipart(form(&fields, archive)),
        )
        .await?;
        return Ok(output(json_mode, &b, show::deployment));
    };
    if c.dir.is_some() || c.tenant.is_some() {
        return Err(Failure(
            "with --schema the version is stored already: upload a folder with `register --schema`; --tenant is v1".into(),
        ));
    }
    let mut body = json!({"platform": c.platform, "schema_name": schema,
                          "force": c.force, "dry_run": c.dry_run});
    if let Some(d) = &c.database {
        body["database_id"] = json!(d);
    }
    if let Some(v) = &c.version {
        body["version"] = version_value(v)?;
    }
    if !c.allow.is_empty() {
        body["allow"] = json!(c.allow);
    }
    // how many databases the run goes through, for the progress bar
    let total = if c.database.is_some() {
        Some(1)
    } else {
        let path = format!(
            "/platform/{}/databases?schema={}",
            query_value(&c.platform),
            query_value(&schema)
        );
        match gw.send(gw.request(Method::GET, &path)).await {
            Ok(a) => a.body["databases"].as_array().map(|d| d.len()),
            Err(_) => None,
        }
    };
    let req = gw
        .request(Method::POST, "/v2/migrate")
        .header("accept", "application/x-ndjson")
        .json(&body);
    let mut resp = gw.open(req).await?;
    if !resp.status().is_success() {
        let answer = crate::client::read(resp).await?;
        return Err(explain(gw, &answer));
    }
    let mut progress = Progress::new(total);
    let mut pending = Vec::new();
    let mut summary = Value::Null;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Failure(format!("the progress stream broke off: {e}")))?
    {
        pending.extend_from_slice(&chunk);
        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if v.get("results").is_some() {
                summary = v;
            } else {
                progress.database(&v);
            }
        }
    }
    progress.finish();
    if summary.is_null() {
        return Err(Failure(
            "the migration's summary never came (the stream ended early)".into(),
        ));
    }
    let failed = summary["results"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["status"] == "failed");
    let out = output(json_mode, &summary, show::deployment);
    if failed {
        return Err(Failure(format!(
            "{}some databases failed to migrate (each is as it was)",
            out.text
        )));
    }
    Ok(out)
}

//! `/metrics` (Prometheus text from router and migrator), `/openapi.json`
//! (every documented route exists) and request ids in the migrator's log.

use serde_json::{json, Value};
use stonescriptdb_tests::{new_platform, Gateway, SchemaDir, TestDb};

/// Parse the Prometheus text exposition format strictly enough to catch
/// malformed output: returns (metric with labels, value) samples.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().expect("metric name after # HELP/# TYPE");
            assert!(
                kind == "HELP" || kind == "TYPE",
                "bad comment line {line:?}"
            );
            if kind == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line:?}"
                );
                typed.insert(name.to_owned());
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.is_empty(),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels in {line:?}"
                );
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label in {line:?}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line:?}"
                    );
                    assert!(!v.contains('\n'));
                }
            }
        }
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            typed.contains(name) || typed.contains(base),
            "sample without # TYPE: {line:?}"
        );
        samples.push((series.to_owned(), v));
    }
    samples
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_from_both_processes() {
    let db = TestDb::new().await;
    let gw = Gateway::start(&[]);
    gw.adopt_db(&db).await;
    for _ in 0..3 {
        assert_eq!(gw.call(&db.platform, "echo_int4", json!([1])).await.0, 200);
    }
    assert_eq!(gw.call(&db.platform, "nope", json!([])).await.0, 404);
    let p = new_platform();
    assert_eq!(
        gw.register(&p, None, &SchemaDir::fixture("shop")).await.0,
        200
    );
    let resp = reqwest::get(format!("{}/metrics", gw.url)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let samples = parse_prometheus(&text);
    let get = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v);
    assert_eq!(
        get("stonescriptdb_router_requests_total{route=\"/call\",status=\"200\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        get("stonescriptdb_router_requests_total{route=\"/call\",status=\"404\"}"),
        Some(1.0)
    );
    // forwarded routes count under their own templates: the adoption of the
    // test database, and the registration
    assert_eq!(
        get("stonescriptdb_router_requests_total{route=\"/admin/adopt\",status=\"200\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get("stonescriptdb_router_requests_total{route=\"/register\",status=\"200\"}"),
        Some(1.0)
    );
    assert_eq!(
        get("stonescriptdb_router_request_duration_seconds_count{route=\"/call\",status_class=\"2xx\"}"),
        Some(3.0)
    );
    assert_eq!(
        get(&format!(
            "stonescriptdb_router_pool_size{{database=\"{}\"}}",
            db.database
        )),
        Some(1.0)
    );
    let timeouts = format!(
        "stonescriptdb_router_pool_timeouts_total{{database=\"{}\"}}",
        db.database
    );
    assert_eq!(get(&timeouts), Some(0.0), "{text}");
    assert_eq!(get("stonescriptdb_migrator_up"), Some(1.0));
    assert_eq!(
        get("stonescriptdb_migrator_deployments_total{result=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get("stonescriptdb_migrator_databases_created_total"),
        Some(1.0)
    );
    // every /call waited for its connection once (the 404 too: it looked
    // the function up on a connection)
    assert_eq!(
        get("stonescriptdb_router_pool_wait_seconds_count"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(get("stonescriptdb_router_calls_abandoned_total"), Some(0.0));
    // the registration's run is over
    assert_eq!(
        get("stonescriptdb_migrator_fleet_jobs"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        get("stonescriptdb_migrator_fleet_databases_pending"),
        Some(0.0)
    );
    // the migrator logs the request id the router gave the forwarded request
    assert!(gw.log().contains("request_id"), "{}", gw.log());
    dashboard_queries_what_the_gateway_exposes(&text, &samples);
}

/// Every query of `deploy/grafana-dashboard.json` names a metric the
/// gateway exposes (`# TYPE`; `_bucket`/`_sum`/`_count` of a histogram), and
/// every label it selects on is one that metric's samples carry.
fn dashboard_queries_what_the_gateway_exposes(text: &str, samples: &[(String, f64)]) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut ids = std::collections::HashSet::new();
    let mut checked = 0;
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "panel id twice"
        );
        let title = panel["title"].as_str().expect("panel title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("stonescriptdb_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let name = &tail[..end];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| text.contains(&format!("# TYPE {b} histogram\n")));
                assert!(
                    base.is_some() || text.contains(&format!("# TYPE {name} ")),
                    "{title}: {name} is not a metric the gateway exposes ({expr})"
                );
                // labels selected on must be labels of that metric's samples
                if let Some(selector) = tail[end..].strip_prefix('{') {
                    let selector = &selector[..selector.find('}').expect("closing brace")];
                    for matcher in selector.split(',') {
                        let key = matcher.split(['=', '!', '~']).next().unwrap().trim();
                        assert!(
                            samples
                                .iter()
                                .any(|(s, _)| s.starts_with(&format!("{name}{{"))
                                    && (s.contains(&format!("{{{key}=\""))
                                        || s.contains(&format!(",{key}=\"")))),
                            "{title}: no sample of {name} has a label {key} ({expr})"
                        );
                    }
                }
                checked += 1;
                rest = &tail[end..];
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} metric names in the dashboard"
    );
}

/// A request for every path and method in the OpenAPI document must reach a
/// handler: never 404 "no route" or 405.
#[tokio::test]
async fn every_documented_route_exists() {
    let gw = Gateway::start(&[]);
    let (s, spec) = gw.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{}", paths.len());
    let client = reqwest::Client::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = format!("{}{}", gw.url, path.replace("{platform}", "nosuchplatform"));
            let req = match method.as_str() {
                "get" => client.get(&url),
                "post" => client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                "delete" => client.delete(&url),
                other => panic!("unexpected method {other}"),
            };
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path}: {body}");
            let no_route = status == 404 && body["error"] == "not_found";
            assert!(
                !no_route,
                "{method} {path} is documented but not routed: {body}"
            );
        }
    }
    // and an undocumented path really is 404
    let (s, b) = gw.get("/no/such/route").await;
    assert_eq!((s, b["error"].clone()), (404, json!("not_found")));
}

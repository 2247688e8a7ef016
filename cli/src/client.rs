//! The gateway as the CLI sees it: its URL and tokens from the environment
//! (`GATEWAY_URL`, `GATEWAY_TOKEN`, `GATEWAY_CALL_TOKEN`, `GATEWAY_CA_FILE`),
//! one HTTP client (rustls; a private CA added from `GATEWAY_CA_FILE`), and
//! the requests the commands send. A gateway error becomes [`Failure`] with
//! the gateway's own code and message.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// Where the gateway listens when `GATEWAY_URL` is unset (its default
/// `GATEWAY_HOST:GATEWAY_PORT`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9000";

/// Why a command failed: the gateway's answer, or what kept the request
/// from being answered. Printed as one line; the CLI exits non-zero.
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure(s)
    }
}

/// What the environment says about the gateway.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub url: Option<String>,
    pub token: Option<String>,
    pub call_token: Option<String>,
    pub ca_file: Option<String>,
}

impl Env {
    /// From a lookup (the process environment in `main`, a map in tests);
    /// empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Env {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        Env {
            url: get("GATEWAY_URL"),
            token: get("GATEWAY_TOKEN"),
            call_token: get("GATEWAY_CALL_TOKEN"),
            ca_file: get("GATEWAY_CA_FILE"),
        }
    }
}

pub struct Gateway {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    call_token: Option<String>,
}

/// A gateway answer: status and body (JSON, or the text as a JSON string).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Gateway {
    pub fn new(env: &Env) -> Result<Gateway, Failure> {
        let base = env
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_URL.into())
            .trim_end_matches('/')
            .to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure(format!(
                "GATEWAY_URL must start with http:// or https://, got {base:?}"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("stonescriptdb/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &env.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| Failure(format!("GATEWAY_CA_FILE {path}: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Failure(format!("GATEWAY_CA_FILE {path}: not PEM certificates: {e}"))
            })?;
            if certs.is_empty() {
                return Err(Failure(format!(
                    "GATEWAY_CA_FILE {path} holds no certificate"
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Failure(format!("cannot set up HTTPS: {e}")))?;
        Ok(Gateway {
            base,
            http,
            token: env.token.clone(),
            call_token: env.call_token.clone().or_else(|| env.token.clone()),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the deploy/admin token (`GATEWAY_TOKEN`) when set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// A `/call` request, with `GATEWAY_CALL_TOKEN` (or `GATEWAY_TOKEN`).
    pub fn call_request(&self) -> RequestBuilder {
        let req = self.http.post(self.url("/call"));
        match &self.call_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Send and read the whole answer; a non-2xx answer is a [`Failure`]
    /// with the gateway's message (and a hint where one helps).
    pub async fn send(&self, req: RequestBuilder) -> Result<Answer, Failure> {
        let resp = self.open(req).await?;
        let answer = read(resp).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(self.failure(&answer))
        }
    }

    /// Send and hand back the response as it starts (a stream to read).
    pub async fn open(&self, req: RequestBuilder) -> Result<Response, Failure> {
        req.send().await.map_err(|e| {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            Failure(format!("cannot reach the gateway at {}: {why}", self.base))
        })
    }

    /// The one line a failed answer prints as.
    pub fn failure(&self, answer: &Answer) -> Failure {
        let b = &answer.body;
        let code = b["error"].as_str().unwrap_or("error");
        let message = b["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| b.to_string());
        let mut line = format!("{} {code}: {message}", answer.status);
        if let Some(cause) = b["cause"].as_str() {
            line.push_str(&format!(" (cause: {cause})"));
        }
        let hint = match answer.status {
            401 if self.token.is_none() => {
                " — set GATEWAY_TOKEN to a deploy token of the platform or the admin token"
            }
            401 | 403 => " — GATEWAY_TOKEN is not a token this gateway accepts for that",
            409 if code == "schema_validation_failed" => {
                " — review the changes with --dry-run; --force applies them"
            }
            _ => "",
        };
        line.push_str(hint);
        Failure(line)
    }
}

/// Read a whole answer.
pub async fn read(resp: Response) -> Result<Answer, Failure> {
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| Failure(format!("the gateway's answer broke off: {e}")))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer { status, body })
}

/// `value` for a query string (names are `[a-z0-9_-]`; anything else is
/// escaped so it reaches the gateway as typed and is refused there).
pub fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_variables_count_as_unset_and_the_call_token_falls_back() {
        let env = Env::from_lookup(|k| match k {
            "GATEWAY_URL" => Some("https://gw.example:9443/".into()),
            "GATEWAY_TOKEN" => Some("deploy-1".into()),
            "GATEWAY_CALL_TOKEN" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(env.call_token, None);
        let gw = Gateway::new(&env).unwrap();
        assert_eq!(gw.url("/health"), "https://gw.example:9443/health");
        assert_eq!(gw.call_token.as_deref(), Some("deploy-1"));
    }

    #[test]
    fn a_url_without_a_scheme_is_refused() {
        let env = Env {
            url: Some("gw.example:9000".into()),
            ..Env::default()
        };
        let e = Gateway::new(&env).err().unwrap();
        assert!(e.0.contains("http://"), "{e}");
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_value("shop_t-1"), "shop_t-1");
        assert_eq!(query_value("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn a_failure_names_code_message_cause_and_the_variable_to_set() {
        let gw = Gateway::new(&Env::default()).unwrap();
        let f = gw.failure(&Answer {
            status: 401,
            body: serde_json::json!({"error": "unauthorized", "message": "no token"}),
        });
        assert!(f.0.starts_with("401 unauthorized: no token"), "{f}");
        assert!(f.0.contains("GATEWAY_TOKEN"), "{f}");
        let f = gw.failure(&Answer {
            status: 400,
            body: serde_json::json!({"error": "database_error", "message": "m", "cause": "boom"}),
        });
        assert_eq!(f.0, "400 database_error: m (cause: boom)");
    }
}

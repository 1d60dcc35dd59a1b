//! A small client of the AgentSigna HTTP API, for the MCP commands.

use std::time::Duration;

use serde_json::{json, Value};

use agentsigna_verify::jwk::Jwks;

/// Time allowed for one API call beyond any `?wait`.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an API call did not succeed.
#[derive(Debug, Clone)]
pub enum ApiFailure {
    /// The server could not be reached or its answer was not JSON.
    Unreachable(String),
    /// An RFC 9457 problem (4xx/5xx).
    Problem { status: u16, body: Value },
}

impl ApiFailure {
    /// The problem's `field`, when one member is at fault.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiFailure::Problem { body, .. } => body["field"].as_str(),
            ApiFailure::Unreachable(_) => None,
        }
    }

    /// The problem document (or a synthetic one), for `structuredContent`.
    pub fn body(&self) -> Value {
        match self {
            ApiFailure::Problem { body, .. } => body.clone(),
            ApiFailure::Unreachable(m) => json!({"title": "AgentSigna unreachable", "detail": m}),
        }
    }

    /// One line for people: the problem's title and detail.
    pub fn describe(&self) -> String {
        match self {
            ApiFailure::Unreachable(m) => format!("AgentSigna could not be reached: {m}"),
            ApiFailure::Problem { status, body } => {
                let title = body["title"].as_str().unwrap_or("refused");
                match body["detail"].as_str() {
                    Some(d) if !d.is_empty() => format!("{title} ({status}): {d}"),
                    _ => format!("{title} ({status})"),
                }
            }
        }
    }
}

/// A successful answer: its status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// The AgentSigna API at one base URL.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> anyhow::Result<Api> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("AGENTSIGNA_URL must be an http(s) URL (got {base:?})");
        }
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        Ok(Api { http, base })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder, timeout: Duration) -> Result<Answer, ApiFailure> {
        let resp = req.timeout(timeout).send().await.map_err(|e| ApiFailure::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| ApiFailure::Unreachable(e.to_string()))?;
        let body: Value = serde_json::from_str(&text).map_err(|_| {
            ApiFailure::Unreachable(format!("the server answered {status} with a body that is not JSON"))
        })?;
        if (200..300).contains(&status) {
            Ok(Answer { status, body })
        } else {
            Err(ApiFailure::Problem { status, body })
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /v1/requests`.
    pub async fn submit(&self, key: &str, body: &Value) -> Result<Answer, ApiFailure> {
        self.send(self.http.post(self.url("/v1/requests")).bearer_auth(key).json(body), CALL_TIMEOUT).await
    }

    /// `GET /v1/cases/{id}[?wait=N]`.
    pub async fn case(&self, key: &str, id: &str, wait_secs: u64) -> Result<Answer, ApiFailure> {
        let id = percent_encode(id);
        let path = if wait_secs > 0 { format!("/v1/cases/{id}?wait={wait_secs}") } else { format!("/v1/cases/{id}") };
        let timeout = CALL_TIMEOUT + Duration::from_secs(wait_secs);
        self.send(self.http.get(self.url(&path)).bearer_auth(key), timeout).await
    }

    /// `POST /v1/cases/{id}/execution`.
    pub async fn report_execution(
        &self,
        token: &str,
        case: &str,
        passport_id: &str,
        reference: &str,
    ) -> Result<Answer, ApiFailure> {
        let url = self.url(&format!("/v1/cases/{}/execution", percent_encode(case)));
        let body = json!({"passport_id": passport_id, "reference": reference});
        self.send(self.http.post(url).bearer_auth(token).json(&body), CALL_TIMEOUT).await
    }

    /// `POST /v1/cases/{id}/outcome`.
    pub async fn report_outcome(
        &self,
        token: &str,
        case: &str,
        outcome: &str,
        detail: Option<&str>,
    ) -> Result<Answer, ApiFailure> {
        let url = self.url(&format!("/v1/cases/{}/outcome", percent_encode(case)));
        let mut body = json!({"outcome": outcome});
        if let Some(d) = detail {
            body["detail"] = json!(d);
        }
        self.send(self.http.post(url).bearer_auth(token).json(&body), CALL_TIMEOUT).await
    }

    /// Whether `token` is a credential the server accepts (`GET /v1/cases?limit=1`).
    pub async fn accepts(&self, token: &str) -> Result<bool, ApiFailure> {
        match self.send(self.http.get(self.url("/v1/cases?limit=1")).bearer_auth(token), CALL_TIMEOUT).await {
            Ok(_) => Ok(true),
            Err(ApiFailure::Problem { status: 401, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/systems/{id}` with the system's own token: `Ok(false)` when the server says no
    /// such system is visible to this token (it does not exist, or the token is another's).
    pub async fn is_own_system(&self, token: &str, id: &str) -> Result<bool, ApiFailure> {
        let url = self.url(&format!("/v1/systems/{}", percent_encode(id)));
        match self.send(self.http.get(url).bearer_auth(token), CALL_TIMEOUT).await {
            Ok(_) => Ok(true),
            Err(ApiFailure::Problem { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The declared action types, `GET /v1/actions`.
    pub async fn action_types(&self, token: &str) -> Result<Vec<String>, ApiFailure> {
        let answer = self.send(self.http.get(self.url("/v1/actions")).bearer_auth(token), CALL_TIMEOUT).await?;
        let Some(list) = answer.body["actions"].as_array() else {
            return Err(ApiFailure::Unreachable("GET /v1/actions answered without an `actions` list".into()));
        };
        Ok(list.iter().filter_map(|a| a["type"].as_str().map(str::to_owned)).collect())
    }

    /// The passport keys, `GET /.well-known/jwks.json`.
    pub async fn jwks(&self) -> anyhow::Result<Jwks> {
        let resp = self
            .http
            .get(self.url("/.well-known/jwks.json"))
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot fetch the JWKS from {}: {e}", self.base))?;
        if !resp.status().is_success() {
            anyhow::bail!("{}/.well-known/jwks.json answered {}", self.base, resp.status());
        }
        let text = resp.text().await?;
        Jwks::from_json(&text).map_err(|e| anyhow::anyhow!("invalid JWKS from {}: {e}", self.base))
    }
}

/// Percent-encodes a path segment (ids are plain, but an agent may send anything).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

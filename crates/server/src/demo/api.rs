//! The demo's JSON-over-HTTP client: agents, approvers and the ERP talk to the server
//! only through it.

use anyhow::{bail, Context as _};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A JSON-over-HTTP client of one base URL.
#[derive(Clone)]
pub(super) struct Api {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
}

impl Api {
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// The call must answer `want`; anything else fails the demo, naming what came back.
    pub(super) async fn expect(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method.clone(), path, token, body).await?;
        if status != want {
            bail!("{method} {path}: expected HTTP {want}, got {status}: {v}");
        }
        Ok(v)
    }

    /// [`Api::expect`], read as the typed document the API answers with (the engine's
    /// views, `http::documents`).
    pub(super) async fn expect_doc<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        want: u16,
    ) -> anyhow::Result<T> {
        let v = self.expect(method.clone(), path, token, body, want).await?;
        let what = std::any::type_name::<T>().rsplit("::").next().unwrap_or("document");
        serde_json::from_value(v).with_context(|| format!("{method} {path}: the answer is not a {what}"))
    }

    pub(super) async fn text(&self, path: &str) -> anyhow::Result<String> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?.error_for_status()?;
        Ok(resp.text().await?)
    }
}

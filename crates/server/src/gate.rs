//! `agentsigna gate`: a reverse proxy that enforces passports at the API boundary of a
//! business system that cannot embed `agentsigna-verify` itself.
//!
//! A request is forwarded only when its passport (header `Authorization: Passport <jws>`
//! or `AgentSigna-Passport`) is valid for this audience, unused, and, when key-bound,
//! accompanied by a valid holder proof (`AgentSigna-Proof`). The upstream never sees a
//! refused request. Forwarded requests carry `AgentSigna-Case` and `AgentSigna-Action`.
//! Single use is remembered in this process, or, with `--replay-store postgres://…`, in a
//! database every replica of the gate shares.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use agentsigna_verify::gate::{
    passport_from_authorization, passport_from_headers, Gate, GateRequest, Refusal, PASSPORT_HEADER, PROOF_HEADER,
};
use agentsigna_verify::jwk::Jwks;
use agentsigna_verify::passport::Verifier;
use agentsigna_verify::tower::refusal_response;
use agentsigna_verify::{Clock, Error as VerifyError};

use crate::http::extract::body_error;
use crate::http::limits::{peer_ip, too_many_requests, Rate, RateKey, RateLimiter};
use crate::http::problem::ApiError;
use crate::http::server::ServerLimits;

/// Largest request body the gate forwards.
pub const MAX_FORWARD_BODY: usize = 10 * 1024 * 1024;
/// Least time between two JWKS fetches triggered by unknown key ids.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Settings of a gate.
#[derive(Debug, Clone)]
pub struct GateOptions {
    pub listen: SocketAddr,
    pub upstream: String,
    /// JWKS file or http(s) URL.
    pub jwks: String,
    pub audience: String,
    /// The URL agents call (for holder proofs' `htu`); default `http://<listen>`.
    pub public_url: Option<String>,
    /// AgentSigna base URL to report `execution.reported` to.
    pub report_to: Option<String>,
    pub report_token: Option<String>,
    /// PostgreSQL database that remembers consumed passports for every gate replica
    /// using it (`None`: this process's memory).
    pub replay_store: Option<String>,
}

struct GateState {
    gate: RwLock<Gate>,
    opts: GateOptions,
    public_url: String,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    /// When the JWK set was last fetched, on the injected clock (ms).
    last_jwks_fetch: Mutex<i64>,
    /// Requests per client address (`None`: unlimited).
    limiter: Option<RateLimiter>,
}

async fn fetch_jwks(client: &reqwest::Client, source: &str) -> anyhow::Result<Jwks> {
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let resp = client
            .get(source)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("cannot fetch {source}"))?;
        if !resp.status().is_success() {
            return Err(anyhow!("{source} answered {}", resp.status()));
        }
        resp.text().await?
    } else {
        std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?
    };
    Jwks::from_json(&text).map_err(|e| anyhow!("invalid JWKS from {source}: {e}"))
}

/// A running gate.
pub struct RunningGate {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningGate {
    /// Stops the gate after in-flight requests finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(j) = self.join.take() {
            j.await?.context("gate server failed")?;
        }
        Ok(())
    }
}

/// Starts a gate with the default connection limits and no request rate limit.
pub async fn start(opts: GateOptions, clock: Arc<dyn Clock>) -> anyhow::Result<RunningGate> {
    start_limited(opts, ServerLimits::default(), None, clock).await
}

/// Starts a gate with connection limits and a request rate per client address (the gate
/// holds no credential of its own; the limit applies before any passport is looked at,
/// so a refused request uses no passport).
pub async fn start_limited(
    opts: GateOptions,
    limits: ServerLimits,
    rate: Option<Rate>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<RunningGate> {
    start_serving(opts, limits, rate, None, clock).await
}

/// [`start_limited`], over HTTPS when `tls` is given (then the default public URL is
/// `https://<listen>`).
pub async fn start_serving(
    opts: GateOptions,
    limits: ServerLimits,
    rate: Option<Rate>,
    tls: Option<Arc<crate::http::tls::Tls>>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<RunningGate> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let jwks = fetch_jwks(&client, &opts.jwks).await?;
    let fetched_at = clock.now_ms();
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut gate = Gate::new(Verifier::new(jwks, opts.audience.clone()));
    if let Some(url) = &opts.replay_store {
        if !agentsigna_store::postgres::is_postgres_url(url) {
            anyhow::bail!("--replay-store must be a PostgreSQL URL (postgres://…)");
        }
        let cache = agentsigna_store::postgres::PgReplayCache::connect(url, &Default::default())
            .await
            .context("cannot open the replay store")?;
        gate = gate.with_replay_cache(Arc::new(cache));
    }
    let public_url =
        opts.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}")).trim_end_matches('/').to_owned();
    let state = Arc::new(GateState {
        gate: RwLock::new(gate),
        opts,
        public_url,
        clock,
        client,
        last_jwks_fetch: Mutex::new(fetched_at),
        limiter: rate.map(RateLimiter::new),
    });
    let app = Router::new()
        .fallback(handle)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(None, crate::observe::request::track));
    let (tx, join) = crate::http::server::serve_tls(listener, app, limits, tls);
    Ok(RunningGate { addr, shutdown: Some(tx), join: Some(join) })
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

async fn handle(State(s): State<Arc<GateState>>, req: Request) -> Response {
    if let (Some(limiter), Some(ip)) = (&s.limiter, peer_ip(&req)) {
        if let Err(wait) = limiter.check(&RateKey::peer(ip)) {
            return too_many_requests(wait);
        }
    }
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let Some(passport) = passport_from_headers(header).map(str::to_owned) else {
        return refusal_response(&Refusal::no_passport());
    };
    // A body the gate would not forward is refused before the passport is used.
    let declared = header("content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_FORWARD_BODY as u64) {
        return too_large();
    }
    let proof = header(PROOF_HEADER).map(str::to_owned);
    let method = parts.method.as_str().to_owned();
    let url = format!("{}{}", s.public_url, parts.uri.path());
    let check = |s: &GateState| {
        let gate = agentsigna_core::sync::read(&s.gate);
        gate.check(
            &GateRequest { passport: &passport, proof: proof.as_deref(), method: &method, url: &url },
            s.clock.as_ref(),
        )
    };
    let mut verified = check(&s);
    if matches!(verified, Err(VerifyError::UnknownKey(_))) && refresh_jwks(&s).await {
        verified = check(&s);
    }
    let verified = match verified {
        Ok(v) => v,
        Err(e) => return refusal_response(&Refusal::of(&e)),
    };
    let body: Bytes = match axum::body::to_bytes(body, MAX_FORWARD_BODY).await {
        Ok(b) => b,
        // Only a body without a declared length gets here (checked above), or one that
        // did not arrive in time, after its passport was used: the agent must ask for a
        // new one.
        Err(e) if crate::http::server::is_body_timeout(&e) => {
            return body_error(&e, MAX_FORWARD_BODY).into_response();
        }
        Err(_) => return too_large(),
    };
    let target =
        format!("{}{}", s.opts.upstream.trim_end_matches('/'), parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut fwd = s.client.request(parts.method.clone(), &target).body(body);
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || n == PASSPORT_HEADER
            || n == PROOF_HEADER
            || n == "agentsigna-case"
            || n == "agentsigna-action"
        {
            continue;
        }
        if n == "authorization" && value.to_str().ok().and_then(passport_from_authorization).is_some() {
            continue;
        }
        fwd = fwd.header(name, value);
    }
    let action = verified.claims.authorization_details.first().map(|d| d.action.clone()).unwrap_or_default();
    fwd = fwd.header("agentsigna-case", verified.claims.case.id.as_str()).header("agentsigna-action", action.as_str());
    let upstream = match fwd.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "upstream unreachable");
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream",
                "Upstream unreachable",
                "the protected system did not answer",
            )
            .into_response();
        }
    };
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    let answer = read_limited(upstream, MAX_FORWARD_BODY).await;
    if let (Some(base), Some(token)) = (s.opts.report_to.clone(), s.opts.report_token.clone()) {
        // Never on the verification path: reported after the answer, in the background.
        let client = s.client.clone();
        let case = verified.claims.case.id.clone();
        let jti = verified.claims.jti.clone();
        let reference = format!("{method} {} -> {}", parts.uri.path(), status.as_u16());
        tokio::spawn(async move {
            let url = format!("{}/v1/cases/{case}/execution", base.trim_end_matches('/'));
            let body = serde_json::json!({"passport_id": jti, "reference": reference});
            for attempt in 0..3u32 {
                match client.post(&url).bearer_auth(&token).json(&body).timeout(Duration::from_secs(10)).send().await {
                    Ok(r) if r.status().is_success() || r.status().is_client_error() => return,
                    _ => tokio::time::sleep(Duration::from_millis(200 << attempt)).await,
                }
            }
            tracing::warn!(case = %case, "could not report the execution");
        });
    }
    // The upstream acted (the execution is reported either way) but its answer is cut off
    // or too large: say so rather than forward a truncated body under its status.
    let bytes = match answer {
        Ok(bytes) => bytes,
        Err(detail) => {
            tracing::warn!(status = status.as_u16(), detail, "upstream answer not forwarded");
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream",
                "Upstream answer not forwarded",
                format!("the protected system answered {} but {detail}", status.as_u16()),
            )
            .into_response();
        }
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp.headers_mut().insert(
        HeaderName::from_static("agentsigna-case"),
        HeaderValue::from_str(&verified.claims.case.id).unwrap_or(HeaderValue::from_static("")),
    );
    resp
}

fn too_large() -> Response {
    let detail = format!("the body is larger than the {MAX_FORWARD_BODY} bytes the gate forwards");
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Body too large", detail).into_response()
}

/// Reads an upstream answer of at most `limit` bytes.
async fn read_limited(mut upstream: reqwest::Response, limit: usize) -> Result<Bytes, &'static str> {
    let mut body = Vec::new();
    while let Some(chunk) = upstream.chunk().await.map_err(|_| "its answer was cut off")? {
        if body.len() + chunk.len() > limit {
            return Err("its answer is larger than the gate forwards");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// Refetches a JWKS URL after an unknown `kid`, at most every 30 s.
async fn refresh_jwks(s: &GateState) -> bool {
    if !(s.opts.jwks.starts_with("http://") || s.opts.jwks.starts_with("https://")) {
        return false;
    }
    {
        let Ok(mut last) = s.last_jwks_fetch.lock() else { return false };
        let now = s.clock.now_ms();
        if now.saturating_sub(*last) < JWKS_REFRESH_INTERVAL.as_millis() as i64 {
            return false;
        }
        *last = now;
    }
    match fetch_jwks(&s.client, &s.opts.jwks).await {
        Ok(jwks) => {
            agentsigna_core::sync::write(&s.gate).verifier_mut().set_jwks(jwks);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "JWKS refresh failed");
            false
        }
    }
}

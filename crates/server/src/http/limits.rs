//! Request limits of the API: a per-principal request rate (GCRA token bucket) and a
//! global cap on concurrent `?wait` long polls.
//!
//! - A request with a valid credential (bearer token, or the session cookie of the web
//!   pages) counts against its principal; any other request (no credential, or one that
//!   does not authenticate) against its peer address (IPv6: its /64). `/healthz` and `/readyz` are never
//!   limited. Over the limit: 429 problem+json with `Retry-After` (seconds).
//! - At most `max_waits` `GET /v1/cases/{id}?wait=…` calls wait at once; beyond that a
//!   call is answered at once with the case as it is, as if `wait` were absent, with the
//!   header `AgentSigna-Wait: unavailable` (the client polls again later, within its rate).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use agentsigna_core::model::Principal;

use super::problem::ApiError;

/// A request rate: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    Principal(String),
    Peer(IpAddr),
}

impl RateKey {
    /// The key of a principal.
    pub fn principal(p: &Principal) -> RateKey {
        RateKey::Principal(match p {
            Principal::Admin => "admin".to_owned(),
            Principal::Agent(id) => format!("agent:{id}"),
            Principal::Approver(id) => format!("approver:{id}"),
            Principal::System(id) => format!("system:{id}"),
        })
    }

    /// The key of a peer address: the address itself, or its /64 for IPv6 (one host
    /// usually holds a whole /64).
    pub fn peer(addr: IpAddr) -> RateKey {
        match addr {
            IpAddr::V4(_) => RateKey::Peer(addr),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => RateKey::Peer(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    RateKey::Peer(IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
        }
    }
}

const SHARDS: usize = 16;
/// Entries a shard holds before it forgets the keys whose bucket is full again.
const PRUNE_AT: usize = 8192;

/// A keyed rate limiter (GCRA: one "theoretical arrival time" per key).
pub struct RateLimiter {
    /// Time one request costs.
    interval: Duration,
    /// How far ahead of now the arrival time may run (burst − 1 intervals).
    tolerance: Duration,
    shards: Vec<Mutex<HashMap<RateKey, Instant>>>,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> RateLimiter {
        let interval = Duration::from_secs(1) / rate.per_second.max(1);
        let tolerance = interval * rate.burst.max(1).saturating_sub(1);
        RateLimiter { interval, tolerance, shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    /// Counts one request of `key` at `now`: `Err(wait)` when it is over the limit
    /// (nothing is counted then).
    pub fn check_at(&self, key: &RateKey, now: Instant) -> Result<(), Duration> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        let mut map = agentsigna_core::sync::lock(shard);
        let tat = map.get(key).copied().filter(|t| *t > now).unwrap_or(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        if map.len() >= PRUNE_AT && !map.contains_key(key) {
            map.retain(|_, t| *t > now);
            if map.len() >= PRUNE_AT {
                // Still full of live keys (many addresses at once): start this shard over
                // rather than grow without bound.
                map.clear();
            }
        }
        map.insert(key.clone(), tat + self.interval);
        Ok(())
    }

    pub fn check(&self, key: &RateKey) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }
}

/// The 429 answer: problem+json with `Retry-After` in whole seconds (at least 1).
pub fn too_many_requests(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        format!("request rate limit exceeded; retry in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    resp
}

/// The API's request limits (one per server).
pub struct RequestLimits {
    pub rate: Option<RateLimiter>,
    pub waits: Arc<Semaphore>,
    pub max_waits: usize,
}

/// Default cap on concurrent long polls.
pub const DEFAULT_MAX_WAITS: usize = 256;

impl RequestLimits {
    pub fn new(rate: Option<Rate>, max_waits: usize) -> RequestLimits {
        RequestLimits { rate: rate.map(RateLimiter::new), waits: Arc::new(Semaphore::new(max_waits)), max_waits }
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits::new(None, DEFAULT_MAX_WAITS)
    }
}

/// The peer address of a request (set by the server loop).
pub fn peer_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Applies the rate limit and the long-poll cap to a request whose principal (if its
/// credential authenticated) the caller has identified: the router's middleware
/// ([`crate::router`]), which also authenticates once for the handlers.
pub async fn apply(limits: &RequestLimits, principal: Option<Principal>, mut req: Request, next: Next) -> Response {
    if let Some(limiter) = &limits.rate {
        let key = match (&principal, peer_ip(&req)) {
            (Some(p), _) => Some(RateKey::principal(p)),
            (None, Some(ip)) => Some(RateKey::peer(ip)),
            (None, None) => None,
        };
        if let Some(key) = key {
            if let Err(wait) = limiter.check(&key) {
                return too_many_requests(wait);
            }
        }
    }
    if req.method() == Method::GET && is_case_path(req.uri().path()) && has_wait(req.uri()) {
        match limits.waits.clone().try_acquire_owned() {
            Ok(permit) => {
                let resp = next.run(req).await;
                drop(permit);
                return resp;
            }
            Err(_) => {
                if let Some(uri) = without_wait(req.uri()) {
                    *req.uri_mut() = uri;
                }
                let mut resp = next.run(req).await;
                resp.headers_mut().insert("agentsigna-wait", HeaderValue::from_static("unavailable"));
                return resp;
            }
        }
    }
    next.run(req).await
}

fn is_case_path(path: &str) -> bool {
    path.strip_prefix("/v1/cases/").is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

fn has_wait(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some("wait")))
}

fn without_wait(uri: &Uri) -> Option<Uri> {
    let rest: Vec<&str> =
        uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty() && p.split('=').next() != Some("wait")).collect();
    let pq = if rest.is_empty() { uri.path().to_owned() } else { format!("{}?{}", uri.path(), rest.join("&")) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let l = RateLimiter::new(Rate { per_second: 10, burst: 3 });
        let k = RateKey::Principal("agent:a".into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at(&k, t0).is_ok());
        }
        let wait = l.check_at(&k, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        // Another key is not affected.
        assert!(l.check_at(&RateKey::Principal("agent:b".into()), t0).is_ok());
        // One interval later, one more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.check_at(&k, t1).is_ok());
        assert!(l.check_at(&k, t1).is_err());
        // After a pause the full burst is back.
        let t2 = t1 + Duration::from_secs(1);
        for _ in 0..3 {
            assert!(l.check_at(&k, t2).is_ok());
        }
    }

    #[test]
    fn many_keys_stay_bounded() {
        let l = RateLimiter::new(Rate { per_second: 1, burst: 1 });
        let t0 = Instant::now();
        for i in 0..(SHARDS * PRUNE_AT * 2) as u32 {
            let _ = l.check_at(&RateKey::Peer(IpAddr::V4(std::net::Ipv4Addr::from(i))), t0);
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * PRUNE_AT, "{total}");
    }

    #[test]
    fn ipv6_peers_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(RateKey::peer(a), RateKey::peer(b));
        assert_ne!(RateKey::peer(a), RateKey::peer(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(RateKey::peer(mapped), RateKey::Peer("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn wait_is_removed_from_the_query() {
        let u: Uri = "/v1/cases/c1?wait=30".parse().unwrap();
        assert!(has_wait(&u));
        assert_eq!(without_wait(&u).unwrap().to_string(), "/v1/cases/c1");
        let u: Uri = "/v1/cases/c1?x=1&wait=5".parse().unwrap();
        assert_eq!(without_wait(&u).unwrap().to_string(), "/v1/cases/c1?x=1");
        assert!(!has_wait(&"/v1/cases/c1?waiting=1".parse().unwrap()));
        assert!(is_case_path("/v1/cases/c1") && !is_case_path("/v1/cases/c1/evidence") && !is_case_path("/v1/cases/"));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let r = too_many_requests(Duration::from_millis(1500));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(too_many_requests(Duration::from_millis(1)).headers()["retry-after"], "1");
    }
}

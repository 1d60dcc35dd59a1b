//! Webhook notifications: a review opened (escalation), approved, rejected or expired.
//!
//! The engine writes each notification into the durable outbox (`RecordKind::Outbox`) in
//! the same store transaction as the ledger event it announces, so a verdict never waits
//! for a receiver and a failing receiver loses nothing. This worker delivers them: it
//! POSTs the JSON (the structured context plus a human-readable, Slack-compatible `text`
//! and the link to the review page) to every configured URL, signed with
//! `AgentSigna-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, and deletes the outbox
//! record once every URL answered 2xx. A failed delivery is retried with exponential
//! backoff (1 s, 2 s, 4 s … capped at 10 min; 20 attempts, about 2 hours); after the last
//! attempt the failure is recorded in the outbox record, logged, and the worker moves on.
//! Delivery is at least once: receivers deduplicate on `id` (also in the
//! `AgentSigna-Delivery` header). With several nodes on one database every node runs this
//! worker; each notification is delivered by the node that leases it (`Store::claim`),
//! so once in normal operation, and again by another node only when the first was killed
//! mid-delivery (after the lease, [`NotifyConfig::lease`], has run out).
//!
//! Retries and the `AgentSigna-Timestamp`/`sent_at` stamps are timed by an injected
//! [`Clock`] ([`spawn_with_clock`]); [`spawn`] uses the wall clock, not the engine's:
//! receivers compare the timestamp with their own clocks, and the backoff paces real
//! network attempts, so a test that moves the engine's clock does not move them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use agentsigna_core::engine::Engine;
use agentsigna_core::money::Amount;
use agentsigna_core::{Clock, SystemClock};
use agentsigna_verify::clock::rfc3339_ms;

/// When and how often deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failure; doubled after each further one.
    pub first_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Attempts before a notification is given up (and its failure recorded).
    pub max_attempts: u32,
    /// Timeout of one POST.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 1 s, 2 s, 4 s, … 512 s, then every 10 min: 20 attempts over about 2 hours.
    fn default() -> Self {
        RetryPolicy {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_attempts: 20,
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` failed attempts (≥ 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_backoff.checked_mul(factor).unwrap_or(self.max_backoff).min(self.max_backoff)
    }
}

/// What the notifier needs.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Receivers (http or https URLs).
    pub urls: Vec<String>,
    /// HMAC key of the signature header (no signature without one).
    pub secret: Option<String>,
    /// Base URL people open (links to `/ui/reviews/{id}`).
    pub public_url: String,
    /// Retries.
    pub retry: RetryPolicy,
    /// Counts failed delivery attempts (one per receiver and attempt), for `/metrics`.
    pub failures: prometheus_client::metrics::counter::Counter,
}

/// What a delivery lease adds to the longest time its POSTs can take.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

impl NotifyConfig {
    /// Checks the receivers: absolute http(s) URLs.
    pub fn validate(&self) -> anyhow::Result<()> {
        validate_urls(&self.urls)
    }

    /// How long a node leases a notification it delivers: longer than its POSTs to every
    /// receiver can take (one timeout each) plus [`LEASE_MARGIN`], so that a live node's
    /// lease never runs out mid-delivery; a killed node's is retaken after this long.
    pub fn lease(&self) -> Duration {
        let posts = u32::try_from(self.urls.len().max(1)).unwrap_or(u32::MAX);
        self.retry.timeout.saturating_mul(posts).saturating_add(LEASE_MARGIN)
    }
}

/// Checks webhook URLs: absolute http(s) URLs with a host.
pub fn validate_urls(urls: &[String]) -> anyhow::Result<()> {
    for u in urls {
        let parsed = reqwest::Url::parse(u).with_context(|| format!("--webhook {}: not a URL", label(u)))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("--webhook {}: only http and https URLs are supported", label(u));
        }
    }
    Ok(())
}

/// Delivery state kept in the outbox record beside the notification.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Delivery {
    attempts: u32,
    /// Instant (ms since the epoch, on the notifier's clock) of the next attempt.
    next_at_ms: i64,
    /// Receivers that already accepted it (SHA-256 prefixes of their URLs: URLs often
    /// carry secrets and do not belong in the database).
    delivered: Vec<String>,
    last_error: Option<String>,
    /// Set after the last attempt failed: the record stays as evidence, untried.
    gave_up: bool,
}

/// Scheme, host and port of a URL, for logs (the path may hold a secret, e.g. Slack's).
pub fn label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => "(invalid URL)".to_owned(),
        },
        Err(_) => "(invalid URL)".to_owned(),
    }
}

fn url_key(url: &str) -> String {
    hex::encode(&Sha256::digest(url.as_bytes())[..8])
}

impl Delivery {
    /// Whether an attempt is due at `now_ms`.
    fn due(&self, now_ms: i64) -> bool {
        !self.gave_up && self.next_at_ms <= now_ms
    }

    /// Records an attempt at `now_ms` that failed with `error`: schedules the next one after
    /// the backoff and returns the wait, or gives up after the last attempt (`None`).
    fn failed(&mut self, now_ms: i64, error: String, retry: &RetryPolicy) -> Option<Duration> {
        self.attempts += 1;
        self.last_error = Some(error);
        if self.attempts >= retry.max_attempts {
            self.gave_up = true;
            return None;
        }
        let wait = retry.backoff(self.attempts);
        self.next_at_ms = now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        Some(wait)
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the `AgentSigna-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        // HMAC takes keys of any length; this arm is unreachable in practice.
        Err(_) => String::new(),
    }
}

/// The page of a review.
pub fn review_url(public_url: &str, review_id: &str) -> String {
    format!("{}/ui/reviews/{review_id}", public_url.trim_end_matches('/'))
}

/// Slack's escaping of `&`, `<`, `>` (its only control characters in `text`).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The human-readable line of a notification, e.g. "Review needed: procurement-bot wants
/// purchase_order.create 40,000.00 USD with Globex Hardware — rule large-po: …; approve at
/// https://…/ui/reviews/rev_…".
pub fn text(n: &Value, public_url: &str) -> String {
    let agent = n["agent"]["id"].as_str().unwrap_or("an agent");
    let action = str_of(n, "action");
    let amount = match (n["amount"]["value"].as_str(), n["amount"]["currency"].as_str()) {
        (Some(v), c) => format!(" {}", Amount { value: v.to_owned(), currency: c.unwrap_or("").to_owned() }),
        _ => String::new(),
    };
    let cp = n["counterparty"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or(n["counterparty"]["id"].as_str())
        .unwrap_or("?");
    let url = review_url(public_url, str_of(n, "review_id"));
    let what = format!("{action}{amount} with {cp}");
    let rules: Vec<String> = n["rules"]
        .as_array()
        .map(|rs| {
            let escalating: Vec<&Value> = rs.iter().filter(|r| r["verdict"] == "escalate").collect();
            let chosen = if escalating.is_empty() { rs.iter().collect() } else { escalating };
            chosen
                .into_iter()
                .map(|r| format!("rule {}: {}", r["rule"].as_str().unwrap_or("(none)"), str_of(r, "reason")))
                .collect()
        })
        .unwrap_or_default();
    let deciders = |kind: &str| -> Vec<String> {
        n["decisions"]
            .as_array()
            .map(|ds| ds.iter().filter(|d| d["decision"] == kind).map(|d| str_of(d, "approver").to_owned()).collect())
            .unwrap_or_default()
    };
    let line = match str_of(n, "event") {
        "review.opened" => {
            let mut roles = String::new();
            if let Some(r) = n["roles_required"].as_array().filter(|r| !r.is_empty()) {
                let names: Vec<&str> = r.iter().filter_map(Value::as_str).collect();
                roles = format!(", role {}", names.join(", "));
            }
            format!(
                "Review needed: {agent} wants {what} — {}; {} approval(s){roles} by {}; approve at {url}",
                rules.join("; "),
                n["approvals_required"].as_u64().unwrap_or(1),
                str_of(n, "deadline"),
            )
        }
        "review.approved" => {
            format!(
                "Review approved: {agent}'s {what} was approved by {}; the passport is ready for pickup — {url}",
                deciders("approve").join(", ")
            )
        }
        "review.rejected" => {
            let comment = n["decisions"]
                .as_array()
                .and_then(|ds| ds.iter().rev().find(|d| d["decision"] == "reject"))
                .map(|d| str_of(d, "comment").to_owned())
                .unwrap_or_default();
            format!(
                "Review rejected: {agent}'s {what} was rejected by {}: \u{201c}{comment}\u{201d} — {url}",
                deciders("reject").join(", ")
            )
        }
        "review.expired" => format!(
            "Review expired: {agent}'s {what} got no decision by its deadline {} and is rejected — {url}",
            str_of(n, "deadline")
        ),
        other => format!("AgentSigna {other}: {agent} {what} — {url}"),
    };
    slack_escape(&line)
}

/// The body POSTed to receivers: the outbox notification plus `text`, `url` and `sent_at`.
pub fn payload(record: &Value, public_url: &str, sent_at_ms: i64) -> Value {
    let mut p = record.clone();
    if let Some(map) = p.as_object_mut() {
        map.remove("delivery");
    }
    p["text"] = json!(text(record, public_url));
    p["url"] = json!(review_url(public_url, str_of(record, "review_id")));
    p["sent_at"] = json!(rfc3339_ms(sent_at_ms));
    p
}

/// Starts the delivery worker on the wall clock. It runs after every committed change
/// (`wake`), at least once a second (retries; other nodes' notifications), never on a
/// request's path.
pub fn spawn(engine: Arc<Engine>, wake: Arc<Notify>, cfg: NotifyConfig) -> anyhow::Result<JoinHandle<()>> {
    spawn_with_clock(engine, wake, cfg, Arc::new(SystemClock))
}

/// [`spawn`], with the clock that times retries and stamps deliveries.
pub fn spawn_with_clock(
    engine: Arc<Engine>,
    wake: Arc<Notify>,
    cfg: NotifyConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<JoinHandle<()>> {
    cfg.validate()?;
    let client = reqwest::Client::builder()
        .timeout(cfg.retry.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("agentsigna-notify/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the webhook client")?;
    if cfg.secret.is_none() {
        tracing::warn!("webhooks are configured without --webhook-secret: notifications are not signed");
    }
    let receivers: Vec<String> = cfg.urls.iter().map(|u| label(u)).collect();
    tracing::info!(?receivers, "webhook notifications enabled");
    Ok(tokio::spawn(async move {
        loop {
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Err(err) = deliver_due(&engine, &client, &cfg, clock.as_ref()).await {
                tracing::warn!(error = %err, "webhook delivery pass failed");
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            // Changes come in bursts under load: coalesce them.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }))
}

/// Without any webhook configured nothing is delivered: the outbox is emptied once a
/// minute so that it does not grow.
pub fn spawn_discarder(engine: Arc<Engine>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            // Read first: an idle server does no write transaction.
            let ids = engine.outbox_items().await.map(|items| {
                items
                    .iter()
                    .filter_map(|b| serde_json::from_str::<Value>(b).ok())
                    .filter_map(|v| v["id"].as_str().map(str::to_owned))
                    .collect::<Vec<String>>()
            });
            let r = match ids {
                Ok(ids) if ids.is_empty() => Ok(0),
                Ok(ids) => {
                    let n = ids.len();
                    engine.outbox_remove(ids).await.map(|()| n)
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(0) => {}
                Ok(n) => tracing::debug!(n, "no webhook configured: outbox notifications discarded"),
                Err(err) => tracing::warn!(error = %err, "cannot empty the outbox"),
            }
        }
    })
}

/// One pass over the outbox: tries every notification that is due, each under a lease
/// (`outbox:<id>`) so that of several nodes one delivers it; a node killed mid-delivery
/// leaves its lease to run out ([`NotifyConfig::lease`]), then another node delivers.
async fn deliver_due(
    engine: &Engine,
    client: &reqwest::Client,
    cfg: &NotifyConfig,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let records: Vec<String> = engine.outbox_items().await?;
    let now = clock.now_ms();
    let due: Vec<String> = records
        .iter()
        .filter_map(|body| match serde_json::from_str::<Value>(body) {
            Ok(v) => Some(v),
            Err(err) => {
                tracing::error!(error = %err, "unreadable outbox record skipped");
                None
            }
        })
        .filter(|record| delivery_state(record).due(now))
        .filter_map(|record| record["id"].as_str().map(str::to_owned))
        .collect();
    let lease_ms = i64::try_from(cfg.lease().as_millis()).unwrap_or(i64::MAX);
    for id in due {
        // One lease per notification, taken just before its delivery.
        let now = clock.now_ms();
        let key = format!("outbox:{id}");
        if engine.claim(vec![key.clone()], now, now.saturating_add(lease_ms)).await?.is_empty() {
            continue; // another node is delivering it
        }
        let delivered = deliver_one(engine, client, cfg, clock, &id).await;
        let released = engine.release(vec![key]).await;
        delivered?;
        released?;
    }
    Ok(())
}

fn delivery_state(record: &Value) -> Delivery {
    serde_json::from_value(record.get("delivery").cloned().unwrap_or(Value::Null)).unwrap_or_default()
}

/// Delivers one leased notification, read again now that it is leased: another node may
/// have delivered (and retired) it, or recorded a failed attempt, since the pass read it.
async fn deliver_one(
    engine: &Engine,
    client: &reqwest::Client,
    cfg: &NotifyConfig,
    clock: &dyn Clock,
    id: &str,
) -> anyhow::Result<()> {
    let Some(body) = engine.outbox_item(id).await? else { return Ok(()) };
    let record: Value = serde_json::from_str(&body)?;
    let mut state = delivery_state(&record);
    let now = clock.now_ms();
    if !state.due(now) {
        return Ok(());
    }
    let body = serde_json::to_vec(&payload(&record, &cfg.public_url, now))?;
    let mut errors = Vec::new();
    for url in &cfg.urls {
        let key = url_key(url);
        if state.delivered.contains(&key) {
            continue;
        }
        match post(client, cfg, url, id, str_of(&record, "event"), &body, now).await {
            Ok(()) => state.delivered.push(key),
            Err(e) => {
                cfg.failures.inc();
                errors.push(format!("{}: {e}", label(url)));
            }
        }
    }
    if errors.is_empty() {
        engine.outbox_remove(vec![id.to_owned()]).await?;
        return Ok(());
    }
    match state.failed(now, errors.join("; "), &cfg.retry) {
        None => tracing::error!(notification = %id, attempts = state.attempts, error = ?state.last_error,
            "webhook notification given up after its last attempt; the failure is recorded in the outbox"),
        Some(wait) => tracing::warn!(notification = %id, attempts = state.attempts, retry_in = ?wait,
            error = ?state.last_error, "webhook delivery failed; will retry"),
    }
    let mut updated = record;
    updated["delivery"] = serde_json::to_value(&state)?;
    let text = serde_json::to_string(&updated)?;
    engine.outbox_update(id.to_owned(), text).await?;
    Ok(())
}

async fn post(
    client: &reqwest::Client,
    cfg: &NotifyConfig,
    url: &str,
    id: &str,
    event: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<(), String> {
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("AgentSigna-Timestamp", (now_ms / 1000).to_string())
        .header("AgentSigna-Delivery", id)
        .header("AgentSigna-Event", event)
        .body(body.to_vec());
    if let Some(secret) = &cfg.secret {
        req = req.header("AgentSigna-Signature", signature(secret, body));
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("answered {}", resp.status())),
        // Without the URL: it may hold a secret.
        Err(e) => Err(e.without_url().to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_lasts_about_two_hours() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(10), Duration::from_secs(512));
        assert_eq!(p.backoff(11), Duration::from_secs(600));
        assert_eq!(p.backoff(40), Duration::from_secs(600));
        let total: Duration = (1..p.max_attempts).map(|n| p.backoff(n)).sum();
        assert!(total >= Duration::from_secs(3600), "retries last at least an hour: {total:?}");
    }

    #[test]
    fn retries_follow_the_clock_and_stop_after_the_last_attempt() {
        let clock = agentsigna_core::ManualClock::new(1_700_000_000_000);
        let retry = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        let mut d = Delivery::default();
        assert!(d.due(clock.now_ms()), "a new notification is due at once");
        assert_eq!(d.failed(clock.now_ms(), "answered 500".into(), &retry), Some(Duration::from_secs(1)));
        assert!(!d.due(clock.now_ms()));
        clock.advance_ms(999);
        assert!(!d.due(clock.now_ms()));
        clock.advance_ms(1);
        assert!(d.due(clock.now_ms()), "due 1 s after the first failure");
        assert_eq!(d.failed(clock.now_ms(), "answered 503".into(), &retry), Some(Duration::from_secs(2)));
        clock.advance_secs(2);
        assert!(d.due(clock.now_ms()), "due 2 s after the second");
        assert_eq!(d.failed(clock.now_ms(), "timed out".into(), &retry), None);
        assert!(d.gave_up && d.attempts == 3 && d.last_error.as_deref() == Some("timed out"));
        clock.advance_secs(86_400);
        assert!(!d.due(clock.now_ms()), "given up for good");
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn text_reads_like_a_sentence_and_is_slack_escaped() {
        let n = json!({
            "event": "review.opened", "review_id": "rev_1", "agent": {"id": "procurement-bot"},
            "action": "purchase_order.create", "amount": {"value": "40000.00", "currency": "USD"},
            "counterparty": {"id": "globex", "name": "Globex <Hardware> & Co"},
            "rules": [{"rule": "large-po", "verdict": "escalate", "reason": "big"}],
            "approvals_required": 1, "roles_required": ["finance"], "deadline": "2030-01-01T00:00:00.000Z",
        });
        let t = text(&n, "https://signa.example.com/");
        assert!(t.starts_with("Review needed: procurement-bot wants purchase_order.create 40,000.00 USD with Globex &lt;Hardware&gt; &amp; Co — rule large-po: big"), "{t}");
        assert!(t.ends_with("approve at https://signa.example.com/ui/reviews/rev_1"), "{t}");
        assert_eq!(label("https://hooks.example.com/services/SECRET"), "https://hooks.example.com");
    }
}

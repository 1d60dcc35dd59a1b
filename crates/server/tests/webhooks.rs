#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Webhook notifications: escalation, decisions and expiry reach a (flaky) receiver,
//! signed, with retries, never delaying a verdict, and survive a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentsigna::app::{self, Running, ServeOptions};
use agentsigna_core::ManualClock;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "whsec-test-0123456789";
const PUBLIC: &str = "https://signa.example.com";

// ---------------------------------------------------------------------------------------
// A receiver that fails on demand

#[derive(Debug, Clone)]
struct Hit {
    headers: HeaderMap,
    body: Bytes,
    answered: u16,
    at: Instant,
}

#[derive(Clone)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    count: Arc<AtomicUsize>,
    /// The first N deliveries get a 500.
    fail_first: usize,
    /// The very first delivery is also slow.
    slow_first: Duration,
    /// While set, every delivery gets a 503.
    down: Arc<AtomicBool>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = r.count.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 1 && !r.slow_first.is_zero() {
        tokio::time::sleep(r.slow_first).await;
    }
    let status = if r.down.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else if n <= r.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    r.hits.lock().unwrap().push(Hit { headers, body, answered: status.as_u16(), at: Instant::now() });
    status
}

impl Receiver {
    async fn start(fail_first: usize, slow_first: Duration) -> (Receiver, String) {
        let r = Receiver {
            hits: Arc::default(),
            count: Arc::default(),
            fail_first,
            slow_first,
            down: Arc::new(AtomicBool::new(false)),
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits for an accepted delivery of `event` about `review`; returns its parsed body.
    async fn accepted(&self, event: &str, review: &str) -> (Hit, Value) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            for h in self.hits() {
                let v: Value = serde_json::from_slice(&h.body).unwrap();
                if h.answered == 200 && v["event"] == event && v["review_id"] == review {
                    return (h, v);
                }
            }
            assert!(
                Instant::now() < until,
                "no accepted {event} notification for {review}; hits: {:?}",
                self.hits().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn verify_signature(h: &Hit) {
    let header = h.headers.get("agentsigna-signature").expect("signature header").to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&h.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(header, expected, "HMAC-SHA256 of the exact body");
    let ts: i64 = h.headers.get("agentsigna-timestamp").expect("timestamp header").to_str().unwrap().parse().unwrap();
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();
    assert!((now - ts).abs() < 120, "timestamp is the sending time");
    assert_eq!(h.headers["content-type"], "application/json");
}

// ---------------------------------------------------------------------------------------
// The server

fn org_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/procurement/org.toml")
}

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(d.as_secs()).unwrap() * 1000
}

async fn start(data: &Path, clock: Arc<ManualClock>, hook: &str) -> Running {
    let mut opts = ServeOptions::new(data, "127.0.0.1:0".parse().unwrap());
    opts.org = Some(org_path());
    opts.sweeper = false;
    opts.webhooks = vec![hook.to_owned()];
    opts.webhook_secret = Some(SECRET.to_owned());
    opts.public_url = Some(PUBLIC.to_owned());
    app::start(opts, clock).await.expect("server start")
}

fn creds(r: &Running) -> HashMap<String, String> {
    r.credentials.iter().map(|c| (c.id.clone(), c.token.clone())).collect()
}

async fn po(base: &str, token: &str, value: &str, description: &str) -> (Value, Duration) {
    let t0 = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/requests"))
        .bearer_auth(token)
        .json(&json!({"action": "purchase_order.create", "counterparty": "globex", "audience": "erp",
                      "amount": {"value": value, "currency": "USD"}, "description": description}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    (v, t0.elapsed())
}

async fn decide(base: &str, token: &str, review: &str, decision: &str, comment: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/reviews/{review}/decisions"))
        .bearer_auth(token)
        .json(&json!({"decision": decision, "comment": comment}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn outbox_len(r: &Running) -> usize {
    r.engine.outbox_items().await.unwrap().len()
}

async fn wait_outbox_empty(r: &Running) {
    let until = Instant::now() + Duration::from_secs(30);
    while outbox_len(r).await > 0 {
        assert!(Instant::now() < until, "the outbox never emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_decisions_and_expiry_are_notified_signed_and_retried() {
    // The receiver answers the first two deliveries with 500, the first after 5 s.
    let (receiver, hook) = Receiver::start(2, Duration::from_secs(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now_ms()));
    let running = start(&dir.path().join("data"), clock.clone(), &hook).await;
    let base = running.url();
    let tokens = creds(&running);
    let bot = &tokens["procurement-bot"];

    // Escalation: the verdict comes back at once, whatever the receiver does.
    let (body, took) = po(&base, bot, "40000.00", "40 laptops").await;
    assert_eq!(body["verdict"], "escalated");
    assert!(took < Duration::from_millis(2500), "the verdict waited for the webhook: {took:?}");
    let review = body["review"]["id"].as_str().unwrap().to_owned();
    let case_id = body["case_id"].as_str().unwrap().to_owned();

    let (hit, n) = receiver.accepted("review.opened", &review).await;
    verify_signature(&hit);
    let text = n["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "Review needed: procurement-bot wants purchase_order.create 40,000.00 USD with Globex Hardware — rule large-po: \
             Purchase orders above 10,000.00 USD need a finance approval"
        ),
        "{text}"
    );
    assert!(text.ends_with(&format!("approve at {PUBLIC}/ui/reviews/{review}")), "{text}");
    assert_eq!(n["url"], format!("{PUBLIC}/ui/reviews/{review}"));
    assert_eq!(n["case_id"], case_id.as_str());
    assert_eq!(n["status"], "pending");
    assert_eq!(n["agent"]["id"], "procurement-bot");
    assert_eq!(n["agent"]["owner"], "alice@example.com");
    assert_eq!(n["action"], "purchase_order.create");
    assert_eq!(n["amount"], json!({"value": "40000.00", "currency": "USD"}));
    assert_eq!(n["counterparty"]["name"], "Globex Hardware");
    assert_eq!(n["counterparty"]["risk"], "medium");
    assert_eq!(n["rules"][0]["rule"], "large-po");
    assert_eq!(n["roles_required"], json!(["finance"]));
    assert!(n["deadline"].as_str().unwrap().ends_with('Z'));
    // Retries: the same notification (same delivery id) three times, two refused.
    let delivery = hit.headers["agentsigna-delivery"].to_str().unwrap().to_owned();
    assert_eq!(n["id"], delivery.as_str());
    let attempts: Vec<Hit> = receiver
        .hits()
        .into_iter()
        .filter(|h| h.headers["agentsigna-delivery"].to_str().unwrap() == delivery)
        .collect();
    assert_eq!(attempts.iter().map(|h| h.answered).collect::<Vec<_>>(), vec![500, 500, 200]);
    for h in &attempts {
        verify_signature(h);
    }
    // With backoff: 1 s after the first failure, 2 s after the second.
    assert!(attempts[2].at - attempts[1].at >= Duration::from_millis(1500), "backoff doubles");
    wait_outbox_empty(&running).await;

    // Approval.
    decide(&base, &tokens["carol@example.com"], &review, "approve", "Budget confirmed").await;
    let (hit, n) = receiver.accepted("review.approved", &review).await;
    verify_signature(&hit);
    assert_eq!(n["status"], "approved");
    assert_eq!(n["case_status"], "authorized");
    assert_eq!(n["decisions"][0]["approver"], "carol@example.com");
    assert!(n["text"]
        .as_str()
        .unwrap()
        .starts_with("Review approved: procurement-bot's purchase_order.create 40,000.00 USD"));
    assert!(n["text"].as_str().unwrap().contains("approved by carol@example.com"));

    // Rejection, with the comment.
    let (body, _) = po(&base, bot, "12000.00", "monitors").await;
    let rejected = body["review"]["id"].as_str().unwrap().to_owned();
    decide(&base, &tokens["erin@example.com"], &rejected, "reject", "Use the framework contract").await;
    let (_, n) = receiver.accepted("review.rejected", &rejected).await;
    assert_eq!(n["status"], "rejected");
    let text = n["text"].as_str().unwrap();
    assert!(
        text.starts_with("Review rejected:")
            && text.contains("erin@example.com")
            && text.contains("Use the framework contract"),
        "{text}"
    );

    // Expiry: 25 hours later the unanswered review expires into a rejection.
    let (body, _) = po(&base, bot, "15000.00", "chairs").await;
    let expiring = body["review"]["id"].as_str().unwrap().to_owned();
    receiver.accepted("review.opened", &expiring).await;
    clock.advance_secs(25 * 3600);
    assert!(running.engine.process_due().await.unwrap() >= 1);
    let (hit, n) = receiver.accepted("review.expired", &expiring).await;
    verify_signature(&hit);
    assert_eq!(n["status"], "expired");
    assert_eq!(n["case_status"], "rejected");
    assert!(n["text"]
        .as_str()
        .unwrap()
        .starts_with("Review expired: procurement-bot's purchase_order.create 15,000.00 USD"));
    wait_outbox_empty(&running).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_loses_nothing_across_a_restart() {
    let (receiver, hook) = Receiver::start(0, Duration::ZERO).await;
    receiver.down.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clock = Arc::new(ManualClock::new(now_ms()));
    let running = start(&data, clock.clone(), &hook).await;
    let tokens = creds(&running);
    let (body, took) = po(&running.url(), &tokens["procurement-bot"], "40000.00", "servers").await;
    assert!(took < Duration::from_millis(2500));
    let review = body["review"]["id"].as_str().unwrap().to_owned();
    // Refused at least once, still in the outbox with its failure recorded.
    let until = Instant::now() + Duration::from_secs(20);
    while receiver.hits().is_empty() {
        assert!(Instant::now() < until, "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = running.engine.outbox_items().await.unwrap();
    assert_eq!(stored.len(), 1);
    let record: Value = serde_json::from_str(&stored[0]).unwrap();
    assert!(record["delivery"]["attempts"].as_u64().unwrap() >= 1, "{record}");
    assert!(record["delivery"]["last_error"].as_str().unwrap().contains("503"), "{record}");
    assert!(!stored[0].contains("/hook"), "receiver URLs are not stored: {record}");
    running.stop(Duration::from_secs(10)).await.unwrap();

    // The receiver comes back; so does the server: the notification is delivered.
    receiver.down.store(false, Ordering::SeqCst);
    let running = start(&data, clock, &hook).await;
    let (hit, n) = receiver.accepted("review.opened", &review).await;
    verify_signature(&hit);
    assert!(n.get("delivery").is_none(), "delivery state is not sent");
    wait_outbox_empty(&running).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The approver web pages (`/ui/`) as a person uses them: over HTTP with cookies and
//! forms, and in a real headless Chromium driven through WebDriver.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentsigna::app::{self, Running, ServeOptions};
use agentsigna_core::ManualClock;
use serde_json::{json, Value};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// The server

struct Srv {
    running: Running,
    _dir: TempDir,
    base: String,
    admin: String,
    creds: HashMap<(String, String), String>,
    api: reqwest::Client,
}

fn org_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/procurement/org.toml")
}

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(d.as_secs()).unwrap() * 1000
}

async fn start() -> Srv {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServeOptions::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
    opts.org = Some(org_path());
    opts.sweeper = false;
    let running = app::start(opts, Arc::new(ManualClock::new(now_ms()))).await.expect("server start");
    let creds = running.credentials.iter().map(|c| ((c.kind.to_owned(), c.id.clone()), c.token.clone())).collect();
    Srv {
        base: running.url(),
        admin: running.admin_token.clone().unwrap(),
        running,
        _dir: dir,
        creds,
        api: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
    }
}

impl Srv {
    fn token(&self, kind: &str, id: &str) -> String {
        self.creds
            .get(&(kind.to_owned(), id.to_owned()))
            .cloned()
            .unwrap_or_else(|| panic!("no credential for {kind} {id}"))
    }

    async fn api(&self, method: reqwest::Method, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.api.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// procurement-bot asks for a purchase order; returns (case id, review id).
    async fn escalated_po(&self, description: &str) -> (String, String) {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                &self.token("agent", "procurement-bot"),
                "/v1/requests",
                Some(json!({
                    "action": "purchase_order.create", "counterparty": "globex",
                    "amount": {"value": "40000.00", "currency": "USD"}, "audience": "erp",
                    "description": description, "context": {"cost_center": "IT-7", "note": "<b>bold</b>"},
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["verdict"], "escalated", "{body}");
        (body["case_id"].as_str().unwrap().to_owned(), body["review"]["id"].as_str().unwrap().to_owned())
    }

    async fn stop(self) {
        self.running.stop(Duration::from_secs(10)).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// A cookie-keeping form client (what a browser without JavaScript does)

struct Page {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

struct WebUser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
    extra: Vec<(&'static str, &'static str)>,
}

impl WebUser {
    fn new(base: &str) -> WebUser {
        WebUser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: HashMap::new(),
            extra: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let mut req = req;
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        for (k, v) in &self.extra {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> =
            resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        for c in &set_cookies {
            let first = c.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            if value.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = resp.text().await.unwrap();
        Page { status, location, set_cookies, body }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(req).await
    }

    /// Signs in through the login form; returns the answer to the form's POST.
    async fn login(&mut self, token: &str) -> Page {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = csrf_of(&form.body);
        self.post("/ui/login", &[("token", token), ("csrf", &csrf), ("next", "/ui/")]).await
    }
}

/// The CSRF token of the first form of a page.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).unwrap_or_else(|| panic!("no CSRF field in page: {html}")) + marker.len();
    html[at..].split('"').next().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------
// Over HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_a_review_is_visible_without_login() {
    let srv = start().await;
    let (_case, review) = srv.escalated_po("laptops").await;
    let mut anon = WebUser::new(&srv.base);
    for path in ["/ui/", "/ui/reviews", &format!("/ui/reviews/{review}")] {
        let p = anon.get(path).await;
        assert_eq!(p.status, 303, "{path}: {}", p.body);
        let loc = p.location.unwrap();
        assert!(loc.starts_with("/ui/login?next=/ui/"), "{path} redirects to {loc}");
        assert!(!p.body.contains("procurement-bot"));
    }
    let p = anon.post(&format!("/ui/reviews/{review}/decision"), &[("decision", "approve"), ("comment", "")]).await;
    assert_eq!(p.status, 303);
    assert!(p.location.unwrap().starts_with("/ui/login"));
    // /ui redirects to /ui/.
    assert_eq!(anon.get("/ui").await.location.as_deref(), Some("/ui/"));

    // Agents and target systems cannot sign in; unknown tokens neither.
    let p = anon.login(&srv.token("agent", "procurement-bot")).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("Only approvers (and the admin) sign in here"), "{}", p.body);
    assert!(!anon.cookies.contains_key("agentsigna_session"));
    let p = anon.login(&srv.token("system", "erp")).await;
    assert_eq!(p.status, 403);
    assert!(p.body.contains("target system erp"), "{}", p.body);
    let p = anon.login("as_approver_not-a-real-token").await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("unknown or revoked"), "{}", p.body);

    // The login form itself is CSRF-protected (double submit cookie).
    let mut fresh = WebUser::new(&srv.base);
    let p =
        fresh.post("/ui/login", &[("token", &srv.token("approver", "carol@example.com")), ("csrf", "forged")]).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("CSRF"));

    // The admin may sign in and read, but has no decide form.
    let mut admin = WebUser::new(&srv.base);
    assert_eq!(admin.login(&srv.admin).await.status, 303);
    let page = admin.get(&format!("/ui/reviews/{review}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("only approvers decide"), "{}", page.body);
    assert!(!page.body.contains("id=\"approve\""));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_reviews_the_full_context_and_decides_in_the_pages() {
    let srv = start().await;
    let (case_id, review) = srv.escalated_po("40 laptops <script>alert(1)</script>").await;

    // Sign in: a session cookie, HttpOnly, SameSite=Strict, Path=/ui, not Secure on loopback.
    let mut carol = WebUser::new(&srv.base);
    let p = carol.login(&srv.token("approver", "carol@example.com")).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/ui/"));
    let session = p.set_cookies.iter().find(|c| c.starts_with("agentsigna_session=")).expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(!session.contains("Secure"), "plain loopback HTTP: {session}");
    let id = session.split(';').next().unwrap().split_once('=').unwrap().1;
    assert_eq!(id.len(), 32, "192 random bits, base64url");

    // The queue lists the escalated case with what a person needs to triage it.
    let q = carol.get("/ui/").await;
    assert_eq!(q.status, 200);
    assert!(q.body.contains(&format!("href=\"/ui/reviews/{review}\"")), "{}", q.body);
    for needle in [
        "procurement-bot",
        "purchase_order.create",
        "40,000.00 USD",
        "Globex Hardware",
        "large-po",
        "1 d 0 h left",
        "0 of 1",
    ] {
        assert!(q.body.contains(needle), "queue lacks {needle}: {}", q.body);
    }
    assert_eq!(carol.get("/ui/reviews").await.status, 200);

    // The case page: agent, counterparty, rule with reason and Cedar source, timeline.
    let page = carol.get(&format!("/ui/reviews/{review}")).await;
    assert_eq!(page.status, 200);
    let b = &page.body;
    for needle in [
        "large-po",
        "Purchase orders above 10,000.00 USD need a finance approval",
        "@id(&quot;large-po&quot;)",
        "context.amount &gt; 1000000",
        "id=\"agent-trust\">50<",
        "id=\"counterparty-trust\">50<",
        "alice@example.com",
        "badge medium",
        "request.submitted",
        "decision.made",
        "review.opened",
        "IT-7",
        "&lt;b&gt;bold&lt;/b&gt;",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        &case_id,
    ] {
        assert!(b.contains(needle), "case page lacks {needle}: {b}");
    }
    assert!(!b.contains("<script>"), "agent text must be escaped");
    assert!(b.contains("id=\"roles-missing\">finance<"), "{b}");
    let csrf = csrf_of(b);
    // Every event digest of the case is on the page.
    let (_, case_doc) = srv.api(reqwest::Method::GET, &srv.admin, &format!("/v1/cases/{case_id}"), None).await;
    for e in case_doc["events"].as_array().unwrap() {
        assert!(b.contains(e["digest"].as_str().unwrap()), "timeline lacks digest of {}", e["type"]);
    }

    // Headers of a page showing review data.
    let raw = reqwest::Client::new()
        .get(format!("{}/ui/reviews/{review}", srv.base))
        .header("cookie", carol.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["cache-control"], "no-store");
    assert!(raw.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert_eq!(raw.headers()["x-frame-options"], "DENY");
    assert!(raw.headers()["content-type"].to_str().unwrap().starts_with("text/html"));

    let decision_path = format!("/ui/reviews/{review}/decision");
    // No CSRF token, or another one: 403, nothing decided.
    let p = carol.post(&decision_path, &[("decision", "approve"), ("comment", "ok")]).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("CSRF"));
    let p = carol.post(&decision_path, &[("csrf", "x"), ("decision", "approve"), ("comment", "ok")]).await;
    assert_eq!(p.status, 403);

    // Rejecting without a comment: the error on the page, not JSON.
    let p = carol.post(&decision_path, &[("csrf", &csrf), ("decision", "reject"), ("comment", "  ")]).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("a comment is required to reject"), "{}", p.body);
    assert!(p.body.contains("<!doctype html>") && p.body.contains("id=\"error\""));

    // The agent's owner may not decide: separation of duties, shown on the page.
    let mut alice = WebUser::new(&srv.base);
    assert_eq!(alice.login(&srv.token("approver", "alice@example.com")).await.status, 303);
    let page = alice.get(&format!("/ui/reviews/{review}")).await;
    assert!(page.body.contains("You own agent procurement-bot"), "{}", page.body);
    let alice_csrf = csrf_of(&page.body);
    let p = alice.post(&decision_path, &[("csrf", &alice_csrf), ("decision", "approve"), ("comment", "mine")]).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("alice@example.com owns agent procurement-bot and may not decide"), "{}", p.body);
    // Carol's token is not Alice's session: a CSRF token is per session.
    let p = alice.post(&decision_path, &[("csrf", &csrf), ("decision", "approve"), ("comment", "mine")]).await;
    assert_eq!(p.status, 403);

    // Carol approves: 303 to the case page, which shows the outcome.
    let p =
        carol.post(&decision_path, &[("csrf", &csrf), ("decision", "approve"), ("comment", "Budget confirmed")]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some(format!("/ui/reviews/{review}").as_str()));
    let page = carol.get(&format!("/ui/reviews/{review}")).await;
    assert!(page.body.contains("id=\"review-status\">approved<"), "{}", page.body);
    assert!(page.body.contains("the review is now approved"), "{}", page.body);
    assert!(page.body.contains("Budget confirmed"));
    assert!(page.body.contains("review.decided"));
    assert!(!page.body.contains("id=\"approve\""), "no decide form on a closed review");
    // Deciding again: 409 on the page.
    let p = carol.post(&decision_path, &[("csrf", &csrf), ("decision", "approve"), ("comment", "again")]).await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p.body.contains("already approved"), "{}", p.body);
    // The approved review left the pending queue, and shows under all reviews.
    assert!(!carol.get("/ui/").await.body.contains(&review));
    assert!(carol.get("/ui/reviews?status=all").await.body.contains(&review));

    // The agent picks up its passport.
    let (status, case) = srv
        .api(reqwest::Method::GET, &srv.token("agent", "procurement-bot"), &format!("/v1/cases/{case_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(case["status"], "authorized");
    assert!(case["passport"].as_str().is_some_and(|p| p.split('.').count() == 3), "{case}");

    // Signing out ends the session.
    let p = carol.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location.as_deref(), Some("/ui/login"));
    assert_eq!(carol.get("/ui/").await.status, 303);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_approvers_web_session_ends_at_the_next_page() {
    let srv = start().await;
    let (_case, review) = srv.escalated_po("laptops").await;
    let mut carol = WebUser::new(&srv.base);
    assert_eq!(carol.login(&srv.token("approver", "carol@example.com")).await.status, 303);
    let page = carol.get(&format!("/ui/reviews/{review}")).await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);
    let (status, body) =
        srv.api(reqwest::Method::POST, &srv.admin, "/v1/approvers/carol@example.com/revoke", Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    // The session opened before the revocation no longer shows or decides anything.
    let p = carol
        .post(&format!("/ui/reviews/{review}/decision"), &[("csrf", &csrf), ("decision", "approve"), ("comment", "")])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(p.location.as_deref().is_some_and(|l| l.starts_with("/ui/login")), "{:?}", p.location);
    let p = carol.get("/ui/").await;
    assert_eq!(p.status, 303);
    let (_, case) = srv.api(reqwest::Method::GET, &srv.admin, &format!("/v1/reviews/{review}"), None).await;
    assert_eq!(case["review"]["decisions"], json!([]), "no decision was recorded: {case}");
    srv.stop().await;
}

/// Stored bytes that say one thing are never shown as another: a right-to-left override
/// in a description could make "94,500.00" read where the bytes say otherwise. The page
/// shows every hidden character as a marker and isolates the text; the raw character
/// never reaches the HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_and_bidirectional_characters_are_shown_as_markers_never_raw() {
    let srv = start().await;
    let (status, body) = srv
        .api(
            reqwest::Method::POST,
            &srv.token("agent", "procurement-bot"),
            "/v1/requests",
            Some(json!({
                "action": "purchase_order.create", "counterparty": "globex",
                "amount": {"value": "40000.00", "currency": "USD"}, "audience": "erp",
                "description": "Total \u{202E}00.005,49\u{202C} USD\u{200B}!",
                "context": {"note": "isolate \u{2067}x\u{2069} and BOM \u{FEFF}"},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let review = body["review"]["id"].as_str().unwrap().to_owned();
    // The API keeps the record as sent.
    let (_, case) = srv.api(reqwest::Method::GET, &srv.admin, &format!("/v1/reviews/{review}"), None).await;
    assert!(case.to_string().contains('\u{202E}'), "the stored description is kept: {case}");
    let (status, _) = srv
        .api(
            reqwest::Method::POST,
            &srv.token("approver", "erin@example.com"),
            &format!("/v1/reviews/{review}/decisions"),
            Some(json!({"decision": "approve", "comment": "fine \u{202D}by me\u{202C}"})),
        )
        .await;
    assert_eq!(status, 200);

    let mut carol = WebUser::new(&srv.base);
    assert_eq!(carol.login(&srv.token("approver", "carol@example.com")).await.status, 303);
    let page = carol.get(&format!("/ui/reviews/{review}")).await;
    assert_eq!(page.status, 200);
    for raw in ['\u{202E}', '\u{202C}', '\u{202D}', '\u{200B}', '\u{2067}', '\u{2069}', '\u{FEFF}'] {
        assert!(!page.body.contains(raw), "the page holds the raw U+{:04X}", u32::from(raw));
    }
    assert!(
        page.body.contains("<bdi>Total ⟨U+202E⟩00.005,49⟨U+202C⟩ USD⟨U+200B⟩!</bdi>"),
        "the description is isolated and marked: {}",
        page.body
    );
    assert!(page.body.contains("isolate ⟨U+2067⟩x⟨U+2069⟩ and BOM ⟨U+FEFF⟩"), "context: {}", page.body);
    assert!(page.body.contains("<bdi>fine ⟨U+202D⟩by me⟨U+202C⟩</bdi>"), "comment: {}", page.body);
    let queue = carol.get("/ui/").await;
    let hidden = |c: char| agentsigna_core::text::is_hidden(c) && !matches!(c, '\n' | '\t' | '\r');
    assert!(!page.body.chars().any(hidden) && !queue.body.chars().any(hidden), "no hidden character reaches a page");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_is_secure_behind_a_tls_proxy() {
    let srv = start().await;
    let mut u = WebUser::new(&srv.base);
    u.extra.push(("x-forwarded-proto", "https"));
    let p = u.login(&srv.token("approver", "erin@example.com")).await;
    assert_eq!(p.status, 303);
    let session = p.set_cookies.iter().find(|c| c.starts_with("agentsigna_session=")).unwrap();
    assert!(session.contains("; Secure"), "{session}");
    // An open redirect through `next` is refused.
    let form = u.get("/ui/login").await;
    assert_eq!(form.status, 303, "signed in already");
    let mut v = WebUser::new(&srv.base);
    let form = v.get("/ui/login").await;
    let csrf = csrf_of(&form.body);
    let p = v
        .post(
            "/ui/login",
            &[("token", &srv.token("approver", "erin@example.com")), ("csrf", &csrf), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/ui/"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_decisions_end_in_exactly_one_outcome() {
    let srv = start().await;
    // Eight more approvers, half of them finance.
    let mut tokens = Vec::new();
    for i in 0..8 {
        let role = if i % 2 == 0 { "finance" } else { "risk" };
        let (status, body) = srv
            .api(
                reqwest::Method::POST,
                &srv.admin,
                "/v1/approvers",
                Some(json!({"id": format!("approver{i}@example.com"), "roles": [role]})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    for round in 0..3 {
        // A payment above 5,000.00 USD: two approvals, one from finance.
        let (status, body) = srv
            .api(
                reqwest::Method::POST,
                &srv.token("agent", "payments-bot"),
                "/v1/requests",
                Some(json!({"action": "payment.send", "counterparty": "acme", "audience": "bank",
                            "amount": {"value": "6000.00", "currency": "USD"}, "description": format!("invoice {round}")})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["verdict"], "escalated");
        let case_id = body["case_id"].as_str().unwrap().to_owned();
        let review = body["review"]["id"].as_str().unwrap().to_owned();
        // Half via the API, half through the web pages, all at once.
        let mut tasks = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            let decision = if (i + round) % 3 == 0 { "reject" } else { "approve" };
            let (base, token, review) = (srv.base.clone(), token.clone(), review.clone());
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    let resp = reqwest::Client::new()
                        .post(format!("{base}/v1/reviews/{review}/decisions"))
                        .bearer_auth(&token)
                        .json(&json!({"decision": decision, "comment": "parallel"}))
                        .send()
                        .await
                        .unwrap();
                    resp.status().as_u16()
                } else {
                    let mut u = WebUser::new(&base);
                    assert_eq!(u.login(&token).await.status, 303);
                    let page = u.get(&format!("/ui/reviews/{review}")).await;
                    let csrf = csrf_of(&page.body);
                    let p = u
                        .post(
                            &format!("/ui/reviews/{review}/decision"),
                            &[("csrf", &csrf), ("decision", decision), ("comment", "parallel")],
                        )
                        .await;
                    if p.status == 303 {
                        200
                    } else {
                        p.status
                    }
                }
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
        let accepted = statuses.iter().filter(|s| **s == 200).count();

        let (_, case) = srv.api(reqwest::Method::GET, &srv.admin, &format!("/v1/cases/{case_id}"), None).await;
        let final_status = case["review"]["status"].as_str().unwrap().to_owned();
        assert!(final_status == "approved" || final_status == "rejected", "{case}");
        let decided: Vec<&Value> =
            case["events"].as_array().unwrap().iter().filter(|e| e["type"] == "review.decided").collect();
        assert_eq!(decided.len(), accepted, "one ledger entry per accepted decision");
        let closing: Vec<usize> = decided
            .iter()
            .enumerate()
            .filter(|(_, e)| e["data"]["review_status"] != "pending")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(closing, vec![decided.len() - 1], "exactly one final decision, and nothing after it: {decided:?}");
        assert_eq!(decided.last().unwrap()["data"]["review_status"], final_status);
        let decisions = case["review"]["decisions"].as_array().unwrap();
        if final_status == "approved" {
            assert!(decisions.iter().all(|d| d["decision"] == "approve"));
            assert!(decisions.len() >= 2);
            assert!(decisions.iter().any(|d| d["roles"][0] == "finance"));
        } else {
            assert_eq!(decisions.iter().filter(|d| d["decision"] == "reject").count(), 1);
            assert_eq!(decisions.last().unwrap()["decision"], "reject");
        }
        // Case status follows the review.
        let expected_case = if final_status == "approved" { "authorized" } else { "rejected" };
        assert_eq!(case["status"], expected_case);
    }
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------
// In a real browser: headless Chromium through chromedriver's W3C WebDriver API

/// The W3C WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(20);

struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct WebDriver {
    http: reqwest::Client,
    base: String,
    session: String,
}

impl WebDriver {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let is_get = method == reqwest::Method::GET;
        let mut req = self.http.request(method, url);
        if !is_get {
            req = req.json(&body.unwrap_or_else(|| json!({})));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null)["value"].take())
    }

    async fn goto(&self, url: &str) {
        let (s, v) = self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
        assert_eq!(s, 200, "navigate: {v}");
    }

    async fn find(&self, css: &str) -> Option<String> {
        let (s, v) =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        if s == 200 {
            v[ELEMENT].as_str().map(str::to_owned)
        } else {
            None
        }
    }

    async fn wait_for(&self, css: &str) -> String {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            if Instant::now() > until {
                let src = self.source().await;
                panic!("no element {css} within {WAIT:?}; page: {src}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, el: &str) -> String {
        let (_, v) = self.call(reqwest::Method::GET, &format!("/element/{el}/text"), None).await;
        v.as_str().unwrap_or("").to_owned()
    }

    async fn wait_for_text(&self, css: &str, expected: &str) {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find(css).await {
                if self.text(&e).await.trim() == expected {
                    return;
                }
            }
            if Instant::now() > until {
                panic!("{css} never read {expected:?}; page: {}", self.source().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, el: &str) {
        let (s, v) = self.call(reqwest::Method::POST, &format!("/element/{el}/click"), None).await;
        assert_eq!(s, 200, "click: {v}");
    }

    async fn type_into(&self, el: &str, text: &str) {
        let (s, v) =
            self.call(reqwest::Method::POST, &format!("/element/{el}/value"), Some(json!({"text": text}))).await;
        assert_eq!(s, 200, "type: {v}");
    }

    async fn source(&self) -> String {
        let (_, v) = self.call(reqwest::Method::GET, "/source", None).await;
        v.as_str().unwrap_or("").to_owned()
    }

    /// Saves a screenshot when `AGENTSIGNA_UI_SCREENSHOTS` names a directory.
    async fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("AGENTSIGNA_UI_SCREENSHOTS") else { return };
        use base64::Engine as _;
        let (_, v) = self.call(reqwest::Method::GET, "/screenshot", None).await;
        if let Some(b64) = v.as_str() {
            let png = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    async fn quit(&self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_signs_in_and_approves_in_headless_chromium() {
    let chromium = std::env::var("AGENTSIGNA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let chromedriver = std::env::var("AGENTSIGNA_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
    for (what, path) in [("chromium", &chromium), ("chromedriver", &chromedriver)] {
        if !Path::new(path).exists() {
            if std::env::var_os("CI").is_some() {
                panic!("{what} is not installed at {path} (apt-get install chromium chromium-driver); CI requires the browser test");
            }
            eprintln!("SKIPPED approver_signs_in_and_approves_in_headless_chromium: {what} not found at {path}");
            return;
        }
    }
    let srv = start().await;
    let (case_id, review) = srv.escalated_po("40 laptops for onboarding").await;

    let port = free_port();
    let _driver = Driver {
        child: Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(90)).build().unwrap();
    let wd_base = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + WAIT;
    loop {
        let ready = match http.get(format!("{wd_base}/status")).send().await {
            Ok(r) => r.json::<Value>().await.map(|v| v["value"]["ready"] == true).unwrap_or(false),
            Err(_) => false,
        };
        if ready {
            break;
        }
        assert!(Instant::now() < until, "chromedriver did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1280,1600",
                     format!("--user-data-dir={}", profile.path().display())],
        },
    }}});
    let resp = http.post(format!("{wd_base}/session")).json(&caps).send().await.expect("new session");
    let v: Value = resp.json().await.unwrap();
    let session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_owned();
    let wd = WebDriver { http, base: wd_base, session };

    // Not signed in: the queue sends the browser to the login form.
    wd.goto(&format!("{}/ui/", srv.base)).await;
    let token_field = wd.wait_for("input[name=token]").await;
    wd.screenshot("1-login").await;
    wd.type_into(&token_field, &srv.token("approver", "carol@example.com")).await;
    let sign_in = wd.wait_for("#sign-in").await;
    wd.click(&sign_in).await;

    // The queue shows the escalated request; open it.
    let link = wd.wait_for(&format!("a[href='/ui/reviews/{review}']")).await;
    wd.screenshot("2-queue").await;
    assert!(wd.source().await.contains("large-po"));
    wd.click(&link).await;

    // The case page: the rule that escalated and the trust scores.
    wd.wait_for_text(".rule-id", "large-po").await;
    let trust = wd.wait_for("#agent-trust").await;
    assert_eq!(wd.text(&trust).await, "50");
    let source = wd.wait_for(".rule-source").await;
    assert!(wd.text(&source).await.contains("purchase_order.create"));
    wd.screenshot("3-case").await;

    // Approve with a comment.
    let comment = wd.wait_for("#comment").await;
    wd.type_into(&comment, "Budget confirmed by finance").await;
    let approve = wd.wait_for("#approve").await;
    wd.click(&approve).await;
    wd.wait_for_text("#review-status", "approved").await;
    wd.wait_for("#flash").await;
    wd.screenshot("4-approved").await;
    wd.quit().await;

    // The agent's case now carries its passport.
    let (status, case) = srv
        .api(reqwest::Method::GET, &srv.token("agent", "procurement-bot"), &format!("/v1/cases/{case_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(case["status"], "authorized", "{case}");
    assert!(case["passport"].as_str().is_some_and(|p| p.split('.').count() == 3), "{case}");
    let approvals = &case["review"]["decisions"];
    assert_eq!(approvals[0]["approver"], "carol@example.com");
    assert_eq!(approvals[0]["comment"], "Budget confirmed by finance");
    srv.stop().await;
}

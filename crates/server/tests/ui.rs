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
    start_with(|_| {}).await
}

async fn start_with(f: impl FnOnce(&mut ServeOptions)) -> Srv {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServeOptions::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
    opts.org = Some(org_path());
    opts.sweeper = false;
    f(&mut opts);
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
        self.escalated_po_of("40000.00", description).await
    }

    /// An escalated purchase order of `value` USD.
    async fn escalated_po_of(&self, value: &str, description: &str) -> (String, String) {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                &self.token("agent", "procurement-bot"),
                "/v1/requests",
                Some(json!({
                    "action": "purchase_order.create", "counterparty": "globex",
                    "amount": {"value": value, "currency": "USD"}, "audience": "erp",
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
    assert!(b.contains("Still needed: 1 more approval, covering the role finance"), "{b}");
    // The summary comes first: amount, counterparty and risk, agent and trust, rule, time
    // left, approvals, then the form; the details after it.
    let at = |needle: &str| b.find(needle).unwrap_or_else(|| panic!("case page lacks {needle}"));
    assert!(at("id=\"summary\"") < at("id=\"decide\"") && at("id=\"decide\"") < at("id=\"request\""));
    assert!(at("id=\"approve\"") < at("id=\"timeline\""));
    assert!(b.contains("Medium risk") && b.contains("Waiting for a decision"), "statuses in words");
    assert!(b.contains(" UTC (just now)"), "times with their zone and age: {b}");
    assert!(b.contains("rel=\"icon\" href=\"/ui/favicon.svg\""));
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

    // Rejecting without a comment: back to the case page (post/redirect/get), the error
    // next to the comment field in plain words, marked invalid.
    let p = carol.post(&decision_path, &[("csrf", &csrf), ("decision", "reject"), ("comment", "  ")]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some(format!("/ui/reviews/{review}").as_str()));
    let page = carol.get(&format!("/ui/reviews/{review}")).await;
    assert!(page.body.contains("id=\"comment-error\">Write a comment saying why you reject"), "{}", page.body);
    assert!(page.body.contains("aria-invalid=\"true\" aria-describedby=\"comment-error\""), "{}", page.body);
    // Shown once: a reload is the plain page again.
    assert!(!carol.get(&format!("/ui/reviews/{review}")).await.body.contains("comment-error"));
    // The decision URL opened directly leads to the case page, never a blank 405.
    let p = carol.get(&decision_path).await;
    assert_eq!((p.status, p.location.as_deref()), (303, Some(format!("/ui/reviews/{review}").as_str())));

    // The agent's owner may not decide: separation of duties, shown on the page.
    let mut alice = WebUser::new(&srv.base);
    assert_eq!(alice.login(&srv.token("approver", "alice@example.com")).await.status, 303);
    let page = alice.get(&format!("/ui/reviews/{review}")).await;
    assert!(page.body.contains("You own agent procurement-bot"), "{}", page.body);
    assert!(!page.body.contains("id=\"approve\""), "no live buttons for whoever may not decide");
    let alice_queue = alice.get("/ui/").await;
    assert!(alice_queue.body.contains("Your own agent: you may not decide"), "{}", alice_queue.body);
    let alice_csrf = csrf_of(&page.body);
    let p = alice.post(&decision_path, &[("csrf", &alice_csrf), ("decision", "approve"), ("comment", "mine")]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let page = alice.get(&format!("/ui/reviews/{review}")).await;
    assert!(page.body.contains("you may not decide on it (separation of duties)"), "{}", page.body);
    // Carol's token is not Alice's session: a CSRF token is per session.
    let p = alice.post(&decision_path, &[("csrf", &csrf), ("decision", "approve"), ("comment", "mine")]).await;
    assert_eq!(p.status, 403);

    // Carol approves: 303 to the case page, which shows the outcome.
    let p =
        carol.post(&decision_path, &[("csrf", &csrf), ("decision", "approve"), ("comment", "Budget confirmed")]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some(format!("/ui/reviews/{review}").as_str()));
    let page = carol.get(&format!("/ui/reviews/{review}")).await;
    assert!(page.body.contains("data-status=\"approved\">Approved<"), "{}", page.body);
    assert!(page.body.contains("the review is now approved"), "{}", page.body);
    assert!(page.body.contains("Budget confirmed"));
    assert!(page.body.contains("Approved by Carol (Finance) (carol@example.com) (finance)"), "{}", page.body);
    assert!(page.body.contains("review.decided"));
    assert!(!page.body.contains("id=\"approve\""), "no decide form on a closed review");
    assert!(!page.body.contains("Still needed"), "a closed review lists nothing missing");
    // Reloading the page after the decision records nothing more.
    let decided_events = |b: &str| b.matches("<code>review.decided</code>").count();
    let reloaded = carol.get(&format!("/ui/reviews/{review}")).await;
    assert_eq!(decided_events(&reloaded.body), 1);
    // Deciding again: the refusal on the page, in plain words.
    let p = carol.post(&decision_path, &[("csrf", &csrf), ("decision", "approve"), ("comment", "again")]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let page = carol.get(&format!("/ui/reviews/{review}")).await;
    assert!(page.body.contains("was already closed (approved)"), "{}", page.body);
    assert_eq!(decided_events(&page.body), 1);
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
                    // Post/redirect/get: the case page says whether it was recorded.
                    if p.status != 303 {
                        return p.status;
                    }
                    let after = u.get(&format!("/ui/reviews/{review}")).await;
                    if after.body.contains("is recorded") {
                        200
                    } else {
                        assert!(after.body.contains("id=\"error\""), "{}", after.body);
                        409
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decided_reviews_stay_listed_after_600_other_cases() {
    let srv = start().await;
    let (_, approved) = srv.escalated_po("first").await;
    let (_, rejected) = srv.escalated_po("second").await;
    let (_, pending) = srv.escalated_po("third").await;
    let carol = srv.token("approver", "carol@example.com");
    for (review, decision) in [(&approved, "approve"), (&rejected, "reject")] {
        let (status, body) = srv
            .api(
                reqwest::Method::POST,
                &carol,
                &format!("/v1/reviews/{review}/decisions"),
                Some(json!({"decision": decision, "comment": "checked"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // 600 small purchase orders, authorized without review, 24 at a time.
    let agent = srv.token("agent", "procurement-bot");
    let url = format!("{}/v1/requests", srv.base);
    let mut left = 600;
    while left > 0 {
        let n = left.min(24);
        left -= n;
        let batch: Vec<_> = (0..n)
            .map(|_| {
                let (http, url, agent) = (srv.api.clone(), url.clone(), agent.clone());
                tokio::spawn(async move {
                    let body = json!({"action": "purchase_order.create", "counterparty": "globex",
                        "amount": {"value": "100.00", "currency": "USD"}, "audience": "erp", "description": "toner"});
                    http.post(url).bearer_auth(agent).json(&body).send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        for t in batch {
            assert_eq!(t.await.unwrap(), 201);
        }
    }
    let mut frank = WebUser::new(&srv.base);
    assert_eq!(frank.login(&srv.token("approver", "frank@example.com")).await.status, 303);
    let all = frank.get("/ui/reviews?status=all").await;
    for r in [&approved, &rejected, &pending] {
        assert!(all.body.contains(&format!("/ui/reviews/{r}\"")), "all reviews lack {r}: {}", all.body);
    }
    assert!(
        all.body.contains("id=\"queue-count\">(3)<") && all.body.contains("<title>All reviews (3)"),
        "{}",
        all.body
    );
    let only_approved = frank.get("/ui/reviews?status=approved").await;
    assert!(only_approved.body.contains(&approved) && !only_approved.body.contains(&rejected));
    let only_rejected = frank.get("/ui/reviews?status=rejected").await;
    assert!(only_rejected.body.contains(&rejected) && !only_rejected.body.contains(&approved));
    // Search by review id, filter by agent and action.
    let found = frank.get(&format!("/ui/reviews?status=all&q={rejected}")).await;
    assert!(found.body.contains("id=\"queue-count\">(1)<") && found.body.contains(&rejected), "{}", found.body);
    let none = frank.get("/ui/reviews?status=all&agent=payments-bot").await;
    assert!(none.body.contains("id=\"empty-queue\""), "{}", none.body);
    let by_action = frank.get("/ui/reviews?status=all&action=purchase_order.create&counterparty=globex").await;
    assert!(by_action.body.contains("id=\"queue-count\">(3)<"), "{}", by_action.body);
    // Carol decided two of them: marked in the list.
    let mut carol_web = WebUser::new(&srv.base);
    assert_eq!(carol_web.login(&carol).await.status, 303);
    let mine = carol_web.get("/ui/reviews?status=all").await;
    assert_eq!(mine.body.matches("You already decided").count(), 2, "{}", mine.body);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_walks_over_every_review() {
    let srv = start().await;
    let mut reviews = Vec::new();
    for i in 0..53 {
        reviews.push(srv.escalated_po(&format!("order {i}")).await.1);
    }
    let mut erin = WebUser::new(&srv.base);
    assert_eq!(erin.login(&srv.token("approver", "erin@example.com")).await.status, 303);
    let first = erin.get("/ui/").await;
    assert!(first.body.contains("Showing 1–50 of 53"), "{}", first.body);
    assert!(first.body.contains("href=\"/ui/reviews?status=pending&amp;page=2\""), "{}", first.body);
    let second = erin.get("/ui/reviews?status=pending&page=2").await;
    assert!(second.body.contains("Showing 51–53 of 53"), "{}", second.body);
    let seen = reviews.iter().filter(|r| first.body.contains(r.as_str()) || second.body.contains(r.as_str())).count();
    assert_eq!(seen, 53);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_above_the_threshold_needs_the_amount_retyped() {
    let srv = start_with(|o| o.ui.confirm_above = Some(50_000.0)).await;
    let (_, big) = srv.escalated_po_of("120000.00", "servers").await;
    let (_, small) = srv.escalated_po_of("40000.00", "laptops").await;
    let mut carol = WebUser::new(&srv.base);
    assert_eq!(carol.login(&srv.token("approver", "carol@example.com")).await.status, 303);
    let page = carol.get(&format!("/ui/reviews/{big}")).await;
    assert!(page.body.contains("To approve, retype the amount"), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let path = format!("/ui/reviews/{big}/decision");
    let p = carol.post(&path, &[("csrf", &csrf), ("decision", "approve"), ("comment", "ok"), ("confirm", "")]).await;
    assert_eq!(p.status, 303);
    let page = carol.get(&format!("/ui/reviews/{big}")).await;
    assert!(page.body.contains("id=\"confirm-error\">Retype the amount (120,000.00 USD)"), "{}", page.body);
    assert!(page.body.contains("data-status=\"pending\""), "nothing approved");
    assert!(page.body.contains(">ok</textarea>"), "the comment is given back");
    let p = carol
        .post(&path, &[("csrf", &csrf), ("decision", "approve"), ("comment", "ok"), ("confirm", "12,000.00")])
        .await;
    assert_eq!(p.status, 303);
    assert!(carol.get(&format!("/ui/reviews/{big}")).await.body.contains("That is not the amount of this request"));
    let p = carol
        .post(&path, &[("csrf", &csrf), ("decision", "approve"), ("comment", "ok"), ("confirm", "120,000.00")])
        .await;
    assert_eq!(p.status, 303);
    let page = carol.get(&format!("/ui/reviews/{big}")).await;
    assert!(page.body.contains("data-status=\"approved\""), "{}", page.body);
    // After deciding, a link to the next review waiting for this approver.
    assert!(page.body.contains(&format!("href=\"/ui/reviews/{small}\" id=\"next-review\"")), "{}", page.body);
    // Below the threshold one click is enough, and rejecting never needs the amount.
    let page = carol.get(&format!("/ui/reviews/{small}")).await;
    assert!(!page.body.contains("retype the amount"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_zone_chosen_is_remembered_by_the_session_and_used_on_every_page() {
    let srv = start().await;
    let (_, review) = srv.escalated_po("laptops").await;
    let mut carol = WebUser::new(&srv.base);
    assert_eq!(carol.login(&srv.token("approver", "carol@example.com")).await.status, 303);
    let queue = carol.get("/ui/").await;
    assert!(queue.body.contains(">Times in UTC</a>"), "UTC by default, named: {}", queue.body);
    let settings = carol.get("/ui/settings").await;
    assert_eq!(settings.status, 200);
    assert!(settings.body.contains("id=\"zone-now\">UTC<"), "{}", settings.body);
    assert!(settings.body.contains("<option value=\"Europe/Berlin\">"), "zones suggested: {}", settings.body);
    let csrf = csrf_of(&settings.body);

    // Without the session's CSRF token: refused, nothing changes.
    let p = carol.post("/ui/settings", &[("csrf", "forged"), ("time_zone", "Europe/Berlin")]).await;
    assert_eq!(p.status, 403, "{}", p.body);
    // An unknown zone: back to the form (post/redirect/get), the error next to the field.
    let p = carol.post("/ui/settings", &[("csrf", &csrf), ("time_zone", "Mars/Olympus_Mons")]).await;
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/ui/settings")));
    let page = carol.get("/ui/settings").await;
    assert!(
        page.body.contains("id=\"time_zone-error\">There is no time zone called “Mars/Olympus_Mons”"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("value=\"Mars/Olympus_Mons\" aria-invalid=\"true\" aria-describedby=\"time_zone-error\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"zone-now\">UTC<"), "nothing changed");
    assert!(!carol.get("/ui/settings").await.body.contains("time_zone-error"), "shown once");

    // A known zone, in any letter case: stored under its name, used by every page.
    let p = carol.post("/ui/settings", &[("csrf", &csrf), ("time_zone", "asia/kolkata")]).await;
    assert_eq!(p.status, 303);
    let page = carol.get("/ui/settings").await;
    assert!(page.body.contains("Times are now shown in Asia/Kolkata."), "{}", page.body);
    assert!(
        page.body.contains("id=\"zone-now\">Asia/Kolkata<") && page.body.contains("(UTC+05:30 now)"),
        "{}",
        page.body
    );
    let queue = carol.get("/ui/").await;
    assert!(queue.body.contains(">Times in Asia/Kolkata</a>"), "{}", queue.body);
    assert!(queue.body.contains(" Asia/Kolkata</div>"), "the deadline in the zone, named: {}", queue.body);
    let case = carol.get(&format!("/ui/reviews/{review}")).await;
    assert!(case.body.contains(" Asia/Kolkata (just now)"), "absolute time in the zone, and the age: {}", case.body);
    assert!(!case.body.contains(" UTC (just now)"));
    // The times themselves moved by the zone's offset.
    let (_, doc) = srv.api(reqwest::Method::GET, &srv.admin, &format!("/v1/reviews/{review}"), None).await;
    let created = agentsigna_verify::clock::parse_rfc3339_ms(doc["created_at"].as_str().unwrap()).unwrap();
    let local = agentsigna_verify::clock::rfc3339_ms(created + 5 * 3_600_000 + 30 * 60_000);
    let local = format!("{} {} Asia/Kolkata (just now)", &local[..10], &local[11..16]);
    assert!(case.body.contains(&local), "{local}: {}", case.body);

    // Another session of the same approver starts at UTC again; this one keeps its zone.
    let mut other = WebUser::new(&srv.base);
    assert_eq!(other.login(&srv.token("approver", "carol@example.com")).await.status, 303);
    assert!(other.get("/ui/").await.body.contains(">Times in UTC</a>"));
    assert!(carol.get("/ui/").await.body.contains(">Times in Asia/Kolkata</a>"));
    // An empty field goes back to UTC.
    let p = carol.post("/ui/settings", &[("csrf", &csrf), ("time_zone", "")]).await;
    assert_eq!(p.status, 303);
    assert!(carol.get("/ui/").await.body.contains(">Times in UTC</a>"));
    // Without a session the settings page is the sign-in redirect.
    let mut anon = WebUser::new(&srv.base);
    let p = anon.get("/ui/settings").await;
    assert_eq!(p.status, 303);
    assert!(p.location.unwrap().starts_with("/ui/login?next=/ui/settings"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_filter_lists_reviews_that_still_need_a_role_the_reader_holds() {
    let srv = start().await;
    // Finance only (large purchase order).
    let (_, finance_only) = srv.escalated_po("laptops").await;
    // Finance and risk (a large order with a high-risk counterparty).
    let (status, body) = srv
        .api(
            reqwest::Method::POST,
            &srv.token("agent", "procurement-bot"),
            "/v1/requests",
            Some(json!({"action": "purchase_order.create", "counterparty": "initech",
                        "amount": {"value": "40000.00", "currency": "USD"}, "audience": "erp", "description": "audit"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let both = body["review"]["id"].as_str().unwrap().to_owned();
    let mut erin = WebUser::new(&srv.base);
    assert_eq!(erin.login(&srv.token("approver", "erin@example.com")).await.status, 303);
    let mut carol = WebUser::new(&srv.base);
    assert_eq!(carol.login(&srv.token("approver", "carol@example.com")).await.status, 303);
    let listed = |body: &str, review: &str| body.contains(&format!("href=\"/ui/reviews/{review}\""));

    let page = erin.get("/ui/").await;
    assert!(page.body.contains("Needs a role I hold <span class=\"muted\">(risk)</span>"), "{}", page.body);
    let mine = erin.get("/ui/reviews?status=pending&mine=1").await;
    assert!(listed(&mine.body, &both) && !listed(&mine.body, &finance_only), "{}", mine.body);
    assert!(
        mine.body.contains("id=\"queue-count\">(1)<")
            && mine.body.contains("id=\"f-mine\" name=\"mine\" type=\"checkbox\" value=\"1\" checked"),
        "{}",
        mine.body
    );
    let mine = carol.get("/ui/reviews?status=pending&mine=1").await;
    assert!(listed(&mine.body, &both) && listed(&mine.body, &finance_only), "{}", mine.body);

    // Carol covers finance on the second one: it still needs risk, which she does not hold.
    let (status, _) = srv
        .api(
            reqwest::Method::POST,
            &srv.token("approver", "carol@example.com"),
            &format!("/v1/reviews/{both}/decisions"),
            Some(json!({"decision": "approve", "comment": "budget ok"})),
        )
        .await;
    assert_eq!(status, 200);
    let mine = carol.get("/ui/reviews?status=pending&mine=1").await;
    assert!(!listed(&mine.body, &both) && listed(&mine.body, &finance_only), "{}", mine.body);
    assert!(erin.get("/ui/reviews?status=pending&mine=1").await.body.contains(&both));
    // The admin holds no role: no such filter offered.
    let mut admin = WebUser::new(&srv.base);
    assert_eq!(admin.login(&srv.admin).await.status, 303);
    assert!(!admin.get("/ui/").await.body.contains("f-mine"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counterpartys_history_shows_its_cases_reviewed_or_not() {
    let srv = start().await;
    // An earlier small order with the same counterparty, authorized without review, by
    // another agent's flow (payments-bot pays Globex), and an earlier rejected review.
    let (status, body) = srv
        .api(
            reqwest::Method::POST,
            &srv.token("agent", "payments-bot"),
            "/v1/requests",
            Some(json!({"action": "payment.send", "counterparty": "globex",
                        "amount": {"value": "120.00", "currency": "USD"}, "audience": "bank", "description": "toner"})),
        )
        .await;
    assert_eq!((status, &body["verdict"]), (201, &json!("authorized")), "{body}");
    let unreviewed = body["case_id"].as_str().unwrap().to_owned();
    let (_, earlier) = srv.escalated_po("monitors").await;
    let (status, _) = srv
        .api(
            reqwest::Method::POST,
            &srv.token("approver", "frank@example.com"),
            &format!("/v1/reviews/{earlier}/decisions"),
            Some(json!({"decision": "reject", "comment": "Duplicate"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, review) = srv.escalated_po("laptops").await;
    let mut carol = WebUser::new(&srv.base);
    assert_eq!(carol.login(&srv.token("approver", "carol@example.com")).await.status, 303);
    let page = carol.get(&format!("/ui/reviews/{review}")).await;
    let b = &page.body;
    let table = &b[b.find("id=\"counterparty-recent\"").expect("the counterparty's history")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains(&unreviewed) && table.contains("payments-bot"), "the unreviewed case: {table}");
    assert!(table.contains("not reviewed"), "{table}");
    assert!(table.contains(&format!("<a href=\"/ui/reviews/{earlier}\">")), "the reviewed one, linked: {table}");
    assert!(table.contains("Frank (CFO) (frank@example.com) (finance, risk) rejected: “Duplicate”"), "{table}");
    assert!(!table.contains(&format!("/ui/reviews/{review}\"")), "not the case itself");
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

    async fn clear(&self, el: &str) {
        let (s, v) = self.call(reqwest::Method::POST, &format!("/element/{el}/clear"), None).await;
        assert_eq!(s, 200, "clear: {v}");
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

    /// Saves a screenshot as an artefact of the test run: in `AGENTSIGNA_UI_SCREENSHOTS`
    /// if set, else under the target directory (`<target>/tmp/ui-screenshots`).
    async fn screenshot(&self, name: &str) {
        let dir = std::env::var_os("AGENTSIGNA_UI_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
        std::fs::create_dir_all(&dir).unwrap();
        use base64::Engine as _;
        let (_, v) = self.call(reqwest::Method::GET, "/screenshot", None).await;
        if let Some(b64) = v.as_str() {
            let png = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Runs a script in the page and returns its value.
    async fn exec(&self, script: &str) -> Value {
        let (s, v) =
            self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await;
        assert_eq!(s, 200, "script: {v}");
        v
    }

    /// Sets the browser window to `width` × `height` CSS pixels of viewport.
    async fn viewport(&self, width: i64, height: i64) {
        let (s, v) =
            self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
        assert_eq!(s, 200, "resize: {v}");
        // The window's frame (if any) takes room: grow the window until the viewport fits.
        let inner = self.exec("return [window.innerWidth, window.innerHeight]").await;
        let (iw, ih) = (inner[0].as_i64().unwrap(), inner[1].as_i64().unwrap());
        if (iw, ih) != (width, height) {
            let body = json!({"width": 2 * width - iw, "height": 2 * height - ih});
            let (s, v) = self.call(reqwest::Method::POST, "/window/rect", Some(body)).await;
            assert_eq!(s, 200, "resize: {v}");
        }
    }

    /// The page does not scroll sideways.
    async fn assert_no_sideways_scroll(&self, page: &str) {
        let v = self.exec("return [document.documentElement.scrollWidth, window.innerWidth]").await;
        let (sw, iw) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
        if sw > iw {
            let wide = self
                .exec(
                    "return [...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > window.innerWidth
                        || e.scrollWidth > e.clientWidth + 1)
                        .slice(-8).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right) + ' ' + e.scrollWidth + '/' + e.clientWidth)",
                )
                .await;
            panic!("{page} scrolls sideways at {iw} px: {sw} px wide; widest: {wide}");
        }
    }

    /// Runs axe-core on the page: no WCAG 2 A/AA violation.
    async fn assert_accessible(&self, axe: &str, page: &str) {
        self.exec(&format!("{axe}\n;return true;")).await;
        let script = "const done = arguments[arguments.length - 1];
            axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
              .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at '
                  + v.nodes.map(n => n.target.join(' ')).join(', '))))
              .catch(e => done(['axe failed: ' + e]));";
        let (s, v) =
            self.call(reqwest::Method::POST, "/execute/async", Some(json!({"script": script, "args": []}))).await;
        assert_eq!(s, 200, "axe: {v}");
        let violations = v.as_array().cloned().unwrap_or_default();
        assert!(violations.is_empty(), "{page}: WCAG 2 AA violations: {violations:#?}");
    }

    /// The bottom of an element, in CSS pixels from the top of the page.
    async fn bottom_of(&self, css: &str) -> f64 {
        let v = self
            .exec(&format!(
                "const e = document.querySelector({css:?}); const r = e.getBoundingClientRect(); return r.bottom + window.scrollY;"
            ))
            .await;
        v.as_f64().unwrap_or_else(|| panic!("no {css}: {v}"))
    }

    /// The top of an element, in CSS pixels from the top of the page.
    async fn top_of(&self, css: &str) -> f64 {
        let v = self
            .exec(&format!(
                "const e = document.querySelector({css:?}); const r = e.getBoundingClientRect(); return r.top + window.scrollY;"
            ))
            .await;
        v.as_f64().unwrap_or_else(|| panic!("no {css}: {v}"))
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
    let axe_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/axe/node_modules/axe-core/axe.min.js");
    let axe = match std::fs::read_to_string(&axe_path) {
        Ok(a) => Some(a),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("axe-core is not installed at {} (cd crates/server/tests/axe && npm ci)", axe_path.display())
        }
        Err(_) => {
            eprintln!("axe-core not found at {}: the accessibility checks are SKIPPED", axe_path.display());
            None
        }
    };
    let srv = start().await;
    let (case_id, review) = srv.escalated_po("40 laptops for onboarding").await;
    // Another review waiting for finance, for the role filter and the link to the next one.
    let (_, waiting) = srv.escalated_po("docking stations").await;
    // History beside the review: an earlier decided review of the same agent and counterparty.
    let (_, earlier) = srv.escalated_po("monitors").await;
    let (status, body) = srv
        .api(
            reqwest::Method::POST,
            &srv.token("approver", "frank@example.com"),
            &format!("/v1/reviews/{earlier}/decisions"),
            Some(json!({"decision": "reject", "comment": "Duplicate of last week's order"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

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
                     "--no-first-run", "--window-size=1366,768", "--hide-scrollbars",
                     format!("--user-data-dir={}", profile.path().display())],
        },
    }}});
    let resp = http.post(format!("{wd_base}/session")).json(&caps).send().await.expect("new session");
    let v: Value = resp.json().await.unwrap();
    let session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_owned();
    let wd = WebDriver { http, base: wd_base, session };

    wd.viewport(1366, 768).await;
    let check = |page: &'static str| {
        let axe = axe.clone();
        let wd = &wd;
        async move {
            if let Some(axe) = &axe {
                wd.assert_accessible(axe, page).await;
            }
        }
    };

    // Not signed in: the queue sends the browser to the login form.
    wd.goto(&format!("{}/ui/", srv.base)).await;
    let token_field = wd.wait_for("input[name=token]").await;
    wd.screenshot("1-login").await;
    check("login").await;
    wd.viewport(390, 844).await;
    wd.assert_no_sideways_scroll("login").await;
    wd.screenshot("1-login-390").await;
    wd.viewport(1366, 768).await;
    wd.type_into(&token_field, &srv.token("approver", "carol@example.com")).await;
    let sign_in = wd.wait_for("#sign-in").await;
    wd.click(&sign_in).await;

    // The queue shows the escalated request; open it.
    let link = wd.wait_for(&format!("a[href='/ui/reviews/{review}']")).await;
    wd.screenshot("2-queue").await;
    check("queue").await;
    assert!(wd.source().await.contains("large-po"));
    let title = wd.exec("return document.title").await;
    assert!(title.as_str().unwrap().starts_with("Reviews waiting for a decision (2)"), "{title}");
    let current = wd.exec("return document.querySelector('nav a[aria-current=page]').textContent").await;
    assert_eq!(current, "Review queue");
    wd.click(&link).await;

    // The case page: the decision summary and the Approve button within the first
    // 1366 × 768 viewport.
    wd.wait_for_text(".rule-id", "large-po").await;
    let trust = wd.wait_for("#agent-trust").await;
    assert_eq!(wd.text(&trust).await, "50");
    assert!(wd.source().await.contains("purchase_order.create"));
    for css in ["#summary", "#approvals", "#approve", "#reject"] {
        let bottom = wd.bottom_of(css).await;
        assert!(bottom <= 768.0, "{css} ends at {bottom} px, below the first 768 px");
    }
    // The counterparty's history: the earlier review, who decided and why, linked.
    let history = wd.wait_for(&format!("#counterparty-recent a[href='/ui/reviews/{earlier}']")).await;
    assert!(!wd.text(&history).await.is_empty());
    assert!(
        wd.source().await.contains(
            "Frank (CFO) (frank@example.com) (finance, risk) rejected: “Duplicate of last week&apos;s order”"
        ) || wd
            .source()
            .await
            .contains("Frank (CFO) (frank@example.com) (finance, risk) rejected: “Duplicate of last week's order”")
    );
    wd.screenshot("3-case").await;
    check("case").await;

    // At 390 px: no page scrolls sideways, the case page keeps the summary's order.
    wd.viewport(390, 844).await;
    wd.assert_no_sideways_scroll("case").await;
    assert!(wd.top_of("#summary").await < wd.top_of("#decide").await);
    assert!(wd.top_of("#decide").await < wd.top_of("#request").await);
    wd.screenshot("3-case-390").await;
    wd.goto(&format!("{}/ui/", srv.base)).await;
    wd.wait_for("#queue").await;
    wd.assert_no_sideways_scroll("queue").await;
    wd.screenshot("2-queue-390").await;
    wd.goto(&format!("{}/ui/reviews/no-such-review", srv.base)).await;
    wd.wait_for("h1").await;
    wd.assert_no_sideways_scroll("error").await;
    wd.screenshot("5-error-390").await;
    wd.viewport(1366, 768).await;
    check("error").await;
    wd.goto(&format!("{}/ui/reviews/{review}", srv.base)).await;

    // Approve with a comment.
    let comment = wd.wait_for("#comment").await;
    wd.type_into(&comment, "Budget confirmed by finance").await;
    let approve = wd.wait_for("#approve").await;
    wd.click(&approve).await;
    wd.wait_for_text("#review-status", "Approved").await;
    wd.wait_for("#flash").await;
    wd.screenshot("4-approved").await;
    // Reloading the page after the decision submits nothing again (post/redirect/get).
    let (s, v) = wd.call(reqwest::Method::POST, "/refresh", None).await;
    assert_eq!(s, 200, "refresh: {v}");
    wd.wait_for_text("#review-status", "Approved").await;
    let decided = wd.exec("return document.querySelectorAll('#timeline code').length").await;
    assert!(decided.as_i64().unwrap() > 0);

    // The role filter: only the reviews still needing a role Carol holds.
    wd.goto(&format!("{}/ui/reviews?status=all", srv.base)).await;
    let mine = wd.wait_for("#f-mine").await;
    wd.click(&mine).await;
    let show = wd.wait_for("form.filters button[type=submit]").await;
    wd.click(&show).await;
    wd.wait_for_text("#queue-count", "(1)").await;
    wd.wait_for(&format!("#queue a[href='/ui/reviews/{waiting}']")).await;
    let url = wd.exec("return location.search").await;
    assert!(url.as_str().unwrap().contains("mine=1"), "{url}");

    // The time zone: chosen on the settings page, kept after a reload and on other pages.
    let link = wd.wait_for("#zone-link").await;
    assert_eq!(wd.text(&link).await, "Times in UTC");
    wd.click(&link).await;
    let zone = wd.wait_for("#time_zone").await;
    wd.clear(&zone).await;
    wd.type_into(&zone, "Asia/Tokyo").await;
    let save = wd.wait_for("#save-zone").await;
    wd.click(&save).await;
    wd.wait_for("#flash").await;
    wd.wait_for_text("#zone-now", "Asia/Tokyo").await;
    wd.screenshot("6-settings").await;
    check("settings").await;
    let (s, v) = wd.call(reqwest::Method::POST, "/refresh", None).await;
    assert_eq!(s, 200, "refresh: {v}");
    wd.wait_for_text("#zone-now", "Asia/Tokyo").await;
    wd.wait_for_text("#zone-link", "Times in Asia/Tokyo").await;
    wd.goto(&format!("{}/ui/reviews/{review}", srv.base)).await;
    wd.wait_for_text("#zone-link", "Times in Asia/Tokyo").await;
    let source = wd.source().await;
    assert!(source.contains(" Asia/Tokyo (") && !source.contains(" UTC ("), "times in the chosen zone, named");
    wd.viewport(390, 844).await;
    wd.goto(&format!("{}/ui/settings", srv.base)).await;
    wd.wait_for("#time_zone").await;
    wd.assert_no_sideways_scroll("settings").await;
    wd.screenshot("6-settings-390").await;
    wd.quit().await;
    let (_, case) = srv.api(reqwest::Method::GET, &srv.admin, &format!("/v1/cases/{case_id}"), None).await;
    let decisions = case["events"].as_array().unwrap().iter().filter(|e| e["type"] == "review.decided").count();
    assert_eq!(decisions, 1, "a reload records nothing more");

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

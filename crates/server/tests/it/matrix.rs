//! The authorization matrix: every route × every kind of principal → the expected
//! status, from one table, against a real server on loopback.
//!
//! The table must name exactly the routes the server serves (`agentsigna::router::route_list`,
//! the list the router itself is built from): a route added without a row, or a row
//! whose route is gone, fails the test. Rows whose call changes state get a fresh case
//! per cell. The web pages are called with a session cookie for the principals that can
//! sign in (approvers, the admin) and with the bearer credential otherwise (which the
//! pages ignore: no session).

use std::collections::{BTreeSet, HashMap};

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::*;

/// The columns: who calls.
const WHO: [&str; 9] = [
    "anonymous",
    "agent (own case)",
    "agent (other's case)",
    "approver (with the role)",
    "approver (without the role)",
    "approver (owner of the agent)",
    "system (addressed)",
    "system (other)",
    "admin",
];

/// What a row needs before each call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fresh {
    /// Nothing: the shared escalated case (`$CASE`, `$REVIEW`) serves.
    No,
    /// A new escalated purchase order of procurement-bot (finance review).
    Escalated,
    /// A new authorized purchase order with its passport (`$PASSPORT`).
    Authorized,
}

/// How the body is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Json(&'static str),
    /// A web form (`$CSRF` is the session's CSRF token).
    Form(&'static [(&'static str, &'static str)]),
}

struct Row {
    method: Method,
    /// The route as the router names it.
    route: &'static str,
    /// The path called (`$CASE`, `$REVIEW`, `$N` replaced).
    path: &'static str,
    fresh: Fresh,
    body: Body,
    /// One status per column of [`WHO`].
    expect: [u16; 9],
}

const fn row(
    method: Method,
    route: &'static str,
    path: &'static str,
    fresh: Fresh,
    body: Body,
    expect: [u16; 9],
) -> Row {
    Row { method, route, path, fresh, body, expect }
}

// Frequent patterns of expected statuses (columns as in `WHO`).
const PUBLIC: [u16; 9] = [200; 9];
const ADMIN_ONLY: [u16; 9] = [401, 403, 403, 403, 403, 403, 403, 403, 200];
const ADMIN_CREATES: [u16; 9] = [401, 403, 403, 403, 403, 403, 403, 403, 201];
const STAFF_READ: [u16; 9] = [401, 403, 403, 200, 200, 200, 403, 403, 200];
const CASE_READ: [u16; 9] = [401, 200, 404, 200, 200, 200, 200, 404, 200];
const ANY_PRINCIPAL: [u16; 9] = [401, 200, 200, 200, 200, 200, 200, 200, 200];
/// A web page that needs a session: the sign-in redirect without one.
const PAGE: [u16; 9] = [303, 303, 303, 200, 200, 200, 303, 303, 200];

#[rustfmt::skip]
fn table() -> Vec<Row> {
    use Body::{Form, Json};
    use Fresh::{Authorized, Escalated, No};
    let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
    vec![
        row(get.clone(), "/healthz", "/healthz", No, Body::None, PUBLIC),
        row(get.clone(), "/.well-known/jwks.json", "/.well-known/jwks.json", No, Body::None, PUBLIC),
        row(get.clone(), "/readyz", "/readyz", No, Body::None, PUBLIC),
        row(get.clone(), "/openapi.json", "/openapi.json", No, Body::None, PUBLIC),
        row(get.clone(), "/metrics", "/metrics", No, Body::None, ADMIN_ONLY),
        row(post.clone(), "/v1/agents", "/v1/agents", No, Json(r#"{"id":"m-agent-$N","owner":"x@example.com"}"#), ADMIN_CREATES),
        row(get.clone(), "/v1/agents/{id}", "/v1/agents/procurement-bot", No, Body::None, [401, 200, 403, 200, 200, 200, 403, 403, 200]),
        row(post.clone(), "/v1/agents/{id}/suspend", "/v1/agents/contracts-bot/suspend", No, Json("{}"), ADMIN_ONLY),
        row(post.clone(), "/v1/agents/{id}/resume", "/v1/agents/contracts-bot/resume", No, Json("{}"), ADMIN_ONLY),
        row(post.clone(), "/v1/agents/{id}/revoke", "/v1/agents/m-victim/revoke", No, Json("{}"), ADMIN_ONLY),
        row(post.clone(), "/v1/approvers", "/v1/approvers", No, Json(r#"{"id":"m$N@example.com","roles":["finance"]}"#), ADMIN_CREATES),
        row(post.clone(), "/v1/approvers/{id}/revoke", "/v1/approvers/victim@example.com/revoke", No, Json("{}"), ADMIN_ONLY),
        row(post.clone(), "/v1/systems", "/v1/systems", No, Json(r#"{"id":"m-sys-$N"}"#), ADMIN_CREATES),
        // A system reads only its own record; anyone else is told it does not exist.
        row(get.clone(), "/v1/systems/{id}", "/v1/systems/erp", No, Body::None, [401, 404, 404, 404, 404, 404, 200, 404, 200]),
        row(put.clone(), "/v1/counterparties/{id}", "/v1/counterparties/matrix-co", No, Json(r#"{"name":"Matrix Co","risk":"low"}"#), ADMIN_ONLY),
        row(get.clone(), "/v1/counterparties/{id}", "/v1/counterparties/acme", No, Body::None, STAFF_READ),
        row(get.clone(), "/v1/actions", "/v1/actions", No, Body::None, ANY_PRINCIPAL),
        row(put.clone(), "/v1/actions/{type}", "/v1/actions/matrix.test", No, Json(r#"{"description":"x"}"#), ADMIN_ONLY),
        row(post.clone(), "/v1/policies", "/v1/policies", No, Json("$POLICY"), ADMIN_CREATES),
        row(get.clone(), "/v1/policies", "/v1/policies", No, Body::None, STAFF_READ),
        row(put.clone(), "/v1/policies/shadow", "/v1/policies/shadow", No, Json(r#"{"version":1}"#), ADMIN_ONLY),
        row(get.clone(), "/v1/policies/shadow", "/v1/policies/shadow", No, Body::None, STAFF_READ),
        row(delete.clone(), "/v1/policies/shadow", "/v1/policies/shadow", No, Body::None, ADMIN_ONLY),
        row(get.clone(), "/v1/policies/{version}", "/v1/policies/1", No, Body::None, STAFF_READ),
        row(post.clone(), "/v1/policies/{version}/activate", "/v1/policies/1/activate", No, Json("{}"), ADMIN_ONLY),
        // Rule sources show thresholds: the same rule as the policy itself.
        row(get.clone(), "/v1/policies/{version}/rules/{rule}", "/v1/policies/1/rules/large-po", No, Body::None, STAFF_READ),
        row(post.clone(), "/v1/requests", "/v1/requests", No, Json("$PO"), [401, 201, 201, 403, 403, 403, 403, 403, 403]),
        row(get.clone(), "/v1/cases", "/v1/cases", No, Body::None, ANY_PRINCIPAL),
        row(get.clone(), "/v1/cases/{id}", "/v1/cases/$CASE", No, Body::None, CASE_READ),
        row(get.clone(), "/v1/cases/{id}/evidence", "/v1/cases/$CASE/evidence", No, Body::None, CASE_READ),
        row(post.clone(), "/v1/cases/{id}/execution", "/v1/cases/$CASE/execution", Authorized, Json(r#"{"passport_id":"$PASSPORT"}"#), [401, 200, 404, 403, 403, 403, 200, 404, 200]),
        // Agents may report only their failures: `completed` from its own agent is 403.
        row(post.clone(), "/v1/cases/{id}/outcome", "/v1/cases/$CASE/outcome", Authorized, Json(r#"{"outcome":"completed"}"#), [401, 403, 404, 200, 200, 200, 200, 404, 200]),
        row(get.clone(), "/v1/reviews", "/v1/reviews", No, Body::None, STAFF_READ),
        row(get.clone(), "/v1/reviews/{id}", "/v1/reviews/$REVIEW", No, Body::None, STAFF_READ),
        // The owner of the agent may not decide; the admin reads but does not decide; an
        // approver without the role is recorded (the review still needs the role).
        row(post.clone(), "/v1/reviews/{id}/decisions", "/v1/reviews/$REVIEW/decisions", Escalated, Json(r#"{"decision":"approve","comment":"ok"}"#), [401, 403, 403, 200, 200, 403, 403, 403, 403]),
        row(get.clone(), "/v1/ledger/checkpoint", "/v1/ledger/checkpoint", No, Body::None, PUBLIC),
        row(get.clone(), "/v1/ledger/key", "/v1/ledger/key", No, Body::None, PUBLIC),
        row(get.clone(), "/v1/ledger/entries", "/v1/ledger/entries?start=0", No, Body::None, STAFF_READ),
        row(get.clone(), "/v1/ledger/proof/inclusion", "/v1/ledger/proof/inclusion?index=0&size=1", No, Body::None, STAFF_READ),
        row(get.clone(), "/v1/ledger/proof/consistency", "/v1/ledger/proof/consistency?from=1&to=1", No, Body::None, STAFF_READ),
        // The web pages.
        row(get.clone(), "/ui", "/ui", No, Body::None, [303; 9]),
        row(get.clone(), "/ui/", "/ui/", No, Body::None, PAGE),
        row(get.clone(), "/ui/reviews", "/ui/reviews", No, Body::None, PAGE),
        row(get.clone(), "/ui/login", "/ui/login", No, Body::None, [200, 200, 200, 303, 303, 303, 200, 200, 303]),
        // Signing in with one's own credential (the form carries it, not a cookie).
        row(post.clone(), "/ui/login", "/ui/login", No, Form(&[]), [401, 403, 403, 303, 303, 303, 403, 403, 303]),
        row(post.clone(), "/ui/logout", "/ui/logout", No, Form(&[("csrf", "$CSRF")]), [303; 9]),
        row(get.clone(), "/ui/reviews/{id}", "/ui/reviews/$REVIEW", No, Body::None, PAGE),
        // Post/redirect/get: a decision form always answers 303, to the login page without a
        // session and to the case page with one; a refused decision (the agent's owner, the
        // admin) is shown there and not recorded, as the engine refuses it (see the API row above).
        row(post.clone(), "/ui/reviews/{id}/decision", "/ui/reviews/$REVIEW/decision", Escalated, Form(&[("csrf", "$CSRF"), ("decision", "approve"), ("comment", "")]), [303; 9]),
        // Opening the decision URL (e.g. reloading after a refusal) leads back to the case page.
        row(get.clone(), "/ui/reviews/{id}/decision", "/ui/reviews/$REVIEW/decision", No, Body::None, [303; 9]),
        row(get.clone(), "/ui/settings", "/ui/settings", No, Body::None, PAGE),
        row(post.clone(), "/ui/settings", "/ui/settings", No, Form(&[("csrf", "$CSRF"), ("time_zone", "Europe/Berlin")]), [303; 9]),
        row(get.clone(), "/ui/favicon.svg", "/ui/favicon.svg", No, Body::None, [200; 9]),
        row(get, "/ui/{*rest}", "/ui/no-such-page", No, Body::None, [404; 9]),
    ]
}

/// A cell's principal: its bearer credential and whether it signs in to the pages.
struct Caller {
    token: Option<String>,
    signs_in: bool,
}

fn callers(s: &Server) -> Vec<Caller> {
    let c = |t: String, signs_in: bool| Caller { token: Some(t), signs_in };
    vec![
        Caller { token: None, signs_in: false },
        c(s.bot(), false),
        c(s.agent("payments-bot"), false),
        c(s.carol(), true),
        c(s.erin(), true),
        c(s.approver("alice@example.com"), true),
        c(s.erp(), false),
        c(s.system("bank"), false),
        c(s.admin.clone(), true),
    ]
}

/// A browser without JavaScript: keeps cookies, does not follow redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(base: &str) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser { http, base: base.to_owned(), cookies: HashMap::new() }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> (u16, String) {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let req = if cookie.is_empty() { req } else { req.header("cookie", cookie) };
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        for c in resp.headers().get_all("set-cookie") {
            let c = c.to_str().expect("cookie");
            if let Some((name, value)) = c.split(';').next().and_then(|p| p.split_once('=')) {
                if value.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        (status, resp.text().await.expect("body"))
    }

    fn csrf_of(html: &str) -> String {
        let marker = "name=\"csrf\" value=\"";
        html.find(marker)
            .map(|at| html[at + marker.len()..].split('"').next().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    /// Posts the sign-in form with `token`; returns the status.
    async fn sign_in(&mut self, token: &str) -> u16 {
        let (status, form) = self.send(self.http.get(format!("{}/ui/login", self.base))).await;
        assert_eq!(status, 200, "{form}");
        let csrf = Browser::csrf_of(&form);
        let fields = [("token", token), ("csrf", csrf.as_str()), ("next", "/ui/")];
        self.send(self.http.post(format!("{}/ui/login", self.base)).form(&fields)).await.0
    }

    /// The CSRF token of the session (from the queue page).
    async fn session_csrf(&mut self) -> String {
        let (_, page) = self.send(self.http.get(format!("{}/ui/", self.base))).await;
        Browser::csrf_of(&page)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_principal_as_the_table_says() {
    let table = table();

    // The table names exactly the routes the server serves.
    let served: BTreeSet<(String, String)> =
        agentsigna::router::route_list().into_iter().map(|(m, p)| (m.to_string(), p.to_owned())).collect();
    let tabled: BTreeSet<(String, String)> = table.iter().map(|r| (r.method.to_string(), r.route.to_owned())).collect();
    assert_eq!(tabled.len(), table.len(), "one row per route");
    let missing: Vec<_> = served.difference(&tabled).collect();
    assert!(missing.is_empty(), "routes without a row in the matrix: {missing:?}");
    let stale: Vec<_> = tabled.difference(&served).collect();
    assert!(stale.is_empty(), "rows for routes the server does not serve: {stale:?}");

    let s = Server::start().await;
    s.post(&s.admin, "/v1/agents", &json!({"id": "m-victim", "owner": "v@example.com"})).await.expect(201);
    s.post(&s.admin, "/v1/approvers", &json!({"id": "victim@example.com", "roles": ["risk"]})).await.expect(201);
    let source = s.get(&s.admin, "/v1/policies/1").await.json["source"].clone();
    let policy = json!({"source": source, "activate": false}).to_string();
    let po = po_body("acme", "10.00").to_string();
    let escalated = || async {
        let r = s.po("globex", "40000.00").await;
        assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
        (r.get("case_id").as_str().expect("case").to_owned(), r.json["review"]["id"].as_str().expect("rev").to_owned())
    };
    let (shared_case, shared_review) = escalated().await;
    let callers = callers(&s);

    let mut failures = Vec::new();
    let mut n = 0;
    for r in &table {
        for (col, who) in callers.iter().enumerate() {
            n += 1;
            let (mut case, mut review, mut passport) = (shared_case.clone(), shared_review.clone(), String::new());
            match r.fresh {
                Fresh::No => {}
                Fresh::Escalated => (case, review) = escalated().await,
                Fresh::Authorized => {
                    let a = s.po("acme", "10.00").await;
                    assert_eq!(a.get("verdict"), "authorized", "{}", a.text);
                    case = a.get("case_id").as_str().expect("case").to_owned();
                    let c = s.case(&s.bot(), &case).await;
                    passport = c.json["passport_info"]["id"].as_str().expect("passport id").to_owned();
                }
            }
            let fill = |t: &str| {
                t.replace("$CASE", &case)
                    .replace("$REVIEW", &review)
                    .replace("$PASSPORT", &passport)
                    .replace("$N", &n.to_string())
                    .replace("$POLICY", &policy)
                    .replace("$PO", &po)
            };
            let path = fill(r.path);
            let status = if path.starts_with("/ui") {
                let mut b = Browser::new(&s.base);
                let signs_in = who.signs_in && !(r.method == Method::POST && r.route == "/ui/login");
                if signs_in {
                    assert_eq!(b.sign_in(who.token.as_deref().unwrap_or_default()).await, 303, "{} signs in", WHO[col]);
                }
                let csrf = if signs_in { b.session_csrf().await } else { "not-a-session".to_owned() };
                let url = format!("{}{path}", s.base);
                let mut req = b.http.request(r.method.clone(), url);
                if let Some(t) = &who.token {
                    req = req.bearer_auth(t);
                }
                match r.body {
                    Body::Form(_) if r.route == "/ui/login" => {
                        b.sign_in(who.token.as_deref().unwrap_or_default()).await
                    }
                    Body::Form(fields) => {
                        let fields: Vec<(String, String)> =
                            fields.iter().map(|(k, v)| ((*k).to_owned(), v.replace("$CSRF", &csrf))).collect();
                        b.send(req.form(&fields)).await.0
                    }
                    _ => b.send(req).await.0,
                }
            } else {
                let body: Option<Value> = match r.body {
                    Body::Json(t) => Some(serde_json::from_str(&fill(t)).expect("row body")),
                    _ => None,
                };
                s.call(r.method.clone(), who.token.as_deref(), &path, body.as_ref()).await.status
            };
            if status != r.expect[col] {
                failures.push(format!("{} {path} as {}: {status}, expected {}", r.method, WHO[col], r.expect[col]));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {n} cells differ:\n{}", failures.len(), failures.join("\n"));
}

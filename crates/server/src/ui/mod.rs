//! The approver web pages under `/ui/`: sign in with the approver token, the review queue,
//! the case page with its full context and timeline, and the decision form.
//!
//! Server-rendered HTML (askama, escaped by default), usable without JavaScript; every
//! form carries a CSRF token; nothing of a review is shown without a session. Like the
//! JSON API, the handlers only parse, authenticate and call the engine: every rule of the
//! review (who may decide, quorum, roles, deadlines) lives in `agentsigna-core`.

pub mod pages;
pub mod session;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::http::problem::ApiError;
use crate::http::table::Routes;
use crate::secret::same_secret;
use crate::state::AppState;
use agentsigna_core::access::{self, Op};
use agentsigna_core::engine::review::DecisionInput;
use agentsigna_core::model::Principal;
use pages::{render, Chrome, ErrorPage, LoginPage, QueuePage};
use session::{set_cookie, Current, LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL};

/// How long the login form's CSRF cookie lives.
const LOGIN_FORM_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Largest form body the pages accept (a sign-in or a decision with its comment).
pub const MAX_FORM_BODY: usize = 64 * 1024;

/// The routes of the web pages.
pub fn routes() -> Routes {
    Routes::new()
        .get("/ui", || async { Redirect::to("/ui/") })
        .get("/ui/", queue)
        .get("/ui/reviews", queue)
        .get("/ui/login", login_form)
        .post("/ui/login", login)
        .post("/ui/logout", logout)
        .get("/ui/reviews/{id}", review)
        .post("/ui/reviews/{id}/decision", decide)
        .get("/ui/{*rest}", not_found)
        .map(|r| {
            r.layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BODY))
                .layer(axum::middleware::from_fn(refuse_large_forms))
        })
}

/// A form whose declared length is over the limit is refused before it is read (a body
/// without a declared length is cut at the limit by the form extractor: 413 as well).
async fn refuse_large_forms(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BODY as u64) {
        return error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            Chrome::default(),
            "Too large",
            "The form is too large.",
            "/ui/",
        );
    }
    next.run(req).await
}

/// An HTML response with the headers every page carries: no caching (pages show
/// review data), no framing, no scripts at all, forms only to this origin.
fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}

fn with_cookie(mut resp: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The session of a request, if its principal's credential was not revoked since it
/// signed in (a revoked approver's sessions end at their next page).
async fn current(s: &AppState, headers: &HeaderMap) -> Option<Current> {
    let cur = s.sessions.current(headers)?;
    if let Err(agentsigna_core::Error::Unauthenticated(_)) = s.engine.still_valid(&cur.principal).await {
        s.sessions.remove(&cur.id);
        return None;
    }
    Some(cur)
}

fn display_name(p: &Principal) -> String {
    match p {
        Principal::Admin => "admin".to_owned(),
        Principal::Approver(id) | Principal::Agent(id) | Principal::System(id) => id.clone(),
    }
}

fn chrome(cur: &Current) -> Chrome {
    Chrome { user: Some(display_name(&cur.principal)), csrf: cur.csrf.clone() }
}

fn error_page(status: StatusCode, chrome: Chrome, title: &str, message: impl Into<String>, back: &str) -> Response {
    html(status, render(&ErrorPage { chrome, title: title.to_owned(), message: message.into(), back: back.to_owned() }))
}

/// Only `/ui/…` paths, never another origin (`//host`) or scheme, are followed after login.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains(['\\', '\r', '\n']) && n.len() <= 512 =>
        {
            n.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

/// Percent-encodes a path for the `next` query parameter.
fn encode_query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn to_login(next: &str) -> Response {
    see_other(&format!("/ui/login?next={}", encode_query(next)))
}

async fn not_found(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let chrome = current(&s, &headers).await.map(|c| chrome(&c)).unwrap_or_default();
    error_page(StatusCode::NOT_FOUND, chrome, "Not found", "There is no page here.", "/ui/")
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_form(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    if current(&s, &headers).await.is_some() {
        return see_other(&next);
    }
    login_page(&s, &headers, StatusCode::OK, next, None)
}

/// The login form, with a fresh CSRF token in a short-lived cookie (double submit: no
/// session exists yet to hold it).
fn login_page(s: &AppState, headers: &HeaderMap, status: StatusCode, next: String, error: Option<String>) -> Response {
    let csrf = session::random_token();
    let page = LoginPage { chrome: Chrome::default(), csrf: csrf.clone(), next, error };
    let secure = s.sessions.secure_for(headers);
    with_cookie(html(status, render(&page)), set_cookie(LOGIN_COOKIE, &csrf, LOGIN_FORM_TTL, secure))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return form_refused(&rejection, Chrome::default(), "/ui/login"),
    };
    let expected = session::cookie(&headers, LOGIN_COOKIE);
    if !expected.is_some_and(|e| same_secret(&e, &form.csrf)) {
        return error_page(
            StatusCode::FORBIDDEN,
            Chrome::default(),
            "Forbidden",
            "The sign-in form expired or did not come from this site (CSRF check failed). Open the sign-in page again.",
            "/ui/login",
        );
    }
    let next = safe_next(form.next.as_deref());
    let token = form.token.trim();
    if token.is_empty() || token.len() > 256 {
        return login_page(&s, &headers, StatusCode::UNAUTHORIZED, next, Some("Enter your approver token.".to_owned()));
    }
    let principal = match s.engine.authenticate(token).await {
        Ok(p) => p,
        Err(_) => {
            return login_page(
                &s,
                &headers,
                StatusCode::UNAUTHORIZED,
                next,
                Some("That token is unknown or revoked.".to_owned()),
            )
        }
    };
    if access::check(&principal, Op::SignIn).is_err() {
        let whose = match &principal {
            Principal::Agent(id) => format!("That is the credential of agent {id}. "),
            Principal::System(id) => format!("That is the credential of target system {id}. "),
            _ => String::new(),
        };
        let message = format!("{whose}Only approvers (and the admin) sign in here.");
        return login_page(&s, &headers, StatusCode::FORBIDDEN, next, Some(message));
    }
    // A new id at every login: a session id known before login is worth nothing after it.
    if let Some(old) = session::cookie(&headers, SESSION_COOKIE) {
        s.sessions.remove(&old);
    }
    let id = s.sessions.create(principal);
    let secure = s.sessions.secure_for(&headers);
    let resp = with_cookie(see_other(&next), set_cookie(SESSION_COOKIE, &id, SESSION_TTL, secure));
    with_cookie(resp, set_cookie(LOGIN_COOKIE, "", std::time::Duration::ZERO, secure))
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Some(cur) = current(&s, &headers).await else { return see_other("/ui/login") };
    let csrf = match form {
        Ok(Form(f)) => f.csrf,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return form_refused(&rejection, chrome(&cur), "/ui/");
        }
        Err(_) => String::new(),
    };
    if !same_secret(&cur.csrf, &csrf) {
        return csrf_refused(&cur);
    }
    s.sessions.remove(&cur.id);
    let secure = s.sessions.secure_for(&headers);
    with_cookie(see_other("/ui/login"), set_cookie(SESSION_COOKIE, "", std::time::Duration::ZERO, secure))
}

/// The page for a form that could not be read: 413 when the body is over the limit,
/// 400 otherwise.
fn form_refused(rejection: &FormRejection, chrome: Chrome, back: &str) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return error_page(StatusCode::PAYLOAD_TOO_LARGE, chrome, "Too large", "The form is too large.", back);
    }
    error_page(StatusCode::BAD_REQUEST, chrome, "Bad request", "The form could not be read.", back)
}

fn csrf_refused(cur: &Current) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        chrome(cur),
        "Forbidden",
        "This form did not come from your current session (CSRF check failed). Reload the page and try again.",
        "/ui/",
    )
}

#[derive(Deserialize)]
struct QueueQuery {
    status: Option<String>,
}

async fn queue(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<QueueQuery>) -> Response {
    let Some(cur) = current(&s, &headers).await else { return to_login("/ui/") };
    let status = q.status.filter(|v| !v.is_empty()).unwrap_or_else(|| "pending".to_owned());
    let doc = match s.engine.list_reviews(&cur.principal, Some(status.clone())).await {
        Ok(d) => d,
        Err(e) => return engine_error(&cur, e, "/ui/"),
    };
    let heading = match status.as_str() {
        "pending" => "Reviews waiting for a decision".to_owned(),
        "all" => "All reviews".to_owned(),
        other => format!("Reviews {other}"),
    };
    let page = QueuePage {
        chrome: chrome(&cur),
        heading,
        pending: status == "pending",
        items: pages::queue_items(&doc),
        flash: s.sessions.take_flash(&cur.id),
    };
    html(StatusCode::OK, render(&page))
}

fn engine_error(cur: &Current, e: agentsigna_core::Error, back: &str) -> Response {
    let api = ApiError::from(e);
    let title = api.title;
    error_page(api.status, chrome(cur), title, api.detail, back)
}

fn me(p: &Principal) -> Option<&str> {
    match p {
        Principal::Approver(id) => Some(id),
        _ => None,
    }
}

async fn review(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(cur) = current(&s, &headers).await else { return to_login(&format!("/ui/reviews/{id}")) };
    match s.engine.get_review(&cur.principal, &id).await {
        Ok(doc) => {
            let mut page = pages::review_page(&doc, chrome(&cur), me(&cur.principal), s.engine.clock().now_ms());
            page.flash = s.sessions.take_flash(&cur.id);
            html(StatusCode::OK, render(&page))
        }
        Err(e) => engine_error(&cur, e, "/ui/"),
    }
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
}

async fn decide(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let page_url = format!("/ui/reviews/{id}");
    let Some(cur) = current(&s, &headers).await else { return to_login(&page_url) };
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return form_refused(&rejection, chrome(&cur), &page_url),
    };
    if !same_secret(&cur.csrf, &form.csrf) {
        return csrf_refused(&cur);
    }
    let decision = form.decision.clone();
    let input = DecisionInput { decision: form.decision, comment: form.comment.clone() };
    match s.engine.decide_review(&cur.principal, &id, input).await {
        Ok(doc) => {
            let status = doc["review"]["status"].as_str().unwrap_or("pending").to_owned();
            let verb = if decision == "approve" { "approval" } else { "rejection" };
            let message = match status.as_str() {
                "pending" => format!("Your {verb} is recorded; the review still needs more approvals."),
                other => format!("Your {verb} is recorded; the review is now {other}."),
            };
            s.sessions.set_flash(&cur.id, message);
            see_other(&page_url)
        }
        Err(e) => {
            let api = ApiError::from(e);
            // Show the refusal on the case page itself, with the comment kept.
            match s.engine.get_review(&cur.principal, &id).await {
                Ok(doc) => {
                    let mut page =
                        pages::review_page(&doc, chrome(&cur), me(&cur.principal), s.engine.clock().now_ms());
                    page.error = Some(format!("{}: {}", api.title, api.detail));
                    page.comment = form.comment;
                    html(api.status, render(&page))
                }
                Err(_) => error_page(api.status, chrome(&cur), api.title, api.detail, &page_url),
            }
        }
    }
}

//! The approver web pages under `/ui/`: sign in with the approver token, the review queue,
//! the case page with its full context and timeline, and the decision form.
//!
//! Server-rendered HTML (askama, escaped by default), usable without JavaScript; every
//! form carries a CSRF token; nothing of a review is shown without a session. Like the
//! JSON API, the handlers only parse, authenticate and call the engine: every rule of the
//! review (who may decide, quorum, roles, deadlines) lives in `agentsigna-core`.

pub mod format;
pub mod pages;
pub mod queue_view;
pub mod review_view;
pub mod session;
mod settings;

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
use agentsigna_core::store::ReviewFilter;
use format::{Times, Zone};
use pages::{render, Chrome, ErrorPage, LoginPage, QueuePage};
use session::{set_cookie, Current, FormError, LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL};

/// Settings of the pages (`agentsigna serve` flags).
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// Approving a request whose amount is above this (in the currency's major units,
    /// whatever the currency) needs the amount retyped (`--confirm-above`).
    pub confirm_above: Option<f64>,
}

/// The pages' icon (an SVG; `img-src 'self'` allows it).
const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\"><rect width=\"32\" height=\"32\" rx=\"6\" fill=\"#18203a\"/><path d=\"M9 17l5 5 9-11\" stroke=\"#fff\" stroke-width=\"3.5\" fill=\"none\" stroke-linecap=\"round\" stroke-linejoin=\"round\"/></svg>";

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
        .get("/ui/reviews/{id}/decision", decision_get)
        .get("/ui/settings", settings::page)
        .post("/ui/settings", settings::save)
        .get("/ui/favicon.svg", favicon)
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
/// The live session of a request whose principal still holds an unrevoked credential (the
/// session of a revoked one is ended here, on every node).
async fn current(s: &AppState, headers: &HeaderMap) -> agentsigna_core::Result<Option<Current>> {
    let Some(cur) = s.sessions.current(headers).await? else { return Ok(None) };
    match s.engine.still_valid(&cur.principal).await {
        Ok(()) => Ok(Some(cur)),
        Err(agentsigna_core::Error::Unauthenticated(_)) => {
            s.sessions.remove(&cur.id).await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn display_name(p: &Principal) -> String {
    match p {
        Principal::Admin => "admin".to_owned(),
        Principal::Approver(id) | Principal::Agent(id) | Principal::System(id) => id.clone(),
    }
}

fn chrome(cur: &Current) -> Chrome {
    Chrome {
        user: Some(display_name(&cur.principal)),
        csrf: cur.csrf.clone(),
        current: "",
        zone: Zone::of_session(cur.time_zone.as_deref()).name().to_owned(),
    }
}

/// How this session's pages put times into words: the server clock, the chosen zone.
fn times(s: &AppState, cur: &Current) -> Times {
    Times { now_ms: s.engine.clock().now_ms(), zone: Zone::of_session(cur.time_zone.as_deref()) }
}

async fn favicon() -> Response {
    let mut resp = FAVICON.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// The decision URL opened directly (a bookmark, a reload of an old error page): the
/// case page, never a resubmission.
async fn decision_get(Path(id): Path<String>) -> Response {
    see_other(&format!("/ui/reviews/{id}"))
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

/// The session of the request, or the response to send instead: the login page (no
/// session), or an error page (the sessions cannot be read: 503 while the database is
/// unreachable).
async fn current_or_login(s: &AppState, headers: &HeaderMap, next: &str) -> Result<Current, Response> {
    match current(s, headers).await {
        Ok(Some(cur)) => Ok(cur),
        Ok(None) => Err(to_login(next)),
        Err(e) => Err(store_error(e, next)),
    }
}

/// The error page of a failure outside any session.
fn store_error(e: agentsigna_core::Error, back: &str) -> Response {
    let api = ApiError::from(e);
    let title = api.title;
    error_page(api.status, Chrome::default(), title, api.detail, back)
}

async fn not_found(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let chrome = current(&s, &headers).await.ok().flatten().map(|c| chrome(&c)).unwrap_or_default();
    error_page(StatusCode::NOT_FOUND, chrome, "Not found", "There is no page here.", "/ui/")
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_form(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    match current(&s, &headers).await {
        Ok(Some(_)) => return see_other(&next),
        Ok(None) => {}
        Err(e) => return store_error(e, "/ui/login"),
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
        if let Err(e) = s.sessions.remove(&session::token_id(&old)).await {
            return store_error(e, "/ui/login");
        }
    }
    let id = match s.sessions.create(principal).await {
        Ok(id) => id,
        Err(e) => return store_error(e, "/ui/login"),
    };
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
    let cur = match current(&s, &headers).await {
        Ok(Some(cur)) => cur,
        Ok(None) => return see_other("/ui/login"),
        Err(e) => return store_error(e, "/ui/"),
    };
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
    if let Err(e) = s.sessions.remove(&cur.id).await {
        return engine_error(&cur, e, "/ui/");
    }
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

#[derive(Deserialize, Default)]
struct QueueQuery {
    status: Option<String>,
    agent: Option<String>,
    counterparty: Option<String>,
    action: Option<String>,
    /// A review or case id.
    q: Option<String>,
    /// Set: only reviews that still need a role the reader holds.
    mine: Option<String>,
    /// 1-based page.
    page: Option<u32>,
}

fn filled(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty() && v.len() <= 256).map(str::to_owned)
}

async fn queue(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let cur = match current_or_login(&s, &headers, "/ui/").await {
        Ok(cur) => cur,
        Err(resp) => return resp,
    };
    let Ok(Query(q)) = q else {
        return error_page(
            StatusCode::BAD_REQUEST,
            chrome(&cur),
            "Bad request",
            "The filters could not be read.",
            "/ui/",
        );
    };
    let status = filled(&q.status).unwrap_or_else(|| "pending".to_owned());
    let page = q.page.unwrap_or(1).clamp(1, 100_000);
    let mine = filled(&q.mine).is_some();
    let roles = if mine {
        match s.engine.approver_roles(&cur.principal).await {
            Ok(r) => Some(r),
            Err(e) => return engine_error(&cur, e, "/ui/"),
        }
    } else {
        None
    };
    let filter = ReviewFilter {
        status: if status == "all" { None } else { Some(status.clone()) },
        agent: filled(&q.agent),
        counterparty: filled(&q.counterparty),
        action: filled(&q.action),
        id: filled(&q.q),
        roles,
        offset: (page - 1).saturating_mul(queue_view::PAGE_SIZE),
        limit: queue_view::PAGE_SIZE,
        ..Default::default()
    };
    let doc = match s.engine.review_queue(&cur.principal, filter).await {
        Ok(d) => d,
        Err(e) => return engine_error(&cur, e, "/ui/"),
    };
    let heading = match status.as_str() {
        "pending" => "Reviews waiting for a decision".to_owned(),
        "all" => "All reviews".to_owned(),
        other => format!("Reviews {}", format::status_words(other).to_lowercase()),
    };
    let total = doc.total;
    let items = queue_view::queue_items(&doc, &times(&s, &cur));
    let my_roles = doc.viewer.as_ref().map(|v| v.roles.join(", ")).unwrap_or_default();
    let from = u64::from(page - 1) * u64::from(queue_view::PAGE_SIZE);
    let href = |p: u32| {
        let mut parts = vec![format!("status={}", encode_query(&status))];
        for (k, v) in [("agent", &q.agent), ("counterparty", &q.counterparty), ("action", &q.action), ("q", &q.q)] {
            if let Some(v) = filled(v) {
                parts.push(format!("{k}={}", encode_query(&v)));
            }
        }
        if mine {
            parts.push("mine=1".to_owned());
        }
        parts.push(format!("page={p}"));
        format!("/ui/reviews?{}", parts.join("&"))
    };
    let mut ch = chrome(&cur);
    let plain = q.agent.is_none() && q.counterparty.is_none() && q.action.is_none() && q.q.is_none() && !mine;
    ch.current = match status.as_str() {
        "pending" if plain => "queue",
        "all" if plain => "all",
        _ => "",
    };
    let page_view = QueuePage {
        chrome: ch,
        heading,
        total,
        pending: status == "pending",
        statuses: queue_view::status_options(&status),
        agent: filled(&q.agent).unwrap_or_default(),
        counterparty: filled(&q.counterparty).unwrap_or_default(),
        action: filled(&q.action).unwrap_or_default(),
        q: filled(&q.q).unwrap_or_default(),
        mine,
        my_roles,
        showing: format!("Showing {}–{} of {total}", from + 1, from + items.len() as u64),
        prev: (page > 1).then(|| href(page - 1)),
        next: (from + (items.len() as u64) < total).then(|| href(page + 1)),
        items,
        flash: s.sessions.take_flash(&cur).await,
    };
    html(StatusCode::OK, render(&page_view))
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

/// The first pending review, other than `except`, that `cur` may decide.
async fn next_review(s: &AppState, cur: &Current, except: &str) -> Option<String> {
    let filter = ReviewFilter { status: Some("pending".to_owned()), limit: 50, ..Default::default() };
    let doc = s.engine.review_queue(&cur.principal, filter).await.ok()?;
    let items = queue_view::queue_items(&doc, &times(s, cur));
    items
        .into_iter()
        .find(|r| r.review_id != except && r.mark.is_none())
        .map(|r| format!("/ui/reviews/{}", r.review_id))
}

async fn review(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let page_url = format!("/ui/reviews/{id}");
    let cur = match current_or_login(&s, &headers, &page_url).await {
        Ok(cur) => cur,
        Err(resp) => return resp,
    };
    match s.engine.get_review(&cur.principal, &id).await {
        Ok(doc) => {
            let mut page =
                review_view::review_page(&doc, chrome(&cur), me(&cur.principal), &times(&s, &cur), s.ui.confirm_above);
            page.flash = s.sessions.take_flash(&cur).await;
            let mut status = StatusCode::OK;
            if let Some(e) = s.sessions.take_form_error(&cur, &page_url).await {
                match e.field.as_deref() {
                    Some("comment") => page.comment_error = Some(e.message),
                    Some("confirm") => page.confirm_error = Some(e.message),
                    _ => page.error = Some(e.message),
                }
                page.comment = e.comment;
                status = StatusCode::OK;
            }
            if !page.can_decide {
                page.next_review = next_review(&s, &cur, &id).await;
            }
            html(status, render(&page))
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
    /// The amount retyped, when approving above the threshold.
    #[serde(default)]
    confirm: String,
}

/// An engine refusal of a decision in plain words, with the field at fault.
fn plain_refusal(e: &agentsigna_core::Error, review_id: &str) -> (Option<&'static str>, String) {
    use agentsigna_core::Error;
    match e {
        Error::Invalid { field: Some(f), detail } if f == "comment" => {
            if detail.contains("required") {
                (Some("comment"), "Write a comment saying why you reject: rejecting needs a reason.".to_owned())
            } else {
                (Some("comment"), "The comment is too long: at most 2,000 characters.".to_owned())
            }
        }
        Error::Invalid { field: Some(f), .. } if f == "decision" => (None, "Choose Approve or Reject.".to_owned()),
        Error::Conflict(d) if d.contains("expired") => (
            None,
            "The review's deadline passed before your decision arrived: it has expired, and nothing was recorded."
                .to_owned(),
        ),
        Error::Conflict(d) if d.contains("already decided") => {
            (None, "You already decided on this review; a second decision is not recorded.".to_owned())
        }
        Error::Conflict(d) if d.contains("is already") => (
            None,
            format!(
                "This review was already closed ({}) when your decision arrived; nothing was recorded.",
                d.rsplit(' ').next().unwrap_or("closed")
            ),
        ),
        Error::Forbidden(d) if d.contains("may not decide") => (
            None,
            "You own the agent that made this request, so you may not decide on it (separation of duties).".to_owned(),
        ),
        Error::NotFound(_) => (None, format!("Review {review_id} does not exist.")),
        other => (None, format!("Your decision could not be recorded: {other}")),
    }
}

async fn decide(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let page_url = format!("/ui/reviews/{id}");
    let cur = match current_or_login(&s, &headers, &page_url).await {
        Ok(cur) => cur,
        Err(resp) => return resp,
    };
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return form_refused(&rejection, chrome(&cur), &page_url),
    };
    if !same_secret(&cur.csrf, &form.csrf) {
        return csrf_refused(&cur);
    }
    let refuse = |field: Option<&str>, message: String, comment: String| {
        let error = FormError { page: page_url.clone(), field: field.map(str::to_owned), message, comment };
        let (s, cur, page_url) = (&s, &cur, &page_url);
        async move {
            if let Err(err) = s.sessions.set_form_error(cur, error).await {
                return engine_error(cur, err, page_url);
            }
            see_other(page_url)
        }
    };
    let decision = form.decision.clone();
    if decision == "approve" {
        if let Some(threshold) = s.ui.confirm_above {
            let doc = match s.engine.get_review(&cur.principal, &id).await {
                Ok(d) => d,
                Err(e) => return engine_error(&cur, e, &page_url),
            };
            let amount = doc.core.request.amount.as_ref();
            let value = amount.map(|a| a.value.as_str()).unwrap_or("");
            if value.parse::<f64>().is_ok_and(|v| v > threshold) && !format::same_amount(&form.confirm, value) {
                let message = if form.confirm.trim().is_empty() {
                    format!("Retype the amount ({}) to approve a request this large.", pages::amount_text(amount))
                } else {
                    format!(
                        "That is not the amount of this request ({}); nothing was approved.",
                        pages::amount_text(amount)
                    )
                };
                return refuse(Some("confirm"), message, form.comment).await;
            }
        }
    }
    let input = DecisionInput { decision: form.decision, comment: form.comment.clone() };
    match s.engine.decide_review(&cur.principal, &id, input).await {
        Ok(doc) => {
            let status = doc.core.review.as_ref().map_or("pending", |r| r.status.as_str()).to_owned();
            let verb = if decision == "approve" { "approval" } else { "rejection" };
            let message = match status.as_str() {
                "pending" => format!("Your {verb} is recorded; the review still needs more approvals."),
                other => format!("Your {verb} is recorded; the review is now {other}."),
            };
            if let Err(err) = s.sessions.set_flash(&cur.id, message).await {
                // The decision is recorded; only the confirmation line is lost.
                tracing::warn!(error = %err, "cannot leave the session's message");
            }
            see_other(&page_url)
        }
        Err(e) => {
            let (field, message) = plain_refusal(&e, &id);
            refuse(field, message, form.comment).await
        }
    }
}

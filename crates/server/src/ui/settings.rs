//! `/ui/settings`: the approver's choice of time zone, remembered in the session. A plain
//! form (no JavaScript, CSRF token like every other form); an unknown zone is refused next
//! to the field in plain words, after post/redirect/get like the decision form.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::format::{self, Zone};
use super::pages::{render, Chrome, SettingsPage};
use super::session::FormError;
use super::{chrome, csrf_refused, current_or_login, engine_error, form_refused, html, see_other};
use crate::secret::same_secret;
use crate::state::AppState;

/// Where the settings form's refused value waits (post/redirect/get).
const SETTINGS: &str = "/ui/settings";

/// `GET /ui/settings`: the session's time zone, and the form to choose another.
pub(super) async fn page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let cur = match current_or_login(&s, &headers, SETTINGS).await {
        Ok(cur) => cur,
        Err(resp) => return resp,
    };
    let zone = Zone::of_session(cur.time_zone.as_deref());
    let mut page = SettingsPage {
        chrome: Chrome { current: "settings", ..chrome(&cur) },
        flash: s.sessions.take_flash(&cur).await,
        offset: zone.offset_at(s.engine.clock().now_ms()),
        zone: zone.name().to_owned(),
        typed: zone.name().to_owned(),
        error: None,
        zones: Zone::all_names(),
    };
    if let Some(e) = s.sessions.take_form_error(&cur, SETTINGS).await {
        page.error = Some(e.message);
        page.typed = format::agent_text(&e.comment);
    }
    html(StatusCode::OK, render(&page))
}

#[derive(Deserialize)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    time_zone: String,
}

/// `POST /ui/settings`: remembers the zone in the session (an empty field means UTC);
/// an unknown zone is refused next to the field, in plain words.
pub(super) async fn save(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Response {
    let cur = match current_or_login(&s, &headers, SETTINGS).await {
        Ok(cur) => cur,
        Err(resp) => return resp,
    };
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return form_refused(&rejection, chrome(&cur), SETTINGS),
    };
    if !same_secret(&cur.csrf, &form.csrf) {
        return csrf_refused(&cur);
    }
    let typed = form.time_zone.trim();
    let zone = if typed.is_empty() { Ok(Zone::utc()) } else { Zone::named(typed) };
    let result = match zone {
        Ok(zone) => {
            let stored = (!zone.is_utc()).then(|| zone.name().to_owned());
            match s.sessions.set_time_zone(&cur, stored).await {
                Ok(()) => s.sessions.set_flash(&cur.id, format!("Times are now shown in {}.", zone.name())).await,
                Err(e) => Err(e),
            }
        }
        Err(format::UnknownZone(message)) => {
            let comment: String = typed.chars().take(64).collect();
            let error = FormError { page: SETTINGS.to_owned(), field: Some("time_zone".to_owned()), message, comment };
            s.sessions.set_form_error(&cur, error).await
        }
    };
    match result {
        Ok(()) => see_other(SETTINGS),
        Err(e) => engine_error(&cur, e, SETTINGS),
    }
}

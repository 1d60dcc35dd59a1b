//! Approver web sessions, stored in the database so that every node knows them: a record
//! per session keyed by the SHA-256 of the cookie's token (the token itself is never
//! stored), holding who logged in, when the session expires, a one-shot message for the
//! next page, a refused form kept for the page the browser is redirected to, and the
//! approver's choice of time zone. Logging out deletes the record, on every node at once.
//! Expiry is compared by the caller on its injected clock.

use serde::{Deserialize, Serialize};

use super::Engine;
use crate::model::Principal;
use crate::store::RecordKind;
use crate::Result;

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// SHA-256 (hex) of the session token: the record's id.
    pub id: String,
    pub principal: Principal,
    /// Milliseconds since the epoch, on the session table's clock.
    pub expires_ms: i64,
    /// A one-shot message shown on the next page (after a redirect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flash: Option<String>,
    /// A refused form, shown once on the page it came from (post/redirect/get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_error: Option<FormError>,
    /// The IANA time zone the approver chose for the pages (`None`: UTC); checked by
    /// the pages before it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// A refused decision form, kept for the page the browser is redirected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormError {
    /// The page it belongs to (`/ui/reviews/{id}`).
    pub page: String,
    /// The field at fault (`comment`, `confirm`, `time_zone`), or `None` for the form as
    /// a whole.
    pub field: Option<String>,
    /// What went wrong, in plain words.
    pub message: String,
    /// The text typed, given back: the comment of a decision, the zone of the settings.
    pub comment: String,
}

impl Engine {
    /// Stores a new session; sessions expired at `now_ms` are deleted on the way (logins
    /// are rare, and this keeps the table to the live sessions).
    pub async fn session_open(&self, session: StoredSession, now_ms: i64) -> Result<()> {
        let key = format!("session:{}", session.id);
        self.transact(&[&key], move |_, d| {
            for old in d.list::<StoredSession>(RecordKind::Session)? {
                if old.expires_ms <= now_ms {
                    d.delete(RecordKind::Session, &old.id);
                }
            }
            d.put(RecordKind::Session, &session.id, &session)
        })
        .await
    }

    /// The session with this id (`None`: unknown or logged out; expiry is the caller's).
    pub async fn session(&self, id: &str) -> Result<Option<StoredSession>> {
        let id = id.to_owned();
        self.read(move |_, snap| match snap.record(RecordKind::Session, &id)? {
            Some(v) => Ok(Some(serde_json::from_str(&v.body)?)),
            None => Ok(None),
        })
        .await
    }

    /// Ends a session on every node.
    pub async fn session_close(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        let key = format!("session:{id}");
        self.transact(&[&key], move |_, d| {
            if d.record(RecordKind::Session, &id)?.is_some() {
                d.delete(RecordKind::Session, &id);
            }
            Ok(())
        })
        .await
    }

    /// Sets (`Some`) or takes (`None`) the session's one-shot message; returns the one it
    /// held.
    pub async fn session_flash(&self, id: &str, message: Option<String>) -> Result<Option<String>> {
        let id = id.to_owned();
        let key = format!("session:{id}");
        self.transact(&[&key], move |_, d| {
            let Some(mut s) = d.get::<StoredSession>(RecordKind::Session, &id)? else { return Ok(None) };
            if s.flash.is_none() && message.is_none() {
                return Ok(None);
            }
            let old = std::mem::replace(&mut s.flash, message.clone());
            d.put(RecordKind::Session, &id, &s)?;
            Ok(old)
        })
        .await
    }

    /// Keeps a refused form for the next page of this session (replacing an earlier one).
    pub async fn session_set_form_error(&self, id: &str, error: FormError) -> Result<()> {
        let id = id.to_owned();
        let key = format!("session:{id}");
        self.transact(&[&key], move |_, d| {
            let Some(mut s) = d.get::<StoredSession>(RecordKind::Session, &id)? else { return Ok(()) };
            s.form_error = Some(error.clone());
            d.put(RecordKind::Session, &id, &s)
        })
        .await
    }

    /// Sets the time zone the session's pages show times in (`None`: back to UTC).
    pub async fn session_set_time_zone(&self, id: &str, zone: Option<String>) -> Result<()> {
        let id = id.to_owned();
        let key = format!("session:{id}");
        self.transact(&[&key], move |_, d| {
            let Some(mut s) = d.get::<StoredSession>(RecordKind::Session, &id)? else { return Ok(()) };
            if s.time_zone == zone {
                return Ok(());
            }
            s.time_zone = zone.clone();
            d.put(RecordKind::Session, &id, &s)
        })
        .await
    }

    /// Takes the session's refused form when it belongs to `page` (once).
    pub async fn session_take_form_error(&self, id: &str, page: &str) -> Result<Option<FormError>> {
        let (id, page) = (id.to_owned(), page.to_owned());
        let key = format!("session:{id}");
        self.transact(&[&key], move |_, d| {
            let Some(mut s) = d.get::<StoredSession>(RecordKind::Session, &id)? else { return Ok(None) };
            if s.form_error.as_ref().is_none_or(|e| e.page != page) {
                return Ok(None);
            }
            let taken = s.form_error.take();
            d.put(RecordKind::Session, &id, &s)?;
            Ok(taken)
        })
        .await
    }
}

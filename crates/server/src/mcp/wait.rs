//! Waiting for a human decision: the API's `GET /v1/cases/{id}?wait=N` in short rounds,
//! with an MCP progress notification after each (when the client asked for progress)
//! and an end as soon as the client cancels the call.

use std::time::{Duration, Instant};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{Peer, RoleServer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::client::{Api, ApiFailure};
use super::summary;

/// Longest single `?wait` round: progress is reported at least this often.
const ROUND: Duration = Duration::from_secs(3);

/// Progress notifications of one call (none when the client gave no progress token).
#[derive(Clone)]
pub struct Progress {
    peer: Peer<RoleServer>,
    token: Option<ProgressToken>,
}

impl Progress {
    /// The progress channel of the call behind `ctx`.
    pub fn of(ctx: &RequestContext<RoleServer>) -> Progress {
        Progress { peer: ctx.peer.clone(), token: ctx.meta.get_progress_token() }
    }

    /// Sends one notification (a failure to deliver it does not fail the call).
    pub async fn notify(&self, done: Duration, total: Duration, message: String) {
        let Some(token) = &self.token else { return };
        let param = ProgressNotificationParam::new(token.clone(), done.as_secs_f64().floor())
            .with_total(total.as_secs_f64().ceil())
            .with_message(message);
        if let Err(e) = self.peer.notify_progress(param).await {
            tracing::debug!(error = %e, "progress notification not delivered");
        }
    }
}

/// How a wait ended.
#[derive(Debug)]
pub enum Waited {
    /// The case left `pending_review`: its document.
    Decided(Value),
    /// Still pending when the time was up: its latest document.
    Pending(Value),
    /// The client cancelled the call.
    Cancelled,
}

/// Waits up to `total` for case `id` to leave `pending_review`.
pub async fn wait_for_decision(
    api: &Api,
    key: &str,
    id: &str,
    total: Duration,
    progress: &Progress,
    ct: &CancellationToken,
) -> Result<Waited, ApiFailure> {
    let start = Instant::now();
    progress.notify(Duration::ZERO, total, format!("waiting for the human decision on case {id}")).await;
    loop {
        // Whole seconds for `?wait`, rounded up: a wait never ends early.
        let remaining = total.saturating_sub(start.elapsed()).min(ROUND);
        let round = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
        let answer = tokio::select! {
            a = api.case(key, id, round) => a?,
            _ = ct.cancelled() => return Ok(Waited::Cancelled),
        };
        let body = answer.body;
        if body["status"] != "pending_review" {
            return Ok(Waited::Decided(body));
        }
        if round == 0 || start.elapsed() >= total {
            return Ok(Waited::Pending(body));
        }
        let review = summary::review_id(&body).unwrap_or("?");
        let msg = format!("case {id}: review {review} pending, {}", summary::review_needs(&body));
        progress.notify(start.elapsed().min(total), total, msg).await;
    }
}

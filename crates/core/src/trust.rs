//! Trust: a Beta reputation (Jøsang & Ismail, 2002) with exponential time decay, kept per
//! agent and per counterparty.
//!
//! Each case counts once, by its worst authoritative outcome: `completed` adds its weight
//! to α (good evidence); `rejected`, `reversed` and `disputed` add theirs to β (bad
//! evidence). Evidence decays with a half-life, applied at the instant a score is
//! evaluated, which is always a ledger entry's `at`, so replaying the ledger reproduces
//! every score. `score = round(100 · α / (α + β))` with prior α = β = 1: newcomers are at 50.
//!
//! Worked example with the defaults: an agent with 3 completed cases today has
//! α = 1 + 3 = 4, β = 1, score = round(100 · 4/5) = 80. A dispute on one of them replaces
//! that case's +1 α by +3 β: α = 3, β = 4, score = 43. Ninety days later all evidence
//! weighs half: α = 1 + 1 = 2, β = 1 + 1.5 = 2.5, score = 44.

use serde::{Deserialize, Serialize};

/// The outcome of an executed action, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action completed as authorized.
    Completed,
    /// The target system rejected the action.
    Rejected,
    /// The action was reversed (refund, cancellation).
    Reversed,
    /// The action is disputed (chargeback, complaint).
    Disputed,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Rejected => "rejected",
            Outcome::Reversed => "reversed",
            Outcome::Disputed => "disputed",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "completed" => Some(Outcome::Completed),
            "rejected" => Some(Outcome::Rejected),
            "reversed" => Some(Outcome::Reversed),
            "disputed" => Some(Outcome::Disputed),
            _ => None,
        }
    }
}

/// Parameters of the trust model. Defaults: prior α = β = 1, half-life 90 days,
/// weights completed 1 (α), rejected 1, reversed 2, disputed 3 (β).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Prior good evidence.
    pub prior_alpha: f64,
    /// Prior bad evidence.
    pub prior_beta: f64,
    /// Half-life of evidence, in days.
    pub half_life_days: f64,
    /// α added by a completed case.
    pub completed: f64,
    /// β added by a rejected case.
    pub rejected: f64,
    /// β added by a reversed case.
    pub reversed: f64,
    /// β added by a disputed case.
    pub disputed: f64,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            prior_alpha: 1.0,
            prior_beta: 1.0,
            half_life_days: 90.0,
            completed: 1.0,
            rejected: 1.0,
            reversed: 2.0,
            disputed: 3.0,
        }
    }
}

impl TrustConfig {
    /// (α, β) evidence of one case with this outcome.
    pub fn weight(&self, outcome: Outcome) -> (f64, f64) {
        match outcome {
            Outcome::Completed => (self.completed, 0.0),
            Outcome::Rejected => (0.0, self.rejected),
            Outcome::Reversed => (0.0, self.reversed),
            Outcome::Disputed => (0.0, self.disputed),
        }
    }

    /// The factor by which evidence of age `age_ms` still counts.
    pub fn decay(&self, age_ms: i64) -> f64 {
        if age_ms <= 0 || self.half_life_days <= 0.0 {
            return 1.0;
        }
        let half_life_ms = self.half_life_days * 86_400_000.0;
        (-(age_ms as f64) / half_life_ms).exp2()
    }
}

/// Number of cases per counted outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutcomeCounts {
    /// Cases counted as completed.
    pub completed: u64,
    /// Cases counted as reversed.
    pub reversed: u64,
    /// Cases counted as rejected.
    pub rejected: u64,
    /// Cases counted as disputed.
    pub disputed: u64,
}

impl OutcomeCounts {
    fn slot(&mut self, outcome: Outcome) -> &mut u64 {
        match outcome {
            Outcome::Completed => &mut self.completed,
            Outcome::Rejected => &mut self.rejected,
            Outcome::Reversed => &mut self.reversed,
            Outcome::Disputed => &mut self.disputed,
        }
    }
}

/// One outcome that moved a score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustEvent {
    /// The case whose outcome this was.
    pub case: String,
    /// The outcome counted for the case after this event.
    pub outcome: Outcome,
    /// Score before.
    pub before: i64,
    /// Score after.
    pub after: i64,
    /// When (ms since epoch).
    pub at_ms: i64,
}

/// The trust standing of one agent or counterparty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrustState {
    /// Decayed good evidence (without the prior) as of `ref_ms`.
    pub alpha: f64,
    /// Decayed bad evidence (without the prior) as of `ref_ms`.
    pub beta: f64,
    /// The instant the evidence sums refer to.
    pub ref_ms: i64,
    /// Cases per counted outcome.
    pub counts: OutcomeCounts,
    /// When an outcome last changed this standing.
    pub updated_at_ms: Option<i64>,
    /// The latest score changes, newest last (bounded).
    pub history: Vec<TrustEvent>,
}

/// Score and evidence of a standing at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrustView {
    /// 0–100.
    pub score: i64,
    /// 0–1: how much evidence the score rests on.
    pub confidence: f64,
    /// α including the prior.
    pub alpha: f64,
    /// β including the prior.
    pub beta: f64,
}

const HISTORY: usize = 50;

impl TrustState {
    fn evidence_at(&self, cfg: &TrustConfig, now_ms: i64) -> (f64, f64) {
        let f = cfg.decay(now_ms - self.ref_ms);
        (self.alpha * f, self.beta * f)
    }

    /// The standing evaluated at `now_ms`.
    pub fn view(&self, cfg: &TrustConfig, now_ms: i64) -> TrustView {
        let (a, b) = self.evidence_at(cfg, now_ms);
        let alpha = cfg.prior_alpha + a;
        let beta = cfg.prior_beta + b;
        let total = alpha + beta;
        let score = if total > 0.0 { (100.0 * alpha / total).round() as i64 } else { 50 };
        // Confidence: evidence beyond the prior, on a saturating scale (10 cases → 0.5).
        let evidence = (a + b).max(0.0);
        TrustView { score: score.clamp(0, 100), confidence: evidence / (evidence + 10.0), alpha, beta }
    }

    /// The score at `now_ms`.
    pub fn score(&self, cfg: &TrustConfig, now_ms: i64) -> i64 {
        self.view(cfg, now_ms).score
    }

    /// Counts a case's outcome: `previous` is what the case counted as before (with the
    /// instant it was counted), if anything. Returns the event (scores before and after).
    pub fn apply(
        &mut self,
        cfg: &TrustConfig,
        case: &str,
        previous: Option<(Outcome, i64)>,
        outcome: Outcome,
        now_ms: i64,
    ) -> TrustEvent {
        let before = self.score(cfg, now_ms);
        let (mut a, mut b) = self.evidence_at(cfg, now_ms);
        if let Some((old, old_at)) = previous {
            let (oa, ob) = cfg.weight(old);
            let f = cfg.decay(now_ms - old_at);
            a = (a - oa * f).max(0.0);
            b = (b - ob * f).max(0.0);
            let slot = self.counts.slot(old);
            *slot = slot.saturating_sub(1);
        }
        let (na, nb) = cfg.weight(outcome);
        self.alpha = a + na;
        self.beta = b + nb;
        self.ref_ms = now_ms;
        *self.counts.slot(outcome) += 1;
        self.updated_at_ms = Some(now_ms);
        let after = self.score(cfg, now_ms);
        let event = TrustEvent { case: case.to_owned(), outcome, before, after, at_ms: now_ms };
        self.history.push(event.clone());
        if self.history.len() > HISTORY {
            let excess = self.history.len() - HISTORY;
            self.history.drain(..excess);
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn newcomers_start_at_fifty() {
        let s = TrustState::default();
        assert_eq!(s.score(&TrustConfig::default(), 0), 50);
        assert_eq!(s.view(&TrustConfig::default(), 0).confidence, 0.0);
    }

    #[test]
    fn worked_example_of_the_docs() {
        let cfg = TrustConfig::default();
        let mut s = TrustState::default();
        for c in ["c1", "c2", "c3"] {
            s.apply(&cfg, c, None, Outcome::Completed, 0);
        }
        assert_eq!(s.score(&cfg, 0), 80);
        let ev = s.apply(&cfg, "c1", Some((Outcome::Completed, 0)), Outcome::Disputed, 0);
        assert_eq!((ev.before, ev.after), (80, 43));
        assert_eq!(s.counts, OutcomeCounts { completed: 2, disputed: 1, ..Default::default() });
        assert_eq!(s.score(&cfg, 90 * DAY), 44);
    }

    #[test]
    fn weights_order_outcomes() {
        let cfg = TrustConfig::default();
        let scores: Vec<i64> = [Outcome::Completed, Outcome::Rejected, Outcome::Reversed, Outcome::Disputed]
            .iter()
            .map(|o| {
                let mut s = TrustState::default();
                s.apply(&cfg, "c", None, *o, 0);
                s.score(&cfg, 0)
            })
            .collect();
        assert_eq!(scores, vec![67, 33, 25, 20]);
    }

    #[test]
    fn decay_moves_back_toward_the_prior_and_is_deterministic() {
        let cfg = TrustConfig::default();
        let mut s = TrustState::default();
        for i in 0..10 {
            s.apply(&cfg, &format!("c{i}"), None, Outcome::Disputed, 0);
        }
        let now = s.score(&cfg, 0);
        let later = s.score(&cfg, 365 * DAY);
        assert!(now < later && later < 50, "{now} {later}");
        let replay = {
            let mut r = TrustState::default();
            for i in 0..10 {
                r.apply(&cfg, &format!("c{i}"), None, Outcome::Disputed, 0);
            }
            r
        };
        assert_eq!(replay, s);
    }

    /// Stored standings are JSON: with serde_json's `float_roundtrip`, what a store hands
    /// back is bit for bit what was written, so a standing updated through the store for
    /// every outcome equals the in-memory replay (`trust rebuild --check` compares exactly).
    #[test]
    fn a_standing_round_tripped_through_json_at_every_outcome_equals_the_replay() {
        let cfg = TrustConfig::default();
        let (mut stored, mut replay) = (TrustState::default(), TrustState::default());
        for i in 0..10_000i64 {
            let at = i * 37_013_777;
            let outcome = if i % 7 == 3 { Outcome::Disputed } else { Outcome::Completed };
            let mut loaded: TrustState =
                serde_json::from_str(&serde_json::to_string(&stored).expect("json")).expect("parse");
            loaded.apply(&cfg, &format!("c{i}"), None, outcome, at);
            stored = loaded;
            replay.apply(&cfg, &format!("c{i}"), None, outcome, at);
        }
        assert_eq!(stored.alpha.to_bits(), replay.alpha.to_bits());
        assert_eq!(stored.beta.to_bits(), replay.beta.to_bits());
        assert_eq!(stored, replay);
    }

    #[test]
    fn configurable_weights_and_prior() {
        let cfg = TrustConfig { prior_alpha: 9.0, prior_beta: 1.0, ..Default::default() };
        assert_eq!(TrustState::default().score(&cfg, 0), 90);
    }
}

/// Trust standings recomputed from ledger entries (read in index order): scores are a
/// projection of `request.submitted` and `outcome.recorded` events, so anyone holding the
/// ledger can recompute them.
#[derive(Debug, Default)]
pub struct Replay {
    cases: std::collections::HashMap<String, ReplayCase>,
    /// Agent standings by agent id.
    pub agents: std::collections::BTreeMap<String, TrustState>,
    /// Counterparty standings by counterparty id.
    pub counterparties: std::collections::BTreeMap<String, TrustState>,
}

#[derive(Debug, Default)]
struct ReplayCase {
    agent: String,
    counterparty: String,
    agent_counted: Option<(Outcome, i64)>,
    counterparty_counted: Option<(Outcome, i64)>,
}

impl Replay {
    /// Feeds the next entry.
    pub fn push(&mut self, cfg: &TrustConfig, entry: &agentsigna_verify::ledger::Entry) {
        let Some(case_id) = &entry.case else { return };
        match entry.kind.as_str() {
            "request.submitted" => {
                let s = |k: &str| entry.data.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
                self.cases.insert(
                    case_id.clone(),
                    ReplayCase { agent: s("agent"), counterparty: s("counterparty"), ..Default::default() },
                );
            }
            "outcome.recorded" => {
                let Some(outcome) = entry.data.get("outcome").and_then(|v| v.as_str()).and_then(Outcome::parse) else {
                    return;
                };
                let authoritative = entry.data.get("authoritative").and_then(|v| v.as_bool()).unwrap_or(true);
                let Some(at) = agentsigna_verify::clock::parse_rfc3339_ms(&entry.at) else { return };
                let Some(case) = self.cases.get_mut(case_id) else { return };
                // Same order and rule as the engine: the agent first, then the counterparty
                // (only for reports by parties other than the agent); a case counts once, by
                // its worst outcome.
                if case.agent_counted.is_none_or(|(o, _)| o < outcome) {
                    let state = self.agents.entry(case.agent.clone()).or_default();
                    state.apply(cfg, case_id, case.agent_counted, outcome, at);
                    case.agent_counted = Some((outcome, at));
                }
                if authoritative && case.counterparty_counted.is_none_or(|(o, _)| o < outcome) {
                    let state = self.counterparties.entry(case.counterparty.clone()).or_default();
                    state.apply(cfg, case_id, case.counterparty_counted, outcome, at);
                    case.counterparty_counted = Some((outcome, at));
                }
            }
            _ => {}
        }
    }
}

//! Administration: principals, counterparties, action types and policy versions.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::data::{get, list, org_event, policy_env};
use super::draft::Draft;
use super::views::ShadowDivergence;
use super::Engine;
use crate::access::{self, Op};
use crate::ids::{check_name, new_secret, secret_hash};
use crate::model::{
    ActionRecord, AgentRecord, ApproverRecord, CounterpartyRecord, PolicyRecord, Principal, Risk, SystemRecord,
};
use crate::policy::CompiledPolicy;
use crate::store::{RecordKind, Snapshot};
use crate::{Error, Result};
use agentsigna_verify::jwk::Jwk;

/// `POST /v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    pub id: String,
    pub owner: String,
    #[serde(default)]
    pub name: Option<String>,
    /// An Ed25519 public key (OKP) that binds the agent's passports to its holder proofs.
    #[serde(default, deserialize_with = "public_jwk")]
    #[schema(value_type = Option<crate::schema::JwkSchema>)]
    pub public_jwk: Option<Jwk>,
}

/// `public_jwk` as a JWK, refused with one message naming the member when it is not one
/// (a private key, another key type, not an object).
fn public_jwk<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Jwk>, D::Error> {
    let Some(v) = Option::<serde_json::Value>::deserialize(d)? else { return Ok(None) };
    serde_json::from_value(v).map(Some).map_err(|e| serde::de::Error::custom(format!("not a JWK: {e}")))
}

/// `POST /v1/approvers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApprover {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub roles: Vec<String>,
}

/// `POST /v1/systems`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSystem {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `PUT /v1/counterparties/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterpartyInput {
    pub name: String,
    pub risk: Risk,
}

/// The result of a policy upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCreated {
    pub version: u64,
    pub digest: String,
    pub active: bool,
}

fn check_label(field: &str, v: &Option<String>) -> Result<()> {
    if let Some(v) = v {
        if v.chars().count() > 200 {
            return Err(Error::invalid(field, format!("{field} must be at most 200 printable characters")));
        }
        crate::text::check_plain(field, v)?;
    }
    Ok(())
}

fn check_role(field: &str, role: &str) -> Result<()> {
    if role.is_empty() || role.len() > 64 || !role.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::invalid(field, format!("role must be 1-64 characters of [A-Za-z0-9_-] (got {role:?})")));
    }
    Ok(())
}

impl Engine {
    /// Registers an agent; returns its record and its API key (shown once).
    pub async fn register_agent(&self, by: &Principal, input: NewAgent) -> Result<(AgentRecord, String)> {
        access::check(by, Op::Administer)?;
        check_name("id", &input.id)?;
        check_name("owner", &input.owner)?;
        check_label("name", &input.name)?;
        let public_jwk = match input.public_jwk {
            None => None,
            Some(jwk) => {
                jwk.verifying_key().map_err(|e| {
                    Error::invalid("public_jwk", format!("public_jwk must be an Ed25519 (OKP) public key: {e}"))
                })?;
                Some(Jwk { kid: None, alg: None, use_: None, ..jwk })
            }
        };
        let by = by.clone();
        let key = new_secret("agent");
        self.transact(&["org"], move |ctx, d| {
            if d.record(RecordKind::Agent, &input.id)?.is_some() {
                return Err(Error::Conflict(format!("agent {} already exists", input.id)));
            }
            let now = ctx.now();
            let record = AgentRecord {
                id: input.id.clone(),
                owner: input.owner.clone(),
                name: input.name.clone(),
                public_jwk: public_jwk.clone(),
                suspended: false,
                created_at_ms: now,
                revoked_at_ms: None,
            };
            d.put_credential(secret_hash(&key), "agent", &record.id);
            d.put(RecordKind::Agent, &record.id, &record)?;
            org_event(
                d,
                "agent.registered",
                now,
                &by,
                json!({"id": record.id, "owner": record.owner, "name": record.name,
                           "jkt": record.public_jwk.as_ref().map(|j| j.thumbprint())}),
            )?;
            Ok((record, key.clone()))
        })
        .await
    }

    /// Registers an approver; returns its record and token (shown once).
    pub async fn register_approver(&self, by: &Principal, input: NewApprover) -> Result<(ApproverRecord, String)> {
        access::check(by, Op::Administer)?;
        check_name("id", &input.id)?;
        check_label("name", &input.name)?;
        for (i, r) in input.roles.iter().enumerate() {
            check_role(&format!("roles[{i}]"), r)?;
        }
        let by = by.clone();
        let token = new_secret("approver");
        self.transact(&["org"], move |ctx, d| {
            if d.record(RecordKind::Approver, &input.id)?.is_some() {
                return Err(Error::Conflict(format!("approver {} already exists", input.id)));
            }
            let now = ctx.now();
            let mut roles = input.roles.clone();
            roles.sort();
            roles.dedup();
            let record = ApproverRecord {
                id: input.id.clone(),
                name: input.name.clone(),
                roles,
                created_at_ms: now,
                revoked_at_ms: None,
            };
            d.put_credential(secret_hash(&token), "approver", &record.id);
            d.put(RecordKind::Approver, &record.id, &record)?;
            org_event(
                d,
                "approver.registered",
                now,
                &by,
                json!({"id": record.id, "name": record.name, "roles": record.roles}),
            )?;
            Ok((record, token.clone()))
        })
        .await
    }

    /// Registers a target system; returns its record and token (shown once).
    pub async fn register_system(&self, by: &Principal, input: NewSystem) -> Result<(SystemRecord, String)> {
        access::check(by, Op::Administer)?;
        check_name("id", &input.id)?;
        check_label("name", &input.name)?;
        let by = by.clone();
        let token = new_secret("system");
        self.transact(&["org"], move |ctx, d| {
            if d.record(RecordKind::System, &input.id)?.is_some() {
                return Err(Error::Conflict(format!("target system {} already exists", input.id)));
            }
            let now = ctx.now();
            let record = SystemRecord { id: input.id.clone(), name: input.name.clone(), created_at_ms: now };
            d.put_credential(secret_hash(&token), "system", &record.id);
            d.put(RecordKind::System, &record.id, &record)?;
            org_event(d, "system.registered", now, &by, json!({"id": record.id, "name": record.name}))?;
            Ok((record, token.clone()))
        })
        .await
    }

    /// Creates or updates a counterparty. Unchanged → no ledger event.
    pub async fn put_counterparty(
        &self,
        by: &Principal,
        id: String,
        input: CounterpartyInput,
    ) -> Result<CounterpartyRecord> {
        access::check(by, Op::Administer)?;
        check_name("id", &id)?;
        if input.name.trim().is_empty() {
            return Err(Error::invalid("name", "name must not be empty"));
        }
        check_label("name", &Some(input.name.clone()))?;
        let by = by.clone();
        self.transact(&["org"], move |ctx, d| {
            let now = ctx.now();
            let existing: Option<CounterpartyRecord> = d.get(RecordKind::Counterparty, &id)?;
            if let Some(e) = &existing {
                if e.name == input.name && e.risk == input.risk {
                    return Ok(e.clone());
                }
            }
            let record =
                CounterpartyRecord { id: id.clone(), name: input.name.clone(), risk: input.risk, updated_at_ms: now };
            d.put(RecordKind::Counterparty, &id, &record)?;
            org_event(
                d,
                "counterparty.updated",
                now,
                &by,
                json!({"id": id, "name": record.name, "risk": record.risk.as_str(),
                           "previous_risk": existing.map(|e| e.risk.as_str())}),
            )?;
            Ok(record)
        })
        .await
    }

    /// Declares (or re-describes) an action type. Unchanged → no ledger event.
    pub async fn declare_action(
        &self,
        by: &Principal,
        action_type: String,
        description: String,
    ) -> Result<ActionRecord> {
        access::check(by, Op::Administer)?;
        check_action_type(&action_type)?;
        if description.chars().count() > 500 {
            return Err(Error::invalid("description", "description must be at most 500 characters"));
        }
        crate::text::check_free("description", &description)?;
        let by = by.clone();
        self.transact(&["org"], move |ctx, d| {
            let existing: Option<ActionRecord> = d.get(RecordKind::Action, &action_type)?;
            if let Some(e) = existing {
                if e.description == description {
                    return Ok(e);
                }
            }
            let record = ActionRecord { action_type: action_type.clone(), description: description.clone() };
            d.put(RecordKind::Action, &action_type, &record)?;
            org_event(
                d,
                "action.declared",
                ctx.now(),
                &by,
                json!({"type": record.action_type, "description": record.description}),
            )?;
            Ok(record)
        })
        .await
    }

    /// Declares approver roles that policies may name before any approver holds them.
    pub async fn declare_roles(&self, by: &Principal, roles: Vec<String>) -> Result<()> {
        access::check(by, Op::Administer)?;
        for (i, r) in roles.iter().enumerate() {
            check_role(&format!("roles[{i}]"), r)?;
        }
        self.transact(&["org"], move |_, d| {
            let mut all: Vec<String> = match d.record(RecordKind::Setting, "roles")? {
                Some(b) => serde_json::from_str(&b)?,
                None => Vec::new(),
            };
            let before = all.clone();
            all.extend(roles.iter().cloned());
            all.sort();
            all.dedup();
            if all != before {
                d.put(RecordKind::Setting, "roles", &all)?;
            }
            Ok(())
        })
        .await
    }

    /// Uploads a new immutable policy version, validated against the schema; optionally
    /// activates it. A refused policy changes nothing.
    pub async fn upload_policy(&self, by: &Principal, source: String, activate: bool) -> Result<PolicyCreated> {
        access::check(by, Op::Administer)?;
        if source.len() > 1024 * 1024 {
            return Err(Error::invalid("source", "policy source is larger than 1 MiB"));
        }
        // Compiling a large policy takes a while: do it before entering the single writer,
        // and again inside only if the declared actions or roles changed meanwhile.
        let env = self.read(|_, snap| policy_env(snap)).await?;
        let precompiled = std::sync::Arc::new(CompiledPolicy::compile(&source, &env)?);
        let by = by.clone();
        let created = self
            .transact(&["org"], move |ctx, d| {
                let now_env = policy_env(d.snapshot())?;
                let compiled = if now_env.actions == env.actions && now_env.roles == env.roles {
                    precompiled.clone()
                } else {
                    std::sync::Arc::new(CompiledPolicy::compile(&source, &now_env)?)
                };
                let version =
                    d.list::<PolicyRecord>(RecordKind::Policy)?.iter().map(|p| p.version).max().unwrap_or(0) + 1;
                // Relies on the number staying free: of two uploads racing for it, the second
                // decides again.
                d.record(RecordKind::Policy, &version.to_string())?;
                let now = ctx.now();
                let record = PolicyRecord {
                    version,
                    digest: compiled.digest(),
                    source: source.clone(),
                    created_at_ms: now,
                    created_by: by.actor(),
                };
                d.put(RecordKind::Policy, &version.to_string(), &record)?;
                org_event(
                    d,
                    "policy.created",
                    now,
                    &by,
                    json!({"version": version, "digest": record.digest,
                           "rules": compiled.rules().iter().map(|r| r.id.clone()).collect::<Vec<_>>()}),
                )?;
                if activate {
                    activate_in(d, &by, version, &record.digest, now)?;
                }
                Ok((PolicyCreated { version, digest: record.digest, active: activate }, compiled))
            })
            .await?;
        // Cached only once committed: a version number decided but not stored is no policy.
        crate::sync::lock(&self.policies.compiled).insert(created.0.version, created.1);
        Ok(created.0)
    }

    /// Compiles the active and shadow policies ahead of the first request (after a
    /// restart), so that no request waits for a compilation inside the writer.
    pub async fn warm_policies(&self) -> Result<()> {
        self.read(move |ctx, snap| {
            for v in
                [setting_version(snap, "active_policy")?, setting_version(snap, "shadow_policy")?].into_iter().flatten()
            {
                ctx.compiled(snap, v)?;
            }
            Ok(())
        })
        .await
    }

    /// Activates an existing version (also a roll-back).
    pub async fn activate_policy(&self, by: &Principal, version: u64) -> Result<PolicyCreated> {
        access::check(by, Op::Administer)?;
        let by = by.clone();
        self.transact(&["org"], move |ctx, d| {
            let record: PolicyRecord = d
                .stable_record(RecordKind::Policy, &version.to_string())?
                .map(|b| serde_json::from_str(&b))
                .transpose()?
                .ok_or_else(|| Error::NotFound(format!("policy version {version} does not exist")))?;
            // Still valid against today's declared actions and roles?
            ctx.compiled(d.snapshot(), version)?;
            if active_version(d)? != Some(version) {
                activate_in(d, &by, version, &record.digest, ctx.now())?;
            }
            Ok(PolicyCreated { version, digest: record.digest, active: true })
        })
        .await
    }

    /// Every policy version (without sources) and the active one.
    pub async fn list_policies(&self, by: &Principal) -> Result<(Vec<PolicyRecord>, Option<u64>)> {
        access::check(by, Op::ReadPolicies)?;
        self.read(|_, snap| {
            let mut all: Vec<PolicyRecord> = list(snap, RecordKind::Policy)?;
            all.sort_by_key(|p| p.version);
            Ok((all, setting_version(snap, "active_policy")?))
        })
        .await
    }

    /// One policy version and whether it is active.
    pub async fn get_policy(&self, by: &Principal, version: u64) -> Result<(PolicyRecord, bool)> {
        access::check(by, Op::ReadPolicies)?;
        self.read(move |_, snap| {
            let record: PolicyRecord = get(snap, RecordKind::Policy, &version.to_string())?
                .ok_or_else(|| Error::NotFound(format!("policy version {version} does not exist")))?;
            Ok((record, setting_version(snap, "active_policy")? == Some(version)))
        })
        .await
    }

    /// One rule of a policy version, with its source text.
    pub async fn get_policy_rule(&self, by: &Principal, version: u64, rule: String) -> Result<crate::policy::Rule> {
        access::check(by, Op::ReadPolicies)?;
        self.read(move |ctx, snap| {
            let compiled = ctx.compiled(snap, version)?;
            compiled
                .rule(&rule)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("policy version {version} has no rule {rule}")))
        })
        .await
    }

    /// Every declared action type, sorted by type. Readable by every authenticated principal:
    /// agents and gates check what they may request before they request it.
    pub async fn list_actions(&self, by: &Principal) -> Result<Vec<ActionRecord>> {
        access::check(by, Op::ReadActions)?;
        self.read(|_, snap| {
            let mut all: Vec<ActionRecord> = list(snap, RecordKind::Action)?;
            all.sort_by(|a, b| a.action_type.cmp(&b.action_type));
            Ok(all)
        })
        .await
    }

    /// A registered target system, for the admin and for that system itself; anyone else is
    /// told it does not exist (no existence oracle).
    pub async fn system_record(&self, by: &Principal, id: String) -> Result<SystemRecord> {
        let missing = || Error::NotFound(format!("target system {id} does not exist"));
        access::system(by, &id)?;
        let found: Option<SystemRecord> = self
            .read({
                let id = id.clone();
                move |_, snap| get(snap, RecordKind::System, &id)
            })
            .await?;
        found.ok_or_else(missing)
    }

    /// A registered agent.
    pub async fn agent_record(&self, id: String) -> Result<AgentRecord> {
        self.read(move |_, snap| {
            get(snap, RecordKind::Agent, &id)?.ok_or_else(|| Error::NotFound(format!("agent {id} does not exist")))
        })
        .await
    }

    /// Suspends or resumes an agent (the kill switch).
    pub async fn set_suspended(&self, by: &Principal, id: String, suspended: bool) -> Result<AgentRecord> {
        access::check(by, Op::Administer)?;
        let by = by.clone();
        self.transact(&["org"], move |ctx, d| {
            let mut agent: AgentRecord =
                d.get(RecordKind::Agent, &id)?.ok_or_else(|| Error::NotFound(format!("agent {id} does not exist")))?;
            if agent.suspended != suspended {
                agent.suspended = suspended;
                d.put(RecordKind::Agent, &id, &agent)?;
                let kind = if suspended { "agent.suspended" } else { "agent.resumed" };
                org_event(d, kind, ctx.now(), &by, json!({"id": id}))?;
            }
            Ok(agent)
        })
        .await
    }
}

/// Whose credential [`Engine::revoke`] revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocable {
    Agent,
    Approver,
}

impl Engine {
    /// Revokes an agent's API key or an approver's token (idempotent): it no longer
    /// authenticates, on the API or the web pages. What it left pending is re-checked
    /// at the next decision and at passport pickup: a revoked agent's cases are
    /// rejected; a revoked approver's approvals stop counting (`review.approval_withdrawn`),
    /// and a review left without its quorum by that is rejected (`decision.rechecked`).
    /// Returns when it was revoked.
    pub async fn revoke(&self, by: &Principal, kind: Revocable, id: String) -> Result<i64> {
        access::check(by, Op::Administer)?;
        let by = by.clone();
        let at = self
            .transact(&["org"], move |ctx, d| {
                let now = ctx.now();
                match kind {
                    Revocable::Agent => {
                        let mut a: AgentRecord = d
                            .get(RecordKind::Agent, &id)?
                            .ok_or_else(|| Error::NotFound(format!("agent {id} does not exist")))?;
                        if let Some(at) = a.revoked_at_ms {
                            return Ok(at);
                        }
                        a.revoked_at_ms = Some(now);
                        d.put(RecordKind::Agent, &id, &a)?;
                        org_event(d, "agent.revoked", now, &by, json!({"id": id}))?;
                    }
                    Revocable::Approver => {
                        let mut a: ApproverRecord = d
                            .get(RecordKind::Approver, &id)?
                            .ok_or_else(|| Error::NotFound(format!("approver {id} does not exist")))?;
                        if let Some(at) = a.revoked_at_ms {
                            return Ok(at);
                        }
                        a.revoked_at_ms = Some(now);
                        d.put(RecordKind::Approver, &id, &a)?;
                        org_event(d, "approver.revoked", now, &by, json!({"id": id}))?;
                    }
                }
                Ok(now)
            })
            .await?;
        self.forget_credentials();
        Ok(at)
    }
}

/// The active policy version a decision relies on.
pub(crate) fn active_version(d: &mut Draft<'_>) -> Result<Option<u64>> {
    match d.record(RecordKind::Setting, "active_policy")? {
        Some(b) => Ok(serde_json::from_str(&b)?),
        None => Ok(None),
    }
}

/// The shadow policy version a decision relies on.
pub(crate) fn shadow_version(d: &mut Draft<'_>) -> Result<Option<u64>> {
    match d.record(RecordKind::Setting, "shadow_policy")? {
        Some(b) => Ok(serde_json::from_str(&b)?),
        None => Ok(None),
    }
}

/// A policy version setting as of a snapshot (`active_policy`, `shadow_policy`).
fn setting_version(snap: &mut dyn Snapshot, name: &str) -> Result<Option<u64>> {
    match snap.record(RecordKind::Setting, name)? {
        Some(v) => Ok(serde_json::from_str(&v.body)?),
        None => Ok(None),
    }
}

impl Engine {
    /// Sets (or with `None` clears) the shadow policy: evaluated on live requests beside
    /// the active one, never enforced; divergences are recorded.
    pub async fn set_shadow_policy(&self, by: &Principal, version: Option<u64>) -> Result<Option<u64>> {
        access::check(by, Op::Administer)?;
        let by = by.clone();
        self.transact(&["org"], move |ctx, d| {
            let digest = match version {
                Some(v) => {
                    let record: PolicyRecord = get(d.snapshot(), RecordKind::Policy, &v.to_string())?
                        .ok_or_else(|| Error::NotFound(format!("policy version {v} does not exist")))?;
                    ctx.compiled(d.snapshot(), v)?;
                    Some(record.digest)
                }
                None => None,
            };
            shadow_version(d)?;
            d.put(RecordKind::Setting, "shadow_policy", &version)?;
            org_event(d, "policy.shadowed", ctx.now(), &by, json!({"version": version, "digest": digest}))?;
            Ok(version)
        })
        .await
    }

    /// The shadow version and the recorded divergences, oldest first.
    pub async fn shadow_divergences(&self, by: &Principal) -> Result<(Option<u64>, Vec<ShadowDivergence>)> {
        access::check(by, Op::ReadPolicies)?;
        self.read(|_, snap| Ok((setting_version(snap, "shadow_policy")?, list(snap, RecordKind::ShadowDivergence)?)))
            .await
    }
}

fn activate_in(d: &mut Draft<'_>, by: &Principal, version: u64, digest: &str, now: i64) -> Result<()> {
    let previous = active_version(d)?;
    d.put(RecordKind::Setting, "active_policy", &version)?;
    org_event(d, "policy.activated", now, by, json!({"version": version, "digest": digest, "previous": previous}))
}

/// Action types are dotted lowercase names like `purchase_order.create`.
pub fn check_action_type(t: &str) -> Result<()> {
    let ok = !t.is_empty()
        && t.len() <= 100
        && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        && !t.starts_with('.')
        && !t.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("type", format!("action type must be lowercase letters, digits, '_' and '.' (got {t:?})")))
    }
}

/// What `trust rebuild` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustRebuild {
    /// Entries replayed.
    pub entries: u64,
    /// Standings recomputed (agents + counterparties).
    pub subjects: usize,
    /// Subjects whose stored standing differed from the replay (and were rewritten when
    /// not in check mode), as `agent:<id>` / `counterparty:<id>`.
    pub differing: Vec<String>,
}

impl Engine {
    /// Recomputes every trust standing from the ledger in one transaction. With `write`,
    /// stored standings are replaced by the replay; otherwise they are only compared.
    pub async fn rebuild_trust(&self, write: bool) -> Result<TrustRebuild> {
        let job = move |ctx: &super::Ctx, d: &mut Draft<'_>| -> Result<TrustRebuild> {
            let cfg = ctx.config.trust.clone();
            let mut replay = crate::trust::Replay::default();
            let size = d.snapshot().ledger_size()?;
            let mut start = 0;
            while start < size {
                let end = (start + 10_000).min(size);
                for e in d.snapshot().ledger_entries(start, end)? {
                    replay.push(&cfg, &e.entry);
                }
                start = end;
            }
            let mut out = TrustRebuild { entries: size, ..Default::default() };
            let sets = [
                (RecordKind::AgentTrust, "agent", &replay.agents),
                (RecordKind::CounterpartyTrust, "counterparty", &replay.counterparties),
            ];
            for (kind, label, states) in sets {
                for (id, state) in states.iter() {
                    out.subjects += 1;
                    let stored: Option<crate::trust::TrustState> = d.get(kind, id)?;
                    if stored.as_ref() != Some(state) {
                        out.differing.push(format!("{label}:{id}"));
                        if write {
                            d.put(kind, id, state)?;
                        }
                    }
                }
            }
            Ok(out)
        };
        // Without `write` the draft writes nothing, so nothing is committed.
        self.transact_scanning(&["trust-rebuild"], job).await
    }
}

/// One recorded request whose verdict would change under a candidate policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedVerdict {
    pub case_id: String,
    pub at: String,
    pub agent: String,
    pub action: String,
    pub counterparty: String,
    pub amount_minor: i64,
    pub from: crate::policy::Verdict,
    pub from_rules: Vec<String>,
    pub to: crate::policy::Verdict,
    pub to_rules: Vec<String>,
}

/// What `policy simulate` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Simulation {
    pub candidate_digest: String,
    /// Recorded policy verdicts replayed.
    pub replayed: u64,
    /// Of which the candidate decides differently.
    pub changed: Vec<ChangedVerdict>,
}

fn rule_ids(reasons: &[crate::policy::Reason]) -> Vec<String> {
    reasons.iter().filter_map(|r| r.rule.clone()).collect()
}

impl Engine {
    /// Replays every recorded policy verdict of the ledger, with the inputs recorded at
    /// decision time (trust, risk, amount), under a candidate policy.
    pub async fn simulate_policy(&self, candidate: String) -> Result<Simulation> {
        self.read(move |_, tx| {
            let env = policy_env(tx)?;
            let compiled = CompiledPolicy::compile(&candidate, &env)?;
            let mut out = Simulation { candidate_digest: compiled.digest(), ..Default::default() };
            let size = tx.ledger_size()?;
            let mut start = 0;
            while start < size {
                let end = (start + 10_000).min(size);
                for e in tx.ledger_entries(start, end)? {
                    let e = e.entry;
                    if e.kind != "decision.made" || e.data.get("policy").is_none_or(|p| p.is_null()) {
                        continue;
                    }
                    let d = &e.data;
                    let inputs = &d["inputs"];
                    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                    let from: crate::policy::Verdict = serde_json::from_value(d["verdict"].clone())?;
                    let from_reasons: Vec<crate::policy::Reason> = serde_json::from_value(d["reasons"].clone())?;
                    let (agent, owner) = (s(&inputs["agent"]["id"]), s(&inputs["agent"]["owner"]));
                    let (cp, risk) = (s(&inputs["counterparty"]["id"]), s(&inputs["counterparty"]["risk"]));
                    let (action, currency) = (s(&inputs["action"]), s(&inputs["currency"]));
                    let amount = inputs["amount_minor"].as_i64().unwrap_or(0);
                    let eval = compiled.evaluate(&crate::policy::PolicyInput {
                        agent_id: &agent,
                        agent_owner: &owner,
                        agent_trust: inputs["agent"]["trust"].as_i64().unwrap_or(50),
                        action: &action,
                        counterparty_id: &cp,
                        counterparty_risk: &risk,
                        counterparty_trust: inputs["counterparty"]["trust"].as_i64().unwrap_or(50),
                        amount_minor: amount,
                        currency: &currency,
                    });
                    out.replayed += 1;
                    if eval.verdict != from {
                        out.changed.push(ChangedVerdict {
                            case_id: e.case.clone().unwrap_or_default(),
                            at: e.at.clone(),
                            agent,
                            action,
                            counterparty: cp,
                            amount_minor: amount,
                            from,
                            from_rules: rule_ids(&from_reasons),
                            to: eval.verdict,
                            to_rules: rule_ids(&eval.reasons),
                        });
                    }
                }
                start = end;
            }
            Ok(out)
        })
        .await
    }
}

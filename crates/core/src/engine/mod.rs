//! The seven-step loop: every operation a principal can perform, each one store
//! transaction that changes state and appends the ledger entries recording it.
//!
//! - [`admin`]: registering agents, approvers, systems, counterparties, action types,
//!   policies;
//! - [`cases`]: requests and verdicts, passports, execution, outcomes and trust, expiry;
//! - [`review`]: human review decisions;
//! - [`views`]: the JSON documents the API returns.

pub mod admin;
pub mod cases;
pub mod review;
pub mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::keys::Keyring;
use crate::model::{Case, CaseStatus, Principal};
use crate::policy::{CompiledPolicy, PolicyEnv};
use crate::store::{self, CaseRow, NewEntry, RecordKind, Store, StoreExt, Tx};
use crate::trust::TrustConfig;
use crate::{Clock, Error, Result};

/// Settings of the loop. Defaults are the documented ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Passport `iss`.
    pub issuer: String,
    /// Default passport lifetime (a rule's `@ttl` may shorten it).
    pub passport_ttl_secs: i64,
    /// Upper bound of any passport lifetime (also how long a rotated-out key is published).
    pub max_passport_ttl_secs: i64,
    /// Default review deadline (a rule's `@deadline` overrides it).
    pub review_deadline_secs: i64,
    /// How long an approved case's passport may be picked up.
    pub pickup_window_secs: i64,
    /// Largest accepted request `context`, serialized.
    pub max_context_bytes: usize,
    /// Deepest accepted request `context` nesting.
    pub max_context_depth: usize,
    /// Trust model parameters.
    pub trust: TrustConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            issuer: "agentsigna".to_owned(),
            passport_ttl_secs: 300,
            max_passport_ttl_secs: 3600,
            review_deadline_secs: 24 * 3600,
            pickup_window_secs: 24 * 3600,
            max_context_bytes: 16 * 1024,
            max_context_depth: 8,
            trust: TrustConfig::default(),
        }
    }
}

/// Compiled policies by version: a policy is compiled once, never per request.
#[derive(Default)]
pub(crate) struct PolicyCache {
    compiled: Mutex<HashMap<u64, Arc<CompiledPolicy>>>,
}

/// The AgentSigna engine: one per server process, shared by all requests.
pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: Arc<RwLock<Keyring>>,
    pub(crate) config: Arc<Config>,
    pub(crate) policies: Arc<PolicyCache>,
    auth_cache: RwLock<HashMap<String, Principal>>,
    listener: RwLock<Option<Arc<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("backend", &self.store.backend()).finish_non_exhaustive()
    }
}

/// Data shared with transaction closures (which must be `'static`).
#[derive(Clone)]
pub(crate) struct Ctx {
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<RwLock<Keyring>>,
    pub config: Arc<Config>,
    pub policies: Arc<PolicyCache>,
}

impl Engine {
    /// An engine over a store.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, keys: Keyring, config: Config) -> Engine {
        Engine {
            store,
            clock,
            keys: Arc::new(RwLock::new(keys)),
            config: Arc::new(config),
            policies: Arc::new(PolicyCache::default()),
            auth_cache: RwLock::new(HashMap::new()),
            listener: RwLock::new(None),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A snapshot of the keys.
    pub fn keys(&self) -> Keyring {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Rotates the passport key in this process (the CLI rotates the files).
    pub fn rotate_passport_key(&self) -> Result<String> {
        let now = self.clock.now_ms();
        let mut keys = self.keys.write().map_err(|_| Error::storage("key lock poisoned"))?;
        Ok(keys.rotate(now)?.kid.clone())
    }

    /// Replaces the keys (after `agentsigna keys rotate` changed the key files).
    pub fn replace_keys(&self, keys: Keyring) {
        if let Ok(mut k) = self.keys.write() {
            *k = keys;
        }
    }

    /// Registers a callback run after every committed change of a case (used to wake
    /// `?wait` requests).
    pub fn set_listener(&self, f: Arc<dyn Fn() + Send + Sync>) {
        if let Ok(mut l) = self.listener.write() {
            *l = Some(f);
        }
    }

    pub(crate) fn changed(&self) {
        let listener = self.listener.read().ok().and_then(|l| l.clone());
        if let Some(f) = listener {
            f();
        }
    }

    pub(crate) fn ctx(&self) -> Ctx {
        Ctx {
            clock: self.clock.clone(),
            keys: self.keys.clone(),
            config: self.config.clone(),
            policies: self.policies.clone(),
        }
    }

    /// Resolves a bearer credential to its principal (401 when unknown).
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let hash = crate::ids::secret_hash(token);
        if let Ok(cache) = self.auth_cache.read() {
            if let Some(p) = cache.get(&hash) {
                return Ok(p.clone());
            }
        }
        let h = hash.clone();
        let found = self.store.read_tx(move |tx| tx.credential(&h)).await?;
        let principal = match found {
            Some((kind, id)) => match kind.as_str() {
                "admin" => Principal::Admin,
                "agent" => Principal::Agent(id),
                "approver" => Principal::Approver(id),
                "system" => Principal::System(id),
                _ => return Err(Error::Unauthenticated("unknown credential".into())),
            },
            None => return Err(Error::Unauthenticated("unknown or revoked credential".into())),
        };
        if let Ok(mut cache) = self.auth_cache.write() {
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(hash, principal.clone());
        }
        Ok(principal)
    }

    /// Makes sure an admin credential exists; returns a new admin token when it had to
    /// create one (the caller writes it to `admin.token`; only its hash is stored).
    pub async fn ensure_admin_token(&self) -> Result<Option<String>> {
        self.store
            .write_tx(move |tx| {
                if tx.get_record(RecordKind::Setting, "admin_token")?.is_some() {
                    return Ok(None);
                }
                let token = crate::ids::new_secret("admin");
                tx.put_credential(&crate::ids::secret_hash(&token), "admin", "admin")?;
                tx.put_record(RecordKind::Setting, "admin_token", "\"created\"")?;
                Ok(Some(token))
            })
            .await
    }
}

impl Ctx {
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The compiled policy of a version (compiled at most once per process).
    pub(crate) fn compiled(&self, tx: &mut dyn Tx, version: u64) -> Result<Arc<CompiledPolicy>> {
        if let Ok(map) = self.policies.compiled.lock() {
            if let Some(p) = map.get(&version) {
                return Ok(p.clone());
            }
        }
        let record: crate::model::PolicyRecord = store::get(tx, RecordKind::Policy, &version.to_string())?
            .ok_or_else(|| Error::NotFound(format!("policy version {version} does not exist")))?;
        let env = policy_env(tx)?;
        let compiled = Arc::new(CompiledPolicy::compile(&record.source, &env)?);
        if let Ok(mut map) = self.policies.compiled.lock() {
            map.insert(version, compiled.clone());
        }
        Ok(compiled)
    }
}

/// The environment policies are validated against: declared actions and approver roles.
pub(crate) fn policy_env(tx: &mut dyn Tx) -> Result<PolicyEnv> {
    let actions: Vec<crate::model::ActionRecord> = store::list(tx, RecordKind::Action)?;
    let approvers: Vec<crate::model::ApproverRecord> = store::list(tx, RecordKind::Approver)?;
    let mut roles: Vec<String> = approvers.into_iter().flat_map(|a| a.roles).collect();
    if let Some(declared) = tx.get_record(RecordKind::Setting, "roles")? {
        let declared: Vec<String> = serde_json::from_str(&declared)?;
        roles.extend(declared);
    }
    roles.sort();
    roles.dedup();
    Ok(PolicyEnv { actions: actions.into_iter().map(|a| a.action_type).collect(), roles })
}

/// Appends an organization event.
pub(crate) fn org_event(
    tx: &mut dyn Tx,
    kind: &str,
    at_ms: i64,
    actor: &Principal,
    data: serde_json::Value,
) -> Result<()> {
    tx.append(NewEntry { case: None, kind: kind.to_owned(), at_ms, actor: actor.actor(), data })?;
    Ok(())
}

/// Appends an event to a case's chain and moves its head.
pub(crate) fn case_event(
    tx: &mut dyn Tx,
    case: &mut Case,
    kind: &str,
    at_ms: i64,
    actor: &str,
    data: serde_json::Value,
) -> Result<agentsigna_verify::ledger::DigestedEntry> {
    let entry = tx.append(NewEntry {
        case: Some(case.id.clone()),
        kind: kind.to_owned(),
        at_ms,
        actor: actor.to_owned(),
        data,
    })?;
    case.head = Some((entry.entry.index, entry.digest.clone()));
    Ok(entry)
}

/// Loads a case.
pub(crate) fn load_case(tx: &mut dyn Tx, id: &str) -> Result<Case> {
    match tx.get_case(id)? {
        Some(body) => Ok(serde_json::from_str(&body)?),
        None => Err(Error::NotFound(format!("case {id} does not exist"))),
    }
}

/// Stores a case with its index columns.
pub(crate) fn save_case(tx: &mut dyn Tx, case: &Case) -> Result<()> {
    let body = serde_json::to_string(case).map_err(|e| Error::storage(e.to_string()))?;
    let review = case.review.as_ref();
    tx.put_case(&CaseRow {
        id: case.id.clone(),
        agent: case.agent.clone(),
        audience: case.request.audience.clone(),
        status: case.status.as_str().to_owned(),
        idempotency_key: case.request.idempotency_key.clone(),
        review_id: review.map(|r| r.id.clone()),
        review_pending: case.status == CaseStatus::PendingReview,
        deadline_ms: review.map(|r| r.deadline_ms),
        due_ms: case.due_ms(),
        created_at_ms: case.created_at_ms,
        body,
    })
}

//! The seven-step loop: every operation a principal can perform. Each one decides on its
//! own task against a snapshot ([`draft`]), then hands the store one write set to sequence
//! ([`Engine::transact`]); a stale precondition makes it decide again.
//!
//! - [`admin`]: registering agents, approvers, systems, counterparties, action types,
//!   policies;
//! - [`request`]: an agent's request and its verdict; [`verdict`]: the policy's input and
//!   the re-check of pending cases; [`passport`]: issuing a case's passport;
//!   [`outcome`]: execution reports, outcomes and the trust they move;
//! - [`cases`]: reading cases as principals may see them, and expiry;
//! - [`data`]: reading and recording through a snapshot or a draft (records, cases,
//!   trust standings, the policy environment, ledger events);
//! - [`review`]: human review decisions;
//! - [`views`]: the JSON documents the API returns;
//! - [`ledger`]: checkpoint, entries, proofs and case evidence as principals read them;
//! - [`watch`]: waking `?wait` requests when their case changes;
//! - [`outbox`]: the webhook outbox: queued with the event it announces, read by the
//!   notifier;
//! - [`sessions`]: approver web sessions, stored so that every node knows them;
//! - [`stored`]: how a case is stored (its row and state; its request and decision read
//!   back from its first ledger entries).

pub mod admin;
pub mod cases;
pub(crate) mod data;
pub(crate) mod draft;
pub mod figures;
pub mod ledger;
pub mod outbox;
pub mod outcome;
pub(crate) mod passport;
pub(crate) mod record_cache;
pub mod request;
pub mod review;
pub mod sessions;
pub(crate) mod stored;
pub(crate) mod verdict;
pub mod views;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys::Keyring;
use crate::model::Principal;
use crate::policy::CompiledPolicy;
use crate::store::{RecordKind, Snapshot, Store, StoreError, StoreExt, Write};
use crate::trust::TrustConfig;
use crate::{Clock, Error, Result};
use data::{get, policy_env};
use draft::Draft;

/// How often an operation decides again after a stale precondition before giving up
/// (the caller then gets a 503 and retries later). Within one process, operations on one
/// key queue on its lock and do not conflict; these attempts absorb races with other
/// nodes, which on a hot key (one agent's trust) can lose several rounds in a row.
const MAX_ATTEMPTS: u32 = 32;

/// What a decision reads: a few rows named by its keys, or a scan.
#[derive(Debug, Clone, Copy)]
enum Reads {
    Bounded,
    Scan,
}

/// How long a node trusts a credential it has looked up before reading it again. Only
/// found credentials are kept (an unknown one is looked up at every request), so a
/// credential created on any node works on every node at once; one removed from the
/// database (revoked) stops working on every node within this bound, at once on the node
/// that revoked it.
pub const AUTH_CACHE_MS: i64 = 5_000;

/// Longest pause between two attempts (the pause is random, up to a bound doubling from
/// 200 µs per attempt).
const MAX_BACKOFF_MICROS: u64 = 50_000;

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

/// In-process locks on the keys an operation writes (a case, a trust standing), so that
/// operations of one node on the same key queue instead of failing each other's
/// preconditions. Across nodes, preconditions alone keep writes correct.
struct KeyLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl KeyLocks {
    fn new() -> KeyLocks {
        KeyLocks { stripes: (0..256).map(|_| tokio::sync::Mutex::new(())).collect() }
    }

    /// Locks the stripes of `keys`; also says whether another operation held one of them
    /// (then it may have just written the same key).
    async fn lock(&self, keys: &[&str]) -> (Vec<tokio::sync::MutexGuard<'_, ()>>, bool) {
        use std::hash::{Hash, Hasher};
        let mut idx: Vec<usize> = keys
            .iter()
            .map(|k| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                k.hash(&mut h);
                (h.finish() % self.stripes.len() as u64) as usize
            })
            .collect();
        // One order for everyone: no deadlock between operations locking several keys.
        idx.sort_unstable();
        idx.dedup();
        let mut guards = Vec::with_capacity(idx.len());
        let mut waited = false;
        for i in idx {
            let guard = match self.stripes[i].try_lock() {
                Ok(g) => g,
                Err(_) => {
                    waited = true;
                    self.stripes[i].lock().await
                }
            };
            guards.push(guard);
        }
        (guards, waited)
    }
}

/// 401 when an agent's or approver's credential was revoked.
pub(crate) fn check_not_revoked(snap: &mut dyn Snapshot, p: &Principal) -> Result<()> {
    let revoked = match p {
        Principal::Agent(id) => {
            get::<crate::model::AgentRecord>(snap, RecordKind::Agent, id)?.is_none_or(|a| a.revoked_at_ms.is_some())
        }
        Principal::Approver(id) => get::<crate::model::ApproverRecord>(snap, RecordKind::Approver, id)?
            .is_none_or(|a| a.revoked_at_ms.is_some()),
        Principal::Admin | Principal::System(_) => false,
    };
    if revoked {
        return Err(Error::Unauthenticated(format!("the credential of {} was revoked", p.actor())));
    }
    Ok(())
}

/// The AgentSigna engine: one per server process, shared by all requests.
pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: Arc<RwLock<Keyring>>,
    pub(crate) config: Arc<Config>,
    pub(crate) policies: Arc<PolicyCache>,
    /// Credential hash → principal and when it was looked up (see [`AUTH_CACHE_MS`]).
    auth_cache: RwLock<HashMap<String, (Principal, i64)>>,
    locks: KeyLocks,
    /// Records decisions read, validated by their preconditions ([`record_cache`]).
    records: Arc<record_cache::RecordCache>,
    watch: watch::Watchers,
    /// This engine's random name as the holder of leases ([`Store::claim`]).
    node: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("backend", &self.store.backend()).finish_non_exhaustive()
    }
}

/// Data shared with decisions (which run off the caller's stack).
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
            locks: KeyLocks::new(),
            records: Arc::new(record_cache::RecordCache::default()),
            watch: watch::Watchers::default(),
            node: format!("node-{:016x}", rand::random::<u64>()),
        }
    }

    /// The storage backend's name (`sqlite`, `postgres`).
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// What the store's serial step has done so far.
    pub fn serial_figures(&self) -> crate::store::SerialFigures {
        self.store.serial_figures()
    }

    /// This engine's name as the holder of leases (random per process).
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Leases work any node could do (`keys`, e.g. `case:<id>`) to this node from `now_ms`
    /// until `until_ms`; returns the keys it got (see [`Store::claim`]). Times are on the
    /// caller's clock: every claimant of one kind of key must use the same one.
    pub async fn claim(&self, keys: Vec<String>, now_ms: i64, until_ms: i64) -> Result<Vec<String>> {
        Ok(self.store.claim(keys, &self.node, now_ms, until_ms).await?)
    }

    /// Gives back leases this node holds.
    pub async fn release(&self, keys: Vec<String>) -> Result<()> {
        Ok(self.store.release(keys, &self.node).await?)
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
        crate::sync::read(&self.keys).clone()
    }

    /// Rotates the passport key in this process (the CLI rotates the files).
    pub fn rotate_passport_key(&self) -> Result<String> {
        let now = self.clock.now_ms();
        Ok(crate::sync::write(&self.keys).rotate(now)?.kid.clone())
    }

    /// Replaces the keys (after `agentsigna keys rotate` changed the key files).
    pub fn replace_keys(&self, keys: Keyring) {
        *crate::sync::write(&self.keys) = keys;
    }

    pub(crate) fn ctx(&self) -> Ctx {
        Ctx {
            clock: self.clock.clone(),
            keys: self.keys.clone(),
            config: self.config.clone(),
            policies: self.policies.clone(),
        }
    }

    /// Runs a read-only function against one snapshot.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Ctx, &mut dyn Snapshot) -> Result<T> + Send + 'static,
    {
        let ctx = self.ctx();
        self.store.read_with(move |snap| f(&ctx, snap)).await
    }

    /// Decides against a snapshot and commits what was decided; decides again (up to
    /// [`MAX_ATTEMPTS`] times) when a precondition went stale meanwhile. `keys` are the
    /// keys the operation writes, locked within this process for its duration.
    ///
    /// Nothing is written when `decide` fails; a value it returns is the caller's only
    /// after the commit is durable.
    pub(crate) async fn transact<T, F>(&self, keys: &[&str], decide: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Ctx, &mut Draft<'_>) -> Result<T> + Send + Sync + 'static,
    {
        self.transact_reading(keys, Reads::Bounded, decide).await
    }

    /// [`Engine::transact`] for a decision that scans (the whole ledger, say): its
    /// snapshot is read where long reads belong ([`Store::read`]), not on the caller's task.
    pub(crate) async fn transact_scanning<T, F>(&self, keys: &[&str], decide: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Ctx, &mut Draft<'_>) -> Result<T> + Send + Sync + 'static,
    {
        self.transact_reading(keys, Reads::Scan, decide).await
    }

    async fn transact_reading<T, F>(&self, keys: &[&str], reads: Reads, decide: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Ctx, &mut Draft<'_>) -> Result<T> + Send + Sync + 'static,
    {
        let decide = Arc::new(decide);
        let (_guards, waited) = self.locks.lock(keys).await;
        let mut last = String::new();
        // Records come from the node's cache, and idempotency keys are taken to be free
        // (unless an operation on the same lock stripe just ran, which may have used the
        // key), until an answer would rest on an assumption that no commit validated (an
        // error, or nothing to write): then from the store alone. A conflict ends the
        // second assumption too: the key may be what was taken.
        let mut use_cache = true;
        let mut keys_free = !waited;
        for attempt in 0..MAX_ATTEMPTS {
            let ctx = self.ctx();
            let decide = decide.clone();
            let cache = use_cache.then(|| (self.records.clone(), self.records.epoch()));
            let run = move |snap: &mut dyn Snapshot| -> Result<_> {
                let mut draft = Draft::new(snap, cache.as_ref().map(|(c, e)| (&**c, *e))).assume_keys_free(keys_free);
                match decide(&ctx, &mut draft) {
                    Ok(value) => Ok(Some((value, draft.finish()))),
                    // Decided again from the store alone: its error, if any, is the answer.
                    Err(_) if draft.rests_on_assumptions() => Ok(None),
                    Err(e) => Err(e),
                }
            };
            let outcome = match reads {
                Reads::Bounded => self.store.read_to_decide_with(run).await?,
                Reads::Scan => self.store.read_with(run).await?,
            };
            let Some((value, decided)) = outcome else {
                (use_cache, keys_free) = (false, false);
                continue;
            };
            if decided.writes.is_empty() {
                if !decided.assumed {
                    return Ok(value);
                }
                (use_cache, keys_free) = (false, false);
                continue;
            }
            let written: Vec<(RecordKind, String)> = decided
                .writes
                .writes
                .iter()
                .filter_map(|w| match w {
                    Write::PutRecord { kind, id, .. } | Write::DeleteRecord { kind, id } => Some((*kind, id.clone())),
                    _ => None,
                })
                .collect();
            match self.store.commit(decided.writes).await {
                Ok(_) => {
                    self.records.drop_all(written.iter().map(|(k, id)| (*k, id.as_str())));
                    self.watch.changed(&decided.changed, decided.outbox);
                    return Ok(value);
                }
                Err(StoreError::Conflict(why)) => {
                    keys_free = false;
                    self.records.drop_all(decided.from_cache.iter().map(|(k, id)| (*k, id.as_str())));
                    last = why;
                    // Jittered backoff, so that racing nodes do not collide again in step.
                    let cap = (200u64 << attempt.min(16)).min(MAX_BACKOFF_MICROS);
                    let micros = rand::Rng::gen_range(&mut rand::thread_rng(), 0..cap);
                    tokio::time::sleep(Duration::from_micros(micros)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Store(StoreError::Conflict(format!(
            "the operation kept conflicting with concurrent changes ({MAX_ATTEMPTS} attempts; last: {last})"
        ))))
    }

    /// Resolves a bearer credential to its principal (401 when unknown or revoked).
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let hash = crate::ids::secret_hash(token);
        let now = self.clock.now_ms();
        if let Some((p, at)) = crate::sync::read(&self.auth_cache).get(&hash) {
            if now.saturating_sub(*at) < AUTH_CACHE_MS {
                return Ok(p.clone());
            }
        }
        let h = hash.clone();
        let principal = self
            .read(move |_, snap| {
                let principal = match snap.credential(&h)? {
                    Some((kind, id)) => match kind.as_str() {
                        "admin" => Principal::Admin,
                        "agent" => Principal::Agent(id),
                        "approver" => Principal::Approver(id),
                        "system" => Principal::System(id),
                        _ => return Err(Error::Unauthenticated("unknown credential".into())),
                    },
                    None => return Err(Error::Unauthenticated("unknown or revoked credential".into())),
                };
                check_not_revoked(snap, &principal)?;
                Ok(principal)
            })
            .await?;
        {
            let mut cache = crate::sync::write(&self.auth_cache);
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(hash, (principal.clone(), now));
        }
        Ok(principal)
    }

    /// Whether a principal authenticated earlier (a web session) still holds an
    /// unrevoked credential: 401 otherwise.
    pub async fn still_valid(&self, p: &Principal) -> Result<()> {
        let p = p.clone();
        self.read(move |_, snap| check_not_revoked(snap, &p)).await
    }

    /// Drops every cached credential lookup (after a revocation in this process).
    pub(crate) fn forget_credentials(&self) {
        crate::sync::write(&self.auth_cache).clear();
    }

    /// Makes sure an admin credential exists; returns a new admin token when it had to
    /// create one (the caller writes it to `admin.token`; only its hash is stored).
    pub async fn ensure_admin_token(&self) -> Result<Option<String>> {
        let token = crate::ids::new_secret("admin");
        self.transact(&[], move |_, d| {
            if d.record(RecordKind::Setting, "admin_token")?.is_some() {
                return Ok(None);
            }
            d.put_credential(crate::ids::secret_hash(&token), "admin", "admin");
            d.put_raw(RecordKind::Setting, "admin_token", "\"created\"".to_owned());
            Ok(Some(token.clone()))
        })
        .await
    }

    /// Whether the store answers and the keys are loaded (readiness).
    pub async fn ready(&self) -> Result<()> {
        crate::sync::read(&self.keys).active()?;
        self.read(|_, snap| Ok(snap.ledger_size()?)).await.map(|_| ())
    }
}

impl Ctx {
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The compiled policy of a version (compiled at most once per process; versions are
    /// immutable, so no precondition is needed).
    pub(crate) fn compiled(&self, snap: &mut dyn Snapshot, version: u64) -> Result<Arc<CompiledPolicy>> {
        if let Some(p) = crate::sync::lock(&self.policies.compiled).get(&version) {
            return Ok(p.clone());
        }
        let record: crate::model::PolicyRecord = get(snap, RecordKind::Policy, &version.to_string())?
            .ok_or_else(|| Error::NotFound(format!("policy version {version} does not exist")))?;
        let env = policy_env(snap)?;
        let compiled = Arc::new(CompiledPolicy::compile(&record.source, &env)?);
        crate::sync::lock(&self.policies.compiled).insert(version, compiled.clone());
        Ok(compiled)
    }
}

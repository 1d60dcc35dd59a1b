//! The serial step on PostgreSQL: one sequencer task per node takes write sets from a
//! channel in batches. Per batch, ONE transaction: lock the `ledger_head` row (`FOR
//! UPDATE`: every node's batches take turns on it; positions never come from a sequence),
//! rebuild the in-memory Merkle frontier if another node moved the tree, check every
//! write set's preconditions (pipelined), then apply the accepted write sets (writes,
//! entries and Merkle nodes, in the compact layout of [`crate::layout`]), the signed
//! checkpoint, the new head and `pg_notify` for the other nodes in one pipeline, and
//! `COMMIT`: four round trips whatever the batch size. A write set failing inside that
//! pipeline sends the batch down the slow path, one savepoint per write set, so that it is
//! rolled back alone. Write sets are answered only after the commit.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use agentsigna_core::store::{Committed, Precondition, RecordKind, StoreError, StoreResult, Write, WriteSet};
use agentsigna_verify::merkle::{Frontier, Hash};
use agentsigna_verify::note::{sign_checkpoint, Checkpoint, NoteSigner};
use deadpool_postgres::{ClientWrapper, Object, Pool};
use futures_util::future::{join_all, try_join_all};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use super::notify::payloads;
use super::read::{case_version, chain_head, head, idempotency_taken, query, record_version};
use super::{pg_err, pool_err, to_i64};
pub(crate) use crate::job::Job;
use crate::layout::{Packed, FIRST_STORED_LEVEL};

/// Largest number of write sets sharing one transaction.
const MAX_BATCH: usize = 256;

/// What the sequencer measured since the store started: the time the `ledger_head` lock
/// was held (from the moment it was granted to the end of `COMMIT`) per batch, and what
/// the batches carried.
#[derive(Debug, Default)]
pub struct SequencerStats {
    batches: AtomicU64,
    write_sets: AtomicU64,
    entries: AtomicU64,
    held_micros: AtomicU64,
    max_held_micros: AtomicU64,
    wait_micros: AtomicU64,
    rebuilds: AtomicU64,
    slow_batches: AtomicU64,
}

/// A reading of [`SequencerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SequencerFigures {
    /// Batches committed.
    pub batches: u64,
    /// Write sets in them (committed or refused).
    pub write_sets: u64,
    /// Ledger entries appended.
    pub entries: u64,
    /// Total time the sequencing lock was held, in microseconds.
    pub held_micros: u64,
    /// Longest hold of one batch, in microseconds.
    pub max_held_micros: u64,
    /// Total time spent waiting for the lock (held by other nodes), in microseconds.
    pub wait_micros: u64,
    /// Times the frontier was re-read because another node had moved the tree.
    pub rebuilds: u64,
    /// Batches whose pipelined writes failed and were applied write set by write set.
    pub slow_batches: u64,
}

impl SequencerFigures {
    /// Mean hold time per batch, in microseconds.
    pub fn held_per_batch(&self) -> f64 {
        self.held_micros as f64 / self.batches.max(1) as f64
    }

    /// Mean hold time per appended entry, in microseconds.
    pub fn held_per_entry(&self) -> f64 {
        self.held_micros as f64 / self.entries.max(1) as f64
    }
}

impl SequencerStats {
    /// The figures so far.
    pub fn figures(&self) -> SequencerFigures {
        SequencerFigures {
            batches: self.batches.load(Ordering::Relaxed),
            write_sets: self.write_sets.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            held_micros: self.held_micros.load(Ordering::Relaxed),
            max_held_micros: self.max_held_micros.load(Ordering::Relaxed),
            wait_micros: self.wait_micros.load(Ordering::Relaxed),
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
            slow_batches: self.slow_batches.load(Ordering::Relaxed),
        }
    }

    fn record(&self, write_sets: usize, entries: u64, wait: u64, held: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.write_sets.fetch_add(write_sets as u64, Ordering::Relaxed);
        self.entries.fetch_add(entries, Ordering::Relaxed);
        self.held_micros.fetch_add(held, Ordering::Relaxed);
        self.max_held_micros.fetch_max(held, Ordering::Relaxed);
        self.wait_micros.fetch_add(wait, Ordering::Relaxed);
    }
}

pub(crate) struct Sequencer {
    pool: Pool,
    signer: NoteSigner,
    channel: String,
    node: String,
    stats: Arc<SequencerStats>,
    /// The tree as of this node's last commit (rebuilt when another node moved it).
    frontier: Frontier,
}

impl Sequencer {
    pub(crate) fn new(
        pool: Pool,
        signer: NoteSigner,
        channel: String,
        node: String,
        stats: Arc<SequencerStats>,
    ) -> Sequencer {
        Sequencer { pool, signer, channel, node, stats, frontier: Frontier::new() }
    }

    /// Runs batches until every sender is gone.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch).await;
        }
    }

    async fn run_batch(&mut self, batch: Vec<Job>) {
        let client = match self.pool.get().await {
            Ok(c) => c,
            Err(e) => return fail_all(batch, pool_err(e)),
        };
        let start = self.frontier.clone();
        let asked = Instant::now();
        let mut granted = asked;
        let outcome = async {
            prepare(&client).await?;
            client.batch_execute("BEGIN").await.map_err(pg_err)?;
            let (size, root) = head(&client, true).await?;
            granted = Instant::now();
            self.sync_frontier(&client, size, root).await?;
            let base = self.frontier.size();
            Ok::<_, StoreError>((self.batch_body(&client, &batch).await?, base))
        }
        .await;
        let (results, base) = match outcome {
            Ok(done) => done,
            Err(e) => {
                self.frontier = start;
                abort(client).await;
                return fail_all(batch, e);
            }
        };
        let tree_size = self.frontier.size();
        let entries = tree_size - base;
        let held = u64::try_from(granted.elapsed().as_micros()).unwrap_or(u64::MAX);
        let wait = u64::try_from((granted - asked).as_micros()).unwrap_or(u64::MAX);
        self.stats.record(batch.len(), entries, wait, held);
        tracing::trace!(write_sets = batch.len(), entries, held_us = held, "sequenced a batch");
        for (job, result) in batch.into_iter().zip(results) {
            job.answer(result.map(|first_index| Committed { first_index, tree_size }));
        }
    }

    /// Makes the frontier that of the tree in `ledger_head`, reading its peaks when another
    /// node appended since this node's last batch.
    async fn sync_frontier(&mut self, client: &ClientWrapper, size: u64, root: Option<Hash>) -> StoreResult<()> {
        let current = size == self.frontier.size() && (size == 0 || root == Some(self.frontier.root()));
        if current {
            return Ok(());
        }
        let peaks =
            try_join_all(peak_positions(size).map(|(level, index)| super::read::node(client, level, index))).await?;
        let frontier = Frontier::from_parts(size, peaks)
            .map_err(|e| StoreError::storage("cannot rebuild the Merkle frontier", e))?;
        if size > 0 && root != Some(frontier.root()) {
            return Err(StoreError::corrupt("the stored Merkle nodes do not match the root in ledger_head"));
        }
        self.frontier = frontier;
        self.stats.rebuilds.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Everything between the lock and `COMMIT`; returns each write set's result.
    ///
    /// Fast path, a fixed number of round trips whatever the batch size: every
    /// precondition of every write set, pipelined; then, for the write sets whose
    /// preconditions hold and that no earlier write set of the batch invalidated (see
    /// [`Touched`]), one savepoint, all their writes, entries and Merkle nodes, the
    /// checkpoint, the new head and the notifications, pipelined. When a statement of that
    /// pipeline fails (a uniqueness violation: a bug or a race the preconditions do not
    /// cover; or a write set the tables refuse, such as an entry of a case without a row),
    /// everything since the savepoint is rolled back and the accepted write sets are
    /// applied one by one, each in its own savepoint, so that only the failing one is
    /// refused ([`Sequencer::one_by_one`]).
    async fn batch_body(&mut self, client: &ClientWrapper, batch: &[Job]) -> StoreResult<Vec<StoreResult<u64>>> {
        let before_batch = self.frontier.clone();
        // Round trip: the preconditions, read after the lock (READ COMMITTED: every batch
        // committed before ours is visible).
        let checks = join_all(batch.iter().map(|job| async move {
            for result in join_all(job.writes.preconditions.iter().map(|p| check(client, p))).await {
                result?;
            }
            Ok::<_, StoreError>(())
        }))
        .await;
        let mut touched = Touched::default();
        let mut verdicts = Vec::with_capacity(batch.len());
        for (job, check) in batch.iter().zip(checks) {
            let verdict = match check {
                // A failed read aborted the transaction: the batch cannot go on.
                Err(e) if !matches!(e, StoreError::Conflict(_)) => return Err(e),
                Err(conflict) => Err(conflict),
                Ok(()) => touched.check(&job.writes.preconditions),
            };
            if verdict.is_ok() {
                touched.add(&job.writes);
            }
            verdicts.push(verdict);
        }

        // Round trip: the accepted write sets and the end of the batch, pipelined.
        let mut results = Vec::with_capacity(batch.len());
        let mut entries = EntryColumns::default();
        for (job, verdict) in batch.iter().zip(&verdicts) {
            results.push(match verdict {
                Ok(()) => entries.push(&mut self.frontier, &job.writes, &job.packed),
                Err(e) => Err(e.clone()),
            });
        }
        let accepted = || batch.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(job, _)| job);
        let end = self.end_of_batch(accepted().map(|job| &job.writes), before_batch.size())?;
        let mut steps: Vec<Step<'_>> =
            vec![Box::pin(async { client.batch_execute("SAVEPOINT b").await.map_err(pg_err) })];
        for job in accepted() {
            writes(client, &job.writes, &job.packed.tokens, &mut steps);
        }
        entries.steps(client, &mut steps);
        steps.push(Box::pin(async { client.batch_execute("RELEASE SAVEPOINT b").await.map_err(pg_err) }));
        end.steps(client, &self.channel, &mut steps);
        // COMMIT of an aborted transaction would roll back without an error: it is sent
        // only once every statement of the batch has succeeded.
        let failed = join_all(steps).await.into_iter().find_map(Result::err);
        let Some(first_failure) = failed else {
            client.batch_execute("COMMIT").await.map_err(pg_err)?;
            return Ok(results);
        };
        // The database refused a statement (a uniqueness violation, or an entry of a case
        // without a row): the slow path finds the write set at fault. Unreachable: the
        // batch fails.
        if matches!(first_failure, StoreError::Unavailable { .. }) {
            return Err(first_failure);
        }
        // Slow path: the accepted write sets one by one.
        client.batch_execute("ROLLBACK TO SAVEPOINT b; RELEASE SAVEPOINT b").await.map_err(pg_err)?;
        self.frontier = before_batch.clone();
        self.stats.slow_batches.fetch_add(1, Ordering::Relaxed);
        let results = self.one_by_one(client, batch, verdicts).await?;
        let committed = batch.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(job, _)| &job.writes);
        let end = self.end_of_batch(committed, before_batch.size())?;
        let mut steps = Vec::new();
        end.steps(client, &self.channel, &mut steps);
        for result in join_all(steps).await {
            result?;
        }
        client.batch_execute("COMMIT").await.map_err(pg_err)?;
        Ok(results)
    }

    /// Applies the write sets whose verdict is `Ok` one after the other, each in its own
    /// savepoint (its preconditions checked again against what the earlier ones wrote);
    /// a failing one is rolled back alone.
    async fn one_by_one(
        &mut self,
        client: &ClientWrapper,
        batch: &[Job],
        verdicts: Vec<StoreResult<()>>,
    ) -> StoreResult<Vec<StoreResult<u64>>> {
        let mut results = Vec::with_capacity(batch.len());
        for (job, verdict) in batch.iter().zip(verdicts) {
            if let Err(e) = verdict {
                results.push(Err(e));
                continue;
            }
            let before = self.frontier.clone();
            let result = write_set(client, &mut self.frontier, job).await;
            if let Err(e) = &result {
                self.frontier = before;
                // The savepoint is gone with the transaction if the connection failed:
                // then the whole batch fails.
                client.batch_execute("ROLLBACK TO SAVEPOINT ws; RELEASE SAVEPOINT ws").await.map_err(pg_err)?;
                if !matches!(e, StoreError::Conflict(_)) {
                    tracing::warn!(error = %e, "a write set failed");
                }
            }
            results.push(result);
        }
        Ok(results)
    }

    /// The statements that end a batch whose write sets `committed` were applied: the
    /// signed checkpoint and the new head when the tree grew, and the notifications.
    fn end_of_batch<'w>(
        &self,
        committed: impl Iterator<Item = &'w WriteSet>,
        size_before: u64,
    ) -> StoreResult<EndOfBatch> {
        let (mut changed, mut outbox) = (BTreeSet::new(), false);
        for ws in committed {
            collect_changes(ws, &mut changed, &mut outbox);
        }
        let checkpoint = if self.frontier.size() != size_before { Some(self.checkpoint_statements()?) } else { None };
        Ok(EndOfBatch { checkpoint, notes: payloads(&self.node, &changed, outbox) })
    }

    fn checkpoint_statements(&self) -> StoreResult<(i64, Vec<u8>, String)> {
        let cp = Checkpoint {
            origin: self.signer.name().to_owned(),
            size: self.frontier.size(),
            root: self.frontier.root(),
            extensions: Vec::new(),
        };
        let note =
            sign_checkpoint(&cp, &self.signer).map_err(|e| StoreError::storage("cannot sign the checkpoint", e))?;
        Ok((to_i64(cp.size)?, cp.root.to_vec(), note))
    }
}

/// `(level, index)` of the perfect subtrees whose hashes make the frontier of `size` leaves.
fn peak_positions(size: u64) -> impl Iterator<Item = (u32, u64)> {
    let mut offset = 0u64;
    (0..64u32).rev().filter(move |l| size & (1u64 << l) != 0).map(move |level| {
        let index = offset >> level;
        offset += 1u64 << level;
        (level, index)
    })
}

/// The case ids a write set changes, and whether it queued a notification.
fn collect_changes(ws: &WriteSet, changed: &mut BTreeSet<String>, outbox: &mut bool) {
    for w in &ws.writes {
        match w {
            Write::PutCase(row) => {
                changed.insert(row.id.clone());
            }
            Write::PutRecord { kind: RecordKind::Outbox, .. } => *outbox = true,
            _ => {}
        }
    }
    for e in &ws.entries {
        if let Some(case) = e.chain() {
            changed.insert(case.to_owned());
        }
    }
}

fn fail_all(batch: Vec<Job>, e: StoreError) {
    for job in batch {
        job.answer(Err(e.clone()));
    }
}

/// Rolls back; a connection that cannot even do that leaves the pool.
async fn abort(client: Object) {
    if client.batch_execute("ROLLBACK").await.is_err() {
        drop(Object::take(client));
    }
}

async fn check(client: &ClientWrapper, p: &Precondition) -> StoreResult<()> {
    let conflict = |what: String| Err(StoreError::Conflict(what));
    match p {
        Precondition::Record { kind, id, version } => {
            let have = record_version(client, *kind, id).await?;
            if have != *version {
                return conflict(format!("{} {id} changed (version {have:?}, read {version:?})", kind.as_str()));
            }
        }
        Precondition::Case { id, version } => {
            let have = case_version(client, id).await?;
            if have != *version {
                return conflict(format!("case {id} changed (version {have:?}, read {version:?})"));
            }
        }
        Precondition::ChainHead { chain, head } => {
            if chain_head(client, chain.as_deref()).await? != *head {
                return conflict(format!("the chain of {} moved", chain.as_deref().unwrap_or("the organization")));
            }
        }
        Precondition::IdempotencyFree { agent, key } => {
            if idempotency_taken(client, agent, key).await? {
                return conflict(format!("idempotency key {key:?} of agent {agent} was taken"));
            }
        }
    }
    Ok(())
}

const PUT_RECORD: &str = "INSERT INTO records (kind, id, version, body) VALUES ($1, $2, 1, $3)
     ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, version = records.version + 1";
const DELETE_RECORD: &str = "DELETE FROM records WHERE kind = $1 AND id = $2";
const PUT_CREDENTIAL: &str = "INSERT INTO credentials (hash, kind, id) VALUES ($1, $2, $3)";
const PUT_CASE: &str = "INSERT INTO cases (id, version, agent, audience, status, idempotency_key, review_id,
        review_status, review_pending, deadline_ms, due_ms, created_at_ms, counterparty, action, body)
     VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
     ON CONFLICT (id) DO UPDATE SET version = cases.version + 1, status = excluded.status,
       review_id = excluded.review_id, review_status = excluded.review_status,
       review_pending = excluded.review_pending, deadline_ms = excluded.deadline_ms,
       due_ms = excluded.due_ms, body = excluded.body";
/// A passport token, written once (a second one is a uniqueness violation: a conflict).
const PUT_PASSPORT: &str = "INSERT INTO passports (case_num, token) SELECT num, $2 FROM cases WHERE id = $1";
/// The roles a case's pending review still misses: the others go, the new ones come.
const DROP_ROLES: &str = "DELETE FROM review_roles WHERE case_id = $1 AND NOT (role = ANY($2::text[]))";
const ADD_ROLES: &str = "INSERT INTO review_roles (role, case_id) SELECT unnest($2::text[]), $1
     ON CONFLICT DO NOTHING";
/// A case entry's chain is its case's number (an entry of a case without a row leaves it
/// NULL, which the table refuses); the organization chain's is 0. The case rows of the
/// same pipeline are written before (statements run in the order sent).
const INSERT_ENTRIES: &str = "INSERT INTO ledger (idx, chain, seq, type, at, actor, prev, data, digest)
    SELECT u.idx, CASE WHEN u.case_id IS NULL THEN 0 ELSE (SELECT num FROM cases WHERE id = u.case_id) END,
        u.seq, u.type, u.at, u.actor, u.prev, u.data, u.digest
    FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::bytea[],
        $8::bytea[], $9::bytea[]) AS u(idx, case_id, seq, type, at, actor, prev, data, digest)";
const INSERT_NODES: &str =
    "INSERT INTO merkle (level, idx, hash) SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bytea[])";
const DELETE_CHECKPOINTS: &str = "DELETE FROM checkpoints";
const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (size, note) VALUES ($1, $2)";
const UPDATE_HEAD: &str = "UPDATE ledger_head SET size = $1, root = $2 WHERE id = 1";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Prepares (once per connection; cached afterwards) every statement the sequencer
/// pipelines, so that pipelined statements are sent in the order they are issued.
async fn prepare(client: &ClientWrapper) -> StoreResult<()> {
    let all = [
        PUT_RECORD,
        DELETE_RECORD,
        PUT_CREDENTIAL,
        PUT_CASE,
        PUT_PASSPORT,
        DROP_ROLES,
        ADD_ROLES,
        INSERT_ENTRIES,
        INSERT_NODES,
        DELETE_CHECKPOINTS,
        INSERT_CHECKPOINT,
        UPDATE_HEAD,
        NOTIFY,
    ];
    try_join_all(all.iter().map(|sql| client.prepare_cached(sql))).await.map_err(pg_err)?;
    Ok(())
}

/// The statements of a write set's writes, in order; `tokens` as [`Packed`] made them.
fn writes<'a>(client: &'a ClientWrapper, ws: &'a WriteSet, tokens: &'a [Option<Vec<u8>>], steps: &mut Vec<Step<'a>>) {
    for (w, token) in ws.writes.iter().zip(tokens) {
        write(client, w, token.as_ref(), steps);
    }
}

/// The statements of one write, in order (a case row: its row, its passport token when it
/// issues it, the roles its pending review misses).
fn write<'a>(client: &'a ClientWrapper, w: &'a Write, token: Option<&'a Vec<u8>>, steps: &mut Vec<Step<'a>>) {
    match w {
        Write::PutRecord { kind, id, body } => steps.push(step(client, PUT_RECORD, vec![kind_name(kind), id, body])),
        Write::DeleteRecord { kind, id } => steps.push(step(client, DELETE_RECORD, vec![kind_name(kind), id])),
        Write::PutCredential { hash, kind, id } => steps.push(step(client, PUT_CREDENTIAL, vec![hash, kind, id])),
        Write::PutCase(row) => {
            steps.push(step(
                client,
                PUT_CASE,
                vec![
                    &row.id,
                    &row.agent,
                    &row.audience,
                    &row.status,
                    &row.idempotency_key,
                    &row.review_id,
                    &row.review_status,
                    &row.review_pending,
                    &row.deadline_ms,
                    &row.due_ms,
                    &row.created_at_ms,
                    &row.counterparty,
                    &row.action,
                    &row.body,
                ],
            ));
            if let Some(token) = token {
                steps.push(step(client, PUT_PASSPORT, vec![&row.id, token]));
            }
            // Only a case with a review ever has missing roles.
            if row.review_id.is_some() {
                steps.push(step(client, DROP_ROLES, vec![&row.id, &row.roles_missing]));
                if !row.roles_missing.is_empty() {
                    steps.push(step(client, ADD_ROLES, vec![&row.id, &row.roles_missing]));
                }
            }
        }
    }
}

fn kind_name(kind: &RecordKind) -> &'static (dyn ToSql + Sync) {
    match kind {
        RecordKind::Agent => &"agent",
        RecordKind::Approver => &"approver",
        RecordKind::System => &"system",
        RecordKind::Counterparty => &"counterparty",
        RecordKind::Action => &"action",
        RecordKind::Policy => &"policy",
        RecordKind::AgentTrust => &"agent_trust",
        RecordKind::CounterpartyTrust => &"counterparty_trust",
        RecordKind::Setting => &"setting",
        RecordKind::ShadowDivergence => &"shadow_divergence",
        RecordKind::Outbox => &"outbox",
        RecordKind::Session => &"session",
    }
}

/// A statement of a pipelined step.
type Step<'a> = Pin<Box<dyn Future<Output = StoreResult<()>> + Send + 'a>>;

fn step<'a>(client: &'a ClientWrapper, sql: &'static str, args: Vec<&'a (dyn ToSql + Sync)>) -> Step<'a> {
    Box::pin(async move { query(client, sql, &args).await.map(|_| ()) })
}

/// One write set inside its savepoint (left open on failure, for the caller to roll
/// back); returns the index of its first entry.
async fn write_set(client: &ClientWrapper, frontier: &mut Frontier, job: &Job) -> StoreResult<u64> {
    let ws = &job.writes;
    // Round trip 1: the savepoint and every precondition, pipelined.
    let savepoint = async { client.batch_execute("SAVEPOINT ws").await.map_err(pg_err) };
    let (sp, checks) = tokio::join!(savepoint, join_all(ws.preconditions.iter().map(|p| check(client, p))));
    sp?;
    for c in checks {
        c?;
    }
    // Round trip 2: the writes, the entries and the new Merkle nodes, then the release,
    // sent in this order (every statement is prepared already, see `prepare`).
    let mut entries = EntryColumns::default();
    let first_index = entries.push(frontier, ws, &job.packed)?;
    let mut steps: Vec<Step<'_>> = Vec::with_capacity(ws.writes.len() + 3);
    writes(client, ws, &job.packed.tokens, &mut steps);
    entries.steps(client, &mut steps);
    steps.push(Box::pin(async { client.batch_execute("RELEASE SAVEPOINT ws").await.map_err(pg_err) }));
    // Every result is awaited: the first failure (in statement order) is the one reported.
    for result in join_all(steps).await {
        result?;
    }
    Ok(first_index)
}

/// The last statements of a batch (see [`Sequencer::end_of_batch`]).
struct EndOfBatch {
    checkpoint: Option<(i64, Vec<u8>, String)>,
    notes: Vec<String>,
}

impl EndOfBatch {
    fn steps<'a>(&'a self, client: &'a ClientWrapper, channel: &'a String, steps: &mut Vec<Step<'a>>) {
        if let Some((size, root, note)) = &self.checkpoint {
            steps.push(step(client, DELETE_CHECKPOINTS, vec![]));
            steps.push(step(client, INSERT_CHECKPOINT, vec![size, note]));
            steps.push(step(client, UPDATE_HEAD, vec![size, root]));
        }
        for p in &self.notes {
            steps.push(step(client, NOTIFY, vec![channel, p]));
        }
    }
}

/// The ledger entries and new Merkle nodes of several write sets, as the columns of one
/// `INSERT … SELECT … FROM unnest(…)` each: entries as their members (see
/// [`crate::layout`]), nodes from [`FIRST_STORED_LEVEL`] up.
#[derive(Default)]
struct EntryColumns<'a> {
    idx: Vec<i64>,
    cases: Vec<Option<&'a str>>,
    seqs: Vec<i64>,
    kinds: Vec<&'a str>,
    ats: Vec<i64>,
    actors: Vec<&'a str>,
    prevs: Vec<Option<Vec<u8>>>,
    data: Vec<&'a [u8]>,
    digests: Vec<Vec<u8>>,
    levels: Vec<i32>,
    node_idx: Vec<i64>,
    hashes: Vec<Vec<u8>>,
}

impl<'a> EntryColumns<'a> {
    /// Appends `ws`'s entries to the tree; returns the index of its first entry.
    fn push(&mut self, frontier: &mut Frontier, ws: &'a WriteSet, packed: &'a Packed) -> StoreResult<u64> {
        let first_index = frontier.size();
        for (i, sealed) in ws.entries.iter().enumerate() {
            let data =
                packed.data.get(i).ok_or_else(|| StoreError::corrupt("a write set's entries were not packed"))?;
            self.idx.push(to_i64(frontier.size())?);
            self.cases.push(sealed.chain());
            self.seqs.push(to_i64(sealed.entry.seq)?);
            self.kinds.push(sealed.entry.kind.as_str());
            self.ats.push(sealed.at_ms);
            self.actors.push(sealed.entry.actor.as_str());
            self.prevs.push(sealed.prev.map(|p| p.to_vec()));
            self.data.push(data);
            self.digests.push(sealed.digest.to_vec());
            for (level, i, hash) in frontier.push(sealed.digest) {
                if level >= FIRST_STORED_LEVEL {
                    self.levels
                        .push(i32::try_from(level).map_err(|_| StoreError::corrupt("Merkle level out of range"))?);
                    self.node_idx.push(to_i64(i)?);
                    self.hashes.push(hash.to_vec());
                }
            }
        }
        Ok(first_index)
    }

    fn steps<'s>(&'s self, client: &'s ClientWrapper, steps: &mut Vec<Step<'s>>) {
        if !self.idx.is_empty() {
            steps.push(step(
                client,
                INSERT_ENTRIES,
                vec![
                    &self.idx,
                    &self.cases,
                    &self.seqs,
                    &self.kinds,
                    &self.ats,
                    &self.actors,
                    &self.prevs,
                    &self.data,
                    &self.digests,
                ],
            ));
        }
        if !self.levels.is_empty() {
            steps.push(step(client, INSERT_NODES, vec![&self.levels, &self.node_idx, &self.hashes]));
        }
    }
}

/// What the write sets accepted so far in a batch change, so that a later write set whose
/// preconditions were read before them is refused as stale, exactly as if its
/// preconditions had been read after them. Conservative: any write to a record or case a
/// precondition names, any entry on a chain whose head it names, and any case taking the
/// idempotency key it needs free is a conflict (the engine decides again).
#[derive(Default)]
struct Touched<'a> {
    records: BTreeSet<(&'static str, &'a str)>,
    cases: BTreeSet<&'a str>,
    chains: BTreeSet<Option<&'a str>>,
    keys: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> Touched<'a> {
    fn add(&mut self, ws: &'a WriteSet) {
        for w in &ws.writes {
            match w {
                Write::PutRecord { kind, id, .. } | Write::DeleteRecord { kind, id } => {
                    self.records.insert((kind.as_str(), id));
                }
                Write::PutCase(row) => {
                    self.cases.insert(&row.id);
                    if let Some(key) = &row.idempotency_key {
                        self.keys.insert((&row.agent, key));
                    }
                }
                Write::PutCredential { .. } => {}
            }
        }
        for e in &ws.entries {
            self.chains.insert(e.chain());
        }
    }

    fn check(&self, preconditions: &[Precondition]) -> StoreResult<()> {
        for p in preconditions {
            let stale = match p {
                Precondition::Record { kind, id, .. } => self.records.contains(&(kind.as_str(), id.as_str())),
                Precondition::Case { id, .. } => self.cases.contains(id.as_str()),
                Precondition::ChainHead { chain, .. } => self.chains.contains(&chain.as_deref()),
                Precondition::IdempotencyFree { agent, key } => self.keys.contains(&(agent.as_str(), key.as_str())),
            };
            if stale {
                return Err(StoreError::Conflict(format!("{p:?} changed earlier in the same batch")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::peak_positions;

    #[test]
    fn peaks_of_a_tree() {
        assert_eq!(peak_positions(0).collect::<Vec<_>>(), vec![]);
        assert_eq!(peak_positions(1).collect::<Vec<_>>(), vec![(0, 0)]);
        assert_eq!(peak_positions(6).collect::<Vec<_>>(), vec![(2, 0), (1, 2)]);
        assert_eq!(peak_positions(7).collect::<Vec<_>>(), vec![(2, 0), (1, 2), (0, 6)]);
    }
}

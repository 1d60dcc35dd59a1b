//! The serial step on PostgreSQL: one sequencer task per node takes write sets from a
//! channel in batches. Per batch, ONE transaction: lock the `ledger_head` row (`FOR
//! UPDATE`: every node's batches take turns on it; positions never come from a sequence),
//! rebuild the in-memory Merkle frontier if another node moved the tree, then per write set
//! a `SAVEPOINT` (preconditions checked, writes applied, entries and Merkle nodes
//! inserted; a failing write set is rolled back alone), then the signed checkpoint, the
//! new head, `pg_notify` for the other nodes, and `COMMIT`. Write sets are answered only
//! after the commit. Statements of one step are pipelined on the connection.

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
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::notify::payloads;
use super::read::{case_version, chain_head, head, idempotency_taken, query, record_version};
use super::{pg_err, pool_err, to_i64};
use crate::layout::{token_bytes, FIRST_STORED_LEVEL};

/// Largest number of write sets sharing one transaction.
const MAX_BATCH: usize = 256;

pub(crate) struct Job {
    pub writes: WriteSet,
    pub reply: oneshot::Sender<StoreResult<Committed>>,
}

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
            let _ = job.reply.send(result.map(|first_index| Committed { first_index, tree_size }));
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
    async fn batch_body(&mut self, client: &ClientWrapper, batch: &[Job]) -> StoreResult<Vec<StoreResult<u64>>> {
        let before_batch = self.frontier.size();
        let mut results = Vec::with_capacity(batch.len());
        let mut changed = BTreeSet::new();
        let mut outbox = false;
        for job in batch {
            let before = self.frontier.clone();
            let result = write_set(client, &mut self.frontier, &job.writes).await;
            match &result {
                Ok(_) => {
                    collect_changes(&job.writes, &mut changed, &mut outbox);
                }
                Err(e) => {
                    self.frontier = before;
                    // The savepoint is gone with the transaction if the connection failed:
                    // then the whole batch fails.
                    client.batch_execute("ROLLBACK TO SAVEPOINT ws; RELEASE SAVEPOINT ws").await.map_err(pg_err)?;
                    if !matches!(e, StoreError::Conflict(_)) {
                        tracing::warn!(error = %e, "a write set failed");
                    }
                }
            }
            results.push(result);
        }
        let checkpoint = if self.frontier.size() != before_batch { Some(self.checkpoint_statements()?) } else { None };
        let notes = payloads(&self.node, &changed, outbox);
        let channel = self.channel.as_str();
        let mut steps: Vec<Step<'_>> = Vec::new();
        if let Some((size, root, note)) = &checkpoint {
            steps.push(step(client, DELETE_CHECKPOINTS, vec![]));
            steps.push(step(client, INSERT_CHECKPOINT, vec![size, note]));
            steps.push(step(client, UPDATE_HEAD, vec![size, root]));
        }
        for p in &notes {
            steps.push(step(client, NOTIFY, vec![&channel, p]));
        }
        // COMMIT of an aborted transaction would roll back without an error: it is sent
        // only once every statement of the batch has succeeded.
        for result in join_all(steps).await {
            result?;
        }
        client.batch_execute("COMMIT").await.map_err(pg_err)?;
        Ok(results)
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
        let _ = job.reply.send(Err(e.clone()));
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
        review_pending, deadline_ms, due_ms, created_at_ms, body)
     VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (id) DO UPDATE SET version = cases.version + 1, status = excluded.status,
       review_id = excluded.review_id, review_pending = excluded.review_pending,
       deadline_ms = excluded.deadline_ms, due_ms = excluded.due_ms, body = excluded.body";
const PUT_PASSPORT: &str = "INSERT INTO passports (case_num, token) SELECT num, $2 FROM cases WHERE id = $1";
/// A case entry's chain is its case's number (an entry of a case without a row leaves it
/// NULL, which the table refuses); the organization chain's is 0.
const INSERT_ENTRIES: &str = "INSERT INTO ledger (idx, chain, seq, type, at, actor, prev, data, digest)
    SELECT u.idx, CASE WHEN u.case_id IS NULL THEN 0 ELSE (SELECT num FROM cases WHERE id = u.case_id) END,
        u.seq, u.type, u.at, u.actor, u.prev, u.data, u.digest
    FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::bytea[],
        $8::text[], $9::bytea[]) AS u(idx, case_id, seq, type, at, actor, prev, data, digest)";
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

/// The statements of one write (a case issuing its passport has two).
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
                    &row.review_pending,
                    &row.deadline_ms,
                    &row.due_ms,
                    &row.created_at_ms,
                    &row.body,
                ],
            ));
            if let Some(token) = token {
                steps.push(step(client, PUT_PASSPORT, vec![&row.id, token]));
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
async fn write_set(client: &ClientWrapper, frontier: &mut Frontier, ws: &WriteSet) -> StoreResult<u64> {
    // Round trip 1: the savepoint and every precondition, pipelined.
    let savepoint = async { client.batch_execute("SAVEPOINT ws").await.map_err(pg_err) };
    let (sp, checks) = tokio::join!(savepoint, join_all(ws.preconditions.iter().map(|p| check(client, p))));
    sp?;
    for c in checks {
        c?;
    }
    // Round trip 2: the writes, the entries and the new Merkle nodes, then the release,
    // sent in this order (every statement is prepared already, see `prepare`).
    let first_index = frontier.size();
    let n = ws.entries.len();
    let (mut idx, mut cases, mut seqs, mut kinds) = (Vec::with_capacity(n), Vec::with_capacity(n), vec![], vec![]);
    let (mut ats, mut actors, mut prevs, mut data, mut digests) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut levels, mut node_idx, mut hashes) = (Vec::<i32>::new(), Vec::<i64>::new(), Vec::<Vec<u8>>::new());
    for sealed in &ws.entries {
        idx.push(to_i64(frontier.size())?);
        cases.push(sealed.chain());
        seqs.push(to_i64(sealed.entry.seq)?);
        kinds.push(sealed.entry.kind.as_str());
        ats.push(sealed.at_ms);
        actors.push(sealed.entry.actor.as_str());
        prevs.push(sealed.prev.map(|p| p.to_vec()));
        data.push(sealed.data.as_str());
        digests.push(sealed.digest.to_vec());
        for (level, i, hash) in frontier.push(sealed.digest) {
            if level >= FIRST_STORED_LEVEL {
                levels.push(i32::try_from(level).map_err(|_| StoreError::corrupt("Merkle level out of range"))?);
                node_idx.push(to_i64(i)?);
                hashes.push(hash.to_vec());
            }
        }
    }
    let tokens: Vec<Option<Vec<u8>>> = ws
        .writes
        .iter()
        .map(|w| match w {
            Write::PutCase(row) => row.passport.as_deref().map(token_bytes),
            _ => None,
        })
        .collect();
    let mut steps: Vec<Step<'_>> = Vec::new();
    for (w, token) in ws.writes.iter().zip(&tokens) {
        write(client, w, token.as_ref(), &mut steps);
    }
    if !idx.is_empty() {
        steps.push(step(
            client,
            INSERT_ENTRIES,
            vec![&idx, &cases, &seqs, &kinds, &ats, &actors, &prevs, &data, &digests],
        ));
    }
    if !levels.is_empty() {
        steps.push(step(client, INSERT_NODES, vec![&levels, &node_idx, &hashes]));
    }
    steps.push(Box::pin(async { client.batch_execute("RELEASE SAVEPOINT ws").await.map_err(pg_err) }));
    // Every result is awaited: the first failure (in statement order) is the one reported.
    for result in join_all(steps).await {
        result?;
    }
    Ok(first_index)
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

//! The part of migration 5 that SQL cannot do alone: passport tokens into their binary
//! form, and ledger entries from their canonical text into their members (see
//! [`crate::layout`]). Runs inside the migration's transaction.

use agentsigna_core::store::{StoreError, StoreResult};
use tokio_postgres::Transaction;

use super::pg_err;
use crate::layout::{token_bytes, unpack_text, ORGANIZATION_CHAIN};

/// Entries converted per statement.
const PAGE: i64 = 5000;

/// Schema 4 → 5: `passports` from the old case bodies, `ledger` from `ledger_v4`.
pub(crate) async fn to_v5(tx: &Transaction<'_>) -> StoreResult<()> {
    let rows = tx
        .query(
            "SELECT c.num, v.body::jsonb #>> '{passport,token}' FROM cases_v4 v JOIN cases c ON c.id = v.id
             WHERE v.body::jsonb #>> '{passport,token}' IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg_err)?;
    let mut nums = Vec::with_capacity(rows.len());
    let mut tokens = Vec::with_capacity(rows.len());
    for r in &rows {
        nums.push(r.try_get::<_, i64>(0).map_err(pg_err)?);
        tokens.push(token_bytes(r.try_get(1).map_err(pg_err)?));
    }
    tx.execute(
        "INSERT INTO passports (case_num, token) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
        &[&nums, &tokens],
    )
    .await
    .map_err(pg_err)?;

    let mut from = 0i64;
    loop {
        let rows = tx
            .query(
                "SELECT l.idx, l.case_id, l.seq, l.digest, l.entry, c.num FROM ledger_v4 l
                 LEFT JOIN cases c ON c.id = l.case_id WHERE l.idx >= $1 ORDER BY l.idx LIMIT $2",
                &[&from, &PAGE],
            )
            .await
            .map_err(pg_err)?;
        let n = rows.len();
        let (mut idx, mut chains, mut seqs, mut kinds, mut ats) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut actors, mut prevs, mut data, mut digests) = (vec![], vec![], vec![], vec![]);
        for r in &rows {
            let index: i64 = r.try_get(0).map_err(pg_err)?;
            let case: Option<&str> = r.try_get(1).map_err(pg_err)?;
            let seq: i64 = r.try_get(2).map_err(pg_err)?;
            let num: Option<i64> = r.try_get(5).map_err(pg_err)?;
            let chain = match (case, num) {
                (None, _) => ORGANIZATION_CHAIN,
                (Some(_), Some(num)) => num,
                (Some(id), None) => {
                    return Err(StoreError::corrupt(format!(
                        "ledger entry {index} belongs to case {id}, which has no row"
                    )))
                }
            };
            let sealed = unpack_text(index, case, seq, r.try_get(4).map_err(pg_err)?)?;
            idx.push(index);
            chains.push(chain);
            seqs.push(seq);
            kinds.push(sealed.entry.kind);
            ats.push(sealed.at_ms);
            actors.push(sealed.entry.actor);
            prevs.push(sealed.prev.map(|p| p.to_vec()));
            data.push(sealed.data);
            // As stored (see `unpack_text`).
            digests.push(r.try_get::<_, Vec<u8>>(3).map_err(pg_err)?);
            from = index + 1;
        }
        if n > 0 {
            tx.execute(
                "INSERT INTO ledger (idx, chain, seq, type, at, actor, prev, data, digest)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[],
                    $7::bytea[], $8::text[], $9::bytea[])",
                &[&idx, &chains, &seqs, &kinds, &ats, &actors, &prevs, &data, &digests],
            )
            .await
            .map_err(pg_err)?;
        }
        if i64::try_from(n).unwrap_or(0) < PAGE {
            return Ok(());
        }
    }
}

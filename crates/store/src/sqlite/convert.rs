//! The part of migration 4 that SQL cannot do alone: passport tokens into their binary
//! form, and ledger entries from their canonical text into their members (see
//! [`crate::layout`]). Runs inside the migration's transaction, between the SQL that
//! created the new tables and the SQL that drops the old ones.

use std::collections::HashMap;

use agentsigna_core::store::{StoreError, StoreResult};
use rusqlite::{params, Connection};

use super::db_err;
use crate::layout::{token_bytes, unpack_text, ORGANIZATION_CHAIN};

/// Schema 3 → 4: `passports` from the old case bodies, `ledger` from `ledger_v3`.
pub(crate) fn to_v4(conn: &Connection) -> StoreResult<()> {
    {
        let mut tokens = conn
            .prepare(
                "SELECT c.num, json_extract(v.body, '$.passport.token') FROM cases_v3 v JOIN cases c ON c.id = v.id
                 WHERE json_extract(v.body, '$.passport.token') IS NOT NULL",
            )
            .map_err(db_err)?;
        let mut insert = conn.prepare("INSERT INTO passports (case_num, token) VALUES (?1, ?2)").map_err(db_err)?;
        let mut rows = tokens.query([]).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            let num: i64 = row.get(0).map_err(db_err)?;
            let token: String = row.get(1).map_err(db_err)?;
            insert.execute(params![num, token_bytes(&token)]).map_err(db_err)?;
        }
    }
    let mut nums = HashMap::new();
    {
        let mut s = conn.prepare("SELECT id, num FROM cases").map_err(db_err)?;
        let mut rows = s.query([]).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            nums.insert(row.get::<_, String>(0).map_err(db_err)?, row.get::<_, i64>(1).map_err(db_err)?);
        }
    }
    let mut old =
        conn.prepare("SELECT idx, case_id, seq, digest, entry FROM ledger_v3 ORDER BY idx").map_err(db_err)?;
    let mut insert = conn
        .prepare(
            "INSERT INTO ledger (idx, chain, seq, type, at, actor, prev, data, digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db_err)?;
    let mut rows = old.query([]).map_err(db_err)?;
    while let Some(row) = rows.next().map_err(db_err)? {
        let idx: i64 = row.get(0).map_err(db_err)?;
        let case: Option<String> = row.get(1).map_err(db_err)?;
        let seq: i64 = row.get(2).map_err(db_err)?;
        let digest: Vec<u8> = row.get(3).map_err(db_err)?;
        let text: String = row.get(4).map_err(db_err)?;
        let chain = match &case {
            None => ORGANIZATION_CHAIN,
            Some(id) => *nums.get(id).ok_or_else(|| {
                StoreError::corrupt(format!("ledger entry {idx} belongs to case {id}, which has no row"))
            })?,
        };
        let sealed = unpack_text(idx, case.as_deref(), seq, &text)?;
        insert
            .execute(params![
                idx,
                chain,
                seq,
                sealed.entry.kind,
                sealed.at_ms,
                sealed.entry.actor,
                sealed.prev.as_ref().map(|p| &p[..]),
                sealed.data,
                digest // as stored (see `unpack_text`)
            ])
            .map_err(db_err)?;
    }
    Ok(())
}

//! The ledger: served entries, proofs, evidence, `agentsigna ledger verify|export`, and
//! tampering with the stored entries.

use std::path::Path;

use agentsigna_verify::b64::std_decode;
use agentsigna_verify::evidence::{verify_evidence, Evidence};
use agentsigna_verify::ledger::parse_digest_hex;
use agentsigna_verify::merkle::{verify_consistency, verify_inclusion, Hash};
use agentsigna_verify::note::{verify_checkpoint, Checkpoint, NoteVerifier};
use serde_json::{json, Value};

use super::harness::*;

fn hashes(proof: &Value) -> Vec<Hash> {
    proof["hashes"]
        .as_array()
        .expect("hashes")
        .iter()
        .map(|h| std_decode(h.as_str().expect("base64")).expect("standard base64").try_into().expect("32 bytes"))
        .collect()
}

async fn checkpoint(s: &Server, key: &NoteVerifier) -> Checkpoint {
    let r = s.get_public("/v1/ledger/checkpoint").await;
    r.expect(200);
    assert!(r.content_type.starts_with("text/plain"));
    verify_checkpoint(&r.text, key).expect("the checkpoint verifies with the served key")
}

/// A few cases of every kind, so the ledger holds case and organization chains.
async fn populate(s: &Server) -> Vec<String> {
    let mut ids = Vec::new();
    let a = s.po("acme", "4800.00").await;
    ids.push(a.get("case_id").as_str().expect("case").to_owned());
    let e = s.po("globex", "40000.00").await;
    ids.push(e.get("case_id").as_str().expect("case").to_owned());
    s.decide(&s.carol(), e.json["review"]["id"].as_str().expect("review"), "approve", "").await.expect(200);
    s.case(&s.bot(), &ids[1]).await.expect(200);
    let r = s.po("sanctioned-co", "1.00").await;
    ids.push(r.get("case_id").as_str().expect("case").to_owned());
    s.outcome(&s.erp(), &ids[0], "completed").await.expect(200);
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_entries_proofs_and_evidence_verify_offline() {
    let s = Server::start().await;
    let key_text = s.get_public("/v1/ledger/key").await.text;
    let key = NoteVerifier::parse(key_text.trim()).expect("the served key parses");
    let before = checkpoint(&s, &key).await;
    assert!(before.size > 0, "the org file wrote entries");
    let ids = populate(&s).await;
    let cp = checkpoint(&s, &key).await;
    assert!(cp.size > before.size);
    assert_eq!(cp.origin, key.name());
    assert!(cp.origin.starts_with("agentsigna/"), "default origin: {}", cp.origin);

    // Entries: JSON lines whose digests recompute.
    let carol = s.carol();
    let r = s.get(&carol, "/v1/ledger/entries?start=0&end=5").await;
    r.expect(200);
    let lines: Vec<Value> = r.text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 5);
    for (i, l) in lines.iter().enumerate() {
        check_entry_digest(l);
        assert_eq!(l["index"], json!(i), "index is served beside the entry");
    }
    s.get(&carol, "/v1/ledger/entries?start=5&end=2").await.expect_problem(400, None);
    s.get(&carol, "/v1/ledger/entries?start=0&end=1000000").await.expect_problem(400, None);
    s.get(&carol, "/v1/ledger/entries?start=abc").await.expect_problem(400, None);
    s.get(&carol, &format!("/v1/ledger/entries?start={}", cp.size + 10)).await.expect_problem(400, None);
    let all = s.get(&carol, "/v1/ledger/entries?start=0").await;
    let all: Vec<Value> = all.text.lines().map(|l| serde_json::from_str(l).expect("line")).collect();
    assert_eq!(all.len() as u64, cp.size);

    // Inclusion proofs of every entry against the checkpoint root.
    for (i, e) in all.iter().enumerate() {
        let p = s.get(&carol, &format!("/v1/ledger/proof/inclusion?index={i}&size={}", cp.size)).await;
        p.expect(200);
        let leaf = parse_digest_hex(e["digest"].as_str().expect("digest")).expect("hex digest");
        verify_inclusion(i as u64, cp.size, &leaf, &hashes(&p.json), &cp.root)
            .unwrap_or_else(|err| panic!("inclusion of {i}: {err}"));
    }
    s.get(&carol, &format!("/v1/ledger/proof/inclusion?index={}&size={}", cp.size, cp.size))
        .await
        .expect_problem(400, Some("index"));
    s.get(&carol, &format!("/v1/ledger/proof/inclusion?index=0&size={}", cp.size + 1))
        .await
        .expect_problem(400, Some("size"));

    // Consistency between the two checkpoints.
    let p = s.get(&carol, &format!("/v1/ledger/proof/consistency?from={}&to={}", before.size, cp.size)).await;
    p.expect(200);
    verify_consistency(before.size, cp.size, &hashes(&p.json), &before.root, &cp.root).expect("consistency");
    s.get(&carol, &format!("/v1/ledger/proof/consistency?from=0&to={}", cp.size))
        .await
        .expect_problem(400, Some("from"));
    s.get(&carol, "/v1/ledger/proof/consistency?from=3&to=2").await.expect_problem(400, None);

    // Case evidence, for the case's agent.
    for id in &ids {
        let r = s.get(&s.bot(), &format!("/v1/cases/{id}/evidence")).await;
        r.expect(200);
        let ev: Evidence = serde_json::from_value(r.json.clone()).expect("evidence format");
        let at = verify_evidence(&ev, &key).expect("the evidence verifies");
        assert_eq!(ev.case, *id);
        assert_eq!(at.size, cp.size);
        // Tampered evidence does not.
        let mut bad = ev.clone();
        bad.entries[0].entry.entry.data["amount"] = json!({"value": "999999.99", "currency": "USD"});
        assert!(verify_evidence(&bad, &key).is_err());
    }
}

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("agentsigna.db")).expect("open the database")
}

/// `agentsigna ledger verify --data-dir DIR`.
fn verify_dir(dir: &Path) -> (i32, String, String) {
    outcome(&run_cli(&["ledger", "verify", "--data-dir", dir.to_str().expect("utf-8 path")]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_verify_detects_edits_deletions_and_reordering() {
    let mut s = Server::start().await;
    let key_text = s.get_public("/v1/ledger/key").await.text.trim().to_owned();
    let ids = populate(&s).await;
    let first_case = ids[0].clone();
    s.stop().await;
    let data = s.data_dir();

    let (code, out, err) = verify_dir(&data);
    assert_eq!(code, 0, "a clean ledger verifies: {out} {err}");
    assert!(out.contains("OK"), "{out}");

    // The index of the acme PO's request.submitted (the one with the amount).
    let (target, size): (i64, i64) = {
        let conn = db(&data);
        let t = conn
            .query_row(
                "SELECT l.idx FROM ledger l JOIN cases c ON c.num = l.chain WHERE c.id = ?1 AND l.seq = 0",
                [&first_case],
                |r| r.get(0),
            )
            .expect("entry");
        let n = conn.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0)).expect("count");
        (t, n)
    };
    assert!(target > 0 && target + 1 < size);
    let scratch = tempfile::tempdir().expect("tempdir");
    let fresh = |name: &str| {
        let to = scratch.path().join(name);
        copy_dir(&data, &to);
        to
    };

    // 1. Edit: the amount of one entry, stored compressed as the server stores it.
    let d = fresh("edit");
    let edited = {
        let reader = agentsigna_store::sqlite::LedgerReader::open(&d.join("agentsigna.db")).expect("reader");
        let mut entry = reader.entries(size as u64).expect("entries").swap_remove(target as usize).entry;
        assert_eq!(entry.data["amount"]["value"], "4800.00");
        entry.data["amount"]["value"] = json!("9800.00");
        agentsigna_store::packed::pack_data(
            &agentsigna_verify::ledger::canonical_value(&entry.data).expect("canonical"),
        )
    };
    assert_eq!(edited[0], agentsigna_store::packed::PACKED_2);
    let changed = db(&d)
        .execute("UPDATE ledger SET data = ?1 WHERE idx = ?2", rusqlite::params![edited, target])
        .expect("update");
    assert_eq!(changed, 1);
    let (code, _, err) = verify_dir(&d);
    assert_eq!(code, 1, "an edited entry is detected: {err}");
    assert!(names_index(&err, target as u64), "names index {target}: {err}");

    // 2. Delete one entry.
    let d = fresh("delete");
    db(&d).execute("DELETE FROM ledger WHERE idx = ?1", [target]).expect("delete");
    let (code, _, err) = verify_dir(&d);
    assert_eq!(code, 1, "a deleted entry is detected: {err}");
    assert!(names_index(&err, target as u64), "names index {target}: {err}");

    // 3. Swap two entries (members and digest) between their rows.
    let d = fresh("swap");
    {
        let conn = db(&d);
        const MEMBERS: &str = "chain, seq, type, at, actor, prev, data, digest";
        let row = |i: i64| -> Vec<rusqlite::types::Value> {
            conn.query_row(&format!("SELECT {MEMBERS} FROM ledger WHERE idx = ?1"), [i], |r| {
                (0..8).map(|c| r.get(c)).collect()
            })
            .expect("row")
        };
        let (a, b) = (row(target), row(target + 1));
        // Park one row outside every chain first: (chain, seq) is unique.
        conn.execute("UPDATE ledger SET seq = -1 WHERE idx = ?1", [target]).expect("park");
        for (i, r) in [(target + 1, &a), (target, &b)] {
            let mut args = r.clone();
            args.push(i.into());
            conn.execute(
                "UPDATE ledger SET chain = ?1, seq = ?2, type = ?3, at = ?4, actor = ?5, prev = ?6, data = ?7,
                    digest = ?8 WHERE idx = ?9",
                rusqlite::params_from_iter(args),
            )
            .expect("swap");
        }
    }
    let (code, _, err) = verify_dir(&d);
    assert_eq!(code, 1, "reordered entries are detected: {err}");
    assert!(names_index(&err, target as u64), "names index {target}: {err}");

    // 4. Rewrite an entry and its stored digest consistently: the chain and the signed
    // root still catch it.
    let d = fresh("rehash");
    {
        let reader = agentsigna_store::sqlite::LedgerReader::open(&d.join("agentsigna.db")).expect("reader");
        let mut entry = reader.entries(size as u64).expect("entries").swap_remove(target as usize).entry;
        entry.data["amount"]["value"] = json!("9800.00");
        let data = agentsigna_verify::ledger::canonical_value(&entry.data).expect("canonical");
        let digest = entry.digest().expect("digest").to_vec();
        drop(reader);
        db(&d)
            .execute("UPDATE ledger SET data = ?1, digest = ?2 WHERE idx = ?3", rusqlite::params![data, digest, target])
            .expect("forge");
    }
    let (code, _, err) = verify_dir(&d);
    assert_eq!(code, 1, "a re-hashed entry is detected: {err}");

    // 5. Truncation: drop the last entry.
    let d = fresh("truncate");
    db(&d).execute("DELETE FROM ledger WHERE idx = ?1", [size - 1]).expect("delete");
    let (code, _, err) = verify_dir(&d);
    assert_eq!(code, 1, "a truncated ledger is detected: {err}");

    // The original is untouched; export it and verify the bundle in a fresh process.
    let bundle = scratch.path().join("bundle.json");
    let (code, _, err) = outcome(&run_cli(&[
        "ledger",
        "export",
        "--data-dir",
        data.to_str().expect("path"),
        "--out",
        bundle.to_str().expect("path"),
    ]));
    assert_eq!(code, 0, "export: {err}");
    let (code, out, err) =
        outcome(&run_cli(&["ledger", "verify", "--bundle", bundle.to_str().expect("path"), "--key", &key_text]));
    assert_eq!(code, 0, "the bundle verifies: {out} {err}");
    // A bundle with an edited entry does not.
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&bundle).expect("bundle")).expect("json");
    let entries = doc["entries"].as_array_mut().expect("entries");
    assert_eq!(entries.len() as i64, size);
    entries[target as usize]["data"]["amount"]["value"] = json!("9800.00");
    let forged = scratch.path().join("forged.json");
    std::fs::write(&forged, serde_json::to_vec(&doc).expect("json")).expect("write");
    let (code, _, err) =
        outcome(&run_cli(&["ledger", "verify", "--bundle", forged.to_str().expect("path"), "--key", &key_text]));
    assert_eq!(code, 1, "{err}");
    assert!(names_index(&err, target as u64), "{err}");
    // The wrong key is refused.
    let other =
        agentsigna_verify::note::NoteSigner::new("someone/else", ed25519_dalek::SigningKey::from_bytes(&[9; 32]))
            .expect("signer")
            .verifier_key();
    let (code, _, err) =
        outcome(&run_cli(&["ledger", "verify", "--bundle", bundle.to_str().expect("path"), "--key", &other]));
    assert_eq!(code, 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_checkpoint_catches_truncation_even_with_a_re_signed_checkpoint() {
    let mut s = Server::start().await;
    let ids = populate(&s).await;
    let scratch = tempfile::tempdir().expect("tempdir");
    // An auditor saves the checkpoint and one case's evidence.
    let saved = scratch.path().join("checkpoint.txt");
    std::fs::write(&saved, s.get_public("/v1/ledger/checkpoint").await.text).expect("write");
    let evidence = scratch.path().join("evidence.json");
    std::fs::write(&evidence, s.get(&s.carol(), &format!("/v1/cases/{}/evidence", ids[1])).await.text).expect("write");
    let key_text = s.get_public("/v1/ledger/key").await.text.trim().to_owned();
    let more = s.po("acme", "12.00").await;
    more.expect(201);
    s.stop().await;
    let data = s.data_dir();
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();

    let (code, _, err) = outcome(&run_cli(&["ledger", "verify", "--evidence", &path(&evidence), "--key", &key_text]));
    assert_eq!(code, 0, "saved evidence verifies offline: {err}");
    // The same evidence, written offline from the data directory by `ledger evidence`.
    let offline = scratch.path().join("offline-evidence.json");
    let case = ids[1].as_str();
    let (code, _, err) =
        outcome(&run_cli(&["ledger", "evidence", case, "--data-dir", &path(&data), "--out", &path(&offline)]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = outcome(&run_cli(&["ledger", "verify", "--evidence", &path(&offline), "--key", &key_text]));
    assert_eq!(code, 0, "offline evidence verifies: {err}");
    assert!(out.contains(case), "{out}");
    let (code, out, err) =
        outcome(&run_cli(&["ledger", "verify", "--data-dir", &path(&data), "--checkpoint", &path(&saved)]));
    assert_eq!(code, 0, "the ledger extends the saved checkpoint: {out} {err}");

    // Whoever holds the ledger key drops the newest entries and re-signs a checkpoint.
    let forged = scratch.path().join("forged");
    copy_dir(&data, &forged);
    let saved_size = verify_checkpoint(
        &std::fs::read_to_string(&saved).expect("read"),
        &NoteVerifier::parse(&key_text).expect("key"),
    )
    .expect("saved checkpoint")
    .size;
    let keep = saved_size - 2;
    {
        let conn = db(&forged);
        conn.execute("DELETE FROM ledger WHERE idx >= ?1", [keep as i64]).expect("truncate");
        let mut stmt = conn.prepare("SELECT digest FROM ledger ORDER BY idx").expect("prepare");
        let leaves: Vec<Hash> = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .expect("query")
            .map(|d| d.expect("digest").try_into().expect("32 bytes"))
            .collect();
        assert_eq!(leaves.len() as u64, keep);
        let keys = agentsigna_core::keys::Keyring::load_or_create(&forged.join("keys"), None, 0).expect("keys");
        let cp = Checkpoint {
            origin: keys.ledger.name().to_owned(),
            size: keep,
            root: agentsigna_verify::merkle::root_from_leaves(&leaves),
            extensions: vec![],
        };
        let note = agentsigna_verify::note::sign_checkpoint(&cp, &keys.ledger).expect("sign");
        conn.execute("DELETE FROM checkpoints", []).expect("delete");
        conn.execute("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)", rusqlite::params![keep as i64, note])
            .expect("insert");
    }
    let (code, _, err) = outcome(&run_cli(&["ledger", "verify", "--data-dir", &path(&forged)]));
    assert_eq!(code, 0, "alone, a consistently re-signed prefix looks fine: {err}");
    let (code, _, err) =
        outcome(&run_cli(&["ledger", "verify", "--data-dir", &path(&forged), "--checkpoint", &path(&saved)]));
    assert_eq!(code, 1, "the saved checkpoint catches the truncation: {err}");
    assert!(err.contains("truncated"), "{err}");
}

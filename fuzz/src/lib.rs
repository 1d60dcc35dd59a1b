//! The bodies of AgentSigna's fuzz targets, as plain functions: `cargo fuzz` runs them
//! under libFuzzer (`fuzz_targets/`), and `cargo test` runs them over the committed
//! corpus, every regression input and deterministic mutations of both (stable Rust).
//!
//! Each function must return normally for any input: an `Err` is fine, a panic, an
//! abort or a hang is a finding. Where an input parses, the target also checks the
//! properties that make the parser sound (a parsed checkpoint prints back to the same
//! text, a verified passport really names the audience, and so on).

use agentsigna_verify::jwk::Jwks;
use agentsigna_verify::note::{self, Checkpoint, NoteVerifier};
use agentsigna_verify::passport::{decode_unverified, Verifier};

/// The JWK set of the verify crate's golden passport vectors.
const JWKS: &str = include_str!("../../crates/verify/testdata/passports/jwks.json");
/// The checkpoint verifier key of the verify crate's golden ledger vectors.
const LEDGER_KEY: &str = include_str!("../../crates/verify/testdata/ledger/key.txt");
/// The instant the golden passports are checked at.
const NOW: i64 = 1_800_000_060;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

fn ledger_key() -> Option<NoteVerifier> {
    NoteVerifier::parse(LEDGER_KEY.trim()).ok()
}

/// The strict JSON body parser of the HTTP API (`extract::parse_json`) on every request
/// body type of the API; the first byte picks the type.
pub fn request_json(data: &[u8]) {
    use agentsigna::http::extract::parse_json;
    use agentsigna_core::engine::admin::{CounterpartyInput, NewAgent, NewApprover, NewSystem};
    use agentsigna_core::engine::outcome::{ExecutionInput, OutcomeInput};
    use agentsigna_core::engine::request::RequestInput;
    use agentsigna_core::engine::review::DecisionInput;
    let Some((&which, body)) = data.split_first() else { return };
    let body = bytes::Bytes::copy_from_slice(body);
    let problem = match which % 8 {
        0 => parse_json::<RequestInput>(&body).err(),
        1 => parse_json::<ExecutionInput>(&body).err(),
        2 => parse_json::<OutcomeInput>(&body).err(),
        3 => parse_json::<DecisionInput>(&body).err(),
        4 => parse_json::<NewAgent>(&body).err(),
        5 => parse_json::<NewApprover>(&body).err(),
        6 => parse_json::<NewSystem>(&body).err(),
        _ => parse_json::<CounterpartyInput>(&body).err(),
    };
    if let Some(p) = problem {
        // A refusal is a 400 problem, whatever the input.
        assert_eq!(p.status.as_u16(), 400, "{p:?}");
    }
}

/// Passport parsing and verification against the golden JWK set.
pub fn passport(data: &[u8]) {
    let Some(token) = text(data) else { return };
    let _ = decode_unverified(token);
    let Ok(jwks) = Jwks::from_json(JWKS) else { return };
    let verifier = Verifier::new(jwks, "erp");
    if let Ok(v) = verifier.verify_at(token, NOW) {
        assert_eq!(v.claims.aud, "erp");
        assert!(v.claims.exp + verifier.leeway() > NOW, "an expired passport verified");
    }
}

/// Holder proofs: `proof \n passport` checked for `POST https://erp.example/v1/orders`.
pub fn holder_proof(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (proof, passport) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(jwks) = Jwks::from_json(JWKS) {
        if let Ok(v) = Verifier::new(jwks, "erp").verify_at(passport, NOW) {
            if let Some(cnf) = &v.claims.cnf {
                let url = "https://erp.example/v1/orders";
                let _ = agentsigna_verify::proof::verify_proof(proof, passport, &cnf.jkt, "POST", url, NOW, 60);
            }
        }
    }
    // Also with a made-up binding, so that proofs are parsed whatever the passport.
    let _ = agentsigna_verify::proof::verify_proof(proof, passport, "jkt", "POST", "https://x/", NOW, 60);
}

/// Checkpoints and signed notes: parsing, opening, verification, verifier keys.
pub fn checkpoint(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(cp) = Checkpoint::parse(text) {
        assert_eq!(Checkpoint::parse(&cp.to_text()).ok().as_ref(), Some(&cp), "checkpoint does not round-trip");
    }
    let _ = NoteVerifier::parse(text.lines().next().unwrap_or(""));
    if let Some(key) = ledger_key() {
        let _ = note::open(text, std::slice::from_ref(&key));
        let _ = note::verify_checkpoint(text, &key);
        let _ = note::read_saved_checkpoint(text, &key);
    }
}

/// Ledger bundles: parsing and full verification with the golden ledger key.
pub fn bundle(data: &[u8]) {
    let Ok(bundle) = serde_json::from_slice::<agentsigna_verify::evidence::Bundle>(data) else { return };
    if let Some(key) = ledger_key() {
        let _ = agentsigna_verify::evidence::verify_bundle(&bundle, &key, None);
    }
    if let Ok(key) = NoteVerifier::parse(&bundle.key) {
        let _ = agentsigna_verify::evidence::verify_bundle(&bundle, &key, None);
    }
}

/// Case evidence: parsing and verification (inclusion proofs) with the golden ledger key.
pub fn evidence(data: &[u8]) {
    let Ok(ev) = serde_json::from_slice::<agentsigna_verify::evidence::Evidence>(data) else { return };
    if let Some(key) = ledger_key() {
        let _ = agentsigna_verify::evidence::verify_evidence(&ev, &key);
    }
}

/// Cedar policy upload: strict validation against the procurement org's actions and roles.
pub fn policy(data: &[u8]) {
    let Some(source) = text(data) else { return };
    // The API refuses sources over 1 MiB before compiling them.
    if source.len() > 1024 * 1024 {
        return;
    }
    let env = agentsigna_core::policy::PolicyEnv {
        actions: vec!["purchase_order.create".into(), "payment.send".into(), "contract.sign".into()],
        roles: vec!["finance".into(), "risk".into()],
    };
    let _ = agentsigna_core::policy::CompiledPolicy::compile(source, &env);
}

/// Every target, by name (the names of `fuzz_targets/` and of the corpus folders).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("request_json", request_json),
    ("passport", passport),
    ("holder_proof", holder_proof),
    ("checkpoint", checkpoint),
    ("bundle", bundle),
    ("evidence", evidence),
    ("policy", policy),
];

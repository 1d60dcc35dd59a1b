//! OpenAPI schemas of the documents `agentsigna-verify` defines (JWKs, ledger entries,
//! case evidence), which the API serves as they are. That crate stays free of `utoipa`
//! (it is what third parties verify with), so their schemas are stated here, member for
//! member; the tests below fail when the two drift apart.

use utoipa::ToSchema;

/// An Ed25519 public key (RFC 7517, RFC 8037).
#[derive(ToSchema)]
#[schema(as = Jwk)]
#[allow(dead_code)]
pub struct JwkSchema {
    /// `OKP`.
    kty: String,
    /// `Ed25519`.
    crv: String,
    /// The public key, base64url without padding.
    x: String,
    /// Key id: the RFC 7638 thumbprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    /// `EdDSA`.
    #[serde(skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    /// `sig`.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
}

/// `GET /.well-known/jwks.json`: the passport verification keys.
#[derive(ToSchema)]
#[schema(as = Jwks)]
#[allow(dead_code)]
pub struct JwksSchema {
    keys: Vec<JwkSchema>,
}

/// A ledger entry as served: the hashed entry (`case` … `data`), its global `index` and
/// its `digest`, SHA-256(0x00 ‖ JCS(entry)) in lowercase hex.
#[derive(ToSchema)]
#[schema(as = LedgerEntry)]
#[allow(dead_code)]
pub struct LedgerEntrySchema {
    /// Position in the global log.
    #[schema(minimum = 0)]
    index: u64,
    /// The case id; `null` for organization events.
    case: Option<String>,
    /// Position within the case's (or the organization's) chain.
    #[schema(minimum = 0)]
    seq: u64,
    /// Digest of the previous entry of the chain; `null` at `seq` 0.
    prev: Option<String>,
    /// The event type, e.g. `request.submitted`.
    #[serde(rename = "type")]
    kind: String,
    #[schema(format = DateTime)]
    at: String,
    /// `agent:<id>`, `approver:<id>`, `system:<id>`, `admin` or `server`.
    actor: String,
    /// The event's content (no floating-point numbers).
    #[schema(value_type = Object)]
    data: serde_json::Value,
    digest: String,
}

/// An entry of case evidence: the ledger entry and its inclusion proof.
#[derive(ToSchema)]
#[schema(as = EvidenceEntry)]
#[allow(dead_code)]
pub struct EvidenceEntrySchema {
    #[serde(flatten)]
    entry: LedgerEntrySchema,
    /// Inclusion proof of the digest at the entry's index: standard base64 hashes, leaf
    /// side first.
    inclusion: Vec<String>,
}

/// `GET /v1/cases/{id}/evidence`: a case's entries with inclusion proofs against the
/// latest checkpoint, verifiable offline (`agentsigna verify evidence`).
#[derive(ToSchema)]
#[schema(as = Evidence)]
#[allow(dead_code)]
pub struct EvidenceSchema {
    /// `agentsigna-evidence/v1`.
    format: String,
    /// The case id.
    case: String,
    /// The signed checkpoint note the proofs refer to.
    checkpoint: String,
    /// The ledger's note verifier key (informational).
    key: String,
    /// The case's entries in chain order.
    entries: Vec<EvidenceEntrySchema>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::BTreeSet;

    use serde_json::{json, Value};
    use utoipa::PartialSchema;

    use super::*;
    use agentsigna_verify::evidence::EvidenceEntry;
    use agentsigna_verify::jwk::{Jwk, Jwks};
    use agentsigna_verify::ledger::{DigestedEntry, Entry};

    /// The member names a schema declares (its own and those of the schemas it flattens).
    fn members(schema: Value) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let parts = match schema.get("allOf") {
            Some(Value::Array(a)) => a.clone(),
            _ => vec![schema],
        };
        for p in parts {
            if let Some(Value::Object(props)) = p.get("properties") {
                out.extend(props.keys().cloned());
            }
        }
        out
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    }

    fn schema_of<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn the_mirrors_name_every_member_the_verify_types_serialize() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let jwk = serde_json::to_value(Jwk::from_verifying_key(&key)).unwrap();
        assert_eq!(keys(&jwk), members(schema_of::<JwkSchema>()));
        let jwks = serde_json::to_value(Jwks { keys: vec![] }).unwrap();
        assert_eq!(keys(&jwks), members(schema_of::<JwksSchema>()));

        let entry = Entry {
            case: Some("c".into()),
            seq: 0,
            prev: None,
            kind: "request.submitted".into(),
            at: "2026-01-01T00:00:00.000Z".into(),
            actor: "server".into(),
            data: json!({}),
        };
        let digested = DigestedEntry { index: 0, entry, digest: "00".into() };
        let served = serde_json::to_value(&digested).unwrap();
        assert_eq!(keys(&served), members(schema_of::<LedgerEntrySchema>()));

        let with_proof = serde_json::to_value(EvidenceEntry::new(digested, &[])).unwrap();
        let mut want = members(schema_of::<LedgerEntrySchema>());
        want.insert("inclusion".into());
        assert_eq!(keys(&with_proof), want);
        assert!(members(schema_of::<EvidenceEntrySchema>()).contains("inclusion"));
        let evidence = json!({"format": "", "case": "", "checkpoint": "", "key": "", "entries": []});
        let _: agentsigna_verify::evidence::Evidence = serde_json::from_value(evidence.clone()).unwrap();
        assert_eq!(keys(&evidence), members(schema_of::<EvidenceSchema>()));
    }
}

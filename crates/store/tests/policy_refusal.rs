//! Property: a refused policy upload never changes the active version, the stored
//! versions or the ledger (engine over the real SQLite store).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agentsigna_core::engine::{Config, Engine};
use agentsigna_core::keys::Keyring;
use agentsigna_core::model::Principal;
use agentsigna_core::SystemClock;
use agentsigna_store::sqlite::{SqliteOptions, SqliteStore};
use proptest::prelude::*;

const POLICY: &str = include_str!("../../../examples/procurement/policy.cedar");

fn engine(dir: &std::path::Path) -> Engine {
    let keys = Keyring::load_or_create(&dir.join("keys"), None, 0).unwrap();
    let store = SqliteStore::open(&dir.join("db"), keys.ledger.clone(), SqliteOptions::default()).unwrap();
    Engine::new(Arc::new(store), Arc::new(SystemClock), keys, Config::default())
}

/// Ways to break a valid policy: cut it, splice garbage in, drop an annotation, rename an
/// attribute or an action, duplicate a rule id.
fn broken() -> impl Strategy<Value = String> {
    let len = POLICY.len();
    prop_oneof![
        (1..len).prop_map(|n| POLICY[..POLICY.floor_char_boundary(n)].to_owned()),
        (0..len, "[ -~]{1,12}").prop_map(|(n, junk)| {
            let at = POLICY.floor_char_boundary(n);
            format!("{}{junk}{}", &POLICY[..at], &POLICY[at..])
        }),
        Just(POLICY.replacen("@id(\"usd-only\")\n", "", 1)),
        Just(POLICY.replacen("principal.trust", "principal.trustworthiness", 1)),
        Just(POLICY.replacen("Action::\"payment.send\"", "Action::\"payment.sent\"", 1)),
        Just(POLICY.replacen("@id(\"large-po\")", "@id(\"po-allowed\")", 1)),
        Just(POLICY.replacen("@verdict(\"escalate\")", "@verdict(\"maybe\")", 1)),
        Just(POLICY.replacen("@approver_role(\"risk\")", "@approver_role(\"auditors\")", 1)),
        "[ -~\\n]{0,200}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn a_refused_upload_never_changes_the_active_version(sources in proptest::collection::vec(broken(), 1..4)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let e = engine(dir.path());
            let admin = Principal::Admin;
            for t in ["purchase_order.create", "payment.send", "contract.sign"] {
                e.declare_action(&admin, t.into(), String::new()).await.unwrap();
            }
            e.declare_roles(&admin, vec!["finance".into(), "risk".into()]).await.unwrap();
            let v1 = e.upload_policy(&admin, POLICY.to_owned(), true).await.unwrap();
            let size = e.ledger_size().await.unwrap();
            for src in sources {
                if let Ok(v) = e.upload_policy(&admin, src.clone(), true).await {
                    // A mutation may still be a valid policy (e.g. junk inside a comment).
                    prop_assert!(v.version > v1.version, "{src}");
                    return Ok(());
                }
                let (versions, active) = e.list_policies(&agentsigna_core::model::Principal::Admin).await.unwrap();
                prop_assert_eq!(active, Some(v1.version));
                prop_assert_eq!(versions.len(), 1);
                prop_assert_eq!(e.ledger_size().await.unwrap(), size);
            }
            Ok(())
        })?;
    }
}

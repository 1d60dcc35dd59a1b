//! The OpenAPI document: `GET /openapi.json` serves what `agentsigna openapi` prints and
//! what the repository's `openapi.json` holds; it is OpenAPI 3.1; every route of
//! `agentsigna::router::route_list` but the web pages is described exactly once and
//! nothing else is; every operation names its credentials, answers problem+json on
//! errors and documents a success; every schema reference resolves.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::harness::*;

/// The committed copy, for client generators and for reviewing API changes in diffs.
fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json")
}

#[tokio::test]
async fn the_served_document_is_the_printed_and_committed_one_and_describes_every_route() {
    let (code, printed, err) = outcome(&run_cli(&["openapi"]));
    assert_eq!(code, 0, "{err}");
    let s = Server::start().await;
    let r = s.get_public("/openapi.json").await;
    r.expect(200);
    assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
    assert_eq!(r.text, printed, "GET /openapi.json and `agentsigna openapi` differ");
    let on_disk = std::fs::read_to_string(committed()).unwrap_or_default();
    assert!(
        on_disk == printed,
        "openapi.json at the repository root is not the API's description any more: \
         regenerate it with `cargo run -q -p agentsigna -- openapi > openapi.json` and review the diff"
    );
    let doc = r.json;

    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    let names: BTreeSet<&str> = schemes.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["admin_token", "agent_key", "approver_token", "system_token"]));
    for (name, scheme) in schemes {
        assert_eq!((&scheme["type"], &scheme["scheme"]), (&Value::from("http"), &Value::from("bearer")), "{name}");
    }

    // Every reference resolves to a component schema.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap_or_default();
        assert!(schemas.contains_key(name), "#/components/schemas/{name} is referenced but not defined");
    }

    // The described operations are exactly the routes the server serves, the web pages
    // (HTML for people, under /ui) aside.
    let routed: BTreeSet<(String, String)> = agentsigna::router::route_list()
        .into_iter()
        .filter(|(_, path)| *path != "/ui" && !path.starts_with("/ui/"))
        .map(|(method, path)| (method.as_str().to_ascii_lowercase(), path.to_owned()))
        .collect();
    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let at = format!("{} {path}", method.to_uppercase());
            assert!(described.insert((method.clone(), path.clone())), "{at} is described twice");
            let security = op["security"].as_array().unwrap_or_else(|| panic!("{at} names no credentials"));
            for requirement in security {
                for scheme in requirement.as_object().expect("a security requirement").keys() {
                    assert!(schemes.contains_key(scheme), "{at}: unknown security scheme {scheme}");
                }
            }
            let responses = op["responses"].as_object().expect("responses");
            assert!(responses.keys().any(|k| k.starts_with('2')), "{at}: no success response");
            let errors: Vec<&String> = responses.keys().filter(|k| k.starts_with('4') || k.starts_with('5')).collect();
            assert!(!errors.is_empty(), "{at}: no error response");
            for status in errors {
                assert!(
                    responses[status]["content"].get("application/problem+json").is_some(),
                    "{at}: {status} is not problem+json"
                );
            }
            // Links name operations that exist, as OpenAPI spells it.
            for status in responses.values() {
                for (name, link) in status["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap_or_else(|| panic!("{at}: link {name}: {link}"));
                    assert!(text.contains(&format!("\"operationId\":\"{target}\"")), "{at}: link {name} to {target}");
                }
            }
            // An operation that takes a credential also says how it refuses a missing one.
            if security.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())) {
                assert!(responses.contains_key("401") && responses.contains_key("403"), "{at}: no 401/403");
            }
        }
    }
    let missing: Vec<_> = routed.difference(&described).collect();
    assert!(missing.is_empty(), "routes without a description: {missing:?}");
    let extra: Vec<_> = described.difference(&routed).collect();
    assert!(extra.is_empty(), "described but not routed: {extra:?}");
}

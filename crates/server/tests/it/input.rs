//! Bad input: a 4xx problem naming the field, never a 5xx, never a partial write.

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::*;

fn with(mut body: Value, path: &[&str], v: Value) -> Value {
    let mut at = &mut body;
    for p in &path[..path.len() - 1] {
        at = &mut at[*p];
    }
    at[path[path.len() - 1]] = v;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_problems_naming_the_field() {
    let s = Server::start().await;
    let bot = s.bot();
    let ok = po_body("acme", "10.00");
    let size_before = s.get(&s.admin, "/v1/ledger/entries?start=0").await.text.lines().count();

    let raw = |body: &'static str| {
        s.raw(Method::POST, Some(&bot), "/v1/requests", "application/json", body.as_bytes().to_vec())
    };
    raw("{\"action\": ").await.expect_problem(400, None);
    raw("not json").await.expect_problem(400, None);
    raw("").await.expect_problem(400, None);
    raw("[]").await.expect_problem(400, None);

    let cases: Vec<(Value, u16, &str)> = vec![
        (with(ok.clone(), &["surprise"], json!(1)), 400, "surprise"),
        (with(ok.clone(), &["amount", "cents"], json!(1)), 400, "amount.cents"),
        (with(ok.clone(), &["action"], json!(5)), 400, "action"),
        (with(ok.clone(), &["amount"], json!(5)), 400, "amount"),
        (with(ok.clone(), &["amount", "value"], json!(10.5)), 400, "amount.value"),
        (with(ok.clone(), &["amount", "value"], json!("-1")), 400, "amount.value"),
        (with(ok.clone(), &["amount", "value"], json!("1.001")), 400, "amount.value"),
        (with(ok.clone(), &["amount", "value"], json!("1e3")), 400, "amount.value"),
        (with(ok.clone(), &["amount", "value"], json!("")), 400, "amount.value"),
        (with(ok.clone(), &["amount", "value"], json!("99999999999999999999")), 400, "amount.value"),
        (with(ok.clone(), &["amount", "currency"], json!("XYZ")), 400, "amount.currency"),
        (with(ok.clone(), &["amount", "currency"], json!("usd")), 400, "amount.currency"),
        (
            with(with(ok.clone(), &["amount", "currency"], json!("JPY")), &["amount", "value"], json!("100.5")),
            400,
            "amount.value",
        ),
        (with(ok.clone(), &["counterparty"], json!("nobody-inc")), 422, "counterparty"),
        (with(ok.clone(), &["action"], json!("rocket.launch")), 422, "action"),
        (with(ok.clone(), &["audience"], json!("mainframe")), 422, "audience"),
        (with(ok.clone(), &["action"], json!("")), 400, "action"),
        (with(ok.clone(), &["context"], json!({"ratio": 0.5})), 400, "context"),
        (with(ok.clone(), &["context"], json!({"deep": {"list": [1, 2.25]}})), 400, "context"),
        (with(ok.clone(), &["context"], json!(["a"])), 400, "context"),
        (with(ok.clone(), &["context"], json!("text")), 400, "context"),
        (
            with(ok.clone(), &["context"], json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}})),
            400,
            "context",
        ),
        (with(ok.clone(), &["context"], json!({"big": "x".repeat(20_000)})), 400, "context"),
        (with(ok.clone(), &["description"], json!("bell\u{7}")), 400, "description"),
        (with(ok.clone(), &["idempotency_key"], json!("")), 400, "idempotency_key"),
    ];
    for (body, status, field) in cases {
        let r = s.submit(&bot, &body).await;
        assert_eq!(r.status, status, "{body} → {}", r.text);
        r.expect_problem(status, Some(field));
    }
    // Missing member.
    let mut missing = ok.clone();
    missing.as_object_mut().expect("object").remove("audience");
    s.submit(&bot, &missing).await.expect_problem(400, Some("audience"));

    // Valid edge cases are accepted.
    let jpy = with(with(ok.clone(), &["amount", "currency"], json!("JPY")), &["amount", "value"], json!("1000"));
    s.submit(&bot, &jpy).await.expect(201);
    let r = s
        .raw(Method::POST, Some(&bot), "/v1/requests", "application/json; charset=utf-8", ok.to_string().into_bytes())
        .await;
    r.expect(201);
    let mut no_amount = ok.clone();
    no_amount.as_object_mut().expect("object").remove("amount");
    s.submit(&bot, &no_amount).await.expect(201);

    // Too large, wrong media type, unknown routes and methods.
    let big = format!("{{\"action\": \"purchase_order.create\", \"description\": \"{}\"}}", "x".repeat(70 * 1024));
    let r = s.raw(Method::POST, Some(&bot), "/v1/requests", "application/json", big.into_bytes()).await;
    r.expect_problem(413, None);
    // The unread rest of the body is on the connection: the server says it closes it, so
    // the client's next request (below) goes on a new one.
    assert_eq!(r.connection.as_deref(), Some("close"));
    let r = s.raw(Method::POST, Some(&bot), "/v1/requests", "text/plain", ok.to_string().into_bytes()).await;
    r.expect_problem(415, None);
    let r = s
        .raw(Method::POST, Some(&bot), "/v1/requests", "application/x-www-form-urlencoded", b"action=x".to_vec())
        .await;
    r.expect_problem(415, None);
    s.get(&bot, "/v1/nothing-here").await.expect_problem(404, None);
    s.get_public("/nothing").await.expect_problem(404, None);
    s.call(Method::DELETE, Some(&bot), "/v1/requests", None).await.expect_problem(405, None);
    s.get(&bot, "/v1/cases/x?wait=soon").await.expect_problem(400, Some("wait"));
    s.get(&s.carol(), "/v1/cases?limit=many").await.expect_problem(400, None);

    // Nothing of the refused requests reached the ledger: only the three accepted ones
    // (JPY is rejected by usd-only: 2 entries; the two others are authorized: 3 each).
    let size_after = s.get(&s.admin, "/v1/ledger/entries?start=0").await.text.lines().count();
    assert_eq!(size_after, size_before + 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_input_and_conflicts() {
    let s = Server::start().await;
    let admin = s.admin.clone();
    s.post(&admin, "/v1/agents", &json!({"id": "procurement-bot", "owner": "z@example.com"}))
        .await
        .expect_problem(409, None);
    s.post(&admin, "/v1/approvers", &json!({"id": "carol@example.com", "roles": ["finance"]}))
        .await
        .expect_problem(409, None);
    s.post(&admin, "/v1/systems", &json!({"id": "erp"})).await.expect_problem(409, None);
    s.post(&admin, "/v1/agents", &json!({"id": "", "owner": "z@example.com"})).await.expect_problem(400, Some("id"));
    s.post(&admin, "/v1/agents", &json!({"id": "x", "owner": "z@example.com", "role": "admin"}))
        .await
        .expect_problem(400, Some("role"));
    s.post(&admin, "/v1/agents", &json!({"id": "x"})).await.expect_problem(400, Some("owner"));
    s.post(&admin, "/v1/approvers", &json!({"id": "y@example.com", "roles": ["fin ance"]}))
        .await
        .expect_problem(400, Some("roles[0]"));
    s.put(&admin, "/v1/counterparties/acme", &json!({"name": "Acme", "risk": "extreme"}))
        .await
        .expect_problem(400, Some("risk"));
    s.put(&admin, "/v1/counterparties/acme", &json!({"name": "", "risk": "low"}))
        .await
        .expect_problem(400, Some("name"));
    s.put(&admin, "/v1/actions/Bad%20Type", &json!({"description": "x"})).await.expect_problem(400, Some("type"));
    s.get(&admin, "/v1/policies/abc").await.expect_problem(400, Some("version"));
    s.get(&admin, "/v1/policies/99").await.expect_problem(404, None);
    s.post(&admin, "/v1/policies/99/activate", &json!({})).await.expect_problem(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policy_is_refused_and_the_active_one_stays() {
    let s = Server::start().await;
    let admin = s.admin.clone();
    let before = s.get(&admin, "/v1/policies").await;
    before.expect(200);
    assert_eq!(before.json["active"], json!(1));

    // Each refused source with a word its error message must contain.
    let bad = [
        ("@id(\"broken\") permit (principal, action, resource) when { context.amount > };", "line 1"),
        // Unknown attribute (strict validation against the schema).
        ("@id(\"typo\") permit (principal, action, resource) when { context.amout > 5 };", "amout"),
        ("@id(\"ghost\") permit (principal, action == Action::\"rocket.launch\", resource);", "rocket.launch"),
        ("permit (principal, action, resource);", "@id"),
        (
            "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") permit (principal, action, resource);",
            "duplicate",
        ),
        ("@id(\"v\") @verdict(\"maybe\") forbid (principal, action, resource);", "maybe"),
        // A role no approver can hold.
        (
            "@id(\"r\") @verdict(\"escalate\") @approver_role(\"wizard\") forbid (principal, action, resource);",
            "wizard",
        ),
        ("@id(\"d\") @verdict(\"escalate\") @deadline(\"tomorrow\") forbid (principal, action, resource);", "tomorrow"),
    ];
    for (source, word) in bad {
        let r = s.post(&admin, "/v1/policies", &json!({"source": source, "activate": true})).await;
        r.expect_problem(400, Some("source"));
        assert!(
            r.json["detail"].as_str().is_some_and(|d| d.contains(word)),
            "the detail names the error ({word}): {}",
            r.text
        );
    }
    let after = s.get(&admin, "/v1/policies").await;
    assert_eq!(after.json["active"], json!(1));
    assert_eq!(after.json["policies"].as_array().expect("policies").len(), 1, "no version was created: {}", after.text);
    // Verdicts still come from version 1.
    let r = s.po("acme", "10.00").await;
    assert_eq!(r.json["policy"]["version"], json!(1));
    assert_eq!(r.get("verdict"), "authorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_nested_member_is_named_by_its_path() {
    let s = Server::start().await;
    let mut body = po_body("acme", "10.00");
    body["amount"].as_object_mut().expect("amount").remove("currency");
    s.submit(&s.bot(), &body).await.expect_problem(400, Some("amount.currency"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_policy_can_be_uploaded() {
    let s = Server::start().await;
    // Policy sources may be far larger than request bodies (the engine accepts 1 MiB): a
    // policy of ~100 KB is uploaded, not refused as a 413. (Verbose reasons keep the rule
    // count, and so the debug-build compile time, low.)
    let mut source = String::from(include_str!("../../../../examples/procurement/policy.cedar"));
    let filler = "reviewed by procurement because this vendor is on the watch list. ".repeat(10);
    for i in 0..150 {
        source.push_str(&format!(
            "\n@id(\"vendor-cap-{i}\")\n@verdict(\"escalate\")\n@reason(\"Orders above {i}00 USD to vendor-{i} are {filler}\")\nforbid (principal, action, resource == Counterparty::\"vendor-{i}\")\nwhen {{ context.amount > {} }};\n",
            i * 10_000
        ));
    }
    assert!(source.len() > 96 * 1024, "{}", source.len());
    let r = s.post(&s.admin, "/v1/policies", &json!({"source": source, "activate": true})).await;
    r.expect(201);
    let r = s.po("acme", "10.00").await;
    assert_eq!(r.json["policy"]["version"], json!(2));
    assert_eq!(r.get("verdict"), "authorized");
    let rule = s.get(&s.admin, "/v1/policies/2/rules/vendor-cap-149").await;
    rule.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_member_is_named_by_its_full_path() {
    let s = Server::start().await;
    let po = |amount: &str, context: &str| {
        format!(
            r#"{{"action":"purchase_order.create","counterparty":"acme","amount":{amount},"audience":"erp","context":{context}}}"#
        )
        .into_bytes()
    };
    let cases = [
        (po(r#"{"value":"1.00","currency":"USD","value":"9.00"}"#, "{}"), "amount.value"),
        (po(r#"{"value":"1.00","currency":"USD","currency":"EUR"}"#, "{}"), "amount.currency"),
        (po(r#"{"value":"1.00","currency":"USD"}"#, r#"{"cc":"IT-7","cc":"IT-8"}"#), "context.cc"),
        (po(r#"{"value":"1.00","currency":"USD"}"#, r#"{"items":[{"sku":1,"sku":2}]}"#), "context.items[0].sku"),
        (br#"{"action":"a","action":"b","counterparty":"acme","audience":"erp"}"#.to_vec(), "action"),
    ];
    for (body, field) in cases {
        let r = s.raw(reqwest::Method::POST, Some(&s.bot()), "/v1/requests", "application/json", body).await;
        r.expect_problem(400, Some(field));
    }
    // Nested members of admin bodies too (public_jwk is free-form JSON).
    let agent = br#"{"id":"dup-bot","owner":"x@example.com","public_jwk":{"kty":"OKP","kty":"EC"}}"#.to_vec();
    s.raw(reqwest::Method::POST, Some(&s.admin), "/v1/agents", "application/json", agent)
        .await
        .expect_problem(400, Some("public_jwk.kty"));
    let cases = s.get(&s.bot(), "/v1/cases").await;
    assert!(cases.json["cases"].as_array().expect("cases").is_empty(), "nothing was recorded: {}", cases.text);
}

/// Invisible, bidirectional and control characters are refused, with the field named,
/// where they have no business; free text keeps them (shown with markers to people).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_characters_are_refused_in_ids_names_and_keys_and_kept_in_free_text() {
    let s = Server::start().await;
    let po = po_body("acme", "10.00");
    let with = |path: &[&str], v: serde_json::Value| {
        let mut b = po.clone();
        let mut cur = &mut b;
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        cur[path[path.len() - 1]] = v;
        b
    };
    let rlo = "\u{202E}";
    let refused = [
        (with(&["action"], json!(format!("purchase_order.create{rlo}"))), "action"),
        (with(&["counterparty"], json!(format!("ac{rlo}me"))), "counterparty"),
        (with(&["audience"], json!("erp\u{200B}")), "audience"),
        (with(&["idempotency_key"], json!("po-\u{2066}1")), "idempotency_key"),
        (with(&["amount", "value"], json!(format!("10{rlo}.00"))), "amount.value"),
        (with(&["amount", "currency"], json!("US\u{200D}D")), "amount.currency"),
        (with(&["description"], json!("esc \u{1B}[31m red")), "description"),
        (with(&["context"], json!({"note": "nul \u{0}"})), "context"),
        (with(&["context"], json!({"a\u{7}": 1})), "context"),
    ];
    for (body, field) in refused {
        let r = s.submit(&s.bot(), &body).await;
        r.expect_problem(400, Some(field));
    }
    // Names and labels of the admin API.
    let admin = s.admin.clone();
    s.post(&admin, "/v1/agents", &json!({"id": "n-bot", "owner": "x@example.com", "name": format!("Bot{rlo}")}))
        .await
        .expect_problem(400, Some("name"));
    s.post(&admin, "/v1/approvers", &json!({"id": "z@example.com", "name": "Zoe\u{FEFF}", "roles": ["risk"]}))
        .await
        .expect_problem(400, Some("name"));
    s.put(&admin, "/v1/counterparties/acme", &json!({"name": format!("Acme {rlo}gnp"), "risk": "low"}))
        .await
        .expect_problem(400, Some("name"));
    s.put(&admin, "/v1/actions/data.export", &json!({"description": "x\u{0}"}))
        .await
        .expect_problem(400, Some("description"));
    // Free text keeps bidirectional and zero-width characters, as sent.
    let kept = with(&["description"], json!(format!("Total {rlo}00.005,49 USD")));
    let kept = s.submit(&s.bot(), &with_key(kept, "kept-1")).await;
    kept.expect(201);
    let case_id = kept.get("case_id").as_str().expect("case").to_owned();
    let c = s.case(&s.bot(), &case_id).await;
    assert!(c.text.contains(rlo), "the record keeps the description as sent: {}", c.text);
    // Execution references are references: no hidden characters; comments refuse NUL.
    let passport = c.json["passport_info"]["id"].as_str().expect("passport").to_owned();
    let ex = json!({"passport_id": passport, "reference": format!("PO-{rlo}77")});
    s.post(&s.erp(), &format!("/v1/cases/{case_id}/execution"), &ex).await.expect_problem(400, Some("reference"));
    let esc = s.po("globex", "40000.00").await;
    let review = esc.json["review"]["id"].as_str().expect("review").to_owned();
    s.decide(&s.carol(), &review, "reject", "no\u{0}").await.expect_problem(400, Some("comment"));
}

fn with_key(mut body: serde_json::Value, key: &str) -> serde_json::Value {
    body["idempotency_key"] = json!(key);
    body
}

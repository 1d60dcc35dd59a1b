//! `GET /v1/reviews`: one page of reviews queried by review, with its filters, keyset
//! cursor and limit, and a 400 problem naming whichever parameter is wrong.

use std::collections::BTreeSet;

use serde_json::Value;

use super::harness::*;

/// The review ids of a listing, following `next_cursor` to the end; checks that every
/// page gives the same total and at most `limit` reviews.
async fn walk(srv: &Server, token: &str, query: &str, limit: usize) -> (u64, Vec<String>) {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    loop {
        let mut path = format!("/v1/reviews?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = srv.get(token, &path).await;
        r.expect(200);
        let page = r.get("reviews").as_array().unwrap().clone();
        assert!(page.len() <= limit, "{}", r.text);
        let t = r.get("total").as_u64().unwrap();
        assert_eq!(*total.get_or_insert(t), t, "the total is the same on every page");
        ids.extend(page.iter().map(|v| v["id"].as_str().unwrap().to_owned()));
        match r.get("next_cursor") {
            Value::String(c) => cursor = Some(c.clone()),
            Value::Null => break,
            other => panic!("next_cursor is {other}"),
        }
        assert!(ids.len() < 100, "the cursor walks on without end");
    }
    (total.unwrap_or(0), ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_paged_by_cursor_and_filtered() {
    let srv = Server::start().await;
    let carol = srv.carol();
    let mut globex = Vec::new();
    for _ in 0..5 {
        let r = srv.po("globex", "40000.00").await;
        r.expect(201);
        globex.push(r.get("review")["id"].as_str().unwrap().to_owned());
        srv.clock.advance_secs(1);
    }
    // High-risk counterparty: two approvals, roles finance and risk, a 4-hour deadline.
    let mut initech = Vec::new();
    for _ in 0..2 {
        let r = srv.po("initech", "40000.00").await;
        r.expect(201);
        initech.push(r.get("review")["id"].as_str().unwrap().to_owned());
    }
    srv.decide(&carol, &globex[0], "approve", "ok").await.expect(200);
    srv.decide(&carol, &globex[1], "reject", "duplicate").await.expect(200);

    // Pending: by deadline (the 4-hour ones first), in pages of 2, each review once.
    let (total, pending) = walk(&srv, &carol, "status=pending", 2).await;
    assert_eq!(total, 5);
    assert_eq!(pending.iter().cloned().collect::<BTreeSet<_>>().len(), 5, "no review twice: {pending:?}");
    assert_eq!(pending[..2].iter().cloned().collect::<BTreeSet<_>>(), initech.iter().cloned().collect());
    assert_eq!(pending[2..], globex[2..], "then the oldest deadline first");
    // The default is pending; all: newest first.
    let r = srv.get(&carol, "/v1/reviews").await;
    assert_eq!(r.get("total"), 5);
    assert!(r.get("next_cursor").is_null());
    let (total, all) = walk(&srv, &carol, "status=all", 3).await;
    assert_eq!(total, 7);
    assert_eq!(all[5..], [globex[1].clone(), globex[0].clone()]);
    let (_, approved) = walk(&srv, &carol, "status=approved", 10).await;
    assert_eq!(approved, [globex[0].clone()]);
    let (_, rejected) = walk(&srv, &carol, "status=rejected", 10).await;
    assert_eq!(rejected, [globex[1].clone()]);

    // Filters: the role still missing, counterparty, agent, action.
    let (total, risk) = walk(&srv, &carol, "role=risk", 10).await;
    assert_eq!((total, risk.iter().cloned().collect::<BTreeSet<_>>()), (2, initech.iter().cloned().collect()));
    srv.decide(&srv.erin(), &initech[0], "approve", "risk checked").await.expect(200);
    let (_, risk) = walk(&srv, &carol, "role=risk", 10).await;
    assert_eq!(risk, [initech[1].clone()], "a covered role no longer lists the review");
    let (total, _) = walk(&srv, &carol, "status=all&counterparty=initech", 10).await;
    assert_eq!(total, 2);
    let (total, _) = walk(&srv, &carol, "status=all&agent=payments-bot", 10).await;
    assert_eq!(total, 0);
    let (total, _) = walk(&srv, &carol, "status=all&action=purchase_order.create&agent=procurement-bot", 10).await;
    assert_eq!(total, 7);

    // A bad parameter is a 400 problem naming it.
    let first = srv.get(&carol, "/v1/reviews?limit=1").await;
    let pending_cursor = first.get("next_cursor").as_str().unwrap().to_owned();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("status=open", "status"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=bi4xLjI", "cursor"),
        (&format!("status=all&cursor={pending_cursor}"), "cursor"),
        ("sort=deadline", "sort"),
    ] {
        srv.get(&carol, &format!("/v1/reviews?{query}")).await.expect_problem(400, Some(field));
    }
    // Who may list reviews is unchanged.
    srv.get(&srv.bot(), "/v1/reviews").await.expect_problem(403, None);
}

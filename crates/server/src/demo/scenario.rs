//! The seven steps of the loop, walked by agents, approvers and the ERP over HTTP; every
//! verdict and status is checked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use reqwest::Method;
use serde_json::{json, Value};

use agentsigna_core::engine::views::{AgentView, CaseView, CounterpartyView, ReviewView, SubmitResponse, TrustDoc};
use agentsigna_core::model::{CaseStatus, ReviewStatus};
use agentsigna_core::money::Amount;
use agentsigna_core::org::OrgFile;
use agentsigna_core::policy::Verdict;
use agentsigna_core::Clock as _;
use agentsigna_verify::clock::rfc3339_ms;
use agentsigna_verify::evidence::{verify_evidence, Evidence};
use agentsigna_verify::note::{verify_checkpoint, NoteVerifier};
use agentsigna_verify::passport::decode_unverified;

use super::api::Api;
use super::narrate::{layout, more, needs, roles, s, say, section, trust_moves};
use super::{DemoClock, JUMP_MS};
use crate::http::documents::Problem;

/// One request of an agent.
#[derive(Clone, Copy)]
pub(super) struct Ask<'a> {
    pub(super) agent: &'a str,
    pub(super) action: &'a str,
    pub(super) counterparty: &'a str,
    pub(super) value: &'a str,
    pub(super) audience: &'a str,
    pub(super) description: &'a str,
    pub(super) key: &'a str,
}

impl<'a> Ask<'a> {
    pub(super) fn po(counterparty: &'a str, value: &'a str, description: &'a str, key: &'a str) -> Ask<'a> {
        Ask {
            agent: "procurement-bot",
            action: "purchase_order.create",
            counterparty,
            value,
            audience: "erp",
            description,
            key,
        }
    }
}

/// Whose trust standing.
#[derive(Clone, Copy)]
pub(super) enum Standing<'a> {
    Agent(&'a str),
    Counterparty(&'a str),
}

impl Standing<'_> {
    fn id(&self) -> &str {
        match self {
            Standing::Agent(id) | Standing::Counterparty(id) => id,
        }
    }
}

pub(super) struct Demo {
    pub(super) api: Api,
    pub(super) erp_url: String,
    pub(super) clock: Arc<DemoClock>,
    pub(super) admin: String,
    pub(super) creds: HashMap<String, String>,
    pub(super) data_dir: PathBuf,
}

impl Demo {
    pub(super) fn token(&self, kind: &str, id: &str) -> anyhow::Result<&str> {
        self.creds
            .get(&format!("{kind}:{id}"))
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no credential for {kind} {id}"))
    }

    /// ① and ②: the agent asks; the verdict must be `want`, produced by `rule`.
    pub(super) async fn ask(&self, a: Ask<'_>, want: Verdict, rule: &str) -> anyhow::Result<SubmitResponse> {
        say(
            "① request",
            format!(
                "{} asks: {} with {}, {} → {}",
                a.agent,
                a.action,
                a.counterparty,
                Amount { value: a.value.to_owned(), currency: "USD".to_owned() },
                a.audience
            ),
        );
        more(format!("\"{}\"", a.description));
        let body = json!({"action": a.action, "counterparty": a.counterparty, "amount": {"value": a.value, "currency": "USD"},
                          "audience": a.audience, "description": a.description, "context": {"cost_center": "IT-7"},
                          "idempotency_key": a.key});
        let v: SubmitResponse =
            self.api.expect_doc(Method::POST, "/v1/requests", self.token("agent", a.agent)?, Some(&body), 201).await?;
        let policy = v.policy.as_ref().map_or_else(|| "none".to_owned(), |p| format!("v{}", p.version));
        say(
            "② verdict",
            format!(
                "{}   case {}   (trust: agent {}, {} {}; policy {policy})",
                v.verdict, v.case_id, v.trust.agent, a.counterparty, v.trust.counterparty
            ),
        );
        for r in &v.reasons {
            more(format!("{} [{}]: {}", r.rule.as_deref().unwrap_or("(no rule)"), r.verdict.as_str(), r.reason));
        }
        if v.verdict != want || !v.reasons.iter().any(|r| r.rule.as_deref() == Some(rule)) {
            bail!(
                "expected verdict {want} by rule {rule}, got {} with {}",
                v.verdict,
                serde_json::to_value(&v.reasons)?
            );
        }
        Ok(v)
    }

    /// ⑤: the agent sends the purchase order to the ERP, with or without its passport.
    pub(super) async fn send_po(&self, passport: Option<(&str, String)>, a: Ask<'_>) -> anyhow::Result<(u16, Value)> {
        let mut req = self.api.http.post(format!("{}/purchase-orders", self.erp_url));
        if let Some((name, value)) = passport {
            req = req.header(name, value);
        }
        let po = json!({"vendor": a.counterparty, "amount": {"value": a.value, "currency": "USD"}, "description": a.description});
        let resp = req.json(&po).send().await.context("POST to the ERP")?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// ⑤ the ERP must accept the passport; returns the PO number.
    pub(super) async fn execute(&self, passport: &str, a: Ask<'_>) -> anyhow::Result<String> {
        let (status, v) = self.send_po(Some(("authorization", format!("Passport {passport}"))), a).await?;
        if status != 201 || v["agentsigna_case_status"] != "executed" {
            bail!("the ERP should have accepted the passport: {status} {v}");
        }
        say(
            "⑤ execution",
            format!(
                "ERP: 201 Created {} (checked offline; it reported the execution: case executed)",
                s(&v["po_number"])
            ),
        );
        Ok(s(&v["po_number"]).to_owned())
    }

    /// ⑤ the ERP must refuse with `status` and the error `code`.
    pub(super) async fn refused(
        &self,
        passport: Option<(&str, String)>,
        a: Ask<'_>,
        status: u16,
        code: &str,
        what: &str,
    ) -> anyhow::Result<()> {
        let (got, v) = self.send_po(passport, a).await?;
        if got != status || v["code"] != code {
            bail!("the ERP should have refused {what} with {status} {code}: got {got} {v}");
        }
        more(format!("{what}: ERP {got} {code} ({}) — refused", s(&v["detail"])));
        Ok(())
    }

    /// ⑥ and ⑦: the ERP reports an outcome with its system token.
    pub(super) async fn outcome(&self, case: &str, outcome: &str, detail: &str) -> anyhow::Result<()> {
        let body = json!({"outcome": outcome, "detail": detail});
        let path = format!("/v1/cases/{case}/outcome");
        let v: CaseView =
            self.api.expect_doc(Method::POST, &path, self.token("system", "erp")?, Some(&body), 200).await?;
        if v.core.status != CaseStatus::Closed {
            bail!("case {case} should be closed after its outcome: {}", v.core.status.as_str());
        }
        say("⑥ outcome", format!("ERP reports {outcome}: \"{detail}\" → case closed"));
        say("⑦ trust", trust_moves(&v));
        Ok(())
    }

    pub(super) async fn review_context(&self, approver: &str, review: &str) -> anyhow::Result<()> {
        let path = format!("/v1/reviews/{review}");
        let r: ReviewView =
            self.api.expect_doc(Method::GET, &path, self.token("approver", approver)?, None, 200).await?;
        let (t, o) = (&r.agent.trust, &r.agent.trust.outcomes);
        more(format!("{approver} opens the review and sees:"));
        more(format!(
            "  agent {} (owner {}), trust {}: {} completed, {} reversed, {} disputed",
            r.agent.id,
            r.agent.owner.as_deref().unwrap_or("?"),
            t.score,
            o.completed,
            o.reversed,
            o.disputed
        ));
        more(format!(
            "  vendor {}, risk {}, trust {}",
            r.counterparty.name,
            r.counterparty.risk.as_str(),
            r.counterparty.trust.score
        ));
        for rule in &r.rules {
            more(format!("  rule {}: {}", rule.rule.as_deref().unwrap_or("?"), rule.reason));
        }
        Ok(())
    }

    /// A decision answered `want`: the review (`ReviewView`) or the refusal (`Problem`).
    pub(super) async fn decide<T: serde::de::DeserializeOwned>(
        &self,
        approver: &str,
        review: &str,
        decision: &str,
        comment: &str,
        want: u16,
    ) -> anyhow::Result<T> {
        let body = json!({"decision": decision, "comment": comment});
        let path = format!("/v1/reviews/{review}/decisions");
        self.api.expect_doc(Method::POST, &path, self.token("approver", approver)?, Some(&body), want).await
    }

    /// The trust standing of an agent or a counterparty, as the admin reads it.
    pub(super) async fn trust_of(&self, of: Standing<'_>) -> anyhow::Result<TrustDoc> {
        Ok(match of {
            Standing::Agent(id) => {
                let path = format!("/v1/agents/{id}");
                self.api.expect_doc::<AgentView>(Method::GET, &path, &self.admin, None, 200).await?.trust
            }
            Standing::Counterparty(id) => {
                let path = format!("/v1/counterparties/{id}");
                self.api.expect_doc::<CounterpartyView>(Method::GET, &path, &self.admin, None, 200).await?.trust
            }
        })
    }

    pub(super) fn show_passport(&self, token: &str) -> anyhow::Result<()> {
        let c = serde_json::to_value(decode_unverified(token)?)?;
        let shown = json!({"sub": c["sub"], "aud": c["aud"], "jti": c["jti"], "exp": c["exp"],
                           "authorization_details": c["authorization_details"], "decision": c["decision"],
                           "approvals": c["approvals"], "case": c["case"]});
        let secs = c["exp"].as_i64().unwrap_or(0) - self.clock.now_secs();
        say(
            "④ passport",
            format!(
                "compact JWS, {} bytes, EdDSA; expires {} (in {secs} s). Its claims:",
                token.len(),
                rfc3339_ms(c["exp"].as_i64().unwrap_or(0) * 1000)
            ),
        );
        let mut lines = Vec::new();
        layout(&shown, 2, "", "", &mut lines);
        lines.iter().for_each(more);
        Ok(())
    }

    /// The seven parts; returns the review left open in part 6.
    pub(super) async fn scenario(&self, org: &OrgFile) -> anyhow::Result<String> {
        let standings: Vec<Standing<'_>> = org
            .agents
            .iter()
            .map(|a| Standing::Agent(&a.id))
            .chain(org.counterparties.iter().map(|c| Standing::Counterparty(&c.id)))
            .collect();
        let mut before = Vec::new();
        for &of in &standings {
            before.push(self.trust_of(of).await?.score);
        }

        section(1, "A routine purchase order: authorized at once");
        let a1 = Ask::po("acme", "4800.00", "Toner, paper and desk supplies for Q3", "po-4411");
        let r1 = self.ask(a1, Verdict::Authorized, "po-allowed").await?;
        let case1 = r1.case_id.clone();
        let pass1 = r1.passport.clone().context("an authorized case answers with its passport")?;
        self.show_passport(&pass1)?;
        let po1 = self.execute(&pass1, a1).await?;
        self.refused(None, a1, 401, "missing", "the same order without a passport").await?;
        self.refused(Some(("agentsigna-passport", pass1.clone())), a1, 409, "replayed", "the same passport again")
            .await?;
        self.outcome(&case1, "completed", "Delivered and invoiced as ordered").await?;

        section(2, "A large purchase order: escalated to finance");
        let a2 = Ask::po("globex", "40000.00", "40 laptops for the new onboarding cohort", "po-4412");
        let r2 = self.ask(a2, Verdict::Escalated, "large-po").await?;
        let case2 = r2.case_id.clone();
        let opened2 = r2.review.as_ref().context("an escalated case answers with its review")?;
        let review2 = opened2.id.clone();
        say(
            "③ review",
            format!(
                "{review2} {} ({}), deadline {}",
                needs(opened2.approvals_required),
                roles(&opened2.roles_required),
                opened2.deadline
            ),
        );
        let waiter = {
            let (api, token) = (self.api.clone(), self.token("agent", "procurement-bot")?.to_owned());
            let path = format!("/v1/cases/{case2}?wait=10");
            tokio::spawn(async move {
                (api.expect_doc::<CaseView>(Method::GET, &path, &token, None, 200).await, Instant::now())
            })
        };
        more(format!("procurement-bot waits for the decision: GET /v1/cases/{case2}?wait=10"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let denied: Problem = self.decide("alice@example.com", &review2, "approve", "Looks fine to me", 403).await?;
        more("alice@example.com (finance, owner of procurement-bot) tries to approve → 403 Forbidden:");
        more(format!("  {}", denied.detail));
        self.review_context("carol@example.com", &review2).await?;
        let d: ReviewView =
            self.decide("carol@example.com", &review2, "approve", "Budget line IT-7 confirmed", 200).await?;
        let approved_at = Instant::now();
        let status = d.core.review.as_ref().map(|r| r.status);
        if status != Some(ReviewStatus::Approved) {
            bail!("carol's approval should close review {review2}: {}", serde_json::to_value(&d.core.review)?);
        }
        more("carol@example.com (finance) approves → review approved");
        let (waited, returned_at) = waiter.await.context("the waiting agent")?;
        let waited = waited?;
        let pass2 = match (waited.core.status, waited.core.passport) {
            (CaseStatus::Authorized, Some(p)) => p,
            (status, p) => bail!(
                "the waiting agent should have got its passport: status {} passport {}",
                status.as_str(),
                if p.is_some() { "present" } else { "absent" }
            ),
        };
        let c2 = decode_unverified(&pass2)?;
        let approvals: Vec<String> =
            c2.approvals.iter().map(|a| format!("{} [{}] at {}", a.approver, a.roles.join(","), a.at)).collect();
        say(
            "④ passport",
            format!(
                "the waiting request returned {} ms after the approval, with the passport:",
                returned_at.saturating_duration_since(approved_at).as_millis()
            ),
        );
        more(format!(
            "decision {} by rules [{}]; approvals: {}",
            c2.decision.verdict,
            c2.decision.rules.join(", "),
            approvals.join("; ")
        ));
        let po2 = self.execute(&pass2, a2).await?;
        self.outcome(&case2, "completed", "40 laptops received").await?;

        section(3, "A payment to a high-risk vendor: rejected by risk");
        let a3 = Ask {
            agent: "payments-bot",
            action: "payment.send",
            counterparty: "initech",
            value: "2000.00",
            audience: "bank",
            description: "Advance for the ERP integration workshop",
            key: "pay-981",
        };
        let r3 = self.ask(a3, Verdict::Escalated, "high-risk-counterparty").await?;
        let opened3 = r3.review.as_ref().context("an escalated case answers with its review")?;
        let review3 = opened3.id.clone();
        say(
            "③ review",
            format!(
                "{review3} {} ({}), deadline {}",
                needs(opened3.approvals_required),
                roles(&opened3.roles_required),
                opened3.deadline
            ),
        );
        self.review_context("erin@example.com", &review3).await?;
        let comment = "Initech is under a fraud investigation; no advances until it is closed";
        let d3: ReviewView = self.decide("erin@example.com", &review3, "reject", comment, 200).await?;
        if d3.core.status != CaseStatus::Rejected {
            bail!("erin's rejection should reject the case: {}", d3.core.status.as_str());
        }
        more("erin@example.com (risk) rejects → case rejected, no passport:");
        more(format!("  \"{comment}\""));

        section(4, "A contract with a blocked vendor: rejected by policy");
        let a4 = Ask {
            agent: "contracts-bot",
            action: "contract.sign",
            counterparty: "sanctioned-co",
            value: "12000.00",
            audience: "clm",
            description: "Annual supply framework agreement",
            key: "ctr-77",
        };
        let r4 = self.ask(a4, Verdict::Rejected, "blocked-counterparty").await?;
        if r4.passport.is_some() || r4.review.is_some() {
            bail!("a rejected case gets neither a review nor a passport: {}", serde_json::to_value(&r4)?);
        }
        more("no review, no passport: nothing reaches the contract system");

        section(5, "A passport used too late: expired");
        let a5 = Ask::po("acme", "900.00", "Replacement chairs for meeting room 2", "po-4413");
        let r5 = self.ask(a5, Verdict::Authorized, "po-allowed").await?;
        let case5 = r5.case_id.clone();
        let pass5 = r5.passport.clone().context("an authorized case answers with its passport")?;
        say(
            "④ passport",
            format!(
                "{}, expires {}",
                r5.passport_id.as_deref().unwrap_or("?"),
                r5.passport_expires_at.as_deref().unwrap_or("?")
            ),
        );
        self.clock.offset_ms.fetch_add(JUMP_MS, Ordering::SeqCst);
        say("⑤ execution", "the agent dawdles: demo clock +6 min, then it sends the order");
        self.refused(Some(("authorization", format!("Passport {pass5}"))), a5, 401, "expired", "the late order")
            .await?;
        let path = format!("/v1/cases/{case5}");
        let c5: CaseView =
            self.api.expect_doc(Method::GET, &path, self.token("agent", "procurement-bot")?, None, 200).await?;
        if c5.core.status != CaseStatus::Expired || !c5.core.events.iter().any(|e| e.entry.kind == "passport.expired") {
            bail!("case {case5} should be expired: {}", c5.core.status.as_str());
        }
        more(format!(
            "case {case5} is now expired (passport.expired recorded); an expired passport is never re-issued"
        ));
        let a5b = Ask { key: "po-4413-retry", ..a5 };
        let r5b = self.ask(a5b, Verdict::Authorized, "po-allowed").await?;
        self.execute(r5b.passport.as_deref().context("an authorized case answers with its passport")?, a5b).await?;
        self.outcome(&r5b.case_id, "completed", "Chairs delivered").await?;

        section(6, "Later outcomes: a reversal, a dispute, and lost latitude");
        more(format!("case {case2} ({po2}, globex laptops):"));
        self.outcome(&case2, "reversed", "Laptops returned as defective; order cancelled and refunded").await?;
        more(format!("case {case1} ({po1}, acme supplies):"));
        self.outcome(&case1, "disputed", "Acme invoiced 6,100.00 USD for a 4,800.00 USD order").await?;
        more("procurement-bot repeats the order of part 1:");
        let a6 = Ask::po("acme", "4800.00", "Toner, paper and desk supplies for Q4", "po-4414");
        let r6 = self.ask(a6, Verdict::Escalated, "low-trust-latitude").await?;
        let review6 = r6.review.as_ref().context("an escalated case answers with its review")?.id.clone();
        say(
            "③ review",
            format!("{review6} waits for a risk approver (left open: browse it with `agentsigna demo --serve`)"),
        );

        section(7, "Trust and the ledger");
        say(
            "⑦ trust",
            format!(
                "{:<16} {:>6}   {:>5}   outcomes counted (completed/reversed/rejected/disputed)",
                "", "before", "after"
            ),
        );
        for (&of, b) in standings.iter().zip(&before) {
            let t = self.trust_of(of).await?;
            let o = &t.outcomes;
            more(format!(
                "{:<16} {b:>6} → {:>5}   {}/{}/{}/{}",
                of.id(),
                t.score,
                o.completed,
                o.reversed,
                o.rejected,
                o.disputed
            ));
        }
        let note = self.api.text("/v1/ledger/checkpoint").await?;
        let key_text = self.api.text("/v1/ledger/key").await?;
        let key = NoteVerifier::parse(key_text.trim()).map_err(|e| anyhow!("ledger key: {e}"))?;
        let cp = verify_checkpoint(&note, &key).map_err(|e| anyhow!("checkpoint: {e}"))?;
        say("ledger", format!("checkpoint {} size {} (signature checked with GET /v1/ledger/key)", cp.origin, cp.size));
        let ev: Evidence =
            self.api.expect_doc(Method::GET, &format!("/v1/cases/{case1}/evidence"), &self.admin, None, 200).await?;
        let chain: Vec<&str> = ev.entries.iter().map(|e| e.entry.entry.kind.as_str()).collect();
        let at = verify_evidence(&ev, &key).map_err(|e| anyhow!("evidence of case {case1}: {e}"))?;
        more(format!(
            "case {case1}: {} linked entries, each proven included in the tree of size {}:",
            chain.len(),
            at.size
        ));
        for part in chain.chunks(4) {
            more(format!("  {}", part.join(" → ")));
        }
        let saved = self.data_dir.join("checkpoint.txt");
        std::fs::write(&saved, &note)?;
        let saved_cp = verify_checkpoint(&note, &key).map_err(|e| anyhow!("saved checkpoint: {e}"))?;
        let data_dir = self.data_dir.clone();
        let verdict = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let reader = crate::database::open_ledger(&crate::database::select(None, &data_dir)?)?;
            let saved = [(saved_cp, saved.display().to_string())];
            let r = agentsigna_store::ledger::audit(&*reader, &key, &saved, |_| {})?;
            Ok(format!(
                "OK: {} entries, {} cases, every digest and chain recomputed, Merkle root matches the checkpoint signed by {} at size {}",
                r.entries, r.cases, r.checkpoint.origin, r.checkpoint.size
            ))
        })
        .await??;
        more("agentsigna ledger verify --data-dir DIR --checkpoint <the checkpoint above>:");
        more(format!("  {verdict}"));
        println!(
            "\nledger verified: {} entries written by this demo, every digest, chain and the Merkle root recomputed.",
            cp.size
        );
        Ok(review6)
    }
}

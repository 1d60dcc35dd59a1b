//! Step 4: the case's one passport, signed and bound to the case's chain head; an
//! approved case's passport is issued when its agent picks it up, after a re-check.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::data::case_event;
use super::draft::Draft;
use super::verdict::{recheck, reject_on_recheck};
use super::Ctx;
use crate::ids::new_id;
use crate::model::{AgentRecord, Case, PassportRecord, PolicyRef, ReviewStatus};
use crate::store::RecordKind;
use crate::{Error, Result};
use agentsigna_verify::clock::rfc3339_ms;
use agentsigna_verify::passport as pp;

/// An agent picking up its approved passport: re-checked first (see [`recheck`]).
/// Returns whether the case changed.
pub(crate) fn issue_or_refuse_passport(ctx: &Ctx, d: &mut Draft<'_>, case: &mut Case) -> Result<bool> {
    if let Some(eval) = super::review::withdraw_revoked_approvals(ctx, d, case)? {
        reject_on_recheck(ctx, d, case, &eval, "passport")?;
        return Ok(true);
    }
    if let Some(eval) = recheck(ctx, d, case)? {
        reject_on_recheck(ctx, d, case, &eval, "passport")?;
        return Ok(true);
    }
    let agent: AgentRecord = d
        .get(RecordKind::Agent, &case.agent)?
        .ok_or_else(|| Error::data(format!("agent {} of case {} is missing", case.agent, case.id)))?;
    issue_passport(ctx, d, case, &agent)?;
    Ok(true)
}

/// Step 4: signs the case's one passport, bound to the case's chain head.
pub(crate) fn issue_passport(ctx: &Ctx, d: &mut Draft<'_>, case: &mut Case, agent: &AgentRecord) -> Result<()> {
    if case.passport.is_some() {
        return Ok(());
    }
    let now = ctx.now();
    // A rule's @ttl sets the lifetime (the shortest of the deciding rules), never beyond the maximum.
    let ttl = case.decision.ttl_secs.unwrap_or(ctx.config.passport_ttl_secs).clamp(1, ctx.config.max_passport_ttl_secs);
    let iat = now.div_euclid(1000);
    let exp = iat + ttl;
    let (head_seq, head_digest) =
        case.head.clone().ok_or_else(|| Error::data(format!("case {} has no ledger entries", case.id)))?;
    let approved = case.review.as_ref().is_some_and(|r| r.status == ReviewStatus::Approved);
    let approvals = case
        .review
        .as_ref()
        .map(|r| {
            r.approvals()
                .map(|d| pp::Approval {
                    approver: d.approver.clone(),
                    roles: d.roles.clone(),
                    decision: "approve".to_owned(),
                    at: rfc3339_ms(d.at_ms),
                })
                .collect()
        })
        .unwrap_or_default();
    let policy = case.decision.policy.clone().unwrap_or(PolicyRef { version: 0, digest: String::new() });
    let jti = new_id("psp", now);
    let claims = pp::PassportClaims {
        iss: ctx.config.issuer.clone(),
        sub: case.agent.clone(),
        aud: case.request.audience.clone(),
        iat,
        nbf: iat,
        exp,
        jti: jti.clone(),
        authorization_details: vec![pp::AuthorizationDetail {
            kind: "agentsigna_action".to_owned(),
            action: case.request.action.clone(),
            counterparty: pp::CounterpartyRef {
                id: case.decision.counterparty.id.clone(),
                name: case.decision.counterparty.name.clone(),
                risk: case.decision.counterparty.risk.as_str().to_owned(),
            },
            amount: case
                .request
                .amount
                .as_ref()
                .map(|a| pp::Amount { value: a.value.clone(), currency: a.currency.clone() }),
            description: case.request.description.clone(),
        }],
        decision: pp::Decision {
            verdict: if approved { "approved" } else { "authorized" }.to_owned(),
            policy: pp::PolicyRef { version: policy.version, digest: policy.digest },
            rules: case.decision.reasons.iter().filter_map(|r| r.rule.clone()).collect(),
            decided_at: rfc3339_ms(
                case.review.as_ref().and_then(|r| r.closed_at_ms).unwrap_or(case.decision.decided_at_ms),
            ),
            trust: pp::TrustRef { agent: case.decision.trust.agent, counterparty: case.decision.trust.counterparty },
        },
        approvals,
        case: pp::CaseRef { id: case.id.clone(), seq: head_seq, head: head_digest },
        cnf: agent.public_jwk.as_ref().map(|j| pp::Confirmation { jkt: j.thumbprint() }),
    };
    let (token, kid) = {
        let keys = crate::sync::read(&ctx.keys);
        let key = keys.active()?;
        (pp::sign(&claims, key.signing.as_ref()).map_err(|e| Error::signing("passport", e))?, key.kid.clone())
    };
    case_event(
        d,
        case,
        "passport.issued",
        now,
        "server",
        json!({
            "passport_id": jti, "kid": kid, "aud": claims.aud, "iat": iat, "exp": exp,
            "cnf_jkt": claims.cnf.as_ref().map(|c| c.jkt.clone()),
            "token_sha256": hex::encode(Sha256::digest(token.as_bytes())),
        }),
    )?;
    case.passport = Some(PassportRecord { id: jti, token, kid, issued_at_ms: now, expires_at_ms: exp * 1000 });
    Ok(())
}

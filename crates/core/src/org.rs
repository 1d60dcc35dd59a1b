//! The organization file (TOML): agents, approvers, target systems, counterparties,
//! action types and the policy, applied idempotently through the same engine
//! operations as the admin API.
//!
//! ```toml
//! policy = "policy.cedar"            # relative to this file
//! roles = ["finance", "risk"]        # approver roles policies may name
//!
//! [[actions]]
//! type = "purchase_order.create"
//! description = "Create a purchase order in the ERP"
//!
//! [[agents]]
//! id = "procurement-bot"
//! owner = "alice@example.com"
//! name = "Procurement bot"
//! # public_jwk = { kty = "OKP", crv = "Ed25519", x = "…" }
//!
//! [[approvers]]
//! id = "carol@example.com"
//! roles = ["finance"]
//!
//! [[systems]]
//! id = "erp"
//! name = "ERP"
//!
//! [[counterparties]]
//! id = "acme"
//! name = "Acme Corp"
//! risk = "low"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::admin::{CounterpartyInput, NewAgent, NewApprover, NewSystem};
use crate::engine::Engine;
use crate::model::{Principal, Risk};
use crate::{Error, Result};

/// An organization file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgFile {
    /// Policy file, relative to the org file.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Approver roles that policies may name.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub actions: Vec<OrgAction>,
    #[serde(default)]
    pub agents: Vec<NewAgentToml>,
    #[serde(default)]
    pub approvers: Vec<NewApprover>,
    #[serde(default)]
    pub systems: Vec<NewSystem>,
    #[serde(default)]
    pub counterparties: Vec<OrgCounterparty>,
}

/// An action type of the org file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgAction {
    #[serde(rename = "type")]
    pub action_type: String,
    #[serde(default)]
    pub description: String,
}

/// An agent of the org file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgentToml {
    pub id: String,
    pub owner: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub public_jwk: Option<toml::Table>,
}

/// A counterparty of the org file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgCounterparty {
    pub id: String,
    pub name: String,
    pub risk: Risk,
}

/// A credential created while applying the org file (shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// `agent`, `approver` or `system`.
    pub kind: &'static str,
    pub id: String,
    pub token: String,
}

/// What applying an org file did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub credentials: Vec<NewCredential>,
    pub policy_version: Option<u64>,
}

impl OrgFile {
    /// Parses org TOML text; `base` resolves the relative policy path.
    pub fn parse(text: &str) -> Result<OrgFile> {
        toml::from_str(text).map_err(|e| Error::Invalid { field: None, detail: format!("invalid org file: {e}") })
    }

    /// Reads an org file.
    pub fn load(path: &Path) -> Result<(OrgFile, Option<String>)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Invalid { field: None, detail: format!("{}: {e}", path.display()) })?;
        let org = OrgFile::parse(&text)?;
        let policy = match &org.policy {
            Some(p) => {
                let full = path.parent().unwrap_or(Path::new(".")).join(p);
                Some(std::fs::read_to_string(&full).map_err(|e| Error::Invalid {
                    field: Some("policy".into()),
                    detail: format!("{}: {e}", full.display()),
                })?)
            }
            None => None,
        };
        Ok((org, policy))
    }
}

impl Engine {
    /// Applies an org file as the admin, idempotently: existing principals keep their
    /// credentials; counterparties and actions are updated; the policy is uploaded and
    /// activated only when it differs from the active one.
    pub async fn apply_org(&self, org: &OrgFile, policy_source: Option<String>) -> Result<Applied> {
        let admin = Principal::Admin;
        let mut applied = Applied::default();
        if !org.roles.is_empty() {
            self.declare_roles(&admin, org.roles.clone()).await?;
        }
        for a in &org.actions {
            self.declare_action(&admin, a.action_type.clone(), a.description.clone()).await?;
        }
        for c in &org.counterparties {
            self.put_counterparty(&admin, c.id.clone(), CounterpartyInput { name: c.name.clone(), risk: c.risk })
                .await?;
        }
        for s in &org.systems {
            match self.register_system(&admin, s.clone()).await {
                Ok((r, token)) => applied.credentials.push(NewCredential { kind: "system", id: r.id, token }),
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for a in &org.approvers {
            match self.register_approver(&admin, a.clone()).await {
                Ok((r, token)) => applied.credentials.push(NewCredential { kind: "approver", id: r.id, token }),
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for a in &org.agents {
            let public_jwk = match &a.public_jwk {
                Some(t) => Some(
                    serde_json::to_value(t)
                        .and_then(serde_json::from_value)
                        .map_err(|e| Error::invalid("public_jwk", format!("public_jwk is not a JWK: {e}")))?,
                ),
                None => None,
            };
            let input = NewAgent { id: a.id.clone(), owner: a.owner.clone(), name: a.name.clone(), public_jwk };
            match self.register_agent(&admin, input).await {
                Ok((r, token)) => applied.credentials.push(NewCredential { kind: "agent", id: r.id, token }),
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(source) = policy_source {
            let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(source.as_bytes())));
            let (versions, active) = self.list_policies(&Principal::Admin).await?;
            let active_digest = active.and_then(|v| versions.iter().find(|p| p.version == v)).map(|p| p.digest.clone());
            if active_digest.as_deref() == Some(digest.as_str()) {
                applied.policy_version = active;
            } else if let Some(existing) = versions.iter().find(|p| p.digest == digest) {
                self.activate_policy(&admin, existing.version).await?;
                applied.policy_version = Some(existing.version);
            } else {
                applied.policy_version = Some(self.upload_policy(&admin, source, true).await?.version);
            }
        }
        Ok(applied)
    }
}

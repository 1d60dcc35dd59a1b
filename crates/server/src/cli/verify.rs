//! `agentsigna verify`: a passport checked offline against a JWK set.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;

use agentsigna_core::SystemClock;
use agentsigna_verify::clock::parse_rfc3339_ms;
use agentsigna_verify::jwk::Jwks;
use agentsigna_verify::passport::Verifier;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The passport (compact JWS), or `-` to read it from standard input.
    pub passport: String,
    /// JWK set: a file or an http(s) URL.
    #[arg(long)]
    pub jwks: String,
    /// The audience this verifier stands for.
    #[arg(long)]
    pub audience: String,
    /// Check validity at this instant (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<String>,
    /// Print the whole verified claims as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn load_jwks(source: &str) -> anyhow::Result<Jwks> {
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let resp = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?
            .get(source)
            .send()
            .with_context(|| format!("cannot fetch {source}"))?;
        if !resp.status().is_success() {
            bail!("{source} answered {}", resp.status());
        }
        resp.text()?
    } else {
        std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?
    };
    Jwks::from_json(&text).map_err(|e| anyhow!("invalid JWKS: {e}"))
}

pub(super) fn verify(a: VerifyArgs) -> i32 {
    let token = if a.passport == "-" {
        let mut s = String::new();
        if std::io::stdin().read_to_string(&mut s).is_err() {
            eprintln!("error: cannot read the passport from standard input");
            return 2;
        }
        s.trim().to_owned()
    } else {
        a.passport.trim().to_owned()
    };
    let jwks = match load_jwks(&a.jwks) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    let mut verifier = Verifier::new(jwks, a.audience);
    if let Some(at) = &a.at {
        match parse_rfc3339_ms(at) {
            Some(ms) => verifier = verifier.at(ms.div_euclid(1000)),
            None => {
                eprintln!("error: --at must be an RFC 3339 timestamp (got {at:?})");
                return 2;
            }
        }
    }
    match verifier.verify(&token, &SystemClock) {
        Ok(v) => {
            let out = if a.json {
                serde_json::to_string_pretty(&v.claims)
            } else {
                serde_json::to_string_pretty(&serde_json::json!({
                    "valid": true, "kid": v.kid, "sub": v.claims.sub, "aud": v.claims.aud,
                    "jti": v.claims.jti, "exp": v.claims.exp,
                    "authorization_details": v.claims.authorization_details,
                    "decision": v.claims.decision, "approvals": v.claims.approvals, "case": v.claims.case,
                }))
            };
            // For people (not with --json): hidden characters of the description and
            // other request text are shown as markers (`⟨U+202E⟩`).
            let out = out.unwrap_or_default();
            let out = if a.json { out } else { agentsigna_core::text::visible(&out).into_owned() };
            // A closed pipe (`| head`) is not an error of the verification.
            let _ = writeln!(std::io::stdout(), "{out}");
            0
        }
        Err(e) => {
            eprintln!("{}", e.code());
            1
        }
    }
}

//! `agentsigna demo`: the procurement scenario of `examples/procurement/`, end to end.
//!
//! A real server (temporary data dir, loopback port) with the built-in org and Cedar
//! policy; agents and approvers that talk to it over HTTP only; and a small ERP that
//! accepts purchase orders only with a valid passport, checked offline with the
//! `agentsigna-verify` [`Gate`]. The narration walks the seven steps of the loop. Every
//! verdict and status is checked: anything unexpected fails the demo (exit 1), so it
//! doubles as an end-to-end test.

mod api;
mod erp;
mod narrate;
mod scenario;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;

use agentsigna_core::org::OrgFile;
use agentsigna_core::{Clock, SystemClock};

use crate::app::{self, ServeOptions};
use api::Api;
use erp::start_erp;
use narrate::say;
use scenario::Demo;

/// The reference org and its policy, built into the binary (their source is `examples/procurement/`).
const ORG: &str = include_str!("../../../../examples/procurement/org.toml");
const POLICY: &str = include_str!("../../../../examples/procurement/policy.cedar");

/// How far part 5 moves the demo clock: beyond a passport's 5 minutes plus 30 s leeway.
const JUMP_MS: i64 = 6 * 60 * 1000;

/// Wall-clock time plus an offset the demo moves forward ("demo clock +6 min"). The
/// server and the ERP share it, so a passport can expire without waiting. It starts
/// [`JUMP_MS`] behind real time, so after the jump it is on time again: with `--serve`,
/// passports issued while browsing verify against any real clock.
#[derive(Debug)]
struct DemoClock {
    offset_ms: AtomicI64,
}

impl Clock for DemoClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the server running after the demo, for browsing.
    #[arg(long)]
    pub serve: bool,
    /// Listen address for `--serve` (default: a free loopback port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// `agentsigna demo`.
pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let org = OrgFile::parse(ORG).context("the built-in org file")?;
    let dir =
        tempfile::Builder::new().prefix("agentsigna-demo-").tempdir().context("cannot create a temporary data dir")?;
    let clock = Arc::new(DemoClock { offset_ms: AtomicI64::new(-JUMP_MS) });
    let listen = a.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut opts = ServeOptions::new(dir.path(), listen);
    opts.org_inline = Some((org.clone(), Some(POLICY.to_owned())));
    opts.sweeper = true;
    let running = app::start(opts, clock.clone()).await.context("starting the server")?;
    let admin = running.admin_token.clone().ok_or_else(|| anyhow!("the fresh data dir has no admin token"))?;
    let creds: HashMap<String, String> =
        running.credentials.iter().map(|c| (format!("{}:{}", c.kind, c.id), c.token.clone())).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let api = Api { http, base: running.url() };

    println!("AgentSigna demo: the procurement scenario of examples/procurement/ (built in)");
    say("server", format!("{}   data dir {}", running.url(), dir.path().display()));
    let erp = match creds.get("system:erp") {
        Some(token) => start_erp(api.clone(), clock.clone(), token.clone()).await,
        None => Err(anyhow!("the org created no credential for the erp")),
    };
    let result = match erp {
        Ok(erp) => {
            say(
                "ERP",
                format!("{}/purchase-orders   (audience erp; verifies passports offline with the JWKS)", erp.url),
            );
            say(
                "org",
                format!(
                    "{} agents, {} approvers, {} target systems, {} vendors, Cedar policy of {} rules",
                    org.agents.len(),
                    org.approvers.len(),
                    org.systems.len(),
                    org.counterparties.len(),
                    POLICY.matches("@id(").count()
                ),
            );
            say("loop", "① request  ② verdict  ③ review  ④ passport  ⑤ execution  ⑥ outcome  ⑦ trust");
            let demo = Demo {
                api: api.clone(),
                erp_url: erp.url.clone(),
                clock,
                admin,
                creds,
                data_dir: dir.path().to_owned(),
            };
            let r = demo.scenario(&org).await;
            if let (Ok(review), true) = (&r, a.serve) {
                serve_hint(&api, &running.data_dir, &org, review).await;
                app::shutdown_signal().await;
                println!("stopping");
            }
            let _ = erp.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), erp.join).await;
            r.map(|_| ())
        }
        Err(e) => Err(e),
    };
    let stopped = running.stop(Duration::from_secs(5)).await;
    result?;
    stopped?;
    println!("done: the server and the ERP stopped; the temporary data dir is removed.");
    Ok(())
}

async fn serve_hint(api: &Api, data_dir: &std::path::Path, org: &OrgFile, review: &str) {
    println!("\nThe server keeps running for browsing; Ctrl-C stops it (and removes the data dir).");
    say("API", &api.base);
    if api
        .http
        .get(format!("{}/ui/", api.base))
        .send()
        .await
        .is_ok_and(|r| r.status() != reqwest::StatusCode::NOT_FOUND)
    {
        say("approver UI", format!("{}/ui/  (log in with an approver token below)", api.base));
    }
    say("admin token", data_dir.join("admin.token").display());
    for (i, a) in org.approvers.iter().enumerate() {
        let label = if i == 0 { "approvers" } else { "" };
        say(
            label,
            format!("{:<18} {}", a.id, data_dir.join("credentials").join(format!("approver-{}.token", a.id)).display()),
        );
    }
    say(
        "pending",
        format!("review {review} (procurement-bot, acme 4,800.00 USD) awaits a risk approver: erin or frank"),
    );
}

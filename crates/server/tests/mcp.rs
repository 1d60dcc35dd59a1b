//! Agents on MCP, with real components on loopback: a real server in this process, the
//! `agentsigna mcp` / `agentsigna mcp-gate` binaries, the official Python MCP SDK as the
//! agent's client (`tests/mcp/drive.py`) and the toy ERP of `examples/mcp/` (Python SDK
//! `MCPServer`) as the upstream, which itself verifies passports with PyJWT.
//!
//! Needs a Python with `mcp` (>= 2.3) and PyJWT: `$AGENTSIGNA_PYTHON`, else `python3`.
//! Skipped with a printed reason when absent, except under CI (`.ci/run` installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "it/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{bin, event_types, free_port, Server};
use serde_json::{json, Value};

fn python() -> Option<String> {
    let candidates = [std::env::var("AGENTSIGNA_PYTHON").ok(), Some("python3".to_owned())];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import mcp.server.mcpserver, httpx2, jwt"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The Python to use, or `None` (skip) outside CI; under CI its absence fails the test.
fn python_or_skip(test: &str) -> Option<String> {
    let py = python();
    if py.is_none() {
        assert!(std::env::var("CI").is_err(), "Python with `mcp` and PyJWT is required under CI (.ci/run installs it)");
        eprintln!("SKIPPED {test}: no python with the `mcp` SDK and PyJWT (set AGENTSIGNA_PYTHON or pip install 'mcp>=2.3,<3' 'pyjwt[crypto]')");
    }
    py
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mcp").join(name)
}

/// The example tools file with another `wait`.
fn tools_file(dir: &Path, wait: &str) -> PathBuf {
    let text = std::fs::read_to_string(example("tools.toml")).unwrap();
    assert!(text.contains("wait = \"PT2M\""));
    let path = dir.join("tools.toml");
    std::fs::write(&path, text.replace("wait = \"PT2M\"", &format!("wait = \"{wait}\""))).unwrap();
    path
}

/// Runs the Python driver on `plan`; returns its per-step results.
async fn drive(py: &str, dir: &Path, plan: Value) -> Vec<Value> {
    let plan_path = dir.join(format!("plan-{}.json", rand_suffix()));
    std::fs::write(&plan_path, serde_json::to_vec(&plan).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/drive.py");
    let py = py.to_owned();
    let out = tokio::task::spawn_blocking(move || Command::new(py).arg(script).arg(plan_path).output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client failed:\n{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("driver output is not JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout))
    });
    doc["results"].as_array().unwrap().clone()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// The toy ERP's log: one JSON object per line.
fn erp_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Calls the ERP received for `tool`.
fn erp_calls<'a>(log: &'a [Value], tool: &str) -> Vec<&'a Value> {
    log.iter().filter(|e| e["event"] == "call" && e["tool"] == tool).collect()
}

fn call(tool: &str, args: Value) -> Value {
    json!({"op": "call", "tool": tool, "args": args})
}

fn po(vendor: &str, total: &str, summary: &str) -> Value {
    json!({"vendor": vendor, "total": total, "currency": "USD", "summary": summary})
}

#[track_caller]
fn ok(r: &Value) -> &Value {
    assert!(r["exception"].is_null() && r["isError"] == false, "expected success: {r:#}");
    r
}

#[track_caller]
fn refused<'a>(r: &'a Value, needle: &str) -> &'a str {
    assert!(r["isError"] == true, "expected a tool error: {r:#}");
    let text = r["text"].as_str().unwrap();
    assert!(text.contains(needle), "{text:?} does not mention {needle:?}");
    text
}

/// The case id of a forwarded call.
fn forwarded_case(r: &Value) -> String {
    r["meta"]["agentsigna/case"].as_str().unwrap_or_else(|| panic!("no case in the result meta: {r:#}")).to_owned()
}

/// The case as the admin sees it.
async fn admin_case(server: &Server, id: &str) -> Value {
    let r = server.case(&server.admin, id).await;
    r.expect(200);
    r.json
}

/// Checks the ledger of a forwarded call: context = arguments, execution and outcome
/// recorded by the ERP, and the passport the ERP saw verifies for this case.
async fn check_forwarded(server: &Server, case: &str, args: &Value, erp_saw: &Value, outcome: &str) {
    let doc = admin_case(server, case).await;
    assert_eq!(doc["request"]["context"], *args, "context equals the call's arguments");
    let types = event_types(&doc);
    for t in ["request.submitted", "decision.made", "passport.issued", "execution.reported", "outcome.recorded"] {
        assert!(types.iter().any(|x| x == t), "case {case} lacks {t}: {types:?}");
    }
    assert_eq!(doc["executions"][0]["actor"], "system:erp");
    assert_eq!(doc["outcomes"][0]["outcome"], outcome, "{doc:#}");
    assert_eq!(doc["outcomes"][0]["actor"], "system:erp");
    let passport = erp_saw["passport"].as_str().expect("the ERP saw a passport");
    let claims = server.verify_passport(passport, "erp").await;
    assert_eq!(claims.case.id, case);
    assert_eq!(claims.jti, doc["executions"][0]["passport_id"]);
}

fn gate_env(server: &Server, log: &Path) -> Value {
    json!({
        "AGENTSIGNA_URL": server.base, "AGENTSIGNA_API_KEY": server.bot(),
        "AGENTSIGNA_SYSTEM_TOKEN": server.erp(), "AGENTSIGNA_LOG": "warn",
        "ERP_LOG": log, "ERP_JWKS_URL": format!("{}/.well-known/jwks.json", server.base),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_over_stdio_enforces_passports_on_tool_calls() {
    let Some(py) = python_or_skip("mcp-gate over stdio") else { return };
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("erp.log");
    let tools = tools_file(dir.path(), "PT3S");
    let carol = server.carol();
    let small = po("acme", "120.00", "printer paper");
    let large = po("globex", "40000.00", "servers for the lab");
    let late = po("globex", "30000.00", "storage array");
    let payment = json!({"payee": "acme", "amount": "25.00", "currency": "USD", "invoice": "BOGUS-1"});
    let mut approved_while_waiting = call("create_purchase_order", large.clone());
    approved_while_waiting["progress"] = json!(true);
    approved_while_waiting["approve"] = json!(carol);
    let mut slow = call("list_inventory", json!({"delay_seconds": 2}));
    slow["progress"] = json!(false);
    let plan = json!({
        "api": server.base,
        "transport": {"stdio": {"command": bin(), "env": gate_env(&server, &log), "args": [
            "mcp-gate", "--tools", tools, "--", py, example("erp_server.py")]}},
        "steps": [
            {"op": "list"},
            call("list_inventory", json!({"sku_prefix": "LAP"})),
            call("create_purchase_order", small.clone()),
            approved_while_waiting,
            call("create_purchase_order", po("sanctioned-co", "50.00", "anything")),
            call("delete_vendor", json!({"vendor": "acme"})),
            call("create_purchase_order", late.clone()),
            {"op": "approve", "token": carol},
            call("create_purchase_order", late.clone()),
            call("create_purchase_order", small.clone()),
            call("create_purchase_order", po("acme", "12.345", "bad amount")),
            call("create_purchase_order", po("nobody", "10.00", "unknown vendor")),
            call("create_purchase_order", json!({"total": "10.00", "currency": "USD", "summary": "no vendor"})),
            call("send_payment", payment.clone()),
            {"op": "concurrent", "calls": [slow, call("create_purchase_order", po("acme", "130.00", "toner"))]},
            {"op": "kill_upstream", "log": log},
            call("list_inventory", json!({})),
            call("list_inventory", json!({})),
        ],
    });
    let r = drive(&py, dir.path(), plan).await;
    let erp = erp_log(&log);

    // tools/list shows only what the agent may call.
    assert_eq!(r[0]["tools"], json!(["create_purchase_order", "list_inventory", "send_payment"]));
    // A read-only tool passes through without authority.
    assert!(ok(&r[1])["text"].as_str().unwrap().contains("LAP-14"));

    // Authorized → forwarded with a passport the ERP verified; execution and outcome recorded.
    let case = forwarded_case(ok(&r[2]));
    let pos = erp_calls(&erp, "create_purchase_order");
    check_forwarded(&server, &case, &small, pos[0], "completed").await;

    // Escalated → approved through the API while waiting (with progress) → forwarded.
    let case = forwarded_case(ok(&r[3]));
    assert!(!r[3]["approved"].as_array().unwrap().is_empty(), "the test approved the review: {:#}", r[3]);
    assert!(!r[3]["progress"].as_array().unwrap().is_empty(), "progress while waiting: {:#}", r[3]);
    check_forwarded(&server, &case, &large, pos[1], "completed").await;
    assert_eq!(admin_case(&server, &case).await["review"]["status"], "approved");

    // Rejected and unmapped calls never reach the ERP.
    refused(&r[4], "blocked-counterparty");
    refused(&r[5], "unmapped = \"deny\"");
    assert!(erp_calls(&erp, "delete_vendor").is_empty());
    assert!(!erp.iter().any(|e| e["arguments"]["vendor"] == "sanctioned-co"));

    // Still pending after `wait`: a tool error with the case and review ids; after a late
    // approval the same call picks the decision up and is forwarded.
    let pending = refused(&r[6], "still pending human review");
    let late_case = r[6]["structured"]["case_id"].as_str().unwrap().to_owned();
    let review = r[6]["structured"]["review"]["id"].as_str().unwrap();
    assert!(pending.contains(&late_case) && pending.contains(review), "{pending}");
    assert!(r[6]["seconds"].as_f64().unwrap() >= 2.5, "it waited: {:#}", r[6]);
    assert_eq!(r[7]["approved"], json!([review]));
    assert_eq!(forwarded_case(ok(&r[8])), late_case);
    check_forwarded(&server, &late_case, &late, pos[2], "completed").await;

    // The same call again maps to the same (closed) case: never executed twice.
    refused(&r[9], "already carried out");
    // Arguments that cannot become a request name the argument.
    refused(&r[10], "argument /total");
    refused(&r[11], "argument /vendor");
    refused(&r[12], "argument /vendor");
    assert_eq!(erp_calls(&erp, "create_purchase_order").len(), 4, "only authorized calls reached the ERP");

    // The ERP answers with an error: the outcome is `rejected`.
    let text = refused(&r[13], "unknown invoice");
    let case = forwarded_case(&r[13]);
    assert!(!text.is_empty());
    check_forwarded(&server, &case, &payment, erp_calls(&erp, "send_payment")[0], "rejected").await;

    // A slow tool does not hold up another call.
    assert_eq!(r[14]["finished"], json!([1, 0]), "the quick call finished first: {:#}", r[14]);
    ok(&r[14]["results"][0]);
    ok(&r[14]["results"][1]);

    // The upstream dies: the gate starts it again (the call either fails as a tool error or
    // already runs on the new process), and the next call works.
    assert!(r[16]["exception"].is_null(), "a dead upstream is a tool error, not a protocol failure: {:#}", r[16]);
    eprintln!("after the kill: {}", r[16]["text"]);
    ok(&r[17]);
    assert_eq!(erp.iter().filter(|e| e["event"] == "started").count(), 2, "started once, and again after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tools_over_stdio_request_wait_and_report() {
    let Some(py) = python_or_skip("agentsigna mcp") else { return };
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let req = |vendor: &str, value: &str| {
        json!({"action": "purchase_order.create", "counterparty": vendor, "audience": "erp",
               "amount": {"value": value, "currency": "USD"}, "description": "via MCP",
               "context": {"cost_center": "IT-7"}})
    };
    let mut waiting = call("request_authority", {
        let mut a = req("globex", "40000.00");
        a["wait_seconds"] = json!(20);
        a
    });
    waiting["progress"] = json!(true);
    waiting["approve"] = json!(server.carol());
    let plan = json!({
        "api": server.base,
        "transport": {"stdio": {"command": bin(), "args": ["mcp"],
            "env": {"AGENTSIGNA_URL": server.base, "AGENTSIGNA_API_KEY": server.bot(), "AGENTSIGNA_LOG": "warn"}}},
        "steps": [
            {"op": "list"},
            call("request_authority", req("acme", "120.00")),
            waiting,
            call("request_authority", req("sanctioned-co", "10.00")),
            call("request_authority", req("acme", "1.234")),
            call("request_authority", req("globex", "20000.00")),
        ],
    });
    let r = drive(&py, dir.path(), plan).await;
    assert_eq!(r[0]["tools"], json!(["get_case", "report_outcome", "request_authority"]));

    // Authorized at once: the API's answer, with a passport that verifies.
    let s = &ok(&r[1])["structured"];
    assert_eq!(s["verdict"], "authorized");
    assert!(r[1]["text"].as_str().unwrap().contains("Authorized"));
    let claims = server.verify_passport(s["passport"].as_str().unwrap(), "erp").await;
    let first = s["case_id"].as_str().unwrap().to_owned();
    assert_eq!(claims.case.id, first);

    // Escalated, approved while the call waits: the case document with its passport.
    let s = &ok(&r[2])["structured"];
    assert_eq!(s["status"], "authorized", "{s:#}");
    assert!(!r[2]["progress"].as_array().unwrap().is_empty(), "progress while waiting");
    server.verify_passport(s["passport"].as_str().unwrap(), "erp").await;

    // Refusals are tool errors naming the rule or the field.
    refused(&r[3], "blocked-counterparty");
    refused(&r[4], "amount.value");
    // Escalated without waiting: not an error, names the review.
    let text = ok(&r[5])["text"].as_str().unwrap();
    assert!(text.contains("large-po") && text.contains(r[5]["structured"]["review"]["id"].as_str().unwrap()), "{text}");

    // get_case and report_outcome: the agent may report only its failures.
    let plan = json!({
        "api": server.base,
        "transport": {"stdio": {"command": bin(), "args": ["mcp"],
            "env": {"AGENTSIGNA_URL": server.base, "AGENTSIGNA_API_KEY": server.bot(), "AGENTSIGNA_LOG": "warn"}}},
        "steps": [
            call("get_case", json!({"case_id": first})),
            call("report_outcome", json!({"case_id": first, "outcome": "completed"})),
            call("report_outcome", json!({"case_id": first, "outcome": "disputed", "detail": "goods never arrived"})),
            call("get_case", json!({"case_id": "case_nope"})),
        ],
    });
    let r = drive(&py, dir.path(), plan).await;
    assert_eq!(ok(&r[0])["structured"]["status"], "authorized");
    refused(&r[1], "only \"rejected\" or \"disputed\"");
    ok(&r[2]);
    refused(&r[3], "404");
    let doc = admin_case(&server, &first).await;
    assert_eq!(doc["outcomes"][0]["outcome"], "disputed");
    assert_eq!(doc["outcomes"][0]["actor"], "agent:procurement-bot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_wait_stops_waiting_on_the_server() {
    let Some(py) = python_or_skip("agentsigna mcp cancellation") else { return };
    // One wait slot on the server: while the cancelled call still waited, every other
    // `?wait` would be answered at once with `AgentSigna-Wait: unavailable`.
    let server = Server::start_with(|o| o.max_waits = 1).await;
    let dir = tempfile::tempdir().unwrap();
    let escalated = json!({"action": "purchase_order.create", "counterparty": "globex", "audience": "erp",
        "amount": {"value": "40000.00", "currency": "USD"}, "description": "cancelled while waiting",
        "wait_seconds": 600});
    let plan = json!({
        "api": server.base,
        "transport": {"stdio": {"command": bin(), "args": ["mcp"],
            "env": {"AGENTSIGNA_URL": server.base, "AGENTSIGNA_API_KEY": server.bot(), "AGENTSIGNA_LOG": "warn"}}},
        "steps": [
            {"op": "cancel", "tool": "request_authority", "args": escalated},
            {"op": "wait_slot_free", "token": server.bot()},
            call("get_case", json!({"case_id": "case_nope"})),
        ],
    });
    let r = drive(&py, dir.path(), plan).await;
    assert_eq!(r[0]["outcome"], "cancelled", "{:#}", r[0]);
    assert!(!r[0]["progress"].as_array().unwrap().is_empty());
    // The session is still open and the server's only wait slot is free again: the
    // cancelled call's long-poll was dropped, not left to run out its 600 seconds.
    assert_eq!(r[1]["free"], 3, "the cancelled call still holds the wait slot: {:#}", r[1]);
    let case = r[1]["case"].as_str().unwrap();
    assert_eq!(admin_case(&server, case).await["status"], "pending_review");
    // The session still answers calls after the cancellation.
    refused(&r[2], "404");
}

/// Waits until `port` accepts TCP connections (Python SDK imports are slow on a busy machine).
async fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "{what} exited early");
        assert!(Instant::now() < deadline, "{what} did not start listening");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_over_streamable_http_in_front_of_an_http_upstream() {
    let Some(py) = python_or_skip("mcp-gate over streamable HTTP") else { return };
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("erp.log");
    let (erp_port, gate_port) = (free_port(), free_port());
    let env = gate_env(&server, &log);
    let env_of = |cmd: &mut Command| {
        for (k, v) in env.as_object().unwrap() {
            cmd.env(k, v.as_str().unwrap());
        }
    };
    let mut erp_cmd = Command::new(&py);
    erp_cmd.arg(example("erp_server.py")).args(["--http", &erp_port.to_string()]).stderr(Stdio::null());
    env_of(&mut erp_cmd);
    let mut erp = Killed(erp_cmd.spawn().unwrap());
    wait_listening(erp_port, &mut erp.0, "the toy ERP").await;
    let mut gate_cmd = Command::new(bin());
    gate_cmd.args(["mcp-gate", "--tools"]).arg(tools_file(dir.path(), "PT2S"));
    gate_cmd.args([
        "--listen",
        &format!("127.0.0.1:{gate_port}"),
        "--upstream",
        &format!("http://127.0.0.1:{erp_port}/mcp"),
    ]);
    gate_cmd.args(["--upstream-timeout", "2"]);
    env_of(&mut gate_cmd);
    gate_cmd.env_remove("AGENTSIGNA_API_KEY");
    let mut gate = Killed(gate_cmd.spawn().unwrap());
    wait_listening(gate_port, &mut gate.0, "mcp-gate --listen").await;
    let url = format!("http://127.0.0.1:{gate_port}/mcp");

    // Without an agent key, or with a key AgentSigna does not accept: 401 before any MCP.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    for auth in [None, Some("not-a-key")] {
        let mut req = server.client.post(&url).json(&init).header("accept", "application/json, text/event-stream");
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get("www-authenticate").is_some());
    }

    // Two agents, each with its own key: each call is a request of that agent.
    let small = po("acme", "140.00", "staplers");
    for (agent, key) in [("procurement-bot", server.bot()), ("payments-bot", server.agent("payments-bot"))] {
        let plan = json!({
            "api": server.base,
            "transport": {"http": {"url": url, "token": key}},
            "steps": [{"op": "list"}, call("create_purchase_order", small.clone()),
                      call("create_purchase_order", po("sanctioned-co", "5.00", "no")),
                      call("list_inventory", json!({"delay_seconds": 4})),
                      call("list_inventory", json!({"sku_prefix": "MON"}))],
        });
        let r = drive(&py, dir.path(), plan).await;
        // An upstream that hangs past --upstream-timeout: a tool error; the next call works.
        refused(&r[3], "no answer within 2 s");
        assert!(ok(&r[4])["text"].as_str().unwrap().contains("MON-27"));
        assert_eq!(r[0]["tools"], json!(["create_purchase_order", "list_inventory", "send_payment"]));
        let case = forwarded_case(ok(&r[1]));
        let doc = admin_case(&server, &case).await;
        assert_eq!(doc["agent"], agent);
        refused(&r[2], "blocked-counterparty");
        let log = erp_log(&log);
        let seen = erp_calls(&log, "create_purchase_order");
        check_forwarded(&server, &case, &small, seen.last().unwrap(), "completed").await;
    }
    assert_eq!(erp_calls(&erp_log(&log), "create_purchase_order").len(), 2);
}

#[test]
fn gate_refuses_a_tools_file_that_does_not_fit_the_upstream_or_the_server() {
    let Some(py) = python_or_skip("mcp-gate start-up validation") else { return };
    let dir = tempfile::tempdir().unwrap();
    // A server is needed for the JWKS, the token, the audience and the action types.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start());
    let example_text = std::fs::read_to_string(example("tools.toml")).unwrap();
    let gate = |name: &str, text: &str, token: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(bin())
            .args(["mcp-gate", "--tools"])
            .arg(&path)
            .arg("--")
            .arg(&py)
            .arg(example("erp_server.py"))
            .env("AGENTSIGNA_URL", &server.base)
            .env("AGENTSIGNA_API_KEY", server.bot())
            .env("AGENTSIGNA_SYSTEM_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        stderr
    };
    let erp = server.erp();
    // A tool the upstream does not have.
    let stderr = gate("tool.toml", &example_text.replace("\"send_payment\"", "\"send_money\""), &erp);
    assert!(stderr.contains("no tool named send_money"), "{stderr}");
    // A token the server does not accept.
    let stderr = gate("token.toml", &example_text, "wrong");
    assert!(stderr.contains("AGENTSIGNA_SYSTEM_TOKEN is not accepted"), "{stderr}");
    // An audience that is not the system whose token the gate holds.
    let stderr = gate("audience.toml", &example_text.replace("audience = \"erp\"", "audience = \"crm\""), &erp);
    assert!(stderr.contains("audience \"crm\" is not the target system"), "{stderr}");
    // An action type the server does not know.
    let text = example_text.replace("\"payment.send\"", "\"payment.sned\"");
    let stderr = gate("action.toml", &text, &erp);
    assert!(
        stderr.contains("undeclared action type") && stderr.contains("send_payment") && stderr.contains("payment.sned"),
        "{stderr}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_listens_over_https_with_tls_flags() {
    let Some(py) = python_or_skip("mcp-gate --listen over HTTPS") else { return };
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A test CA and a certificate for 127.0.0.1 (rcgen).
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let (cert_file, key_file) = (dir.path().join("gate.pem"), dir.path().join("gate.key"));
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    let log = dir.path().join("erp.log");
    let (erp_port, gate_port) = (free_port(), free_port());
    let env = gate_env(&server, &log);
    let env_of = |cmd: &mut Command| {
        for (k, v) in env.as_object().unwrap() {
            cmd.env(k, v.as_str().unwrap());
        }
    };
    let mut erp_cmd = Command::new(&py);
    erp_cmd.arg(example("erp_server.py")).args(["--http", &erp_port.to_string()]).stderr(Stdio::null());
    env_of(&mut erp_cmd);
    let mut erp = Killed(erp_cmd.spawn().unwrap());
    wait_listening(erp_port, &mut erp.0, "the toy ERP").await;
    let mut gate_cmd = Command::new(bin());
    gate_cmd.args(["mcp-gate", "--tools"]).arg(tools_file(dir.path(), "PT2S"));
    gate_cmd.args(["--listen", &format!("127.0.0.1:{gate_port}")]);
    gate_cmd.args(["--upstream", &format!("http://127.0.0.1:{erp_port}/mcp")]);
    gate_cmd.arg("--tls-cert").arg(&cert_file).arg("--tls-key").arg(&key_file);
    env_of(&mut gate_cmd);
    gate_cmd.env_remove("AGENTSIGNA_API_KEY");
    let mut gate = Killed(gate_cmd.spawn().unwrap());
    wait_listening(gate_port, &mut gate.0, "mcp-gate --listen").await;

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let resp = client
        .post(format!("https://127.0.0.1:{gate_port}/mcp"))
        .json(&init)
        .header("accept", "application/json, text/event-stream")
        .send()
        .await
        .expect("HTTPS with the test CA");
    assert_eq!(resp.status(), 401, "an agent key is still required over HTTPS");
    assert!(resp.headers().get("www-authenticate").is_some());
    let plain = reqwest::Client::new().post(format!("http://127.0.0.1:{gate_port}/mcp")).json(&init).send().await;
    assert!(plain.is_err(), "plain HTTP was answered on the HTTPS port");
}

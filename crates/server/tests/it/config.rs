//! Configuration of `serve` and `gate` through the real binary: flag > `AGENTSIGNA_*`
//! variable > `--config FILE` > default, `--print-config` with secrets redacted, and the
//! refusals that name the key.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::*;

/// Runs the binary with `args` and these variables (and no `AGENTSIGNA_*` variable
/// inherited from the test's environment).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AGENTSIGNA_")) {
        cmd.env_remove(k);
    }
    cmd.env("AGENTSIGNA_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    outcome(&cmd.output().expect("runs"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("utf-8 path").to_owned()
}

/// The line `key = …` of a `--print-config` output.
fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

#[test]
fn print_config_shows_flag_over_env_over_file_over_default_with_secrets_redacted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = write(
        tmp.path(),
        "agentsigna.toml",
        r#"listen = "127.0.0.1:9001"
rate-limit = 9
max_waits = 12
webhook = ["https://hooks.example/a", "https://hooks.example/b"]
webhook-secret = "file-secret-4f1d"
log-format = "json"
"#,
    );
    let (code, out, err) = run(
        &["serve", "--config", &file, "--print-config", "--listen", "127.0.0.1:9002"],
        &[("AGENTSIGNA_MAX_WAITS", "13"), ("AGENTSIGNA_RATE_BURST", "7")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(line(&out, "listen"), r#"listen = "127.0.0.1:9002"  # flag"#, "flag over file");
    assert_eq!(line(&out, "max-waits"), "max-waits = 13  # env AGENTSIGNA_MAX_WAITS", "env over file");
    assert_eq!(line(&out, "rate-burst"), "rate-burst = 7  # env AGENTSIGNA_RATE_BURST");
    assert_eq!(line(&out, "rate-limit"), "rate-limit = 9  # file");
    assert_eq!(line(&out, "log-format"), r#"log-format = "json"  # file"#);
    assert_eq!(line(&out, "webhook"), r#"webhook = ["https://hooks.example/a", "https://hooks.example/b"]  # file"#);
    assert_eq!(line(&out, "webhook-secret"), r#"webhook-secret = "<redacted>"  # file"#);
    assert!(!out.contains("file-secret-4f1d") && !err.contains("file-secret-4f1d"), "the secret is printed");
    assert_eq!(line(&out, "header-timeout"), "header-timeout = 10  # default");
    // The printed configuration is itself a valid config file (comments and all).
    let printed: toml::Table = toml::from_str(&out).expect("TOML");
    assert_eq!(printed["rate-limit"].as_integer(), Some(9));

    // The flag beats the environment too; a secret from the environment is redacted.
    let (code, out, err) = run(
        &["serve", "--print-config", "--max-waits", "20"],
        &[("AGENTSIGNA_MAX_WAITS", "13"), ("AGENTSIGNA_WEBHOOK_SECRET", "env-secret-77aa")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(line(&out, "max-waits"), "max-waits = 20  # flag");
    assert_eq!(line(&out, "webhook-secret"), r#"webhook-secret = "<redacted>"  # env AGENTSIGNA_WEBHOOK_SECRET"#);
    assert!(!out.contains("env-secret-77aa"));

    // A database URL keeps everything but its password.
    let (code, out, err) = run(
        &["serve", "--print-config", "--database", "postgres://signa:pw-8e3b@db.internal:5433/signa?sslmode=require"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        line(&out, "database"),
        r#"database = "postgres://signa:<redacted>@db.internal:5433/signa?sslmode=require"  # flag"#
    );
    assert!(!out.contains("pw-8e3b"));

    // `gate` reads AGENTSIGNA_GATE_*, and its required flags may come from the file.
    let gate_file = write(
        tmp.path(),
        "gate.toml",
        "upstream = \"http://127.0.0.1:9\"\njwks = \"jwks.json\"\naudience = \"erp\"\nreport-to = \"http://127.0.0.1:8080\"\nreport-token = \"tok-secret-9c\"\n",
    );
    let (code, out, err) =
        run(&["gate", "--config", &gate_file, "--print-config"], &[("AGENTSIGNA_GATE_LISTEN", "127.0.0.1:9100")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(line(&out, "listen"), r#"listen = "127.0.0.1:9100"  # env AGENTSIGNA_GATE_LISTEN"#);
    assert_eq!(line(&out, "audience"), r#"audience = "erp"  # file"#);
    assert_eq!(line(&out, "report-token"), r#"report-token = "<redacted>"  # file"#);
    assert!(!out.contains("tok-secret-9c"));
    let (code, out, err) = run(
        &["gate", "--config", &gate_file, "--print-config"],
        &[("AGENTSIGNA_GATE_REPLAY_STORE", "postgres://gate:rp-51c0@127.0.0.1/replay")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        line(&out, "replay-store"),
        r#"replay-store = "postgres://gate:<redacted>@127.0.0.1/replay"  # env AGENTSIGNA_GATE_REPLAY_STORE"#
    );
    assert!(!out.contains("rp-51c0"));
}

#[test]
fn unknown_keys_and_bad_values_are_refused_at_start_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let data = data.to_str().expect("path");
    let refused = |args: &[&str], env: &[(&str, &str)], names: &[&str]| {
        let (code, out, err) = run(args, env);
        assert_eq!(code, 2, "refused with the usage status; stdout {out} stderr {err}");
        for n in names {
            assert!(err.contains(n), "the refusal does not name {n}: {err}");
        }
    };
    let unknown = write(tmp.path(), "unknown.toml", "listen = \"127.0.0.1:0\"\nrate_limt = 5\n");
    refused(&["serve", "--data-dir", data, "--config", &unknown], &[], &["rate_limt", "unknown key", "unknown.toml"]);
    let bad = write(tmp.path(), "bad.toml", "passport-ttl = 7200\n");
    refused(&["serve", "--data-dir", data, "--config", &bad], &[], &["key `passport-ttl`", "7200", "bad.toml"]);
    let not_toml = write(tmp.path(), "broken.toml", "listen = \n");
    refused(&["serve", "--data-dir", data, "--config", &not_toml], &[], &["broken.toml", "not TOML"]);
    let array = write(tmp.path(), "array.toml", "listen = [\"127.0.0.1:1\"]\n");
    refused(&["serve", "--data-dir", data, "--config", &array], &[], &["key `listen`", "not an array"]);
    let switch = write(tmp.path(), "switch.toml", "print-config = true\n");
    refused(&["serve", "--data-dir", data, "--config", &switch], &[], &["print-config", "unknown key"]);
    refused(
        &["serve", "--data-dir", data, "--config", "/nonexistent/agentsigna.toml"],
        &[],
        &["--config", "cannot read"],
    );
    refused(&["serve", "--data-dir", data], &[("AGENTSIGNA_RATE_LIMIT", "fast")], &["AGENTSIGNA_RATE_LIMIT", "fast"]);
    refused(&["serve", "--data-dir", data], &[("AGENTSIGNA_LISTEN", "nowhere")], &["AGENTSIGNA_LISTEN"]);
    refused(&["serve", "--data-dir", data], &[("AGENTSIGNA_CONFIG", &unknown)], &["rate_limt"]);
    refused(
        &["gate", "--audience", "erp", "--upstream", "http://127.0.0.1:9", "--jwks", "j.json"],
        &[("AGENTSIGNA_GATE_MAX_CONNECTIONS", "0")],
        &["AGENTSIGNA_GATE_MAX_CONNECTIONS"],
    );
    assert!(!Path::new(data).exists(), "a refused start creates nothing");
}

#[test]
fn serve_runs_with_the_flags_of_its_config_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("from-file");
    let port = free_port();
    let file = write(
        tmp.path(),
        "agentsigna.toml",
        &format!(
            "data-dir = {:?}\nlisten = \"127.0.0.1:{port}\"\norg = {:?}\nlog-format = \"json\"\n",
            data.to_str().expect("path"),
            org_path().to_str().expect("path")
        ),
    );
    let mut child = Command::new(bin())
        .args(["serve", "--config", &file])
        .env("AGENTSIGNA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/readyz")).send() {
            break r.status().as_u16();
        }
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            break 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(ready, 200, "not serving on the file's address: {err}");
    assert!(data.join("admin.token").exists(), "the file's data directory is used");
    // The file's log format: JSON lines.
    let json_lines = err.lines().filter(|l| l.starts_with('{')).count();
    assert!(
        json_lines > 0
            && err.lines().filter(|l| l.starts_with('{')).all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{err}"
    );
}

//! HTTPS (`--tls-cert`, `--tls-key`): a client trusting only the test CA (certificates
//! made here with rcgen), `Secure` cookies without `--public-url`, the head timeout
//! covering the handshake, and a reload on SIGHUP serving the new certificate.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentsigna::http::tls::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::AsyncReadExt as _;
use tokio_rustls::rustls;

use super::harness::*;

/// A CA and what it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "AgentSigna test CA");
        Ca { cert: params.self_signed(&key).expect("CA"), key }
    }

    /// A server certificate for localhost and 127.0.0.1, written as `<name>.pem` and
    /// `<name>.key`; returns the files and the certificate's DER.
    fn leaf(&self, dir: &Path, name: &str) -> (TlsFiles, Vec<u8>) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        let files = TlsFiles { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        (files, cert.der().to_vec())
    }

    fn client(&self) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.cert.pem().as_bytes()).expect("CA certificate");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// The certificate the server at `addr` presents (after a verified handshake).
    async fn served_cert(&self, addr: &str) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("handshake");
        tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
    }
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("https://").trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_tls_marks_cookies_secure_and_refuses_plain_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let (files, der) = ca.leaf(dir.path(), "server");
    let s = Server::start_with(|o| o.tls = Some(files.clone())).await;
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let client = ca.client();
    let r = client.get(format!("{}/healthz", s.base)).send().await.expect("https");
    assert_eq!(r.status().as_u16(), 200);
    let r = client.get(format!("{}/v1/cases", s.base)).bearer_auth(s.bot()).send().await.expect("https");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(ca.served_cert(&addr_of(&s.base)).await, der);
    // The sign-in form's cookie is Secure without --public-url.
    let r = client.get(format!("{}/ui/login", s.base)).send().await.expect("login form");
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().expect("ascii").to_owned()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")), "{cookies:?}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new().get(format!("http://{}/healthz", addr_of(&s.base))).send().await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_does_not_come_is_closed_by_the_head_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let (files, _) = ca.leaf(dir.path(), "server");
    let s = Server::start_with(|o| {
        o.tls = Some(files.clone());
        o.limits.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(addr_of(&s.base)).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a silent connection stayed open: {read:?}");
    // A real client still gets through.
    let r = ca.client().get(format!("{}/healthz", s.base)).send().await.expect("https");
    assert_eq!(r.status().as_u16(), 200);
}

/// `agentsigna serve` with TLS as a child process.
fn spawn_serve(data: &Path, files: &TlsFiles, port: u16) -> std::process::Child {
    Command::new(bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .env("AGENTSIGNA_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn copy_pair(from: &TlsFiles, to: &TlsFiles) {
    std::fs::copy(&from.cert, &to.cert).expect("copy cert");
    std::fs::copy(&from.key, &to.key).expect("copy key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_a_bad_one_keeps_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let (first, first_der) = ca.leaf(dir.path(), "first");
    let (second, second_der) = ca.leaf(dir.path(), "second");
    let live = TlsFiles { cert: dir.path().join("live.pem"), key: dir.path().join("live.key") };
    copy_pair(&first, &live);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn_serve(&dir.path().join("data"), &live, port);
    let client = ca.client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client.get(format!("https://{addr}/healthz")).send().await.is_ok_and(|r| r.status().as_u16() == 200) {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ca.served_cert(&addr).await, first_der);
    let hup = |pid: u32| Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill");

    copy_pair(&second, &live);
    assert!(hup(child.id()).success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ca.served_cert(&addr).await != second_der {
        assert!(Instant::now() < deadline, "SIGHUP did not load the new certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file: the reload fails, the server keeps the certificate it has.
    std::fs::write(&live.cert, "not a certificate").expect("break");
    assert!(hup(child.id()).success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(child.try_wait().expect("wait").is_none(), "a failed reload stopped the server");
    assert_eq!(ca.served_cert(&addr).await, second_der);
    let r = client.get(format!("https://{addr}/readyz")).send().await.expect("https");
    assert_eq!(r.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_missing_or_mismatched_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let (a, _) = ca.leaf(dir.path(), "a");
    let (b, _) = ca.leaf(dir.path(), "b");
    let data = dir.path().join("data");
    let data = data.to_str().expect("path");
    let run = |cert: &PathBuf, key: &PathBuf| {
        outcome(
            &Command::new(bin())
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data])
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key)
                .env("AGENTSIGNA_LOG", "error")
                .output()
                .expect("runs"),
        )
    };
    let (code, _, err) = run(&a.cert, &b.key);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--tls-cert") && err.contains("--tls-key"), "{err}");
    let (code, _, err) = run(&dir.path().join("missing.pem"), &a.key);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("missing.pem"), "{err}");
    let (code, _, err) = outcome(&Command::new(bin()).args(["serve", "--tls-cert", "x.pem"]).output().expect("runs"));
    assert_eq!(code, 2, "--tls-cert needs --tls-key: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_serves_https_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let (files, der) = ca.leaf(dir.path(), "gate");
    let s = Server::start().await;
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, s.get_public("/.well-known/jwks.json").await.text).expect("jwks");
    let opts = agentsigna::gate::GateOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstream: "http://127.0.0.1:9".to_owned(),
        jwks: jwks.to_str().expect("path").to_owned(),
        audience: "erp".to_owned(),
        public_url: None,
        report_to: None,
        report_token: None,
        replay_store: None,
    };
    let tls = agentsigna::http::tls::Tls::load(files).expect("certificate");
    let clock: Arc<dyn agentsigna_core::Clock> = s.clock.clone();
    let gate = agentsigna::gate::start_serving(opts, Default::default(), None, Some(tls), clock).await.expect("gate");
    let addr = gate.addr.to_string();
    assert_eq!(ca.served_cert(&addr).await, der);
    let r = ca.client().post(format!("https://{addr}/purchase-orders")).send().await.expect("https");
    assert_eq!(r.status().as_u16(), 401, "no passport");
    gate.stop().await.expect("stop");
}

//! TLS to PostgreSQL, for real: a private cluster that accepts only TLS on loopback
//! (`hostssl`, plain TCP rejected) with a certificate for `localhost` from a test CA.
//! `sslmode=verify-full&sslrootcert=CA` serves the whole loop and verifies the ledger; a
//! plain URL, another CA or a host name the certificate does not name are refused at start
//! with the reason, and the fall-back modes are refused before any connection.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use super::harness::{outcome, run_cli, Server};
use super::pg_cluster::{Cluster, ServerTls};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca { cert: params.self_signed(&key).expect("CA"), key }
    }

    /// A server certificate naming only `localhost` (not 127.0.0.1).
    fn localhost(&self) -> ServerTls {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        ServerTls { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// `agentsigna migrate --database URL`: (exit code, stdout + stderr).
fn migrate(url: &str) -> (i32, String) {
    let (code, out, err) = outcome(&run_cli(&["migrate", "--database", url]));
    (code, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_verified_tls_serves_the_loop_and_refuses_what_it_cannot_verify() {
    let ca = Ca::new("AgentSigna test database CA");
    let Some(cluster) = Cluster::start_tls(ca.localhost()) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).expect("write CA");
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, Ca::new("Another CA").cert.pem()).expect("write CA");
    let port = cluster.port();
    let tls_url = |host: &str, ca: &std::path::Path| {
        format!("postgres://agentsigna@{host}:{port}/postgres?sslmode=verify-full&sslrootcert={}", ca.display())
    };

    // The cluster really refuses plain TCP, so what works below went over TLS.
    let (code, text) = migrate(&format!("postgres://agentsigna@localhost:{port}/postgres"));
    assert_ne!(code, 0, "a plain connection was accepted: {text}");
    assert!(text.contains("no encryption") || text.contains("pg_hba.conf"), "{text}");
    // Another CA, or a host name the certificate does not name: refused, saying why.
    let (code, text) = migrate(&tls_url("localhost", &other_file));
    assert_ne!(code, 0, "a certificate from an unknown CA was accepted: {text}");
    assert!(text.contains("UnknownIssuer") || text.contains("certificate"), "{text}");
    let (code, text) = migrate(&tls_url("127.0.0.1", &ca_file));
    assert_ne!(code, 0, "a certificate for another host name was accepted: {text}");
    assert!(text.contains("NotValidForName") || text.contains("certificate"), "{text}");
    // The modes that fall back to plain TCP are refused before connecting.
    let (code, text) = migrate(&format!("postgres://agentsigna@localhost:{port}/postgres?sslmode=prefer"));
    assert_ne!(code, 0);
    assert!(text.contains("sslmode=prefer is not supported"), "{text}");

    // Verified TLS: migrations, the whole loop on a node, and the offline ledger reader.
    let url = tls_url("localhost", &ca_file);
    let (code, text) = migrate(&url);
    assert_eq!(code, 0, "{text}");
    let node = Server::start_with(|o| o.database = Some(url.clone())).await;
    node.get_public("/readyz").await.expect(200);
    let r = node.po("acme", "4800.00").await;
    r.expect(201);
    assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
    let token = r.get("passport").as_str().expect("passport").to_owned();
    node.verify_passport(&token, "erp").await;
    let case = r.get("case_id").as_str().expect("case id").to_owned();
    node.outcome(&node.erp(), &case, "completed").await.expect(200);
    let data_dir = node.data_dir();
    let o = run_cli(&["ledger", "verify", "--data-dir", data_dir.to_str().expect("dir"), "--database", &url]);
    let (code, out, err) = outcome(&o);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK: "), "{out}");
}

//! A PostgreSQL cluster of a test's own: initdb into a temporary directory, on a free
//! loopback port, so that stopping it (the fault tests) or serving TLS only (the TLS test)
//! never touches the shared cluster other tests use. `None`, with the reason printed, when
//! the PostgreSQL 15 binaries are absent, except under CI=true.

use std::path::{Path, PathBuf};
use std::process::Command;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The certificate and key (PEM) a cluster serves TLS with.
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A PostgreSQL cluster of its own, stopped (immediately) when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// initdb + start, or `None` (with the reason printed) when the binaries are absent.
    pub fn start() -> Option<Cluster> {
        Cluster::start_with(None)
    }

    /// A cluster that accepts only TLS connections on loopback (`hostssl`; plain TCP is
    /// rejected by `pg_hba.conf`), with the given certificate.
    pub fn start_tls(tls: ServerTls) -> Option<Cluster> {
        Cluster::start_with(Some(tls))
    }

    fn start_with(tls: Option<ServerTls>) -> Option<Cluster> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{PG_BIN}/initdb is required under CI=true (.ci/run installs postgresql-15)");
            }
            println!("skipped: {PG_BIN}/initdb not found");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // PostgreSQL refuses to run as root: then the cluster belongs to `postgres`.
        let uid = Command::new("id").arg("-u").output().expect("id runs");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().expect("chown");
            assert!(st.success());
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let c = Cluster { dir, port, as_postgres };
        let data = c.data();
        c.run(&["initdb", "-D", data.to_str().expect("path"), "-U", "agentsigna", "--auth=trust", "-E", "UTF8"]);
        if let Some(tls) = tls {
            std::fs::write(data.join("server.crt"), tls.cert_pem).expect("write cert");
            std::fs::write(data.join("server.key"), tls.key_pem).expect("write key");
            let conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
            std::fs::write(data.join("postgresql.conf"), format!("{conf}\nssl = on\n")).expect("conf");
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .expect("pg_hba.conf");
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
            if c.as_postgres {
                let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&data).status().expect("chown");
                assert!(st.success());
            }
        }
        c.pg_ctl_start();
        Some(c)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }

    /// `postgres://agentsigna@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://agentsigna@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, args: &[&str]) {
        let program = format!("{PG_BIN}/{}", args[0]);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &program]);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd.args(&args[1..]).output().expect("PostgreSQL binary runs");
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pg_ctl_start(&self) {
        let data = self.data();
        let log = self.dir.path().join("log");
        let opts = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", self.port, self.dir.path().display());
        self.run(&[
            "pg_ctl",
            "-D",
            data.to_str().expect("path"),
            "-l",
            log.to_str().expect("path"),
            "-o",
            &opts,
            "-w",
            "start",
        ]);
    }

    pub fn pg_ctl_stop(&self, mode: &str) {
        let data = self.data();
        self.run(&["pg_ctl", "-D", data.to_str().expect("path"), "-m", mode, "-w", "stop"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let program = format!("{PG_BIN}/pg_ctl");
        let args = ["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--", &program]).args(args).output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}

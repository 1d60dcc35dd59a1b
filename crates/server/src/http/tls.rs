//! HTTPS for the servers of the binary (`serve`, `gate`, `mcp-gate --listen`): rustls
//! (ring) with a PEM certificate chain and key, reread on SIGHUP. A reload that fails
//! (a missing file, a key that does not match) is logged and the running certificate
//! stays; connections already open keep the certificate they started with.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::{anyhow, Context as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The PEM files of a server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The current TLS configuration of a server.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

fn config(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("--tls-cert {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("--tls-cert {}: no certificate in the file", files.cert.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| anyhow!("--tls-key {}: {e}", files.key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("--tls-cert {} and --tls-key {}: {e}", files.cert.display(), files.key.display()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Tls {
    /// Reads the files; an unreadable or mismatched pair is refused (at start).
    pub fn load(files: TlsFiles) -> anyhow::Result<Arc<Tls>> {
        let acceptor = TlsAcceptor::from(Arc::new(config(&files)?));
        Ok(Arc::new(Tls { files, current: RwLock::new(acceptor) }))
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        agentsigna_core::sync::read(&self.current).clone()
    }

    /// Rereads the files; on failure the running certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let acceptor = TlsAcceptor::from(Arc::new(config(&self.files)?));
        *agentsigna_core::sync::write(&self.current) = acceptor;
        Ok(())
    }

    /// Rereads the files at every SIGHUP, until the task is aborted.
    pub fn reload_on_sighup(self: &Arc<Self>) -> anyhow::Result<JoinHandle<()>> {
        let tls = self.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
            Ok(tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match tls.reload() {
                        Ok(()) => tracing::info!(cert = %tls.files.cert.display(), "TLS certificate reloaded"),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot reload the TLS certificate; the previous one stays")
                        }
                    }
                }
            }))
        }
        #[cfg(not(unix))]
        {
            Ok(tokio::spawn(async move {
                let _ = tls;
            }))
        }
    }
}

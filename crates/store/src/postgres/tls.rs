//! TLS to PostgreSQL, chosen by the URL's `sslmode` and `sslrootcert` as libpq names them.
//!
//! - no `sslmode`, or `sslmode=disable`: plain TCP (a local socket tunnel or a private
//!   network);
//! - `sslmode=require`, `verify-ca` or `verify-full`: TLS (rustls), and the server's
//!   certificate is **always** verified, chain and host name, against the PEM file
//!   `sslrootcert=FILE` names, or else the Mozilla roots (`webpki-roots`). An unverified
//!   encrypted connection is not offered: it would only look safe;
//! - `sslmode=prefer` or `allow` (fall back to plain TCP when TLS fails) are refused for
//!   the same reason, with a message that says which modes exist.
//!
//! Both parameters are taken out of the URL before tokio-postgres reads the rest (it knows
//! neither `sslrootcert` nor the `verify-*` modes).

use std::sync::Arc;

use agentsigna_core::store::{StoreError, StoreResult};
use percent_encoding::percent_decode_str;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The connector every connection of the store uses; with `SslMode::Disable` it is never
/// asked for a handshake.
pub(crate) type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// The stream of a connection made with [`Tls`].
pub(crate) type TlsStream = <Tls as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// A URL split into what tokio-postgres reads and the TLS settings.
pub(crate) struct Split {
    /// The URL without `sslmode` and `sslrootcert`.
    pub url: String,
    pub mode: SslMode,
    pub tls: Tls,
}

/// Takes `sslmode` and `sslrootcert` out of `url` and builds the connector they ask for.
pub(crate) fn split(url: &str) -> StoreResult<Split> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root) = (None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || percent_decode_str(value).decode_utf8_lossy().into_owned();
        match key {
            "sslmode" => mode = Some(decoded()),
            "sslrootcert" => root = Some(decoded()),
            _ => rest.push(pair),
        }
    }
    let mode = match mode.as_deref() {
        None | Some("disable") => SslMode::Disable,
        Some("require" | "verify-ca" | "verify-full") => SslMode::Require,
        Some(m @ ("prefer" | "allow")) => {
            return Err(invalid(format!(
                "sslmode={m} is not supported (it falls back to an unencrypted connection): use \
                 sslmode=verify-full (TLS, certificate and host name verified) or sslmode=disable"
            )))
        }
        Some(other) => {
            return Err(invalid(format!("invalid sslmode {other:?}: use disable, require, verify-ca or verify-full")))
        }
    };
    if root.is_some() && matches!(mode, SslMode::Disable) {
        return Err(invalid("sslrootcert needs sslmode=verify-full (or require)".to_owned()));
    }
    let roots = match &root {
        Some(path) => roots_from(path)?,
        None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::storage("cannot set up TLS to PostgreSQL", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    Ok(Split { url, mode, tls: Tls::new(config) })
}

/// The CA certificates of a PEM file.
fn roots_from(path: &str) -> StoreResult<RootCertStore> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| invalid(format!("sslrootcert {path}: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!("sslrootcert {path}: no certificate in the file")));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| invalid(format!("sslrootcert {path}: {e}")))?;
    }
    Ok(roots)
}

fn invalid(detail: String) -> StoreError {
    StoreError::corrupt(detail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn refused(url: &str) -> String {
        match split(url) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} accepted"),
        }
    }

    #[test]
    fn plain_unless_tls_is_asked_for() {
        let s = split("postgres://u:p@h/db").unwrap();
        assert!(matches!(s.mode, SslMode::Disable));
        assert_eq!(s.url, "postgres://u:p@h/db");
        let s = split("postgres://u@h/db?application_name=x&sslmode=disable&connect_timeout=3").unwrap();
        assert!(matches!(s.mode, SslMode::Disable));
        assert_eq!(s.url, "postgres://u@h/db?application_name=x&connect_timeout=3");
    }

    #[test]
    fn verified_tls_modes_require_tls_and_leave_the_rest_to_tokio_postgres() {
        for m in ["require", "verify-ca", "verify-full"] {
            let s = split(&format!("postgres://u@h/db?sslmode={m}&dbname=x")).unwrap();
            assert!(matches!(s.mode, SslMode::Require), "{m}");
            assert_eq!(s.url, "postgres://u@h/db?dbname=x");
        }
    }

    #[test]
    fn fallback_modes_bad_modes_and_bad_root_files_are_refused_by_name() {
        assert!(refused("postgres://h/db?sslmode=prefer").contains("sslmode=prefer is not supported"));
        assert!(refused("postgres://h/db?sslmode=allow").contains("sslmode=allow is not supported"));
        assert!(refused("postgres://h/db?sslmode=maybe").contains("invalid sslmode \"maybe\""));
        assert!(refused("postgres://h/db?sslrootcert=/x.pem").contains("needs sslmode=verify-full"));
        let missing = refused("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca%20file.pem");
        assert!(missing.contains("sslrootcert /nonexistent/ca file.pem"), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let msg = refused(&format!("postgres://h/db?sslmode=require&sslrootcert={}", empty.display()));
        assert!(msg.contains("no certificate in the file"), "{msg}");
    }
}

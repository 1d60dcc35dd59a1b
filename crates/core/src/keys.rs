//! Signing keys: passport keys (Ed25519, published in the JWKS) and the ledger key that
//! signs checkpoints (a C2SP note signer). Kept as files under `DATA_DIR/keys/`, mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentsigna_verify::jwk::{Jwk, Jwks};
use agentsigna_verify::note::NoteSigner;
use agentsigna_verify::signer::Ed25519Signer as _;
use ed25519_dalek::SigningKey;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::signing::FastSigningKey;
use crate::{Error, Result};

/// One passport signing key.
#[derive(Debug, Clone)]
pub struct PassportKey {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The private key, signing with AWS-LC.
    pub signing: Arc<FastSigningKey>,
    /// When the key was created.
    pub created_at_ms: i64,
    /// When a newer key replaced it (it still verifies passports it signed until they expire).
    pub rotated_out_at_ms: Option<i64>,
}

impl PassportKey {
    /// A passport key of `signing`, created at `created_at_ms`, not rotated out (`path`
    /// names its file in errors).
    fn new(path: &Path, signing: SigningKey, created_at_ms: i64) -> Result<PassportKey> {
        let signing = FastSigningKey::new(signing)
            .map_err(|e| Error::key_file(path, "a key is not an Ed25519 key AWS-LC signs with", Some(Arc::new(e))))?;
        // The key's RFC 7638 thumbprint, which the signer computed once.
        Ok(PassportKey {
            kid: signing.thumbprint(),
            signing: Arc::new(signing),
            created_at_ms,
            rotated_out_at_ms: None,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    seed: String,
    created_at_ms: i64,
    rotated_out_at_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct StoredKeys {
    keys: Vec<StoredKey>,
}

/// The server's keys.
#[derive(Debug, Clone)]
pub struct Keyring {
    /// Passport keys, oldest first; the last one signs.
    pub passport_keys: Vec<PassportKey>,
    /// Signs checkpoints.
    pub ledger: NoteSigner,
    dir: PathBuf,
}

/// Writes a secret file readable only by its owner.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| io_error(&tmp, "cannot create", e))?;
    f.write_all(contents).and_then(|_| f.sync_all()).map_err(|e| io_error(&tmp, "cannot write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, "cannot replace", e))?;
    Ok(())
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::key_file(path, what, Some(Arc::new(e)))
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, "cannot read", e)),
    }
}

impl Keyring {
    /// Loads the keys from `dir` (`DATA_DIR/keys`), creating any that are missing.
    /// `origin` names the ledger; by default `agentsigna/<ledger key id>`.
    pub fn load_or_create(dir: &Path, origin: Option<&str>, now_ms: i64) -> Result<Keyring> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "cannot create the directory", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let passport_path = dir.join("passport.keys");
        let passport_keys = match read(&passport_path)? {
            Some(text) => {
                let stored: StoredKeys = serde_json::from_str(&text)
                    .map_err(|e| Error::key_file(&passport_path, "not a passport key file", Some(Arc::new(e))))?;
                let mut keys = Vec::new();
                for k in stored.keys {
                    let seed = agentsigna_verify::b64::url_decode(&k.seed)
                        .and_then(|s| <[u8; 32]>::try_from(s).ok())
                        .ok_or_else(|| Error::key_file(&passport_path, "bad key seed", None))?;
                    keys.push(PassportKey::new(&passport_path, SigningKey::from_bytes(&seed), k.created_at_ms)?);
                    if let Some(key) = keys.last_mut() {
                        key.rotated_out_at_ms = k.rotated_out_at_ms;
                    }
                }
                if keys.is_empty() {
                    return Err(Error::key_file(&passport_path, "no keys", None));
                }
                keys
            }
            None => {
                let keys = vec![PassportKey::new(&passport_path, SigningKey::generate(&mut OsRng), now_ms)?];
                save_passport_keys(&passport_path, &keys)?;
                keys
            }
        };
        let ledger_path = dir.join("ledger.key");
        let seed = match read(&ledger_path)? {
            Some(text) => agentsigna_verify::b64::url_decode(text.trim())
                .and_then(|s| <[u8; 32]>::try_from(s).ok())
                .ok_or_else(|| Error::key_file(&ledger_path, "bad key", None))?,
            None => {
                let k = SigningKey::generate(&mut OsRng);
                write_secret_file(&ledger_path, agentsigna_verify::b64::url_encode(k.to_bytes()).as_bytes())?;
                k.to_bytes()
            }
        };
        let signing = SigningKey::from_bytes(&seed);
        let default_origin = format!("agentsigna/{}", ledger_key_id(&signing));
        let name = origin.unwrap_or(&default_origin);
        let signing = FastSigningKey::new(signing).map_err(|e| {
            Error::key_file(&ledger_path, "the key is not an Ed25519 key AWS-LC signs with", Some(Arc::new(e)))
        })?;
        let ledger =
            NoteSigner::with_signer(name, Arc::new(signing)).map_err(|e| Error::invalid("origin", e.to_string()))?;
        Ok(Keyring { passport_keys, ledger, dir: dir.to_owned() })
    }

    /// Loads existing keys only: for offline tools that must not create anything.
    pub fn load(dir: &Path, origin: Option<&str>) -> Result<Keyring> {
        for f in ["passport.keys", "ledger.key"] {
            if !dir.join(f).exists() {
                return Err(Error::NotFound(format!(
                    "{} does not exist (is this a data directory?)",
                    dir.join(f).display()
                )));
            }
        }
        Keyring::load_or_create(dir, origin, 0)
    }

    /// The key that signs new passports.
    pub fn active(&self) -> Result<&PassportKey> {
        self.passport_keys
            .last()
            .ok_or_else(|| Error::key_file(self.dir.join("passport.keys"), "no passport key", None))
    }

    /// Keys that may still have unexpired passports at `now_ms`: the active key and every
    /// rotated-out key whose last passport (signed before rotation) may still be valid.
    pub fn jwks(&self, now_ms: i64, max_lifetime_ms: i64) -> Jwks {
        let keys = self
            .passport_keys
            .iter()
            .filter(|k| k.rotated_out_at_ms.is_none_or(|t| now_ms <= t + max_lifetime_ms))
            .map(|k| Jwk::from_verifying_key(&k.signing.signing_key().verifying_key()))
            .collect();
        Jwks { keys }
    }

    /// Adds a new active passport key; the previous one is rotated out at `now_ms`.
    pub fn rotate(&mut self, now_ms: i64) -> Result<&PassportKey> {
        for k in &mut self.passport_keys {
            if k.rotated_out_at_ms.is_none() {
                k.rotated_out_at_ms = Some(now_ms);
            }
        }
        let key = PassportKey::new(&self.dir.join("passport.keys"), SigningKey::generate(&mut OsRng), now_ms)?;
        self.passport_keys.push(key);
        save_passport_keys(&self.dir.join("passport.keys"), &self.passport_keys)?;
        self.active()
    }
}

fn save_passport_keys(path: &Path, keys: &[PassportKey]) -> Result<()> {
    let stored = StoredKeys {
        keys: keys
            .iter()
            .map(|k| StoredKey {
                kid: k.kid.clone(),
                seed: agentsigna_verify::b64::url_encode(k.signing.signing_key().to_bytes()),
                created_at_ms: k.created_at_ms,
                rotated_out_at_ms: k.rotated_out_at_ms,
            })
            .collect(),
    };
    let text =
        serde_json::to_string_pretty(&stored).map_err(|e| Error::key_file(path, "cannot encode", Some(Arc::new(e))))?;
    write_secret_file(path, text.as_bytes())
}

/// Short id of the ledger key: the first 8 hex digits of SHA-256 of its public key.
pub fn ledger_key_id(key: &SigningKey) -> String {
    hex::encode(&Sha256::digest(key.verifying_key().as_bytes())[..4])
}

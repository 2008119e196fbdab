//! The projects' key pairs: 4096-bit RSA as on Travis (hub's
//! `ssl_key: { size: 4096 }`), so a value fits in 501 bytes, as there.
//! Made once, on first use, in about a second; kept as PKCS#1 PEM files
//! readable by the control node's user only.

use openssl::pkey::{Private, Public};
use openssl::rsa::Rsa;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// RSA modulus size, as Travis.
pub const KEY_BITS: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key store at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key of project {project}: {source}")]
    Crypto {
        project: String,
        source: openssl::error::ErrorStack,
    },
}

/// A project's public key as Travis's API shows it (`GET
/// /repos/OWNER/REPO/key`: `{"key": PEM, "fingerprint": …}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// PEM, `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo).
    pub pem: String,
    /// The MD5 of the DER public key, colon-separated hex (what `ssh-keygen
    /// -l -E md5` and Travis show).
    pub fingerprint: String,
}

/// Where the key pairs are.
pub struct KeyStore {
    dir: PathBuf,
    /// Making a key takes a moment: one at a time, so two first uses of one
    /// project make one key.
    making: Mutex<()>,
}

impl KeyStore {
    pub fn new(data_dir: &Path) -> KeyStore {
        KeyStore {
            dir: data_dir.join("secrets").join("keys"),
            making: Mutex::new(()),
        }
    }

    fn path(&self, project: &str) -> PathBuf {
        // Project names are checked (`validate_project_name`): no `/`, no
        // leading `.`.
        self.dir.join(format!("{project}.pem"))
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    }

    /// The project's private key, if it has one.
    pub fn private(&self, project: &str) -> Result<Option<Rsa<Private>>, KeyError> {
        let path = self.path(project);
        match std::fs::read(&path) {
            Ok(pem) => {
                Rsa::private_key_from_pem(&pem)
                    .map(Some)
                    .map_err(|source| KeyError::Crypto {
                        project: project.into(),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// The project's private key, made now if it has none.
    pub fn private_or_new(&self, project: &str) -> Result<Rsa<Private>, KeyError> {
        if let Some(k) = self.private(project)? {
            return Ok(k);
        }
        let _one = self.making.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = self.private(project)? {
            return Ok(k);
        }
        let crypto = |source| KeyError::Crypto {
            project: project.into(),
            source,
        };
        let key = Rsa::generate(KEY_BITS).map_err(crypto)?;
        let pem = key.private_key_to_pem().map_err(crypto)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(self.io(&self.dir))?;
        // Written whole under another name, then renamed: a crash leaves
        // either no key or the whole key.
        let path = self.path(project);
        let tmp = self.dir.join(format!(".{project}.pem.new"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(self.io(&tmp))?;
        f.write_all(&pem).map_err(self.io(&tmp))?;
        f.sync_all().map_err(self.io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(self.io(&path))?;
        tracing::info!(project, bits = KEY_BITS, "made the project's key pair");
        Ok(key)
    }

    /// The public key, made with its pair if the project has none.
    pub fn public(&self, project: &str) -> Result<PublicKey, KeyError> {
        let key = self.private_or_new(project)?;
        public_of(&key).map_err(|source| KeyError::Crypto {
            project: project.into(),
            source,
        })
    }

    /// Forgets a removed project's key (its values cannot be decrypted by a
    /// new project of the same name).
    pub fn remove(&self, project: &str) -> Result<(), KeyError> {
        let path = self.path(project);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(&path)(e)),
            _ => Ok(()),
        }
    }
}

/// The public half, in PEM with its fingerprint.
pub fn public_of(key: &Rsa<Private>) -> Result<PublicKey, openssl::error::ErrorStack> {
    let public: Rsa<Public> =
        Rsa::from_public_components(key.n().to_owned()?, key.e().to_owned()?)?;
    let pem = String::from_utf8_lossy(&public.public_key_to_pem()?).into_owned();
    let der = public.public_key_to_der()?;
    let digest = openssl::hash::hash(openssl::hash::MessageDigest::md5(), &der)?;
    let fingerprint = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(PublicKey { pem, fingerprint })
}

//! Decrypting `secure:` values: Base64 (whitespace ignored, as Ruby's
//! lenient `decode64`), then RSA with PKCS#1 v1.5 padding, as Travis's hub
//! and scheduler do (`private_decrypt` with Ruby's default padding).

use base64::Engine;
use kha_core::travis::secure;
use kha_core::Secret;
use openssl::pkey::Private;
use openssl::rsa::{Padding, Rsa};

/// Why a value could not be decrypted (never the value itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("it is not Base64")]
    Base64,
    #[error("it was not encrypted with this project's key (encrypt it again with `kha encrypt`)")]
    Rsa,
    #[error("its plaintext is not UTF-8")]
    Utf8,
    #[error("its plaintext is not NAME=value: {0}")]
    Assignment(#[from] secure::AssignmentError),
}

/// The plaintext of one `secure:` value.
pub fn decrypt(key: &Rsa<Private>, b64: &str) -> Result<Secret, DecryptError> {
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| DecryptError::Base64)?;
    let mut out = vec![0u8; key.size() as usize];
    let n = key
        .private_decrypt(&bytes, &mut out, Padding::PKCS1)
        .map_err(|_| DecryptError::Rsa)?;
    out.truncate(n);
    String::from_utf8(out)
        .map(Secret::from)
        .map_err(|_| DecryptError::Utf8)
}

/// One decrypted variable and where it is exported: after `position` of
/// the job's env lines (its place in `.travis.yml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureVar {
    pub name: String,
    pub value: Secret,
    pub position: u32,
}

/// A job's env lines split for the builder: the plain lines, the decrypted
/// variables with their places, and a warning per entry left out.
#[derive(Debug, Default)]
pub struct JobSecrets {
    pub env: Vec<String>,
    pub vars: Vec<SecureVar>,
    pub warnings: Vec<String>,
    /// How many encrypted entries the lines held.
    pub entries: usize,
}

/// Splits env lines: plain ones stay, encrypted ones are decrypted with
/// `key` (`None`: not decrypted at all, the build may not see them).
pub fn job_secrets(lines: &[String], key: Option<&Rsa<Private>>) -> JobSecrets {
    let mut out = JobSecrets::default();
    for line in lines {
        let Some(c) = secure::ciphertext(line) else {
            out.env.push(line.clone());
            continue;
        };
        out.entries += 1;
        let Some(key) = key else { continue };
        let n = out.entries;
        // `NAME: {secure: "…"}` encrypts the value alone, a list entry
        // `NAME=value` (travis-yml). Values go as written: the job's shell
        // evaluates them after `export NAME=`, as travis-build's does.
        let vars = |p: Secret| match secure::variable(line) {
            Some(name) => Ok(vec![(name.to_string(), p.expose().to_string())]),
            None => secure::parse_assignments_raw(p.expose()),
        };
        match decrypt(key, c).and_then(|p| Ok(vars(p)?)) {
            Ok(vars) => out
                .vars
                .extend(vars.into_iter().map(|(name, value)| SecureVar {
                    name,
                    value: Secret::from(value),
                    position: out.env.len() as u32,
                })),
            Err(e) => out.warnings.push(format!(
                "encrypted variable {n} (`secure:`) cannot be decrypted: {e}; it is left out"
            )),
        }
    }
    out
}

//! Encrypted secrets (`secure:` values), Travis's scheme: one RSA key pair
//! per project, made the first time it is needed; anyone may have the
//! public key (to encrypt, as `kha encrypt` does), the private key never
//! leaves the control node.
//!
//! - `keys.rs`: the key pairs, one PEM file per project in
//!   `DATA/secrets/keys/` (directory 0700, files 0600), never in sled, so a
//!   copy of the database decrypts nothing;
//! - `decrypt.rs`: a `secure:` value to its plaintext, and a job's env
//!   lines to the variables a builder gets in `Granted`.
//!
//! Decrypted values live only in memory, on their way to one builder: they
//! are never stored, logged or put in an event.

mod decrypt;
mod keys;

pub use decrypt::{decrypt, job_secrets, JobSecrets, SecureVar};
pub use keys::{KeyError, KeyStore, PublicKey};

use crate::store::records::Project;
use crate::trigger::Request;
use kha_core::spec::SecureEnv;
use kha_core::travis::secure;

/// A new job's env lines as stored: for a build that may see encrypted
/// entries, those that decrypt (checked now, so a bad one is a warning on
/// the build, not a surprise in the log); for a fork's pull request, none
/// (unless the project shares them). The values decrypted here are dropped
/// at once; a grant decrypts them again for its builder.
/// What [`build_env`] found of each encrypted entry of one build (None:
/// it decrypts; else why not): the jobs of a matrix share their
/// `env.global` entries, and an RSA-4096 decryption is milliseconds of a
/// worker thread, so each is tried once per build.
pub type Checked = std::collections::HashMap<String, Option<String>>;

pub fn build_env(
    keys: &KeyStore,
    project: &Project,
    req: &Request,
    lines: &[String],
    checked: &mut Checked,
) -> (Vec<String>, SecureEnv, Vec<String>) {
    let has = lines.iter().any(|l| secure::ciphertext(l).is_some());
    let plain = || {
        lines
            .iter()
            .filter(|l| secure::ciphertext(l).is_none())
            .cloned()
            .collect::<Vec<_>>()
    };
    if req.fork() && !project.share_secrets_with_forks {
        let state = if has {
            SecureEnv::Removed
        } else {
            SecureEnv::Withheld
        };
        return (plain(), state, vec![]);
    }
    if !has {
        return (lines.to_vec(), SecureEnv::Available, vec![]);
    }
    let key = match keys.private(&project.name) {
        Ok(Some(k)) => k,
        Ok(None) => {
            return (
                plain(),
                SecureEnv::Available,
                vec!["this project has no key yet, so its encrypted variables (`secure:`) cannot be decrypted; they are left out (encrypt them with `kha encrypt`)".into()],
            )
        }
        Err(e) => {
            tracing::warn!(project = %project.name, error = %e, "cannot read the project's key");
            return (
                plain(),
                SecureEnv::Available,
                vec!["the control node cannot read this project's key; encrypted variables are left out".into()],
            );
        }
    };
    let mut out = Vec::with_capacity(lines.len());
    let mut warnings = Vec::new();
    let mut n = 0;
    for line in lines {
        if secure::ciphertext(line).is_some() {
            n += 1;
            let why = checked.entry(line.clone()).or_insert_with(|| {
                job_secrets(std::slice::from_ref(line), Some(&key))
                    .warnings
                    .into_iter()
                    .next()
            });
            if let Some(w) = why {
                warnings.push(w.replacen("variable 1", &format!("variable {n}"), 1));
                continue;
            }
        }
        out.push(line.clone());
    }
    (out, SecureEnv::Available, warnings)
}

#[cfg(test)]
mod tests;

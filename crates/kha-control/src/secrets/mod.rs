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

#[cfg(test)]
mod tests;

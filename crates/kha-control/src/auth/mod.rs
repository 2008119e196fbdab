//! Credentials: builder secrets, enrolment tokens and the admin token. Only
//! SHA-256 hashes are stored (the secrets are 256-bit random, so a plain hash
//! is enough); comparisons are constant-time.

use kha_core::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh random token: `prefix` then 64 hex digits.
pub fn new_token(prefix: &str) -> Secret {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    Secret::new(format!("{prefix}{}", hex::encode(b)))
}

/// A short random id (`prefix` then 12 hex digits).
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two hex hashes.
pub fn hash_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request's `authorization` metadata.
pub fn bearer(md: &tonic::metadata::MetadataMap) -> Option<&str> {
    md.get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_hashes() {
        let t = new_token("khaet_");
        assert!(t.expose().starts_with("khaet_") && t.expose().len() == 70);
        assert!(hash_eq(&hash(t.expose()), &hash(t.expose())));
        assert!(!hash_eq(&hash(t.expose()), &hash("x")));
        assert!(!hash_eq("ab", "abc"));
        assert_eq!(format!("{t:?}"), "Secret(<redacted>)");
    }
}

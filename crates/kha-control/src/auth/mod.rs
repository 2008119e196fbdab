//! Credentials: builder secrets, enrolment tokens and the admin token. Only
//! SHA-256 hashes are stored (the secrets are 256-bit random, so a plain hash
//! is enough); comparisons are constant-time.

use kha_core::Secret;
use rand::RngCore;

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

pub use kha_core::secret::{hash, hash_eq};

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

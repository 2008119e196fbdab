//! A secret string (a password, a builder secret, an enrolment token): its
//! `Debug` and `Display` never show it, so it cannot reach a log by
//! accident; the value is read only through [`Secret::expose`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The lower-case hex SHA-256 of a secret: what is stored of it (the
/// secrets are 256-bit random, so a plain hash is enough).
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

/// A string that is never printed. Serialized as the plain string
/// (`#[serde(transparent)]`), so files and wire formats are unchanged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself: for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `given` is this secret, in constant time (compared by
    /// their hashes).
    pub fn matches(&self, given: &str) -> bool {
        hash_eq(&hash(&self.0), &hash(given))
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_printed_but_serialized_plain() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(<redacted>))");
        assert_eq!(s.expose(), "hunter2");
        let yaml = serde_yaml::to_string(&s).unwrap();
        assert_eq!(yaml.trim(), "hunter2");
        let back: Secret = serde_yaml::from_str("hunter2").unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn matches_only_itself() {
        let s = Secret::from("hunter2");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter"));
        assert!(!s.matches(""));
        assert!(Secret::default().matches(""));
    }
}

//! The builder's identity: its id and secret from enrolment, kept in a 0600
//! file in the data dir so the builder stays the same builder across
//! restarts.

use kha_core::Secret;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub builder_id: String,
    pub secret: Secret,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({}, <secret>)", self.builder_id)
    }
}

impl Identity {
    pub fn load(dir: &Path) -> std::io::Result<Option<Identity>> {
        match std::fs::read(dir.join("identity.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("identity.json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(tmp, dir.join("identity.json"))
    }

    /// The bearer token this builder authenticates with: `<id>:<secret>`.
    pub fn token(&self) -> Secret {
        Secret::new(format!("{}:{}", self.builder_id, self.secret.expose()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_private_and_loaded() {
        let d = tempfile::tempdir().unwrap();
        assert!(Identity::load(d.path()).unwrap().is_none());
        let id = Identity {
            builder_id: "b-1".into(),
            secret: "s3cret".into(),
        };
        id.save(d.path()).unwrap();
        let mode = std::fs::metadata(d.path().join("identity.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = Identity::load(d.path()).unwrap().unwrap();
        assert_eq!(back.builder_id, "b-1");
        assert_eq!(back.secret.expose(), "s3cret");
        // The file format is the plain string, as before secrets had a type.
        let text = std::fs::read_to_string(d.path().join("identity.json")).unwrap();
        assert!(text.contains("\"secret\":\"s3cret\""), "{text}");
        assert!(!format!("{id:?}").contains("s3cret"));
        assert_eq!(id.token().expose(), "b-1:s3cret");
    }
}

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

/// Reads an enrolment token from a file (`--token-file`): its first line,
/// without surrounding white space. A token given this way (or in
/// `KHA_ENROL_TOKEN`) is not in the builder's command line, which every
/// local user can read in `ps`.
pub fn read_token_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the enrolment token from {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(format!(
            "{}: no enrolment token in it (its first line is empty)",
            path.display()
        ));
    }
    Ok(Secret::new(token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_token_file_gives_its_first_line_trimmed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("token");
        std::fs::write(&p, "  khaet_abc \nsecond line\n").unwrap();
        assert_eq!(read_token_file(&p).unwrap().expose(), "khaet_abc");
        std::fs::write(&p, "\n").unwrap();
        let e = read_token_file(&p).err().unwrap();
        assert!(e.contains("no enrolment token"), "{e}");
        let e = read_token_file(&d.path().join("missing")).err().unwrap();
        assert!(e.contains("reading the enrolment token from"), "{e}");
    }

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

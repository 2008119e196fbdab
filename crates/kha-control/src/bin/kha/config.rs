//! The CLI's config file (`~/.config/kha/cli.toml`, or `--config`): the
//! server and the API token `kha login` stored (with the token's id, so
//! `kha logout` can revoke it). It holds a credential, so it is written
//! 0600 in a 0700 directory, through a temp file renamed over the old one;
//! rewriting it keeps every other key and comment (toml_edit).

use crate::Failure;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What the CLI reads from the file.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub server: Option<String>,
    pub token: Option<String>,
    /// The id of `token` ("tok_…"), written by `kha login`.
    pub token_id: Option<String>,
}

/// `--config`, else `~/.config/kha/cli.toml` (None without a home).
pub fn path(flag: Option<&Path>) -> Option<PathBuf> {
    match flag {
        Some(p) => Some(p.to_path_buf()),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/kha/cli.toml")),
    }
}

/// The file's settings; a missing file is an empty one.
pub fn load(path: Option<&Path>) -> Result<FileConfig, Failure> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    match std::fs::read_to_string(path) {
        Ok(t) => toml::from_str(&t).map_err(|e| Failure(2, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(e) => Err(Failure(2, format!("reading {}: {e}", path.display()))),
    }
}

/// Sets (`Some`) or removes (`None`) keys, keeping the rest of the file.
pub fn update(path: &Path, changes: &[(&str, Option<&str>)]) -> Result<(), Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Failure(1, format!("{what} {}: {e}", path.display()))
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(fail("reading", &e)),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| fail("reading", &e))?;
    for (key, value) in changes {
        match value {
            Some(v) => doc[*key] = toml_edit::value(*v),
            None => {
                doc.remove(key);
            }
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Only the directories made here get 0700; an existing one is the
    // owner's business.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail("creating the directory of", &e))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(doc.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("writing", &e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keeps_other_keys_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/kha/cli.toml");
        update(
            &path,
            &[("server", Some("http://a:1")), ("token", Some("t"))],
        )
        .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("# mine\n{text}")).unwrap();
        update(&path, &[("token", None), ("token_id", Some("tok_1"))]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# mine\n"), "{text}");
        let c = load(Some(&path)).unwrap();
        assert_eq!(c.server.as_deref(), Some("http://a:1"));
        assert_eq!(c.token, None);
        assert_eq!(c.token_id.as_deref(), Some("tok_1"));
        assert_eq!(mode(&path), 0o600);
        assert!(load(Some(&dir.path().join("missing")))
            .unwrap()
            .server
            .is_none());
    }
}

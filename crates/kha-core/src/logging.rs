//! The daemons' own log lines (`tracing`), set up the same way in
//! kha-control and kha-builder: text for people (the default) or one JSON
//! object per line (`KHA_LOG_FORMAT=json`, for a log store), with the same
//! fields either way (`job_id`, `builder_id`, `project`, …); filtered by
//! `KHA_LOG`; written to standard error (journald keeps and rotates it) or
//! appended to a file (`--log-file`), which [`LogFile::reopen`] opens again
//! after logrotate moved it (the daemons call it on SIGHUP).
//!
//! The one part of kha-core that does I/O, behind the `logging` feature
//! that only the daemons turn on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// From `KHA_LOG_FORMAT`: unset or "text", or "json".
    pub fn from_env() -> Result<Format, String> {
        match std::env::var("KHA_LOG_FORMAT").as_deref() {
            Err(_) | Ok("" | "text") => Ok(Format::Text),
            Ok("json") => Ok(Format::Json),
            Ok(other) => Err(format!("KHA_LOG_FORMAT={other:?}: give text or json")),
        }
    }
}

/// A log file appended to, reopened on request.
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    pub fn open(path: &Path) -> io::Result<Arc<LogFile>> {
        Ok(Arc::new(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(open(path)?),
        }))
    }

    /// Opens the file at its path again (a new one if it was moved away);
    /// lines go on to the old one until this returns.
    pub fn reopen(&self) -> io::Result<()> {
        let new = open(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a daemon does on SIGHUP: the log file, if it writes to one, is
/// opened again (the rest goes on as it was).
pub fn hangup(file: Option<&LogFile>) {
    match file {
        Some(f) => match f.reopen() {
            Ok(()) => tracing::info!(path = %f.path().display(), "SIGHUP: log file reopened"),
            Err(e) => {
                tracing::warn!(path = %f.path().display(), error = %e, "SIGHUP: cannot reopen the log file; writing on to the old one")
            }
        },
        None => tracing::info!("SIGHUP: logging to standard error, nothing to reopen"),
    }
}

/// A writer for one log line: each event is formatted whole and written
/// with one call.
pub struct Line(Arc<LogFile>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct ToFile(Arc<LogFile>);

impl<'a> MakeWriter<'a> for ToFile {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line(self.0.clone())
    }
}

/// Installs the daemon's subscriber: `default_filter` unless `KHA_LOG`
/// says otherwise, in the format `KHA_LOG_FORMAT` names, to `file` or to
/// standard error. Returns the file, for SIGHUP to reopen.
pub fn init(default_filter: &str, file: Option<&Path>) -> Result<Option<Arc<LogFile>>, String> {
    let format = Format::from_env()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KHA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let file = match file {
        Some(p) => Some(LogFile::open(p).map_err(|e| format!("log file {}: {e}", p.display()))?),
        None => None,
    };
    let ansi = file.is_none()
        && format == Format::Text
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let r = match (format, &file) {
        (Format::Text, None) => builder.with_writer(std::io::stderr).try_init(),
        (Format::Text, Some(f)) => builder.with_writer(ToFile(f.clone())).try_init(),
        (Format::Json, None) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .try_init(),
        (Format::Json, Some(f)) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(ToFile(f.clone()))
            .try_init(),
    };
    r.map_err(|e| format!("setting up logging: {e}"))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_file_gets_the_lines_after_a_move() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kha.log");
        let f = LogFile::open(&path).unwrap();
        Line(f.clone()).write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("kha.log.1")).unwrap();
        Line(f.clone()).write_all(b"two\n").unwrap();
        f.reopen().unwrap();
        Line(f.clone()).write_all(b"three\n").unwrap();
        let old = std::fs::read_to_string(dir.path().join("kha.log.1")).unwrap();
        assert_eq!(old, "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }
}

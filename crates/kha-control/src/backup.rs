//! `kha-control backup DIR` and `kha-control restore DIR`: a consistent
//! copy of a control node's data, taken while it runs, and a data
//! directory made from one.
//!
//! A backup holds what cannot be made again: the database (`db.dump`, see
//! `store::dump`), the job logs as far as they were stored, the projects'
//! secret keys and the admin token. It leaves out what can: the
//! repositories' mirrors and checkouts (fetched again) and the build
//! caches (rebuilt by the next builds that use them).
//!
//! Consistency: the database is written while the store holds every write
//! back (`store::gate`); in the same moment every log and key file is
//! hard-linked aside with its length. The links are copied after writes
//! resume. A log only ever grows or is moved away whole (`LogStore::reset`),
//! so the linked file read up to its noted length is what the log was at
//! that moment. `MANIFEST.json`, written last, lists every file with its
//! length and SHA-256; a directory without it is not a backup, and restore
//! checks every file against it before it touches anything.

use crate::store::dump::{self, DumpSummary};
use crate::store::Store;
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const FORMAT: &str = "kha-backup 1";
const MANIFEST: &str = "MANIFEST.json";
const DB_DUMP: &str = "db.dump";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Manifest {
    format: String,
    kha_version: String,
    created_ms: u64,
    db: DumpSummary,
    /// Every file, `db.dump` first, by its path in the backup (which is its
    /// path in a data directory).
    files: Vec<FileEntry>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FileEntry {
    path: String,
    bytes: u64,
    sha256: String,
}

/// What a backup took.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Taken {
    pub records: u64,
    pub logs: u64,
    pub log_bytes: u64,
    /// Every file's bytes, the dump's included.
    pub bytes: u64,
    /// How long writes were held back.
    pub paused_ms: u64,
}

/// The data directory's files a backup copies, beside the database, by
/// their directory and the ending of their names.
/// Compressed logs come after the plain ones: a log compressed during the
/// listing is either linked plain or found compressed.
const COPIED: &[(&str, &str)] = &[
    ("logs", ".log"),
    ("logs", ".log.zst"),
    ("secrets/keys", ".pem"),
];

/// Writes into `path` (created, readable by its owner only) and hashes what
/// is written.
struct Hashing {
    file: File,
    hash: Sha256,
    bytes: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn create(path: &Path) -> anyhow::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

fn mkdir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

fn sync_dir(path: &Path) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", path.display()))
}

/// Copies the first `len` bytes of `from` to a new file `to`, synced.
fn copy_prefix(from: &Path, to: &Path, len: u64) -> anyhow::Result<FileEntry> {
    let src = File::open(from).with_context(|| format!("reading {}", from.display()))?;
    let mut out = Hashing {
        file: create(to)?,
        hash: Sha256::new(),
        bytes: 0,
    };
    let copied = std::io::copy(&mut src.take(len), &mut out)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    if copied != len {
        bail!("{} is {copied} bytes, not {len}", from.display());
    }
    out.file
        .sync_all()
        .with_context(|| format!("syncing {}", to.display()))?;
    Ok(FileEntry {
        path: String::new(),
        bytes: len,
        sha256: hex::encode(out.hash.finalize()),
    })
}

/// Removes the staging directory however the backup ends.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove a backup's staging directory");
            }
        }
    }
}

/// Takes a backup of the control node whose data directory is `data_dir`
/// and whose database `store` is into `dest`, which must not exist or be
/// empty. Blocks (writes are held back while the database is copied): run
/// it off the async workers.
pub fn take(store: &Store, data_dir: &Path, dest: &Path, now_ms: u64) -> anyhow::Result<Taken> {
    if !dest.is_absolute() {
        bail!(
            "the backup directory must be an absolute path, not {}",
            dest.display()
        );
    }
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} exists and is not empty", dest.display());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => mkdir(dest)?,
        Err(e) => return Err(e).with_context(|| format!("reading {}", dest.display())),
    }
    let staging = Staging(data_dir.join(format!(".backup-{}-{now_ms}", std::process::id())));
    mkdir(&staging.0)?;

    // The moment of the backup: the database and the lengths of the files.
    let started = Instant::now();
    let mut dump_out = Hashing {
        file: create(&dest.join(DB_DUMP))?,
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut linked = Vec::new();
    let summary = {
        let _paused = store.pause_writes();
        let summary = store
            .dump(&mut dump_out)
            .map_err(|e| anyhow::anyhow!("copying the database: {e}"))?;
        for (dir, ending) in COPIED {
            let from = data_dir.join(dir);
            let entries = match std::fs::read_dir(&from) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", from.display())),
            };
            mkdir(&staging.0.join(dir))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("reading {}", from.display()))?;
                let name = entry.file_name();
                let Some(name) = name.to_str().filter(|n| n.ends_with(ending)) else {
                    continue;
                };
                let rel = format!("{dir}/{name}");
                let link = staging.0.join(&rel);
                match std::fs::hard_link(entry.path(), &link) {
                    Ok(()) => {}
                    // Moved away between the listing and the link.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("linking {} aside", entry.path().display()))
                    }
                }
                let len = std::fs::metadata(&link)
                    .with_context(|| format!("reading {}", link.display()))?
                    .len();
                linked.push((rel, len));
            }
        }
        summary
    };
    let paused_ms = started.elapsed().as_millis() as u64;
    dump_out
        .file
        .sync_all()
        .with_context(|| format!("syncing {}", dest.join(DB_DUMP).display()))?;

    let mut taken = Taken {
        records: summary.records(),
        paused_ms,
        bytes: dump_out.bytes,
        ..Taken::default()
    };
    let mut files = vec![FileEntry {
        path: DB_DUMP.into(),
        bytes: dump_out.bytes,
        sha256: hex::encode(dump_out.hash.finalize()),
    }];
    for (dir, _) in COPIED {
        mkdir(&dest.join(dir))?;
    }
    for (rel, len) in linked {
        let mut entry = copy_prefix(&staging.0.join(&rel), &dest.join(&rel), len)?;
        if rel.starts_with("logs/") {
            taken.logs += 1;
            taken.log_bytes += len;
        }
        taken.bytes += len;
        entry.path = rel;
        files.push(entry);
    }
    let token = data_dir.join("admin.token");
    if let Ok(meta) = std::fs::metadata(&token) {
        let mut entry = copy_prefix(&token, &dest.join("admin.token"), meta.len())?;
        entry.path = "admin.token".into();
        taken.bytes += entry.bytes;
        files.push(entry);
    }
    for (dir, _) in COPIED {
        sync_dir(&dest.join(dir))?;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        kha_version: env!("CARGO_PKG_VERSION").into(),
        created_ms: now_ms,
        db: summary,
        files,
    };
    let tmp = dest.join(format!("{MANIFEST}.tmp"));
    let mut f = create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(&manifest)?)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dest.join(MANIFEST))
        .with_context(|| format!("renaming {}", tmp.display()))?;
    sync_dir(dest)?;
    Ok(taken)
}

/// What a restore brought back.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub records: u64,
    pub files: u64,
    pub bytes: u64,
    pub created_ms: u64,
    /// Where the data directory's earlier contents went (`replace`).
    pub moved_aside: Option<PathBuf>,
}

fn read_manifest(src: &Path) -> anyhow::Result<Manifest> {
    let path = src.join(MANIFEST);
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (a directory without it is not a finished backup)",
            path.display()
        )
    })?;
    let m: Manifest =
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))?;
    if m.format != FORMAT {
        bail!(
            "{} is a \"{}\" backup; this kha-control reads \"{FORMAT}\"",
            src.display(),
            m.format
        );
    }
    for f in &m.files {
        let p = Path::new(&f.path);
        let plain = p
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        let known = f.path == DB_DUMP
            || f.path == "admin.token"
            || COPIED.iter().any(|(dir, ending)| {
                p.parent() == Some(Path::new(dir)) && f.path.ends_with(ending)
            });
        if !plain || !known {
            bail!(
                "{} lists a file it cannot hold: {:?}",
                path.display(),
                f.path
            );
        }
    }
    Ok(m)
}

/// Checks every file of the backup in `src` against its manifest.
pub fn verify(src: &Path) -> anyhow::Result<()> {
    let m = read_manifest(src)?;
    for f in &m.files {
        let path = src.join(&f.path);
        let mut file = File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            bytes += n as u64;
        }
        if bytes != f.bytes || hex::encode(hash.finalize()) != f.sha256 {
            bail!(
                "{} is damaged: it is {bytes} bytes with another checksum than the {} bytes the manifest lists",
                path.display(),
                f.bytes
            );
        }
    }
    Ok(())
}

/// What restore moves aside with `replace`.
const REPLACED: &[&str] = &["db", "logs", "secrets", "cache", "admin.token"];

/// Makes the data directory `data_dir` from the backup in `src`: checks
/// the backup whole first, then refuses a data directory that holds a
/// database unless `replace`, which moves its contents aside (never
/// deletes them). The control node must be stopped.
pub fn restore(
    src: &Path,
    data_dir: &Path,
    replace: bool,
    now_ms: u64,
) -> anyhow::Result<Restored> {
    verify(src)?;
    let m = read_manifest(src)?;
    let mut restored = Restored {
        created_ms: m.created_ms,
        ..Restored::default()
    };
    mkdir(data_dir)?;
    let present: Vec<&str> = REPLACED
        .iter()
        .copied()
        .filter(|n| data_dir.join(n).exists())
        .collect();
    if data_dir.join("db").exists() {
        if !replace {
            bail!(
                "{} already holds a control node's data; restore into an empty data directory, \
                 or pass --replace to move what is there aside first",
                data_dir.display()
            );
        }
        let aside = data_dir.join(format!("before-restore-{now_ms}"));
        mkdir(&aside)?;
        for n in present {
            std::fs::rename(data_dir.join(n), aside.join(n))
                .with_context(|| format!("moving {} aside", data_dir.join(n).display()))?;
        }
        restored.moved_aside = Some(aside);
    }
    // Made aside and renamed in last: a data directory with a `db` holds a
    // whole one.
    let making = data_dir.join("db.restoring");
    match std::fs::remove_dir_all(&making) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", making.display()))
        }
        _ => {}
    }
    let dump = File::open(src.join(DB_DUMP))
        .with_context(|| format!("reading {}", src.join(DB_DUMP).display()))?;
    let loaded = dump::load(dump, &making)
        .map_err(|e| anyhow::anyhow!("making the database from {}: {e}", src.display()))?;
    if loaded != m.db {
        bail!(
            "the database made from {} holds {} records, not the {} the manifest lists",
            src.display(),
            loaded.records(),
            m.db.records()
        );
    }
    restored.records = loaded.records();
    for f in m.files.iter().filter(|f| f.path != DB_DUMP) {
        let to = data_dir.join(&f.path);
        if let Some(dir) = to.parent() {
            mkdir(dir)?;
        }
        copy_prefix(&src.join(&f.path), &to, f.bytes)?;
        restored.files += 1;
        restored.bytes += f.bytes;
    }
    for (dir, _) in COPIED {
        if data_dir.join(dir).exists() {
            sync_dir(&data_dir.join(dir))?;
        }
    }
    std::fs::rename(&making, data_dir.join("db"))
        .with_context(|| format!("renaming {}", making.display()))?;
    sync_dir(data_dir)?;
    Ok(restored)
}

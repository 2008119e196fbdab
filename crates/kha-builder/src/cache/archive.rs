//! Cache archives on the builder's side: a tar made in the job's
//! container, fingerprinted here without its modification times (so
//! "changed" means changed contents, names, modes or owners, as Travis's
//! casher compares checksums of the files rather than their times), and
//! gzip'd for the trip to the control node.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const BLOCK: usize = 512;

/// A tar header field's number: octal text, or GNU's base-256 form (high
/// bit of the first byte set) for sizes past 8 GiB.
fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(u64::from(*b)))
                .ok_or_else(|| bad("size field overflows"))?;
        }
        return Ok(n);
    }
    let text: String = field
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(&text, 8).map_err(|_| bad("size field is not octal"))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a tar archive: {what}"),
    )
}

/// SHA-256 (hex) of a tar stream with every header's modification time
/// and checksum blanked (and GNU's access and change times, where its
/// headers keep them): two archives of the same files made at different
/// times have the same fingerprint.
pub fn fingerprint(mut r: impl Read) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut block = [0u8; BLOCK];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !read_block(&mut r, &mut block)? {
            break;
        }
        if block.iter().all(|b| *b == 0) {
            break;
        }
        let size = number(&block[124..136])?;
        block[136..156].fill(0);
        if &block[257..265] == b"ustar  \0" {
            block[345..369].fill(0);
        }
        h.update(block);
        // Data is padded to whole blocks.
        let mut left = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            r.read_exact(&mut buf[..n])
                .map_err(|_| bad("an entry's data ends early"))?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Reads one block; false at a clean end of input.
fn read_block(r: &mut impl Read, block: &mut [u8; BLOCK]) -> io::Result<bool> {
    let mut got = 0;
    while got < BLOCK {
        match r.read(&mut block[got..])? {
            0 if got == 0 => return Ok(false),
            0 => return Err(bad("a header ends early")),
            n => got += n,
        }
    }
    Ok(true)
}

/// Writes `tar` gzip'd to `out`; returns its size and SHA-256 (hex).
///
/// `out` is in the workspace, where the job could have left a symbolic
/// link to a host file: whatever entry is there is removed, and the file
/// is created new (`O_EXCL` does not follow a link) and read back without
/// following one.
pub fn compress(tar: File, out: &Path) -> io::Result<(u64, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(out)?,
        Ok(_) => std::fs::remove_file(out)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)?;
    let mut src = BufReader::new(tar);
    let mut enc = GzEncoder::new(BufWriter::new(created), flate2::Compression::default());
    io::copy(&mut src, &mut enc)?;
    enc.finish()?.flush()?;
    let mut h = Sha256::new();
    let written = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(out)?;
    let size = io::copy(&mut BufReader::new(written), &mut h)?;
    Ok((size, hex::encode(h.finalize())))
}

/// Writes the gzip'd `gz` uncompressed to `out`.
pub fn decompress(gz: &Path, out: &Path) -> io::Result<()> {
    let mut dec = GzDecoder::new(BufReader::new(File::open(gz)?));
    let mut w = BufWriter::new(File::create(out)?);
    io::copy(&mut dec, &mut w)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A tar of `dir` as the driver makes one.
    fn tar(dir: &Path, out: &Path) {
        let st = Command::new("tar")
            .args(["--sort=name", "--numeric-owner", "--format=gnu", "-cf"])
            .arg(out)
            .arg("-C")
            .arg(dir)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn fp(p: &Path) -> String {
        fingerprint(File::open(p).unwrap()).unwrap()
    }

    fn touch(p: &Path, secs: i64) {
        let st = Command::new("touch")
            .arg("-d")
            .arg(format!("@{secs}"))
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    }

    #[test]
    fn fingerprints_ignore_times_only() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/a"), "hello").unwrap();
        std::fs::write(src.join("big"), vec![7u8; 70_000]).unwrap();
        let t = |name: &str| {
            let p = d.path().join(name);
            tar(&src, &p);
            fp(&p)
        };
        let first = t("1.tar");
        touch(&src.join("sub/a"), 1_000_000);
        touch(&src.join("sub"), 2_000_000);
        assert_eq!(t("2.tar"), first, "new times, same fingerprint");
        std::fs::write(src.join("sub/a"), "hellO").unwrap();
        let changed = t("3.tar");
        assert_ne!(changed, first, "new contents");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.join("sub/a"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert_ne!(t("4.tar"), changed, "new mode");
        std::fs::write(src.join("new"), "").unwrap();
        assert_ne!(t("5.tar"), changed, "a new file");

        // Round trip through gzip.
        let tar5 = d.path().join("5.tar");
        let (size, sha) = compress(File::open(&tar5).unwrap(), &d.path().join("5.tgz")).unwrap();
        assert_eq!(
            size,
            std::fs::metadata(d.path().join("5.tgz")).unwrap().len()
        );
        assert_eq!(sha.len(), 64);
        decompress(&d.path().join("5.tgz"), &d.path().join("back.tar")).unwrap();
        assert_eq!(fp(&d.path().join("back.tar")), fp(&tar5));

        // A link the job left where the archive goes: replaced, the file
        // it pointed at untouched.
        let host = d.path().join("host-file");
        std::fs::write(&host, "keep").unwrap();
        let out = d.path().join("planted.tgz");
        std::os::unix::fs::symlink(&host, &out).unwrap();
        compress(File::open(&tar5).unwrap(), &out).unwrap();
        assert_eq!(std::fs::read_to_string(&host).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&out).unwrap().is_file());
    }

    #[test]
    fn numbers_and_garbage() {
        for (field, want) in [
            (&b"00000001750\0"[..], 1000),
            (b"      1750 \0", 1000),
            (b"\0\0\0\0\0\0\0\0\0\0\0\0", 0),
            (&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], 256),
        ] {
            assert_eq!(number(field).unwrap(), want, "{field:?}");
        }
        assert!(number(b"12x\0").is_err());
        // Not a tar: a header that ends early, or data cut short.
        assert!(fingerprint(&b"short"[..]).is_err());
        let mut header = [0u8; 512];
        header[0] = b'a';
        header[124..136].copy_from_slice(b"00000001750\0");
        assert!(fingerprint(&header[..]).is_err());
        // Empty input: an empty archive.
        assert_eq!(fingerprint(&b""[..]).unwrap().len(), 64);
    }
}

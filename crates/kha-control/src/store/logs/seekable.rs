//! Compressed logs in zstd's seekable format: independent zstd frames of
//! [`FRAME`] bytes of log each, then a skippable frame holding the seek
//! table (each frame's compressed and decompressed size) and its footer
//! (the frame count, a descriptor byte, the seekable magic number). A
//! range decompresses only the frames it covers, reading the table from
//! the end of the file; any zstd decoder reads the file whole, skipping the
//! table (`zstd -d 12.log.zst`).
//!
//! The format: <https://github.com/facebook/zstd/blob/dev/contrib/seekable_format/zstd_seekable_compression_format.md>
//! (written here without the optional per-frame checksums: each frame
//! carries zstd's own content checksum).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes of log per frame: a read of a range decompresses at most this
/// much on either side of it.
pub const FRAME: usize = 256 * 1024;
/// zstd's level: 3 (its default) compresses a build log 5 to 10 times at
/// hundreds of MB/s; higher levels gain little on logs for much more CPU.
const LEVEL: i32 = 3;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
const FOOTER: usize = 9;

fn corrupt(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

/// Compresses `plain` into `out` (created, synced); returns both sizes.
pub fn compress(plain: &Path, out: &Path) -> io::Result<(u64, u64)> {
    let mut src = File::open(plain)?;
    let mut dst = File::create(out)?;
    let mut frames: Vec<(u32, u32)> = Vec::new();
    let mut buf = vec![0u8; FRAME];
    let mut compressor = zstd::bulk::Compressor::new(LEVEL)?;
    compressor.include_checksum(true)?;
    let (mut plain_len, mut written) = (0u64, 0u64);
    loop {
        let n = read_full(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        let c = compressor.compress(&buf[..n])?;
        dst.write_all(&c)?;
        frames.push((c.len() as u32, n as u32));
        plain_len += n as u64;
        written += c.len() as u64;
    }
    let mut table = Vec::with_capacity(8 + frames.len() * 8 + FOOTER);
    table.extend(SKIPPABLE_MAGIC.to_le_bytes());
    table.extend(((frames.len() * 8 + FOOTER) as u32).to_le_bytes());
    for (c, d) in &frames {
        table.extend(c.to_le_bytes());
        table.extend(d.to_le_bytes());
    }
    table.extend((frames.len() as u32).to_le_bytes());
    table.push(0);
    table.extend(SEEKABLE_MAGIC.to_le_bytes());
    dst.write_all(&table)?;
    dst.sync_all()?;
    Ok((plain_len, written + table.len() as u64))
}

/// Reads until `buf` is full or the end.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A compressed log's seek table: where each frame starts in the file
/// and in the log.
#[derive(Debug)]
pub struct Table {
    /// (compressed offset, compressed size, log offset, log size).
    frames: Vec<(u64, u32, u64, u32)>,
}

impl Table {
    pub fn read(path: &Path) -> io::Result<Table> {
        Self::read_from(&mut File::open(path)?, path)
    }

    fn read_from(f: &mut File, path: &Path) -> io::Result<Table> {
        let len = f.metadata()?.len();
        if len < (8 + FOOTER) as u64 {
            return Err(corrupt(path, "too short for a seek table"));
        }
        let mut footer = [0u8; FOOTER];
        f.seek(SeekFrom::Start(len - FOOTER as u64))?;
        f.read_exact(&mut footer)?;
        let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if le(&footer[5..9]) != SEEKABLE_MAGIC {
            return Err(corrupt(path, "no seek table at its end"));
        }
        if footer[4] & 0x80 != 0 {
            return Err(corrupt(path, "per-frame checksums are not read here"));
        }
        let n = le(&footer[0..4]) as u64;
        let table_len = n * 8;
        if table_len + (8 + FOOTER) as u64 > len {
            return Err(corrupt(path, "its seek table is longer than the file"));
        }
        let mut raw = vec![0u8; table_len as usize];
        f.seek(SeekFrom::Start(len - FOOTER as u64 - table_len))?;
        f.read_exact(&mut raw)?;
        let mut frames = Vec::with_capacity(n as usize);
        let (mut c_at, mut d_at) = (0u64, 0u64);
        for e in raw.chunks_exact(8) {
            let (c, d) = (le(&e[0..4]), le(&e[4..8]));
            frames.push((c_at, c, d_at, d));
            c_at += c as u64;
            d_at += d as u64;
        }
        if c_at + table_len + (8 + FOOTER) as u64 != len {
            return Err(corrupt(path, "its frames do not add up to the file"));
        }
        Ok(Table { frames })
    }

    /// The log's length.
    pub fn total(&self) -> u64 {
        self.frames.last().map_or(0, |(_, _, at, d)| at + *d as u64)
    }
}

/// Decompresses one frame of the table.
fn frame(f: &mut File, path: &Path, (c_at, c, _, d): (u64, u32, u64, u32)) -> io::Result<Vec<u8>> {
    let mut raw = vec![0u8; c as usize];
    f.seek(SeekFrom::Start(c_at))?;
    f.read_exact(&mut raw)?;
    let out = zstd::bulk::decompress(&raw, d as usize)?;
    if out.len() != d as usize {
        return Err(corrupt(path, "a frame is not the length its table says"));
    }
    Ok(out)
}

/// Up to `max` bytes of the log from `offset`, decompressing only the
/// frames they are in.
pub fn read_range(path: &Path, offset: u64, max: usize) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let table = Table::read_from(&mut f, path)?;
    let end = offset.saturating_add(max as u64).min(table.total());
    let mut out = Vec::with_capacity(end.saturating_sub(offset).min(1 << 20) as usize);
    for &fr in &table.frames {
        let (_, _, at, d) = fr;
        let stop = at + d as u64;
        if stop <= offset || at >= end {
            continue;
        }
        let data = frame(&mut f, path, fr)?;
        let from = offset.saturating_sub(at) as usize;
        let to = (end - at).min(d as u64) as usize;
        out.extend_from_slice(&data[from..to]);
    }
    Ok(out)
}

/// The whole log, one frame at a time.
pub struct Reader {
    f: File,
    path: std::path::PathBuf,
    table: Table,
    next: usize,
    buf: Vec<u8>,
    at: usize,
}

impl Reader {
    pub fn open(path: &Path) -> io::Result<Reader> {
        let mut f = File::open(path)?;
        let table = Table::read_from(&mut f, path)?;
        Ok(Reader {
            f,
            path: path.to_path_buf(),
            table,
            next: 0,
            buf: Vec::new(),
            at: 0,
        })
    }
}

impl Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() {
            let Some(&fr) = self.table.frames.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            self.buf = frame(&mut self.f, &self.path, fr)?;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log-like text of `n` bytes: lines that repeat with numbers.
    fn log(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 64);
        let mut i = 0u64;
        while v.len() < n {
            v.extend(format!("$ make test\ntest_{i} ... ok ({} ms)\n", i * 7 % 1000).bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    #[test]
    fn ranges_tails_and_the_whole_read_back_as_printed() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0, 1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME + 12_345] {
            let text = log(n);
            let (plain, zst) = (dir.path().join("p"), dir.path().join("z"));
            std::fs::write(&plain, &text).unwrap();
            let (len, size) = compress(&plain, &zst).unwrap();
            assert_eq!(len, n as u64);
            assert_eq!(size, std::fs::metadata(&zst).unwrap().len());
            assert_eq!(Table::read(&zst).unwrap().total(), n as u64);
            let mut whole = Vec::new();
            Reader::open(&zst).unwrap().read_to_end(&mut whole).unwrap();
            assert_eq!(whole, text, "{n} bytes whole");
            for (offset, max) in [
                (0, 10),
                (0, usize::MAX),
                (FRAME as u64 - 5, 10),
                (n as u64 / 2, FRAME * 2),
                (n.saturating_sub(100) as u64, 4096),
                (n as u64, 10),
                (n as u64 + 10, 10),
            ] {
                let got = read_range(&zst, offset, max).unwrap();
                let from = (offset as usize).min(n);
                let to = from.saturating_add(max).min(n);
                assert_eq!(got, &text[from..to], "{n} bytes, {offset}+{max}");
            }
        }
    }

    #[test]
    fn zstd_reads_the_file_whole_and_a_cut_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = log(2 * FRAME + 777);
        let (plain, zst) = (dir.path().join("p"), dir.path().join("z"));
        std::fs::write(&plain, &text).unwrap();
        compress(&plain, &zst).unwrap();
        // The skippable frame is skipped by a plain decoder.
        let all = zstd::stream::decode_all(File::open(&zst).unwrap()).unwrap();
        assert_eq!(all, text);
        let mut raw = std::fs::read(&zst).unwrap();
        raw.truncate(raw.len() - 3);
        std::fs::write(&zst, &raw).unwrap();
        let e = read_range(&zst, 0, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}

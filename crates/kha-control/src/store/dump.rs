//! The database as one file, for backups (`crate::backup`): every tree but
//! the build cache's index, record by record, in a format of kha's own, so a
//! backup neither depends on sled's files nor can be half-read as a valid
//! database.
//!
//! ```text
//! "KHADUMP1\n"
//! ( 'T' len:u32 name  ( 'R' len:u32 key len:u32 value )* )*
//! 'E' next_id:u64
//! ```
//! Integers are big-endian. `next_id` is past every id the database has
//! handed out ([`Store::next_id`]): the restored one starts there.

use super::{Result, Store, StoreError, COUNTER_BUILD, COUNTER_JOB, ID_BASE};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"KHADUMP1\n";
const DEFAULT_TREE: &[u8] = b"__sled__default";
/// Not copied: the build cache's index. Its archives are not copied either;
/// caches are rebuilt by the builds that use them.
const SKIPPED: &[&[u8]] = &[b"caches"];

/// What a dump holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DumpSummary {
    /// Records per tree, by name.
    pub trees: std::collections::BTreeMap<String, u64>,
    pub next_id: u64,
}

impl DumpSummary {
    pub fn records(&self) -> u64 {
        self.trees.values().sum()
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Rejected(format!("dump: {e}"))
}

fn put(w: &mut impl Write, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| StoreError::Rejected("dump: a record over 4 GiB".into()))?;
    w.write_all(&len.to_be_bytes()).map_err(io)?;
    w.write_all(bytes).map_err(io)
}

impl Store {
    /// Holds every write to the database back until the guard is dropped
    /// (see `gate`). Blocks: call it off the async workers.
    pub fn pause_writes(&self) -> super::gate::Paused<'_> {
        self.gate.pause()
    }

    /// Writes every tree to `out`. Consistent only while writes are paused
    /// ([`Store::pause_writes`]).
    pub fn dump(&self, out: impl Write) -> Result<DumpSummary> {
        let mut w = BufWriter::with_capacity(1 << 20, out);
        w.write_all(MAGIC).map_err(io)?;
        let mut summary = DumpSummary::default();
        for name in self.db.tree_names() {
            if SKIPPED.contains(&name.as_ref()) {
                continue;
            }
            let tree = if name.as_ref() == DEFAULT_TREE {
                (*self.db).clone()
            } else {
                self.db.open_tree(&name)?
            };
            w.write_all(b"T").map_err(io)?;
            put(&mut w, &name)?;
            let mut n = 0;
            for kv in tree.iter() {
                let (k, v) = kv?;
                w.write_all(b"R").map_err(io)?;
                put(&mut w, &k)?;
                put(&mut w, &v)?;
                n += 1;
            }
            summary
                .trees
                .insert(String::from_utf8_lossy(&name).into_owned(), n);
        }
        summary.next_id = self.next_id()?;
        w.write_all(b"E").map_err(io)?;
        w.write_all(&summary.next_id.to_be_bytes()).map_err(io)?;
        w.flush().map_err(io)?;
        Ok(summary)
    }
}

fn take<const N: usize>(r: &mut impl Read) -> Result<[u8; N]> {
    let mut b = [0; N];
    r.read_exact(&mut b)
        .map_err(|e| StoreError::Rejected(format!("the dump is cut short: {e}")))?;
    Ok(b)
}

fn get(r: &mut impl Read) -> Result<Vec<u8>> {
    let len = u32::from_be_bytes(take(r)?) as usize;
    let mut b = vec![0; len];
    r.read_exact(&mut b)
        .map_err(|e| StoreError::Rejected(format!("the dump is cut short: {e}")))?;
    Ok(b)
}

/// Makes a new database in `dir` (which must not hold one) from a dump.
pub fn load(input: impl Read, dir: &Path) -> Result<DumpSummary> {
    if dir.join("db").exists() || dir.join("conf").exists() {
        return Err(StoreError::Rejected(format!(
            "{} already holds a database",
            dir.display()
        )));
    }
    let mut r = BufReader::with_capacity(1 << 20, input);
    if take::<9>(&mut r)? != MAGIC[..] {
        return Err(StoreError::Rejected(
            "not a kha database dump (its first line is not KHADUMP1)".into(),
        ));
    }
    let db = sled::Config::new().path(dir).flush_every_ms(None).open()?;
    let mut summary = DumpSummary::default();
    let mut tree: Option<(String, sled::Tree, sled::Batch, u64)> = None;
    let close = |t: Option<(String, sled::Tree, sled::Batch, u64)>,
                 summary: &mut DumpSummary|
     -> Result<()> {
        if let Some((name, tree, batch, n)) = t {
            tree.apply_batch(batch)?;
            *summary.trees.entry(name).or_default() += n;
        }
        Ok(())
    };
    loop {
        match take::<1>(&mut r)? {
            [b'T'] => {
                close(tree.take(), &mut summary)?;
                let name = get(&mut r)?;
                let t = if name == DEFAULT_TREE {
                    (*db).clone()
                } else {
                    db.open_tree(&name)?
                };
                let name = String::from_utf8_lossy(&name).into_owned();
                tree = Some((name, t, sled::Batch::default(), 0));
            }
            [b'R'] => {
                let Some((_, t, batch, n)) = tree.as_mut() else {
                    return Err(StoreError::Rejected("a record before any tree".into()));
                };
                let (k, v) = (get(&mut r)?, get(&mut r)?);
                batch.insert(k, v);
                *n += 1;
                if *n % 10_000 == 0 {
                    t.apply_batch(std::mem::take(batch))?;
                }
            }
            [b'E'] => {
                close(tree.take(), &mut summary)?;
                summary.next_id = u64::from_be_bytes(take(&mut r)?);
                break;
            }
            [other] => {
                return Err(StoreError::Rejected(format!(
                    "the dump is damaged (a {other:#04x} where a record should start)"
                )))
            }
        }
    }
    let meta = db.open_tree("meta")?;
    meta.insert(ID_BASE, &summary.next_id.to_be_bytes())?;
    // A build or job id handed out just before the dump, whose records
    // were not written yet, is not in it: the counters start again from
    // the newest records there are (`Store::init_counter`), so the
    // restored node numbers on without a gap.
    meta.remove(COUNTER_BUILD)?;
    meta.remove(COUNTER_JOB)?;
    db.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::super::records::{Build, Job};
    use super::super::QUEUE_NORMAL_BASE;
    use super::*;

    /// A build of one job, written.
    pub(super) fn build(store: &Store) -> Build {
        let id = store.next_build_id().unwrap();
        let job = Job {
            queue_key: QUEUE_NORMAL_BASE + id,
            ..Job::for_test(store.next_job_id().unwrap(), id, 1, "p")
        };
        let mut b = Build::for_test(id, "p", "main", vec![job.id]);
        store.create_build(&mut b, &mut [job], id).unwrap();
        b
    }

    #[tokio::test]
    async fn a_dump_loads_into_the_same_records_and_ids_go_on_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        let first = build(&store);
        let second = build(&store);
        // Handed out, never written: not in the dump.
        store.next_build_id().unwrap();
        let id = store.next_id().unwrap();
        let mut out = Vec::new();
        let summary = store.dump(&mut out).unwrap();
        assert_eq!(summary.trees["builds"], 2);
        assert!(!summary.trees.contains_key("caches"));

        let loaded = load(&out[..], &dir.path().join("b")).unwrap();
        assert_eq!(loaded, summary);
        let back = Store::open(&dir.path().join("b")).unwrap();
        assert_eq!(back.get_build(first.id).unwrap().unwrap().jobs, first.jobs);
        assert_eq!(
            back.get_build(second.id).unwrap().unwrap().jobs,
            second.jobs
        );
        assert_eq!(back.next_build_id().unwrap(), 3);
        assert_eq!(back.next_job_id().unwrap(), 3);
        assert!(back.next_id().unwrap() > id);
        assert_eq!(back.events.written(), store.events.written());

        // Into a database, or from a damaged dump: refused, never a panic.
        let e = load(&out[..], &dir.path().join("b")).unwrap_err();
        assert!(e.to_string().contains("already holds a database"), "{e}");
        for cut in [0, 5, out.len() / 2, out.len() - 1] {
            let e = load(&out[..cut], &dir.path().join(format!("c{cut}"))).unwrap_err();
            assert!(e.to_string().contains("cut short"), "{cut}: {e}");
        }
        let mut bad = out.clone();
        bad[9] = b'X';
        let e = load(&bad[..], &dir.path().join("d")).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}

#[cfg(test)]
mod measure {
    use super::*;

    /// By hand: how long a backup holds writes back for a database of
    /// `KHA_DUMP_BUILDS` builds of one job (20,000 unset).
    #[tokio::test]
    #[ignore = "a measurement, run by hand with --ignored --nocapture"]
    async fn dump_time_of_a_large_database() {
        let n: u64 = std::env::var("KHA_DUMP_BUILDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        for _ in 0..n {
            super::tests::build(&store);
        }
        store.durable().await.unwrap();
        let out = std::fs::File::create(dir.path().join("dump")).unwrap();
        let t = std::time::Instant::now();
        let s = {
            let _p = store.pause_writes();
            store.dump(out).unwrap()
        };
        let held = t.elapsed();
        let bytes = std::fs::metadata(dir.path().join("dump")).unwrap().len();
        let t = std::time::Instant::now();
        load(
            std::fs::File::open(dir.path().join("dump")).unwrap(),
            &dir.path().join("b"),
        )
        .unwrap();
        println!(
            "{n} builds: {} records, {bytes} bytes; writes held back {:.0} ms; loaded in {:.0} ms",
            s.records(),
            held.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}

//! The store's promises about the event stream, checked across a real crash:
//! a child process writes a change and is killed (abort, as `kill -9`)
//! before the change's events are published; the restarted store has the
//! change and its events exactly once, or neither.

use super::records::{Build, Job};
use super::*;
use kha_core::event::EventKind;

const CHILD: &str = "KHA_STORE_CRASH_CHILD";

fn build(store: &Store) -> (Build, Vec<Job>) {
    let id = store.next_build_id().unwrap();
    let job = Job {
        queue_key: QUEUE_NORMAL_BASE + id,
        ..Job::for_test(store.next_job_id().unwrap(), id, 1, "p")
    };
    let b = Build::for_test(id, "p", "main", vec![job.id]);
    (b, vec![job])
}

/// In the child: one published build, then a second written (and, with
/// `flush`, on disk) but not published, then death.
async fn child(dir: &Path, flush: bool) -> ! {
    let store = Store::open(dir).unwrap();
    let (mut b, mut jobs) = build(&store);
    store.create_build(&mut b, &mut jobs, 1).unwrap();
    store.durable().await.unwrap();
    let (mut b, mut jobs) = build(&store);
    store.create_build(&mut b, &mut jobs, 2).unwrap();
    if flush {
        store.db.flush().unwrap();
    }
    assert!(store.events.published() < store.events.written());
    std::process::abort()
}

async fn crash_then_check(flush: bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    if let Ok(d) = std::env::var(CHILD) {
        child(Path::new(&d), std::env::var("KHA_FLUSH").is_ok()).await;
    }
    let test = if flush {
        "store::tests::crash_after_the_flush_before_publication"
    } else {
        "store::tests::crash_before_the_flush"
    };
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--test-threads=1"])
        .env(CHILD, &db);
    if flush {
        cmd.env("KHA_FLUSH", "1");
    }
    let status = cmd.output().unwrap().status;
    assert!(!status.success(), "the child died");

    let store = Store::open(&db).unwrap();
    let events = store
        .events
        .read(1, store.events.published(), 1000)
        .unwrap();
    assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    for id in 1..=2u64 {
        let created = events
            .iter()
            .filter(|e| e.kind == EventKind::BuildCreated && e.build_id == id)
            .count();
        let stored = store.get_build(id).unwrap().is_some();
        assert_eq!(created, stored as usize, "build {id}: {events:?}");
    }
    assert!(
        store.get_build(1).unwrap().is_some(),
        "the durable build survived"
    );
    if flush {
        assert!(store.get_build(2).unwrap().is_some(), "flushed: on disk");
    }
    // New events go on from there, densely.
    let last = events.last().map_or(0, |e| e.seq);
    let (mut b, mut jobs) = build(&store);
    store.create_build(&mut b, &mut jobs, 3).unwrap();
    store.durable().await.unwrap();
    let more = store
        .events
        .read(last + 1, store.events.published(), 10)
        .unwrap();
    assert_eq!(more.first().map(|e| e.seq), Some(last + 1));
    assert!(b.id > 1, "ids are not reused: {}", b.id);
}

#[tokio::test]
async fn crash_after_the_flush_before_publication() {
    crash_then_check(true).await;
}

#[tokio::test]
async fn crash_before_the_flush() {
    crash_then_check(false).await;
}

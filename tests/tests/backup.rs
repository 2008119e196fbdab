//! Backups of a running control node (`kha-control backup DIR`) and
//! restores (`kha-control restore DIR`): taken while builds are being
//! created and jobs print, a backup restores to a node whose every build
//! is whole and whose every log is what its job printed, and which runs
//! on from there.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Two jobs a build, each printing 20 known lines over a second.
const TRAVIS: &str = "language: shell\n\
env:\n  - N=1\n  - N=2\n\
script: for i in $(seq 1 20); do echo \"job $N line $i\"; sleep 0.05; done\n";

fn kha_control(c: &Cluster, args: &[&str]) -> Output {
    Command::new(bin("kha-control"))
        .arg("--data-dir")
        .arg(c.path("control"))
        .args(args)
        .env("KHA_LOG", "warn")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every build the node has, by id: its state and its jobs' logs.
type Builds = BTreeMap<u64, (String, Vec<Vec<u8>>)>;

fn snapshot(c: &Cluster) -> Builds {
    let mut all = BTreeMap::new();
    let list = c.kha_json(&["build", "list", "demo", "--per-page", "100"]);
    for b in list["builds"].as_array().unwrap() {
        let id = b["id"].as_u64().unwrap();
        let b = c.build(id);
        let jobs = b["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| c.log(j["id"].as_u64().unwrap()))
            .collect();
        all.insert(id, (b["state"].as_str().unwrap().to_string(), jobs));
    }
    all
}

fn expected_log(n: u32) -> Vec<u8> {
    let mut s =
        "$ for i in $(seq 1 20); do echo \"job $N line $i\"; sleep 0.05; done\n".to_string();
    for i in 1..=20 {
        s.push_str(&format!("job {n} line {i}\n"));
    }
    s.into_bytes()
}

#[test]
fn a_backup_taken_while_builds_run_restores_every_build_and_log() {
    let repo = Repo::with_travis_yml(TRAVIS);
    let mut c = Fixture::new()
        .project("demo", &repo.url())
        .host_builder("a", 2)
        .start();
    // The project's key pair is made on first use; a backup keeps it.
    c.kha_ok(&["encrypt", "demo", "SECRET=1"]);
    let key = std::fs::read(c.path("control/secrets/keys/demo.pem")).unwrap();
    for _ in 0..3 {
        let id = c.trigger("demo", None);
        assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], "passed");
    }

    // Builds keep being created, and jobs keep printing, while it is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let trigger = {
        let (stop, url, data, home) = (
            stop.clone(),
            c.url(),
            c.path("control"),
            c.dir.path().to_path_buf(),
        );
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let o = Command::new(bin("kha"))
                    .args(["build", "trigger", "demo", "--force"])
                    .env("KHA_SERVER", &url)
                    .env("KHA_DATA_DIR", &data)
                    .env("HOME", &home)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", text(&o));
                n += 1;
                std::thread::sleep(Duration::from_millis(150));
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let dest = c.path("backup");
    let o = kha_control(&c, &["backup", &dest.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(
        said.starts_with(&format!("backup in {}: ", dest.display())),
        "{said}"
    );
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let triggered = trigger.join().unwrap();
    assert!(triggered >= 8, "{triggered} builds triggered");
    eprintln!("{said}");

    // A second backup into the same directory is refused; nothing changes.
    let o = kha_control(&c, &["backup", &dest.to_string_lossy()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("exists and is not empty"), "{}", text(&o));

    let last = 3 + triggered as u64;

    // The control node's machine is lost while its builder runs jobs of
    // builds newer than the backup; the builder lives on and reconnects to
    // the restored node, which numbers its next jobs from the backup on.
    c.control.as_mut().unwrap().kill9();
    let o = kha_control(&c, &["restore", &dest.to_string_lossy()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("already holds"), "{}", text(&o));
    let o = kha_control(&c, &["restore", &dest.to_string_lossy(), "--replace"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("moved the data directory's earlier contents"),
        "{}",
        text(&o)
    );
    c.start_control();
    c.wait_builders_connected(1);

    // Every build of the backup is back, numbered without a gap, each with
    // both of its jobs; the builds that had ended then are as they were.
    let restored_ids: Vec<u64> = c.kha_json(&["build", "list", "demo", "--per-page", "100"])
        ["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    let count = restored_ids.len() as u64;
    assert!(
        count > 3 && count < last,
        "{count} builds restored of {last}"
    );
    assert_eq!(restored_ids, (1..=count).rev().collect::<Vec<_>>());
    let unfinished = (1..=count)
        .filter(|id| !matches!(c.build(*id)["state"].as_str(), Some("passed")))
        .count();
    // Builds made after the backup get their numbers again.
    let next = c.trigger("demo", None);
    assert_eq!(next, count + 1);
    for id in 1..=next {
        c.wait_build(id, Duration::from_secs(120));
    }
    for (id, (state, jobs)) in &snapshot(&c) {
        assert_eq!(state, "passed", "build {id}");
        assert_eq!(jobs.len(), 2, "build {id}");
        for (n, log) in jobs.iter().enumerate() {
            assert_eq!(
                String::from_utf8_lossy(log),
                String::from_utf8_lossy(&expected_log(n as u32 + 1)),
                "build {id} job {}",
                n + 1
            );
        }
    }
    eprintln!("{count} of {last} builds in the backup, {unfinished} of them unfinished then");
    // The project's key is the one it had.
    assert_eq!(
        std::fs::read(c.path("control/secrets/keys/demo.pem")).unwrap(),
        key
    );
}

/// A backup that was damaged after it was taken is refused whole, before
/// anything is written; one without its manifest is not a backup.
#[test]
fn a_damaged_or_unfinished_backup_is_refused_before_anything_is_written() {
    let repo = Repo::with_travis_yml(TRAVIS);
    let mut c = Fixture::new()
        .project("demo", &repo.url())
        .host_builder("a", 2)
        .start();
    let id = c.trigger("demo", None);
    c.wait_build(id, Duration::from_secs(60));
    let dest = c.path("backup");
    let o = kha_control(&c, &["backup", &dest.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));
    c.control.as_mut().unwrap().kill9();

    let restore = |from: &Path, data: &Path| {
        Command::new(bin("kha-control"))
            .arg("--data-dir")
            .arg(data)
            .arg("restore")
            .arg(from)
            .output()
            .unwrap()
    };
    // Unchanged, it restores into an empty data directory.
    let fresh = c.path("fresh");
    let o = restore(&dest, &fresh);
    assert!(o.status.success(), "{}", text(&o));
    assert!(fresh.join("db").is_dir());

    // One byte of a log changed.
    let log = std::fs::read_dir(dest.join("logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&log, bytes).unwrap();
    let other = c.path("other");
    let o = restore(&dest, &other);
    assert!(!o.status.success());
    assert!(text(&o).contains("is damaged"), "{}", text(&o));
    assert!(!other.join("db").exists());

    // No manifest: not a (finished) backup.
    std::fs::remove_file(dest.join("MANIFEST.json")).unwrap();
    let o = restore(&dest, &other);
    assert!(!o.status.success());
    assert!(text(&o).contains("not a finished backup"), "{}", text(&o));
    assert!(!other.join("db").exists());
}

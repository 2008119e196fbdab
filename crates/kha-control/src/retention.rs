//! Log retention: which finished builds' logs go, by the policy of their
//! project and of the server (`[logs]` in control.toml): keep the logs of
//! a project's last N builds, none older than D days, and at most M MiB of
//! logs in all (the oldest go first). The builds and jobs themselves stay,
//! with their states, timing and log lengths; only the log files go.
//!
//! A pass is a plan (pure reads: what would go and why, which
//! `kha-control gc --dry-run` prints) and its application. A project's
//! pass runs when one of its builds ends; a full pass runs at start and
//! hourly, for the age and size limits and for policies made stricter.

use crate::scheduler::SchedError;
use crate::store::logs::LogStore;
use crate::store::records::Project;
use crate::store::Store;
use kha_core::{BuildId, JobId, Millis};
use serde::Deserialize;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// `[logs]` in control.toml: the server's policy. 0 everywhere: logs are
/// kept for ever.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogRetention {
    /// Keep the logs of each project's last N builds; 0: all.
    pub keep_builds: u32,
    /// Remove logs of builds that ended more than this many days ago; 0:
    /// no age limit.
    pub max_age_days: u64,
    /// At most this many MiB of logs on disk in all; the oldest builds'
    /// go first. 0: no limit.
    pub max_total_mib: u64,
}

/// One project's policy: its own settings where it has them, else the
/// server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub keep_builds: u32,
    pub max_age_days: u64,
}

impl Policy {
    pub fn of(p: &Project, server: &LogRetention) -> Policy {
        let or = |own: u64, server: u64| if own > 0 { own } else { server };
        Policy {
            keep_builds: or(p.log_keep_builds as u64, server.keep_builds as u64) as u32,
            max_age_days: or(p.log_max_age_days, server.max_age_days),
        }
    }

    fn is_none(&self) -> bool {
        self.keep_builds == 0 && self.max_age_days == 0
    }
}

/// A log that goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub job: JobId,
    pub build: BuildId,
    pub project: String,
    /// Bytes on disk (compressed, with earlier attempts').
    pub bytes: u64,
    pub why: String,
}

/// What a project's policy removes now. `all`: every build, by both of
/// its rules. Else (the pass as a build ends) only its last-N rule, up to
/// the tenth build in a row whose logs are gone already: older builds went
/// in earlier passes (a build canceled before it ran has none, hence ten),
/// and the age rule is the hourly full pass's.
pub fn plan_project(
    store: &Store,
    logs: &LogStore,
    p: &Project,
    server: &LogRetention,
    now: Millis,
    all: bool,
) -> Result<Vec<Gone>, SchedError> {
    let policy = Policy::of(p, server);
    let mut out = Vec::new();
    if policy.is_none() {
        return Ok(out);
    }
    let max_age_days = if all { policy.max_age_days } else { 0 };
    let cutoff = now.saturating_sub(max_age_days.saturating_mul(DAY_MS));
    let mut gone_in_a_row = 0;
    for (i, id) in store.project_build_ids(&p.name).enumerate() {
        let id = id?;
        let beyond = policy.keep_builds > 0 && i >= policy.keep_builds as usize;
        if !beyond && max_age_days == 0 {
            continue;
        }
        let Some(b) = store.get_build(id)? else {
            continue;
        };
        // A build not over keeps its logs (and counts among the last N).
        if !b.state.is_final() {
            continue;
        }
        let old = max_age_days > 0 && b.finished_ms < cutoff;
        if !beyond && !old {
            continue;
        }
        let on_disk: Vec<(JobId, u64)> = b
            .jobs
            .iter()
            .filter(|j| logs.exists(**j) || !logs.attempts(**j).is_empty())
            .map(|j| (*j, logs.disk_bytes(*j)))
            .collect();
        if on_disk.is_empty() {
            gone_in_a_row += 1;
            if !all && gone_in_a_row >= 10 {
                break;
            }
            continue;
        }
        gone_in_a_row = 0;
        let why = if beyond {
            format!(
                "beyond the last {} builds of {}",
                policy.keep_builds, p.name
            )
        } else {
            format!(
                "ended more than {max_age_days} day{} ago",
                if max_age_days == 1 { "" } else { "s" }
            )
        };
        for (job, bytes) in on_disk {
            out.push(Gone {
                job,
                build: b.id,
                project: p.name.clone(),
                bytes,
                why: why.clone(),
            });
        }
    }
    Ok(out)
}

/// What the server's total limit removes on top of `planned`: the logs of
/// the oldest finished jobs (by id) until the rest fit.
pub fn plan_total(
    store: &Store,
    logs: &LogStore,
    server: &LogRetention,
    planned: &[Gone],
) -> Result<Vec<Gone>, SchedError> {
    let mut out = Vec::new();
    if server.max_total_mib == 0 {
        return Ok(out);
    }
    let limit = server.max_total_mib.saturating_mul(1 << 20);
    let going: std::collections::HashSet<JobId> = planned.iter().map(|g| g.job).collect();
    // Every job with a file, and the bytes of its files.
    let mut sizes: std::collections::BTreeMap<JobId, u64> = Default::default();
    let entries = match std::fs::read_dir(logs.dir()) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(SchedError::Io(e)),
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(job) = name
            .to_str()
            .and_then(|n| n.split('.').next())
            .and_then(|n| n.parse::<JobId>().ok())
        else {
            continue;
        };
        let len = e.metadata().map_or(0, |m| m.len());
        *sizes.entry(job).or_default() += len;
    }
    let mut total: u64 = sizes
        .iter()
        .filter(|(j, _)| !going.contains(j))
        .map(|(_, n)| n)
        .sum();
    for (&job, &bytes) in &sizes {
        if total <= limit {
            break;
        }
        if going.contains(&job) {
            continue;
        }
        let Some(j) = store.get_job(job)? else {
            continue;
        };
        // Logs still being written are not the policy's.
        if !j.state.is_final() {
            continue;
        }
        total -= bytes;
        out.push(Gone {
            job,
            build: j.build,
            project: j.project,
            bytes,
            why: format!("over the server's {} MiB of logs", server.max_total_mib),
        });
    }
    Ok(out)
}

/// Every log the policies remove now.
pub fn plan_all(
    store: &Store,
    logs: &LogStore,
    server: &LogRetention,
    now: Millis,
) -> Result<Vec<Gone>, SchedError> {
    let mut out = Vec::new();
    for p in store.list_projects()? {
        out.extend(plan_project(store, logs, &p, server, now, true)?);
    }
    let more = plan_total(store, logs, server, &out)?;
    out.extend(more);
    Ok(out)
}

/// Removes the planned logs; returns how many went and the bytes freed.
/// A log that cannot be removed is logged and left for the next pass.
pub fn apply(logs: &LogStore, plan: &[Gone]) -> (u64, u64) {
    let (mut n, mut freed) = (0, 0);
    for g in plan {
        match logs.remove(g.job) {
            Ok(bytes) => {
                n += 1;
                freed += bytes;
            }
            Err(e) => {
                tracing::warn!(job_id = g.job, project = %g.project, error = %e, "cannot remove the log")
            }
        }
    }
    if n > 0 {
        tracing::info!(
            logs = n,
            bytes = freed,
            "logs removed by the retention policy"
        );
    }
    (n, freed)
}

/// Sums a plan up for people: one line per build.
pub fn describe(plan: &[Gone]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut i = 0;
    while i < plan.len() {
        let g = &plan[i];
        let same: Vec<&Gone> = plan[i..]
            .iter()
            .take_while(|o| o.build == g.build && o.why == g.why)
            .collect();
        let bytes: u64 = same.iter().map(|o| o.bytes).sum();
        lines.push(format!(
            "{} build {}: {} log{} ({} bytes): {}",
            g.project,
            g.build,
            same.len(),
            if same.len() == 1 { "" } else { "s" },
            bytes,
            g.why
        ));
        i += same.len();
    }
    lines
}

/// Compresses the plain logs of finished jobs (left by a control node that
/// stopped before it compressed them, or by an older version); returns how
/// many were compressed.
pub fn compress_finished(store: &Store, logs: &LogStore) -> Result<u64, SchedError> {
    let entries = match std::fs::read_dir(logs.dir()) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(SchedError::Io(e)),
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(job) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<JobId>().ok())
        else {
            continue;
        };
        if store.get_job(job)?.is_some_and(|j| j.state.is_final()) {
            match logs.compress(job) {
                Ok(Some(_)) => n += 1,
                Ok(None) => {}
                Err(e) => tracing::warn!(job_id = job, error = %e, "cannot compress the log"),
            }
        }
    }
    Ok(n)
}

/// The full pass the control node runs at start and hourly: finished
/// logs compressed, then the policies applied.
pub fn full_pass(
    store: &Store,
    logs: &LogStore,
    server: &LogRetention,
    now: Millis,
) -> Result<(), SchedError> {
    let compressed = compress_finished(store, logs)?;
    if compressed > 0 {
        tracing::info!(logs = compressed, "finished logs compressed");
    }
    let plan = plan_all(store, logs, server, now)?;
    apply(logs, &plan);
    Ok(())
}

/// `kha-control gc`: the full pass, or with `dry_run` only its plan;
/// returns its lines for people, and how many logs and bytes go.
pub fn collect(
    store: &Store,
    logs: &LogStore,
    server: &LogRetention,
    now: Millis,
    dry_run: bool,
) -> Result<(Vec<String>, u64, u64), SchedError> {
    if !dry_run {
        compress_finished(store, logs)?;
    }
    let plan = plan_all(store, logs, server, now)?;
    let lines = describe(&plan);
    if dry_run {
        let bytes = plan.iter().map(|g| g.bytes).sum();
        return Ok((lines, plan.len() as u64, bytes));
    }
    let (n, freed) = apply(logs, &plan);
    Ok((lines, n, freed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{Build, Job};
    use kha_core::{BuildState, JobState};

    /// Writes a finished one-job build of `project` whose log is `log`,
    /// and compresses the log as the end of a job does.
    fn finished(store: &Store, logs: &LogStore, project: &str, now: Millis, log: &[u8]) -> JobId {
        let id = store.next_build_id().unwrap();
        let job = store.next_job_id().unwrap();
        let mut jobs = vec![Job {
            state: JobState::Passed,
            finished_ms: now,
            log_len: log.len() as u64,
            ..Job::for_test(job, id, 1, project)
        }];
        let mut b = Build {
            state: BuildState::Passed,
            created_ms: now,
            finished_ms: now,
            commit: format!("{id:040x}"),
            ..Build::for_test(id, project, "master", vec![job])
        };
        store.create_build(&mut b, &mut jobs, now).unwrap();
        logs.write_all(job, log).unwrap();
        logs.compress(job).unwrap();
        job
    }

    fn store_and_logs(dir: &std::path::Path) -> (Store, LogStore) {
        (
            Store::open(&dir.join("db")).unwrap(),
            LogStore::open(dir.join("logs"), 1 << 20).unwrap(),
        )
    }

    #[test]
    fn the_pass_as_a_build_ends_reaches_past_builds_that_never_ran() {
        let dir = tempfile::tempdir().unwrap();
        let (store, logs) = store_and_logs(dir.path());
        let p = Project {
            log_keep_builds: 2,
            ..Project::for_test("p")
        };
        store.add_project(&p).unwrap();
        let server = LogRetention::default();
        let jobs: Vec<JobId> = (0..6)
            .map(|i| finished(&store, &logs, "p", 1000 + i, b"hello\n"))
            .collect();
        // The third build was canceled before it ran: no log.
        logs.remove(jobs[2]).unwrap();
        let plan = plan_project(&store, &logs, &p, &server, 10_000, false).unwrap();
        let going: Vec<JobId> = plan.iter().map(|g| g.job).collect();
        assert_eq!(going, [jobs[3], jobs[1], jobs[0]]);
        assert_eq!(plan[0].why, "beyond the last 2 builds of p");
        let lines = describe(&plan);
        assert!(
            lines[0].starts_with(&format!("p build {}: 1 log (", plan[0].build)),
            "{lines:?}"
        );
        apply(&logs, &plan);
        for (i, j) in jobs.iter().enumerate() {
            assert_eq!(logs.exists(*j), i >= 4, "job {i}");
        }
        assert!(plan_project(&store, &logs, &p, &server, 10_000, true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_age_rule_is_the_full_passs() {
        let dir = tempfile::tempdir().unwrap();
        let (store, logs) = store_and_logs(dir.path());
        let p = Project {
            log_max_age_days: 1,
            ..Project::for_test("p")
        };
        store.add_project(&p).unwrap();
        let server = LogRetention::default();
        let now = 100 * DAY_MS;
        let old = finished(&store, &logs, "p", now - 2 * DAY_MS, b"old\n");
        let new = finished(&store, &logs, "p", now - 3_600_000, b"new\n");
        assert!(plan_project(&store, &logs, &p, &server, now, false)
            .unwrap()
            .is_empty());
        let plan = plan_all(&store, &logs, &server, now).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(
            (plan[0].job, plan[0].why.as_str()),
            (old, "ended more than 1 day ago")
        );
        // The server's policy applies to a project without its own.
        let q = Project::for_test("q");
        store.add_project(&q).unwrap();
        let q_old = finished(&store, &logs, "q", now - 40 * DAY_MS, b"q\n");
        let server = LogRetention {
            max_age_days: 30,
            ..LogRetention::default()
        };
        let plan = plan_all(&store, &logs, &server, now).unwrap();
        let going: Vec<JobId> = plan.iter().map(|g| g.job).collect();
        assert_eq!(
            going,
            [old, q_old],
            "p keeps its own 1 day; q gets the server's 30"
        );
        assert!(!going.contains(&new));
    }

    fn dir_usage(logs: &LogStore) -> (u64, u64) {
        let mut n = 0;
        let mut bytes = 0;
        for e in std::fs::read_dir(logs.dir()).unwrap().flatten() {
            n += 1;
            bytes += e.metadata().unwrap().len();
        }
        (n, bytes)
    }

    /// 100,000 jobs of two projects, each printing 3 KB: one keeps its
    /// last 20 builds' logs; the other has no policy of its own and falls
    /// under the server's 1 MiB of logs in all. As on a control node, the
    /// project's pass runs as each build ends and the full pass now and
    /// then (hourly there, every 2,000 builds here): the logs on disk never
    /// exceed what the policy allows plus what arrived since the last full
    /// pass.
    #[test]
    fn disk_use_stays_bounded_over_100_000_jobs() {
        // In memory where there is a tmpfs: 200,000 synced writes cost
        // minutes on a disk and prove nothing more.
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm"),
            false => tempfile::tempdir(),
        }
        .unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let logs = LogStore::open(dir.path().join("logs"), 1 << 20).unwrap();
        let keep = Project {
            log_keep_builds: 20,
            ..Project::for_test("keep")
        };
        store.add_project(&keep).unwrap();
        store.add_project(&Project::for_test("big")).unwrap();
        let server = LogRetention {
            max_total_mib: 1,
            ..LogRetention::default()
        };
        let mut log = Vec::new();
        while log.len() < 3000 {
            log.extend_from_slice(format!("test {} ... ok\n", log.len()).as_bytes());
        }
        let (mut most_files, mut most_bytes) = (0, 0);
        for i in 0..100_000u64 {
            let now = 1_000_000 + i * 1000;
            let p = if i % 2 == 0 {
                &keep
            } else {
                &store.get_project("big").unwrap().unwrap()
            };
            finished(&store, &logs, &p.name, now, &log);
            let plan = plan_project(&store, &logs, p, &server, now, false).unwrap();
            apply(&logs, &plan);
            if i % 2000 == 1999 {
                // The most there is: just before a full pass.
                let (n, bytes) = dir_usage(&logs);
                most_files = most_files.max(n);
                most_bytes = most_bytes.max(bytes);
                full_pass(&store, &logs, &server, now).unwrap();
                assert!(dir_usage(&logs).1 <= 1 << 20);
            }
        }
        let (n, bytes) = dir_usage(&logs);
        // 1 MiB in all after a full pass; between passes at most the 1,000
        // jobs of "big" that arrived (~1.2 KB each compressed) on top.
        assert!(bytes <= 1 << 20, "{bytes} bytes in {n} files");
        assert!(most_bytes <= (1 << 20) + 1000 * 2048, "{most_bytes}");
        // The project with its own policy kept exactly its last 20.
        let kept: Vec<u64> = store
            .project_build_ids("keep")
            .map(|b| b.unwrap())
            .filter(|b| {
                let b = store.get_build(*b).unwrap().unwrap();
                logs.exists(b.jobs[0])
            })
            .collect();
        assert!(kept.len() <= 20, "{}", kept.len());
        // Every build is still there, with its log's length.
        assert_eq!(store.project_build_ids("keep").count(), 50_000);
        assert_eq!(store.project_build_ids("big").count(), 50_000);
        eprintln!(
            "100,000 jobs: {n} log files, {bytes} bytes now; at most {most_files} files, {most_bytes} bytes before a full pass; database {} bytes",
            store.size_on_disk().unwrap()
        );
    }
}

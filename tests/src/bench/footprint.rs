//! Scenario 4, footprint: binary sizes, cold start to ready, and idle
//! memory of the control node and of a builder.
//!
//! "Ready": the control node answers an admin call (ListProjects); a
//! builder shows as connected in ListBuilders (its session is open). Both
//! are polled every 1–2 ms, so the figures include up to that much.

use super::env::{bin, rss_mib, threads, Env};
use super::report::{Of, Row, Target};
use super::Opts;
use anyhow::Result;
use std::process::Command;
use std::time::{Duration, Instant};

pub async fn run(opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let sc = "footprint";
    // Binary sizes (MB, 10^6 bytes), as built and stripped.
    let tmp = tempfile::tempdir()?;
    for name in ["kha-control", "kha-builder", "kha"] {
        let p = bin(name)?;
        let size = std::fs::metadata(&p)?.len();
        let stripped = tmp.path().join(name);
        let ok = Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let note = if ok {
            format!(
                "stripped {:.2} MB",
                std::fs::metadata(&stripped)?.len() as f64 / 1e6
            )
        } else {
            String::new()
        };
        // What is installed is what the release profile makes (stripped).
        rows.push(
            Row::value(sc, &format!("{name} binary size"), "MB", size as f64 / 1e6)
                .target(Target::AtMost(Of::Value, 15.0))
                .note(note),
        );
    }

    // Control node: cold start (fresh data dir) and restart (existing one).
    let reps = if opts.quick { 3 } else { 10 };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let mut env = Env::start(Default::default()).await?;
        cold.push(t.elapsed().as_secs_f64() * 1000.0);
        env.stop_all();
        let d = env.start_control().await?;
        warm.push(d.as_secs_f64() * 1000.0);
        env.stop_all();
    }
    rows.push(
        Row::samples(sc, "control start → ready (new data dir)", "ms", &cold)
            .target(Target::AtMost(Of::P50, 100.0)),
    );
    rows.push(
        Row::samples(sc, "control start → ready (existing data dir)", "ms", &warm)
            .target(Target::AtMost(Of::P50, 100.0)),
    );

    // Idle memory, and builder start → connected, per executor.
    let mut env = Env::start(Default::default()).await?;
    for &exec in &opts.executors {
        let i = env
            .spawn_builder(&format!("fp-{}", exec.name()), exec, 2)
            .await?;
        env.wait_connected(env.builders.len(), Duration::from_secs(20))
            .await?;
        let mut starts = Vec::new();
        for _ in 0..reps {
            env.builders[i].proc.kill9();
            // Wait until the control node has noticed.
            let want = env.builders.len() - 1;
            let until = Instant::now() + Duration::from_secs(10);
            while env.connected().await?.len() > want && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let t = Instant::now();
            let b = &env.builders[i];
            let (data, name, slots) = (b.data.clone(), b.name.clone(), b.slots);
            let p = env.respawn_builder(&data, &name, exec, slots)?;
            env.builders[i].proc = p;
            env.wait_connected(want + 1, Duration::from_secs(20))
                .await?;
            starts.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        rows.push(
            Row::samples(
                sc,
                &format!("builder ({}) start → connected", exec.name()),
                "ms",
                &starts,
            )
            .target(Target::AtMost(Of::P50, 100.0)),
        );
    }
    tokio::time::sleep(Duration::from_secs(opts.idle_secs)).await;
    let pid = env.control_pid();
    let (rss, hwm) = rss_mib(pid);
    rows.push(
        Row::value(sc, "control idle RSS", "MiB", rss)
            .target(Target::AtMost(Of::Value, 15.0))
            .note(format!(
                "{} builder(s) connected, peak {hwm:.1} MiB, {} threads",
                env.builders.len(),
                threads(pid)
            )),
    );
    for b in &env.builders {
        let pid = b.proc.child.id();
        let (rss, hwm) = rss_mib(pid);
        rows.push(
            Row::value(
                sc,
                &format!("builder ({}) idle RSS", b.exec.name()),
                "MiB",
                rss,
            )
            .target(Target::AtMost(Of::Value, 8.0))
            .note(format!("peak {hwm:.1} MiB, {} threads", threads(pid))),
        );
    }
    env.stop_all();
    Ok(())
}

//! Scenario 6, fault cost: a builder dies mid-job. Time from the fault to
//! the job running again on the other builder (its `started_ms` at epoch
//! 2, stamped by the control node when the second builder's accept is
//! recorded).
//!
//! Two faults: `kill -9` (the kernel closes the builder's connection at
//! once: "the connection drops") and SIGSTOP (the builder goes silent and
//! its connection stays open: only the lease can tell).

use super::env::{now_ms, ControlOpts, Env, Exec};
use super::report::{Of, Row, Target};
use super::Opts;
use anyhow::{bail, Result};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Stop,
}

async fn once(opts: &Opts, fault: Fault) -> Result<f64> {
    let mut env = Env::start(ControlOpts {
        heartbeat_ms: opts.fault_heartbeat_ms,
        ..Default::default()
    })
    .await?;
    // Host executor: the figure is the control node's; container start-up
    // would only add noise. The orphaned `sleep` ends by itself.
    env.project("slow", "language: shell\nscript: sleep 15\n")
        .await?;
    let a = env.spawn_builder("a", Exec::Host, 1).await?;
    env.wait_connected(1, Duration::from_secs(20)).await?;
    let b = env.trigger("slow").await?;
    let job = b.jobs[0].id;
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let b = env.build(b.id).await?;
        if b.jobs[0].state() == kha_proto::admin::JobState::Running {
            break;
        }
        if Instant::now() > until {
            bail!("the job did not start: {b:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    env.spawn_builder("b", Exec::Host, 1).await?;
    env.wait_connected(2, Duration::from_secs(20)).await?;
    // Let a heartbeat or two pass, as in real life.
    tokio::time::sleep(Duration::from_millis(opts.fault_heartbeat_ms * 3 / 2)).await;
    let t_fault = now_ms();
    match fault {
        Fault::Kill => env.builders[a].proc.kill9(),
        Fault::Stop => {
            Command::new("kill")
                .args(["-STOP", &env.builders[a].proc.child.id().to_string()])
                .status()?;
        }
    }
    let lease = opts.fault_heartbeat_ms * kha_core::limits::LEASE_HEARTBEATS;
    let until = Instant::now() + Duration::from_millis(lease * 4 + 10_000);
    let rerun = loop {
        let bb = env.build(b.id).await?;
        let j = &bb.jobs[0];
        if j.id == job && j.epoch >= 2 && j.state() == kha_proto::admin::JobState::Running {
            break j.started_ms as f64 - t_fault;
        }
        if Instant::now() > until {
            bail!("the job did not run again: {bb:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    if fault == Fault::Stop {
        env.builders[a].proc.kill9();
    }
    env.stop_all();
    Ok(rerun)
}

pub async fn run(opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let sc = "fault";
    let lease = (opts.fault_heartbeat_ms * kha_core::limits::LEASE_HEARTBEATS) as f64;
    let mut kill = Vec::new();
    let mut stop = Vec::new();
    for _ in 0..opts.fault_reps {
        kill.push(once(opts, Fault::Kill).await?);
        stop.push(once(opts, Fault::Stop).await?);
    }
    let hb = opts.fault_heartbeat_ms;
    rows.push(
        Row::samples(
            sc,
            "kill -9 (connection drops) → job runs elsewhere",
            "ms",
            &kill,
        )
        .target(Target::AtMost(Of::Max, 100.0))
        .note(format!("heartbeat {hb} ms, lease {lease} ms")),
    );
    rows.push(
        Row::samples(sc, "SIGSTOP (silent) → job runs elsewhere", "ms", &stop)
            .target(Target::AtMost(Of::Max, lease))
            .note(format!("heartbeat {hb} ms, lease {lease} ms")),
    );
    Ok(())
}

//! Scenario 2, throughput: trivial one-job builds queued at once (while no
//! builder is connected), then builder processes start and drain the queue.
//! Rate = jobs / (last job finished − first job started), from the control
//! node's timestamps.

use super::env::{authed, children_cpu_secs, cpu_secs, Env, Exec};
use super::report::{Of, Row, Target};
use super::{Opts, TRIVIAL};
use anyhow::Result;
use kha_proto::admin::{GetBuildRequest, TriggerBuildRequest};
use std::time::{Duration, Instant};

pub async fn run(opts: &Opts, exec: Exec, rows: &mut Vec<Row>) -> Result<()> {
    let sc = format!("throughput/{}", exec.name());
    let n = match exec {
        Exec::Host => opts.tp_jobs,
        Exec::Lxc => opts.tp_jobs_lxc,
    };
    let mut env = Env::start(Default::default()).await?;
    env.project("tp", TRIVIAL).await?;

    // Queue every build first, four triggers in flight.
    let t = Instant::now();
    let cpu0 = cpu_secs(env.control_pid());
    let mut tasks = Vec::new();
    let lanes = 4;
    for lane in 0..lanes {
        let mut admin = env.admin();
        let token = env.token().to_string();
        let count = n / lanes + usize::from(lane < n % lanes);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                let b = admin
                    .trigger_build(authed(
                        &token,
                        TriggerBuildRequest {
                            project: "tp".into(),
                            branch: String::new(),
                            commit: String::new(),
                            force: true,
                        },
                    ))
                    .await?
                    .into_inner();
                ids.push(b.build.map(|b| b.id).unwrap_or(0));
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await??);
    }
    ids.sort_unstable();
    let enqueue = t.elapsed().as_secs_f64();
    let enqueue_cpu = cpu_secs(env.control_pid()) - cpu0;
    rows.push(
        Row::value(
            &sc,
            "builds triggered per second (queueing)",
            "builds/s",
            n as f64 / enqueue,
        )
        .note(format!(
            "{n} in {enqueue:.2} s, control CPU {:.0} %",
            100.0 * enqueue_cpu / enqueue
        )),
    );

    // Now the builders.
    let cpu0 = cpu_secs(env.control_pid());
    let t = Instant::now();
    for i in 0..opts.tp_builders {
        env.spawn_builder(&format!("b{i}"), exec, opts.tp_slots)
            .await?;
    }
    for id in &ids {
        env.wait_build(*id, Duration::from_millis(20), Duration::from_secs(600))
            .await?;
    }
    let wall = t.elapsed().as_secs_f64();
    let control_cpu = cpu_secs(env.control_pid()) - cpu0;
    let builder_cpu: f64 = env
        .builders
        .iter()
        .map(|b| cpu_secs(b.proc.child.id()))
        .sum();
    let job_cpu: f64 = env
        .builders
        .iter()
        .map(|b| children_cpu_secs(b.proc.child.id()))
        .sum();

    let mut first_start = u64::MAX;
    let mut last_finish = 0u64;
    let mut passed = 0usize;
    let mut admin = env.admin();
    for id in &ids {
        let b = admin
            .get_build(env.req(GetBuildRequest { build_id: *id }))
            .await?
            .into_inner();
        for j in &b.jobs {
            first_start = first_start.min(j.started_ms);
            last_finish = last_finish.max(j.finished_ms);
            if j.state() == kha_proto::admin::JobState::Passed {
                passed += 1;
            }
        }
    }
    let span = (last_finish.saturating_sub(first_start)) as f64 / 1000.0;
    let rate = n as f64 / span.max(0.001);
    let target = match exec {
        Exec::Host => Target::AtLeast(Of::Value, 500.0),
        Exec::Lxc => Target::AtLeast(Of::Value, 80.0),
    };
    rows.push(
        Row::value(&sc, "jobs per second", "jobs/s", rate)
            .target(target)
            .note(format!(
                "{n} one-job builds, {} builders × {} slots, {passed} passed, {span:.2} s first start → last finish",
                opts.tp_builders, opts.tp_slots
            )),
    );
    rows.push(
        Row::value(
            &sc,
            "jobs per second from builder spawn",
            "jobs/s",
            n as f64 / wall,
        )
        .note(format!("{wall:.2} s")),
    );
    rows.push(Row::value(
        &sc,
        "CPU per job: control node",
        "ms",
        1000.0 * control_cpu / n as f64,
    ));
    rows.push(Row::value(
        &sc,
        "CPU per job: builder processes",
        "ms",
        1000.0 * builder_cpu / n as f64,
    ));
    rows.push(Row::value(
        &sc,
        "CPU per job: what builders ran (sh, lxc-execute, …)",
        "ms",
        1000.0 * job_cpu / n as f64,
    ));
    env.stop_all();
    Ok(())
}

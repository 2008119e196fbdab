//! Scenario 5, scale: many builders at once, simulated in this process but
//! speaking the real protocol (Register, then a Session with Hello, Ready,
//! Accept, Heartbeat; FinishJob), each over its own connection, against
//! the real control node. Phases:
//!
//! 1. connect: every simulated builder enrols and opens its session;
//! 2. idle: all connected, heartbeating, no credit;
//! 3. queue: builds of 200 jobs are triggered until the queue holds the
//!    wanted number of jobs; then idle again with the queue full;
//! 4. assign: every builder gives credit; jobs finish at once (empty log),
//!    so the rate is the control node's offer/accept/grant/finish rate;
//! 5. hold: one more job per slot, each held for two lease periods while
//!    heartbeats renew the leases: any job the control node takes away
//!    (lease expired while its builder was alive and heartbeating) is a
//!    false positive.

use super::env::{cpu_secs, rss_mib, threads, ControlOpts, Env};
use super::report::{Of, Row, Target};
use super::Opts;
use anyhow::{anyhow, bail, Result};
use kha_proto::admin::TriggerBuildRequest;
use kha_proto::agent::agent_service_client::AgentServiceClient;
use kha_proto::agent::{builder_message::Msg as B, control_message::Msg as C, *};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

const PHASE_IDLE: u8 = 0;
const PHASE_ASSIGN: u8 = 1;
const PHASE_HOLD: u8 = 2;

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    finished: AtomicU64,
    finish_errors: AtomicU64,
    revokes: AtomicU64,
    cancels: AtomicU64,
    false_stops: AtomicU64,
    session_ends: AtomicU64,
    heartbeats: AtomicU64,
    phase: AtomicU8,
    /// How long a granted job is held before it is finished, in ms.
    hold_ms: AtomicU64,
    /// (phase, heartbeat → ack in ms)
    hb: Mutex<Vec<(u8, f64)>>,
}

struct SimCfg {
    addr: String,
    enrol: String,
    slots: u32,
    heartbeat_ms: u64,
}

enum Ev {
    Finishing(u64),
    Done(u64),
}

fn msg(m: B) -> BuilderMessage {
    BuilderMessage { msg: Some(m) }
}

fn authed<T>(bearer: &str, m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    if let Ok(v) = bearer.parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// Enrols and opens a session; returns the pieces the loop needs.
async fn connect(
    i: usize,
    cfg: &SimCfg,
) -> Result<(
    AgentServiceClient<Channel>,
    String,
    mpsc::Sender<BuilderMessage>,
    tonic::Streaming<ControlMessage>,
)> {
    let ch = Endpoint::from_shared(format!("http://{}", cfg.addr))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = AgentServiceClient::new(ch);
    let r = client
        .register(RegisterRequest {
            enrolment_token: cfg.enrol.clone(),
            name: format!("sim{i}"),
        })
        .await?
        .into_inner();
    let bearer = format!("Bearer {}:{}", r.builder_id, r.secret);
    let (tx, rx) = mpsc::channel(256);
    tx.send(msg(B::Hello(Hello {
        builder_id: r.builder_id.clone(),
        name: format!("sim{i}"),
        protocol_major: kha_core::PROTOCOL_MAJOR,
        protocol_minor: 0,
        features: vec![],
        labels: vec![
            "os=linux".into(),
            "arch=x86_64".into(),
            "executor=sim".into(),
            "image=default".into(),
        ],
        slots: cfg.slots,
        running: vec![],
        version: "kha-bench-sim".into(),
    })))
    .await?;
    let mut inbound = client
        .session(authed(&bearer, ReceiverStream::new(rx)))
        .await?
        .into_inner();
    match inbound.message().await? {
        Some(ControlMessage {
            msg: Some(C::Welcome(_)),
        }) => {}
        other => bail!("sim{i}: expected Welcome, got {other:?}"),
    }
    Ok((client, bearer, tx, inbound))
}

async fn sim(
    i: usize,
    cfg: Arc<SimCfg>,
    k: Arc<Counters>,
    gate: Arc<Semaphore>,
    mut go: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let permit = gate.acquire().await?;
    let (client, bearer, tx, mut inbound) = connect(i, &cfg).await?;
    drop(permit);
    k.connected.fetch_add(1, SeqCst);
    let empty_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b""));
    let mut offered: HashMap<u64, u64> = HashMap::new();
    // Jobs held (running), and jobs whose result is being reported.
    let mut holding: HashMap<u64, u64> = HashMap::new();
    let mut finishing: HashMap<u64, u64> = HashMap::new();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Ev>();
    let mut sent: VecDeque<(Instant, u8, Vec<u64>)> = VecDeque::new();
    let slots = cfg.slots as usize;
    let free = |go: bool, o: usize, h: usize, f: usize| -> u32 {
        if go {
            slots.saturating_sub(o + h + f) as u32
        } else {
            0
        }
    };
    let send = |m: B| tx.try_send(msg(m)).is_ok();
    send(B::Ready(Ready { free_slots: 0 }));
    // Spread the heartbeats over the interval.
    let offset = Duration::from_millis((i as u64 * 7919) % cfg.heartbeat_ms.max(1));
    let mut hb = tokio::time::interval_at(
        tokio::time::Instant::now() + offset,
        Duration::from_millis(cfg.heartbeat_ms),
    );
    hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = inbound.message() => {
                let m = match m {
                    Ok(Some(ControlMessage { msg: Some(m) })) => m,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => {
                        k.session_ends.fetch_add(1, SeqCst);
                        return Ok(());
                    }
                };
                match m {
                    C::Offer(o) => {
                        if free(*go.borrow(), offered.len(), holding.len(), finishing.len()) > 0 {
                            offered.insert(o.job_id, o.epoch);
                            send(B::Accept(Accept { job_id: o.job_id, epoch: o.epoch }));
                        } else {
                            let mut r = Reject { job_id: o.job_id, epoch: o.epoch, reason: "busy".into(), kind: 0 };
                            r.set_kind(kha_proto::agent::RejectReason::Busy);
                            send(B::Reject(r));
                        }
                    }
                    C::Granted(g) => {
                        if offered.remove(&g.job_id) == Some(g.epoch) {
                            holding.insert(g.job_id, g.epoch);
                            let hold = k.hold_ms.load(SeqCst);
                            let (mut c, b, ev, k2, sha) = (client.clone(), bearer.clone(), ev_tx.clone(), k.clone(), empty_sha.clone());
                            let (job_id, epoch) = (g.job_id, g.epoch);
                            tokio::spawn(async move {
                                if hold > 0 {
                                    tokio::time::sleep(Duration::from_millis(hold)).await;
                                }
                                let _ = ev.send(Ev::Finishing(job_id));
                                let r = c.finish_job(authed(&b, FinishJobRequest {
                                    job_id, epoch, outcome: Outcome::Passed as i32,
                                    total_len: 0, sha256: sha, detail: String::new(),
                                })).await;
                                match r {
                                    Ok(_) => k2.finished.fetch_add(1, SeqCst),
                                    Err(_) => k2.finish_errors.fetch_add(1, SeqCst),
                                };
                                let _ = ev.send(Ev::Done(job_id));
                            });
                        }
                    }
                    C::Revoke(r) => {
                        k.revokes.fetch_add(1, SeqCst);
                        offered.remove(&r.job_id);
                        send(B::Ready(Ready { free_slots: free(*go.borrow(), offered.len(), holding.len(), finishing.len()) }));
                    }
                    C::Cancel(c) => {
                        k.cancels.fetch_add(1, SeqCst);
                        send(B::CancelAck(CancelAck { job_id: c.job_id, epoch: c.epoch }));
                    }
                    C::HeartbeatAck(a) => {
                        if let Some((t, phase, held)) = sent.pop_front() {
                            if let Ok(mut v) = k.hb.lock() {
                                v.push((phase, t.elapsed().as_secs_f64() * 1000.0));
                            }
                            let should: HashSet<u64> = a.should_run.iter().map(|r| r.job_id).collect();
                            for j in held {
                                if holding.contains_key(&j) && !should.contains(&j) {
                                    k.false_stops.fetch_add(1, SeqCst);
                                }
                            }
                        }
                    }
                    C::Welcome(_) | C::Drain(_) => {}
                    C::Disconnect(_) => {
                        k.session_ends.fetch_add(1, SeqCst);
                        return Ok(());
                    }
                }
            }
            _ = hb.tick() => {
                let running: Vec<JobRef> = holding.iter().chain(finishing.iter())
                    .map(|(&job_id, &epoch)| JobRef { job_id, epoch }).collect();
                let f = free(*go.borrow(), offered.len(), holding.len(), finishing.len());
                sent.push_back((Instant::now(), k.phase.load(SeqCst), holding.keys().copied().collect()));
                k.heartbeats.fetch_add(1, SeqCst);
                if !send(B::Heartbeat(Heartbeat { running, free_slots: f })) {
                    bail!("sim{i}: session outbound full");
                }
            }
            Some(ev) = ev_rx.recv() => match ev {
                Ev::Finishing(j) => {
                    if let Some(e) = holding.remove(&j) {
                        finishing.insert(j, e);
                    }
                }
                Ev::Done(j) => {
                    finishing.remove(&j);
                    send(B::Ready(Ready { free_slots: free(*go.borrow(), offered.len(), holding.len(), finishing.len()) }));
                }
            },
            r = go.changed() => {
                if r.is_err() { return Ok(()); }
                send(B::Ready(Ready { free_slots: free(*go.borrow(), offered.len(), holding.len(), finishing.len()) }));
            }
            _ = stop.changed() => {
                send(B::GoingAway(GoingAway {}));
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Ok(());
            }
        }
    }
}

/// A sampler of the control node's RSS (max seen).
fn sample_rss(pid: u32, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let mut max: f64 = 0.0;
        while !*stop.borrow() {
            max = max.max(rss_mib(pid).0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        max
    })
}

fn matrix_yml(jobs: usize) -> String {
    let envs: String = (1..=jobs).map(|i| format!("  - N={i}\n")).collect();
    format!("language: shell\nenv:\n{envs}script: true\n")
}

async fn trigger_many(env: &Env, project: &str, builds: usize) -> Result<Vec<u64>> {
    let lanes = 4.min(builds.max(1));
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let mut admin = env.admin();
        let token = env.token().to_string();
        let project = project.to_string();
        let count = builds / lanes + usize::from(lane < builds % lanes);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..count {
                let b = admin
                    .trigger_build(super::env::authed(
                        &token,
                        TriggerBuildRequest {
                            project: project.clone(),
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
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await??);
    }
    Ok(ids)
}

async fn wait_count(c: &AtomicU64, want: u64, timeout: Duration, what: &str) -> Result<f64> {
    let t = Instant::now();
    while c.load(SeqCst) < want {
        if t.elapsed() > timeout {
            bail!("{what}: {} of {want} after {timeout:?}", c.load(SeqCst));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(t.elapsed().as_secs_f64())
}

fn hb_samples(k: &Counters, phase: u8) -> Vec<f64> {
    k.hb.lock()
        .map(|v| {
            v.iter()
                .filter(|(p, _)| *p == phase)
                .map(|(_, x)| *x)
                .collect()
        })
        .unwrap_or_default()
}

pub async fn run(opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let sc = "scale";
    let n = opts.sim_builders;
    let hb_ms = opts.sim_heartbeat_ms;
    let lease_ms = hb_ms * kha_core::limits::LEASE_HEARTBEATS;
    let mut env = Env::start(ControlOpts {
        heartbeat_ms: hb_ms,
        ..Default::default()
    })
    .await?;
    let pid = env.control_pid();
    let per_build = 200usize;
    env.project("scale", &matrix_yml(per_build)).await?;
    let cfg = Arc::new(SimCfg {
        addr: env.addr(),
        enrol: env.enrolment_token().await?,
        slots: opts.sim_slots,
        heartbeat_ms: hb_ms,
    });
    let k = Arc::new(Counters::default());
    let (go_tx, go_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (rss_stop_tx, rss_stop_rx) = watch::channel(false);
    let rss_peak = sample_rss(pid, rss_stop_rx);

    // 1. connect
    let (rss0, _) = rss_mib(pid);
    let gate = Arc::new(Semaphore::new(100));
    let t = Instant::now();
    let cpu0 = cpu_secs(pid);
    let mut sims = Vec::with_capacity(n);
    for i in 0..n {
        sims.push(tokio::spawn(sim(
            i,
            cfg.clone(),
            k.clone(),
            gate.clone(),
            go_rx.clone(),
            stop_rx.clone(),
        )));
    }
    wait_count(
        &k.connected,
        n as u64,
        Duration::from_secs(120),
        "connected",
    )
    .await?;
    let connect_s = t.elapsed().as_secs_f64();
    rows.push(
        Row::value(
            sc,
            "builders connected (enrol + session)",
            "builders/s",
            n as f64 / connect_s,
        )
        .note(format!(
            "{n} in {connect_s:.2} s, control CPU {:.2} s",
            cpu_secs(pid) - cpu0
        )),
    );

    // 2. idle, connected
    let idle = Duration::from_secs(opts.sim_idle_secs);
    let cpu0 = cpu_secs(pid);
    let hb0 = k.heartbeats.load(SeqCst);
    tokio::time::sleep(idle).await;
    let cpu = cpu_secs(pid) - cpu0;
    let hbs = (k.heartbeats.load(SeqCst) - hb0) as f64 / idle.as_secs_f64();
    let (rss_idle, _) = rss_mib(pid);
    rows.push(
        Row::value(
            sc,
            &format!("control RSS, {n} builders idle"),
            "MiB",
            rss_idle,
        )
        .note(format!(
            "{rss0:.1} MiB before they connected, {} threads",
            threads(pid)
        )),
    );
    rows.push(
        Row::value(
            sc,
            &format!("control CPU, {n} builders idle"),
            "%",
            100.0 * cpu / idle.as_secs_f64(),
        )
        .note(format!("{hbs:.0} heartbeats/s (every {hb_ms} ms)")),
    );

    // 3. queue
    let builds = opts.sim_jobs.div_ceil(per_build);
    let total = (builds * per_build) as u64;
    let t = Instant::now();
    let cpu0 = cpu_secs(pid);
    let ids = trigger_many(&env, "scale", builds).await?;
    let q_s = t.elapsed().as_secs_f64();
    rows.push(
        Row::value(sc, "jobs queued per second", "jobs/s", total as f64 / q_s).note(format!(
            "{builds} builds × {per_build} jobs in {q_s:.2} s, control CPU {:.2} s",
            cpu_secs(pid) - cpu0
        )),
    );
    let cpu0 = cpu_secs(pid);
    tokio::time::sleep(idle).await;
    let cpu = cpu_secs(pid) - cpu0;
    let (rss_q, _) = rss_mib(pid);
    rows.push(Row::value(
        sc,
        &format!("control RSS, {n} builders idle, {total} jobs queued"),
        "MiB",
        rss_q,
    ));
    rows.push(Row::value(
        sc,
        &format!("control CPU, {n} builders idle, {total} jobs queued"),
        "%",
        100.0 * cpu / idle.as_secs_f64(),
    ));
    rows.push(Row::samples(
        sc,
        "heartbeat → ack while idle",
        "ms",
        &hb_samples(&k, PHASE_IDLE),
    ));

    // 4. assign
    k.phase.store(PHASE_ASSIGN, SeqCst);
    let cpu0 = cpu_secs(pid);
    let t = Instant::now();
    go_tx.send(true)?;
    let assign_s = wait_count(&k.finished, total, Duration::from_secs(600), "finished").await?;
    let cpu = cpu_secs(pid) - cpu0;
    rows.push(
        Row::value(
            sc,
            "assignment rate (offer → accept → grant → finish)",
            "jobs/s",
            total as f64 / assign_s,
        )
        .target(Target::AtLeast(Of::Value, 1500.0))
        .note(format!(
            "{total} jobs in {assign_s:.2} s, control CPU {:.0} % ({:.2} ms/job)",
            100.0 * cpu / assign_s,
            1000.0 * cpu / total as f64
        )),
    );
    rows.push(
        Row::samples(
            sc,
            "heartbeat → ack while assigning",
            "ms",
            &hb_samples(&k, PHASE_ASSIGN),
        )
        .target(Target::AtMost(Of::P99, 50.0)),
    );
    let _ = t;

    // 5. hold: a job per slot, held two leases.
    k.phase.store(PHASE_HOLD, SeqCst);
    k.hold_ms.store(lease_ms * 2, SeqCst);
    let hold_jobs = (n as u64 * u64::from(opts.sim_slots)).div_ceil(per_build as u64) as usize;
    let before = k.finished.load(SeqCst) + k.finish_errors.load(SeqCst);
    let hold_ids = trigger_many(&env, "scale", hold_jobs).await?;
    let hold_total = (hold_jobs * per_build) as u64;
    let cpu0 = cpu_secs(pid);
    let t = Instant::now();
    let done = AtomicU64::new(0);
    let until = Instant::now() + Duration::from_millis(lease_ms * 12 + 60_000);
    while k.finished.load(SeqCst) + k.finish_errors.load(SeqCst) < before + hold_total {
        if Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(k.finished.load(SeqCst), SeqCst);
    let hold_s = t.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu0;
    rows.push(
        Row::value(
            sc,
            &format!("control CPU holding {hold_total} leases"),
            "%",
            100.0 * cpu / hold_s,
        )
        .note(format!("{hold_s:.1} s, jobs held {} ms", lease_ms * 2)),
    );
    rows.push(Row::samples(
        sc,
        "heartbeat → ack while holding leases",
        "ms",
        &hb_samples(&k, PHASE_HOLD),
    ));

    // False positives, from the control node's records: any job handed out
    // more than once was taken from a live builder.
    let mut rerun = 0u64;
    let mut not_passed = 0u64;
    let mut admin = env.admin();
    for id in ids.iter().chain(hold_ids.iter()) {
        let b = admin
            .get_build(env.req(kha_proto::admin::GetBuildRequest { build_id: *id }))
            .await?
            .into_inner();
        for j in &b.jobs {
            if j.epoch > 1 || j.attempts > 1 {
                rerun += 1;
            }
            if j.state() != kha_proto::admin::JobState::Passed {
                not_passed += 1;
            }
        }
    }
    rows.push(
        Row::value(sc, "lease-expiry false positives (jobs re-run)", "jobs", rerun as f64)
            .target(Target::AtMost(Of::Value, 0.0))
            .note(format!(
                "{} heartbeat acks lacking a held job, {} results refused, {} revokes, {} cancels, {} sessions ended, {not_passed} jobs not passed",
                k.false_stops.load(SeqCst),
                k.finish_errors.load(SeqCst),
                k.revokes.load(SeqCst),
                k.cancels.load(SeqCst),
                k.session_ends.load(SeqCst),
            )),
    );
    let (rss_end, hwm) = rss_mib(pid);
    rss_stop_tx.send(true)?;
    let peak = rss_peak.await.unwrap_or(0.0).max(hwm);
    rows.push(
        Row::value(sc, "control peak RSS", "MiB", peak)
            .target(Target::AtMost(Of::Value, 100.0))
            .note(format!("{rss_end:.1} MiB at the end")),
    );

    stop_tx.send(true)?;
    for s in sims {
        match tokio::time::timeout(Duration::from_secs(5), s).await {
            Ok(Ok(Err(e))) => eprintln!("  scale: a simulated builder failed: {e}"),
            Ok(Err(e)) => return Err(anyhow!("simulated builder panicked: {e}")),
            _ => {}
        }
    }
    env.stop_all();
    Ok(())
}

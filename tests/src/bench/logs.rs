//! Scenario 3, logs: a job printing 200,000 lines of 80 chars and one
//! printing 200 MB: time to finish, ingest rate, whether the stored log is
//! byte for byte what was printed; and the live-tail delay seen by a real
//! `kha log -f` process following a job that prints timestamps.

use super::env::{bin, children_cpu_secs, cpu_secs, now_ms, ControlOpts, Env, Exec};
use super::report::{Of, Row, Target};
use super::Opts;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

/// 79 characters and a newline: one 80-char line.
fn line() -> String {
    let mut s: String = "kha-bench-log-line-".into();
    while s.len() < 79 {
        s.push((b'a' + (s.len() % 26) as u8) as char);
    }
    s
}

/// What the stored log must be: the driver's echo of the command, then
/// `body_len` bytes of repeated lines.
fn expected(cmd: &str, body_len: u64) -> (u64, String) {
    let mut h = Sha256::new();
    let head = format!("$ {cmd}\n");
    h.update(head.as_bytes());
    let l = format!("{}\n", line());
    let chunk = l.repeat(1024);
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        h.update(&chunk.as_bytes()[..n]);
        left -= n as u64;
    }
    (head.len() as u64 + body_len, hex::encode(h.finalize()))
}

/// Reads a job's stored log back and hashes it.
async fn stored(env: &Env, job: u64) -> Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut n = 0u64;
    env.read_log(job, 0, |data| {
        h.update(data);
        n += data.len() as u64;
    })
    .await?;
    Ok((n, hex::encode(h.finalize())))
}

/// One job that prints a lot.
struct BigJob<'a> {
    project: &'a str,
    cmd: String,
    /// Bytes the command prints.
    body_len: u64,
    label: String,
    time_target: Option<Target>,
}

async fn big_job(env: &Env, sc: &str, job: BigJob<'_>, rows: &mut Vec<Row>) -> Result<()> {
    let BigJob {
        project,
        cmd,
        body_len,
        label,
        time_target,
    } = job;
    let cmd = cmd.as_str();
    let yml = format!("language: shell\nscript:\n  - \"{cmd}\"\n");
    env.project(project, &yml).await?;
    let (cpid, bpid) = (env.control_pid(), env.builders[0].proc.child.id());
    let cpu0 = (cpu_secs(cpid), cpu_secs(bpid), children_cpu_secs(bpid));
    let t0 = now_ms();
    let b = env.trigger(project).await?;
    let b = env
        .wait_build(b.id, Duration::from_millis(5), Duration::from_secs(600))
        .await?;
    let cpu = (
        cpu_secs(cpid) - cpu0.0,
        cpu_secs(bpid) - cpu0.1,
        children_cpu_secs(bpid) - cpu0.2,
    );
    let j = &b.jobs[0];
    if b.state() != kha_proto::admin::BuildState::Passed {
        bail!("{label}: build {} is {:?}: {}", b.id, b.state(), j.detail);
    }
    let (want_len, want_sha) = expected(cmd, body_len);
    let (got_len, got_sha) = stored(env, j.id).await?;
    let exact = got_len == want_len && got_sha == want_sha && j.log_len == want_len;
    let run_s = (j.finished_ms - j.started_ms) as f64 / 1000.0;
    let mut r = Row::value(
        sc,
        &format!("{label}: trigger → build finished"),
        "s",
        (b.finished_ms as f64 - t0) / 1000.0,
    );
    if let Some(t) = time_target {
        r = r.target(t);
    }
    rows.push(r.note(format!("job ran {run_s:.3} s")));
    rows.push(
        Row::value(sc, &format!("{label}: CPU of the control node"), "s", cpu.0).note(format!(
            "builder {:.3} s, the job's processes {:.3} s",
            cpu.1, cpu.2
        )),
    );
    rows.push(
        Row::value(
            sc,
            &format!("{label}: ingest rate (bytes / job run time)"),
            "MB/s",
            want_len as f64 / 1e6 / run_s.max(0.001),
        )
        .target(Target::AtLeast(Of::Value, 100.0)),
    );
    let l = format!("{}\n", line());
    compressed(env, sc, &label, j.id, want_len, rows, |tail| {
        tail.ends_with(l.as_bytes())
    })
    .await?;
    rows.push(
        Row::value(
            sc,
            &format!("{label}: bytes stored == bytes printed"),
            "bool",
            if exact { 1.0 } else { 0.0 },
        )
        .target(Target::AtLeast(Of::Value, 1.0))
        .note(format!(
            "{want_len} printed, {got_len} stored, log_len {}",
            j.log_len
        )),
    );
    Ok(())
}

/// The finished log compressed (zstd, seekable frames): the ratio, how
/// long after the build's end the compressed file was in place, and a
/// 64 KiB tail read from it, whole and checked against what was printed.
async fn compressed(
    env: &Env,
    sc: &str,
    label: &str,
    job: u64,
    len: u64,
    rows: &mut Vec<Row>,
    as_printed: impl Fn(&[u8]) -> bool,
) -> Result<()> {
    let (plain, zst) = (
        env.path(&format!("control/logs/{job}.log")),
        env.path(&format!("control/logs/{job}.log.zst")),
    );
    let t0 = now_ms();
    while !zst.exists() || plain.exists() {
        if now_ms() - t0 > 60_000.0 {
            bail!("{label}: the log was not compressed within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waited = now_ms() - t0;
    let packed = std::fs::metadata(&zst)?.len();
    rows.push(
        Row::value(
            sc,
            &format!("{label}: compression ratio (log / .log.zst)"),
            "x",
            len as f64 / packed.max(1) as f64,
        )
        .note(format!(
            "{len} bytes in {packed}; compressed file in place {waited:.0} ms after the stored log was read back"
        )),
    );
    let tail = (64 * 1024u64).min(len);
    let t = std::time::Instant::now();
    let mut got = Vec::new();
    env.read_log(job, len - tail, |data| got.extend_from_slice(data))
        .await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let ok = got.len() as u64 == tail && as_printed(&got);
    rows.push(
        Row::value(
            sc,
            &format!("{label}: 64 KiB tail of the compressed log (kha log from an offset)"),
            "ms",
            ms,
        )
        .note(format!(
            "{} bytes, {}",
            got.len(),
            if ok { "as printed" } else { "NOT as printed" }
        )),
    );
    Ok(())
}

/// The web log viewer's renderer (`kha_core::term`) over a 200,000-line
/// log with colours and folds, fed in 64 KiB chunks as it arrives.
fn render(rows: &mut Vec<Row>) {
    let mut log = Vec::new();
    for i in 0..200_000 {
        if i % 1000 == 0 {
            log.extend_from_slice(format!("travis_fold:start:f{i}\r\x1b[0K").as_bytes());
        }
        log.extend_from_slice(format!("\x1b[32m{i:>8}\x1b[0m {}\r\n", line()).as_bytes());
    }
    let started = std::time::Instant::now();
    let mut t = kha_core::term::Terminal::new();
    let lines: usize = log.chunks(65536).map(|c| t.feed(c).len()).sum();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    rows.push(
        Row::value("logs", "render 200,000 coloured lines", "ms", ms)
            .note(format!("{lines} lines, {} bytes", log.len())),
    );
}

pub async fn run(opts: &Opts, exec: Exec, rows: &mut Vec<Row>) -> Result<()> {
    let sc = format!("logs/{}", exec.name());
    if exec == Exec::Host {
        render(rows);
    }
    let mut env = Env::start(ControlOpts {
        // Room for the 200 MB log (the default cap is 64 MiB).
        log_cap_bytes: opts.log_big_bytes + (16 << 20),
        ..Default::default()
    })
    .await?;
    env.spawn_builder("a", exec, 2).await?;
    env.wait_connected(1, Duration::from_secs(20)).await?;
    // Warm the builder's mirror cache and the page cache.
    env.project("warm", super::TRIVIAL).await?;
    let b = env.trigger("warm").await?;
    env.follow_to_end(b.jobs[0].id).await?;

    let l = line();
    let lines = opts.log_lines as u64;
    let job = BigJob {
        project: "lines",
        cmd: format!("yes {l} | head -n {lines}"),
        body_len: lines * 80,
        label: format!("{}k lines × 80 chars", lines / 1000),
        time_target: Some(Target::AtMost(Of::Value, 0.4)),
    };
    big_job(&env, &sc, job, rows).await?;
    let big = opts.log_big_bytes;
    let job = BigJob {
        project: "big",
        cmd: format!("yes {l} | head -c {big}"),
        body_len: big,
        label: format!("{} MB", big / 1_000_000),
        time_target: None,
    };
    big_job(&env, &sc, job, rows).await?;

    // A log like a real build's: file listings (names, sizes, dates), not
    // one line repeated; its ratio is the one to expect.
    let yml = "language: shell\nscript:\n  - \"ls -lR /usr 2>/dev/null | head -c 20000000\"\n";
    env.project("varied", yml).await?;
    let b = env.trigger("varied").await?;
    let b = env
        .wait_build(b.id, Duration::from_millis(5), Duration::from_secs(600))
        .await?;
    let j = &b.jobs[0];
    compressed(
        &env,
        &sc,
        "20 MB of `ls -lR /usr`",
        j.id,
        j.log_len,
        rows,
        |tail| !tail.is_empty(),
    )
    .await?;

    // Live tail: the job prints a timestamp every 10 ms; a `kha log -f`
    // process follows it.
    let n = opts.tail_lines;
    let yml = format!(
        "language: shell\nscript:\n  - \"sleep 0.5; for i in $(seq 1 {n}); do echo \\\"TS $(date +%s%N)\\\"; sleep 0.01; done\"\n"
    );
    env.project("tail", &yml).await?;
    let b = env.trigger("tail").await?;
    let job = b.jobs[0].id;
    let mut child = Command::new(bin("kha")?)
        .args(["log", &job.to_string(), "--follow"])
        .env("KHA_SERVER", env.addr())
        .env("KHA_TOKEN", env.token())
        .env("HOME", env.path(""))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("kha log --follow")?;
    let out = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut delays = Vec::new();
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            let seen = now_ms();
            if let Some(ts) = l
                .strip_prefix("TS ")
                .and_then(|t| t.trim().parse::<f64>().ok())
            {
                delays.push(seen - ts / 1e6);
            }
        }
        delays
    });
    let _ = child.wait();
    let delays = reader.join().unwrap_or_default();
    if delays.len() < n {
        rows.push(
            Row::value(&sc, "live tail: lines seen", "lines", delays.len() as f64)
                .note(format!("of {n}")),
        );
    }
    rows.push(
        Row::samples(
            &sc,
            "live tail delay (print → seen by `kha log -f`)",
            "ms",
            &delays,
        )
        .target(Target::AtMost(Of::P99, 100.0)),
    );
    env.stop_all();
    Ok(())
}

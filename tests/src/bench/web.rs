//! Scenario web: the web UI as a person and many clients see it.
//! - print → visible: a job prints lines stamped with the wall clock; in a
//!   real headless chromium tab on the job's page, a MutationObserver notes
//!   the frame each line first appears in the DOM.
//! - the 200,000-line (16 MB) log page: first contentful paint and the log
//!   viewer ready (whole log fetched and rendered), from navigation start.
//! - many SSE clients (plain HTTP, not browsers) on one running job's log
//!   stream: the control node's RSS and CPU added.
//! - page weight: kha.js + kha.css as served, uncompressed.
//!
//! Browser calls block (the browser has a runtime of its own), so they run
//! in `block_in_place`. Nothing here is asserted: figures are reported.

use super::env::{cpu_secs, rss_mib, ControlOpts, Env, Exec};
use super::report::{Of, Row, Target};
use super::Opts;
use anyhow::{anyhow, bail, Result};
use kha_tests::{http_get, Browser, BrowserOpts};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SC: &str = "web";

/// Runs blocking browser work off the async workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Polls a build until its first job is in `state` (or the build is final).
async fn wait_job_running(env: &Env, build: u64, timeout: Duration) -> Result<u64> {
    let until = Instant::now() + timeout;
    loop {
        let b = env.build(build).await?;
        let j = b
            .jobs
            .first()
            .ok_or_else(|| anyhow!("build {build} has no job"))?;
        if j.state() == kha_proto::admin::JobState::Running {
            return Ok(j.id);
        }
        if Instant::now() > until {
            bail!("job of build {build} not running after {timeout:?}: {b:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(opts: &Opts, exec: Exec, rows: &mut Vec<Row>) -> Result<()> {
    let mut env = Env::start(ControlOpts {
        http: true,
        ..Default::default()
    })
    .await?;
    env.spawn_builder("a", exec, 2).await?;
    env.wait_connected(1, Duration::from_secs(20)).await?;
    let base = env.http_url()?;
    page_weight(&base, rows)?;
    let browser = blocking(|| Browser::try_start_with(BrowserOpts::default()))?;
    // The browser owns a runtime, which may only be dropped where blocking
    // is allowed: on the error path too.
    let measured = async {
        first_paint(&env, &browser, opts, rows).await?;
        print_to_visible(&env, &browser, opts, rows).await
    }
    .await;
    blocking(|| drop(browser));
    measured?;
    sse_clients(&env, opts, rows).await?;
    Ok(())
}

/// kha.js and kha.css as a page links them.
fn page_weight(base: &str, rows: &mut Vec<Row>) -> Result<()> {
    let page = blocking(|| http_get(base, "/"));
    if page.status != 200 {
        bail!("GET / answered {}", page.status);
    }
    let html = page.text();
    let mut sizes = vec![];
    for asset in ["/assets/kha.js", "/assets/kha.css"] {
        // The link carries `?v=<hash>`; take it as written.
        let start = html
            .find(asset)
            .ok_or_else(|| anyhow!("the overview links no {asset}"))?;
        let end = html[start..]
            .find(['"', '\''])
            .map(|e| start + e)
            .unwrap_or(html.len());
        let href = html[start..end].replace("&amp;", "&");
        let r = blocking(|| http_get(base, &href));
        if r.status != 200 {
            bail!("GET {href} answered {}", r.status);
        }
        sizes.push((asset, r.body.len()));
    }
    let total: usize = sizes.iter().map(|(_, n)| n).sum();
    rows.push(
        Row::value(
            SC,
            "page weight: kha.js + kha.css, uncompressed",
            "KB",
            total as f64 / 1000.0,
        )
        .target(Target::AtMost(Of::Value, 100.0))
        .note(
            sizes
                .iter()
                .map(|(a, n)| format!("{a} {n} B"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    );
    Ok(())
}

/// Opens the finished 200,000-line job's page afresh and reads, from the
/// page's own clock (0 = navigation start), the first contentful paint and
/// when the log viewer said it was ready.
async fn first_paint(env: &Env, b: &Browser, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let lines = 200_000;
    let ci = format!(
        "awk 'BEGIN {{ for (i = 1; i <= {lines}; i++) printf \"line %06d abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmn\\n\", i }}'\n"
    );
    env.project_files(
        "big",
        &[
            (".travis.yml", "language: shell\nscript: sh ci.sh\n"),
            ("ci.sh", &ci),
        ],
    )
    .await?;
    let build = env.trigger("big").await?;
    let build = env
        .wait_build(
            build.id,
            Duration::from_millis(20),
            Duration::from_secs(300),
        )
        .await?;
    let job = build.jobs.first().ok_or_else(|| anyhow!("no job"))?;
    let bytes = job.log_len;
    let url = format!("{}/jobs/{}", env.http_url()?, job.id);
    let reps = if opts.quick { 2 } else { 5 };
    let (mut fcp, mut paint, mut ready, mut load) = (vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        let v = blocking(|| -> Result<Value> {
            b.try_goto("about:blank")?;
            b.try_goto(&url)?;
            // From here on, a timer notes when the viewer is ready (to
            // within 5 ms); the wait below only collects it.
            b.try_js(
                "window.__readyAt = (window.khaLog && window.khaLog.ready) ? performance.now() : null;
                 if (window.__readyAt === null) {
                   const t = setInterval(() => {
                     if (window.khaLog && window.khaLog.ready) { window.__readyAt = performance.now(); clearInterval(t); }
                   }, 5);
                 }",
                vec![],
            )?;
            b.try_wait_js(
                "the log viewer to be ready",
                Duration::from_secs(120),
                "if (window.__readyAt === null) return null;
                 const p = performance.getEntriesByName('first-contentful-paint')[0];
                 const n = performance.getEntriesByType('navigation')[0];
                 return { ready: window.__readyAt, fcp: p ? p.startTime : -1,
                          paint: window.khaLog.paintMs == null ? -1 : window.khaLog.paintMs,
                          load: n ? n.loadEventEnd : -1, lines: window.khaLog.lines() };",
            )
        })?;
        let f = |k: &str| v[k].as_f64().unwrap_or(-1.0);
        if f("fcp") >= 0.0 {
            fcp.push(f("fcp"));
        }
        if f("paint") >= 0.0 {
            paint.push(f("paint"));
        }
        ready.push(f("ready"));
        load.push(f("load"));
        if v["lines"].as_u64() != Some(lines + 1) {
            bail!(
                "the viewer rendered {} lines, not {}",
                v["lines"],
                lines + 1
            );
        }
    }
    let what = format!(
        "{}k-line log ({:.1} MB) page",
        lines / 1000,
        bytes as f64 / 1e6
    );
    rows.push(
        Row::samples(SC, &format!("{what}: first contentful paint"), "ms", &fcp)
            .target(Target::AtMost(Of::P50, 1000.0))
            .note(format!("{reps} fresh loads; from navigation start")),
    );
    rows.push(
        Row::samples(
            SC,
            &format!("{what}: log viewer's first paint"),
            "ms",
            &paint,
        )
        .target(Target::AtMost(Of::P50, 1000.0))
        .note("the streamed log's first screen drawn by the viewer (khaLog.paintMs)"),
    );
    rows.push(
        Row::samples(SC, &format!("{what}: load event"), "ms", &load)
            .note("the server's HTML (first 2,000 lines) and the script"),
    );
    rows.push(
        Row::samples(SC, &format!("{what}: log viewer ready"), "ms", &ready)
            .note("whole log fetched and its visible part rendered (khaLog.ready)"),
    );
    Ok(())
}

/// A job prints `TS <ns since the epoch>` every 10 ms; the page's observer
/// notes, in the frame after each line reaches the DOM, how long ago it
/// was printed (the job and the browser share the machine's clock).
async fn print_to_visible(env: &Env, b: &Browser, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let n = opts.tail_lines.max(50);
    // The pause lets the page open and settle before the first line.
    let ci =
        format!("sleep 4\nfor i in $(seq 1 {n}); do echo \"TS $(date +%s%N)\"; sleep 0.01; done\n");
    env.project_files(
        "live",
        &[
            (".travis.yml", "language: shell\nscript: sh ci.sh\n"),
            ("ci.sh", &ci),
        ],
    )
    .await?;
    let build = env.trigger("live").await?;
    let job = wait_job_running(env, build.id, Duration::from_secs(60)).await?;
    let url = format!("{}/jobs/{job}", env.http_url()?);
    blocking(|| -> Result<()> {
        b.try_goto(&url)?;
        b.try_wait_js(
            "the log viewer to be ready",
            Duration::from_secs(30),
            "return !!(window.khaLog && window.khaLog.ready)",
        )?;
        b.try_js(
            r#"window.__delays = []; window.__early = 0;
               const seen = new Set();
               const found = [];
               const scan = (text) => {
                 for (const m of (text || '').matchAll(/TS (\d{19})/g)) {
                   if (seen.has(m[1])) continue;
                   seen.add(m[1]);
                   found.push(Number(m[1].slice(0, 13)) + Number(m[1].slice(13, 16)) / 1000);
                 }
               };
               // Lines already there were printed before anyone watched.
               scan(document.querySelector('#log') ? document.querySelector('#log').textContent : '');
               window.__early = found.length; found.length = 0;
               let frame = false;
               new MutationObserver((ms) => {
                 for (const m of ms) {
                   if (m.type === 'characterData') scan(m.target.textContent);
                   for (const a of m.addedNodes) scan(a.textContent);
                 }
                 if (found.length && !frame) {
                   frame = true;
                   requestAnimationFrame(() => {
                     const now = performance.timeOrigin + performance.now();
                     for (const ts of found) window.__delays.push(now - ts);
                     found.length = 0; frame = false;
                   });
                 }
               }).observe(document.querySelector('#log') || document.body,
                          { subtree: true, childList: true, characterData: true });"#,
            vec![],
        )?;
        Ok(())
    })?;
    let done = env
        .wait_build(
            build.id,
            Duration::from_millis(50),
            Duration::from_secs(120),
        )
        .await?;
    if done.state() != kha_proto::admin::BuildState::Passed {
        bail!("the live build ended {:?}", done.state());
    }
    let v = blocking(|| -> Result<Value> {
        b.try_wait_js(
            "the page to say passed",
            Duration::from_secs(30),
            "return document.querySelector('#job') && document.querySelector('#job').dataset.state === 'passed'",
        )?;
        std::thread::sleep(Duration::from_millis(300));
        b.try_js(
            "return { delays: window.__delays, early: window.__early };",
            vec![],
        )
    })?;
    let delays: Vec<f64> = v["delays"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    rows.push(
        Row::samples(SC, "print → visible in a browser tab", "ms", &delays)
            .target(Target::AtMost(Of::P99, 100.0))
            .note(format!(
                "{} of {n} lines seen appearing ({} were there before the observer); a line every 10 ms; headless chromium, MutationObserver + next frame",
                delays.len(),
                v["early"]
            )),
    );
    Ok(())
}

/// One plain SSE client: reads the stream to its end; counts the bytes
/// and whether it saw `event: end`.
async fn sse_client(
    addr: String,
    path: String,
    first: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
) -> Result<u64> {
    let mut s = tokio::net::TcpStream::connect(&addr).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    let mut counted = false;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        tail.extend_from_slice(&buf[..n]);
        if !counted && tail.windows(11).any(|w| w == b"event: log\n") {
            // Headers and a first piece of the log: this one is streaming.
            counted = true;
            first.fetch_add(1, Ordering::Relaxed);
        }
        // A little of the end is enough to find `event: end`.
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 4096);
        }
    }
    if tail.windows(11).any(|w| w == b"event: end\n") {
        ended.fetch_add(1, Ordering::Relaxed);
    }
    Ok(total)
}

/// `clients` plain HTTP clients follow one running job's log stream: what
/// the control node's memory and CPU grow by while they do.
async fn sse_clients(env: &Env, opts: &Opts, rows: &mut Vec<Row>) -> Result<()> {
    let clients = if opts.quick { 100 } else { 500 };
    let window = Duration::from_secs(if opts.quick { 2 } else { 5 });
    let secs = if opts.quick { 12 } else { 25 };
    let ci = format!(
        "sleep 1\nfor i in $(seq 1 {}); do echo \"sse line $i of a job that prints ten lines a second\"; sleep 0.1; done\n",
        secs * 10
    );
    env.project_files(
        "sse",
        &[
            (".travis.yml", "language: shell\nscript: sh ci.sh\n"),
            ("ci.sh", &ci),
        ],
    )
    .await?;
    let build = env.trigger("sse").await?;
    let job = wait_job_running(env, build.id, Duration::from_secs(60)).await?;
    let pid = env.control_pid();
    // Settle, then the job alone for one window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, _) = rss_mib(pid);
    let t0 = Instant::now();
    let cpu0 = cpu_secs(pid);
    tokio::time::sleep(window).await;
    let alone = (cpu_secs(pid) - cpu0) / t0.elapsed().as_secs_f64();

    let addr = env.http_url()?.trim_start_matches("http://").to_string();
    let path = format!("/api/v1/jobs/{job}/log/stream");
    let first = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        tasks.push(tokio::spawn(sse_client(
            addr.clone(),
            path.clone(),
            first.clone(),
            ended.clone(),
        )));
    }
    let until = Instant::now() + Duration::from_secs(30);
    while first.load(Ordering::Relaxed) < clients && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connected = first.load(Ordering::Relaxed);
    let connect_s = started.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let cpu1 = cpu_secs(pid);
    let mut rss_max: f64 = 0.0;
    while t1.elapsed() < window {
        rss_max = rss_max.max(rss_mib(pid).0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let with = (cpu_secs(pid) - cpu1) / t1.elapsed().as_secs_f64();
    let mut bytes = 0u64;
    let mut failed = 0usize;
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(secs as u64 + 60), t).await {
            Ok(Ok(Ok(n))) => bytes += n,
            _ => failed += 1,
        }
    }
    let what = format!("{clients} SSE clients on one running job");
    rows.push(
        Row::value(
            SC,
            &format!("{what}: control node RSS added"),
            "MiB",
            rss_max - rss0,
        )
        .target(Target::AtMost(Of::Value, 30.0))
        .note(format!(
            "{rss0:.1} MiB before, {rss_max:.1} MiB peak with them"
        )),
    );
    rows.push(
        Row::value(
            SC,
            &format!("{what}: control node CPU added"),
            "cores",
            with - alone,
        )
        .target(Target::AtMost(Of::Value, 1.0))
        .note(format!(
            "{alone:.3} cores with the job alone, {with:.3} with the clients, over {:.0} s each",
            window.as_secs_f64()
        )),
    );
    rows.push(
        Row::value(
            SC,
            &format!("{what}: clients streaming / saw the end"),
            "clients",
            ended.load(Ordering::Relaxed) as f64,
        )
        .note(format!(
            "{connected} streaming after {connect_s:.2} s, {} saw `event: end`, {failed} failed; {:.1} MB read in all",
            ended.load(Ordering::Relaxed),
            bytes as f64 / 1e6
        )),
    );
    Ok(())
}

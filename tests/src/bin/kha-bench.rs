//! `kha-bench`: kha's benchmark harness. Starts the real `kha-control` and
//! `kha-builder` processes on loopback with temp data dirs, runs each
//! scenario, prints a table (min / p50 / p95 / p99 / max) and writes JSON.
//! Speed is checked here, never by timed tests. See BENCHMARKS.md.
//!
//! ```text
//! kha-bench [--quick] [--executor lxc|host|both] [--json FILE] [SCENARIO…]
//! ```

#[path = "../bench/mod.rs"]
mod bench;

use bench::env::Exec;
use bench::report::{table, Row};
use bench::{Opts, SCENARIOS};
use std::time::Instant;

const USAGE: &str =
    "usage: kha-bench [--quick] [--executor lxc|host|both] [--json FILE] [SCENARIO…]

Runs kha's benchmarks against the real binaries (found next to kha-bench, or
in $KHA_BIN_DIR) on loopback, prints a Markdown table and writes JSON.

  --quick          small sizes, well under a minute (the CI smoke test)
  --executor E     lxc, host or both (default: both when lxc is usable, else host)
  --json FILE      where to write the figures (default: kha-bench.json)
  SCENARIO         any of: footprint latency throughput logs scale fault web
                   (default: all)

KHA_BENCH_KEEP=1 keeps each scenario's data dir (logs of every process).";

fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    serde_json::json!({
        "cpu": model,
        "cpus": cpus,
        "memory_gib": (mem_gib * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "commit": commit,
    })
}

fn main() {
    let mut quick = false;
    let mut json_path = String::from("kha-bench.json");
    let mut executors: Option<Vec<Exec>> = None;
    let mut scenarios: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json_path = args.next().unwrap_or_else(|| usage_exit()),
            "--executor" => {
                executors = Some(match args.next().as_deref() {
                    Some("lxc") => vec![Exec::Lxc],
                    Some("host") => vec![Exec::Host],
                    Some("both") => vec![Exec::Lxc, Exec::Host],
                    _ => usage_exit(),
                })
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            s if SCENARIOS.contains(&s) => scenarios.push(s.to_string()),
            _ => usage_exit(),
        }
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    let lxc = kha_tests::lxc_available();
    let executors = executors.unwrap_or_else(|| {
        if lxc {
            vec![Exec::Lxc, Exec::Host]
        } else {
            vec![Exec::Host]
        }
    });
    if executors.contains(&Exec::Lxc) && !lxc {
        eprintln!("kha-bench: the lxc executor needs root and lxc-execute");
        std::process::exit(2);
    }
    let opts = if quick {
        Opts::quick(executors)
    } else {
        Opts::full(executors)
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kha-bench: {e}");
            std::process::exit(1);
        }
    };
    // An interrupted run kills what it started.
    rt.spawn(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("kha-bench: interrupted; stopping what it started");
        bench::env::kill_children();
        std::process::exit(130);
    });
    let load_before = loadavg();
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
    for sc in &scenarios {
        let t = Instant::now();
        eprintln!("kha-bench: {sc}…");
        let mut run = |name: String, r: anyhow::Result<()>, rows: &mut Vec<Row>| {
            if let Err(e) = r {
                failed = true;
                eprintln!("kha-bench: {name} failed: {e:#}");
                rows.push(Row::value(&name, "FAILED", "", 0.0).note(format!("{e:#}")));
            }
        };
        match sc.as_str() {
            "footprint" => {
                let r = rt.block_on(bench::footprint::run(&opts, &mut rows));
                run(sc.clone(), r, &mut rows);
            }
            "latency" | "throughput" | "logs" => {
                let execs = if sc == "logs" {
                    // One executor is enough: the log path is the same.
                    opts.executors[..1].to_vec()
                } else {
                    opts.executors.clone()
                };
                for exec in execs {
                    let r = rt.block_on(async {
                        match sc.as_str() {
                            "latency" => bench::latency::run(&opts, exec, &mut rows).await,
                            "throughput" => bench::throughput::run(&opts, exec, &mut rows).await,
                            _ => bench::logs::run(&opts, exec, &mut rows).await,
                        }
                    });
                    run(format!("{sc}/{}", exec.name()), r, &mut rows);
                }
            }
            "scale" => {
                let r = rt.block_on(bench::scale::run(&opts, &mut rows));
                run(sc.clone(), r, &mut rows);
            }
            "fault" => {
                let r = rt.block_on(bench::fault::run(&opts, &mut rows));
                run(sc.clone(), r, &mut rows);
            }
            "web" => {
                // One executor: the figures are the control node's and the
                // browser's.
                let exec = opts.executors[0];
                let r = rt.block_on(bench::web::run(&opts, exec, &mut rows));
                run(sc.clone(), r, &mut rows);
            }
            _ => unreachable!(),
        }
        eprintln!("kha-bench: {sc} took {:.1} s", t.elapsed().as_secs_f64());
    }
    let total = started.elapsed().as_secs_f64();
    let mut m = machine();
    m["loadavg_before"] = serde_json::json!(load_before);
    m["loadavg_after"] = serde_json::json!(loadavg());
    println!(
        "\nkha-bench ({}), {} × {}, {} GiB, Linux {}, commit {}, {total:.1} s, load {} → {}\n",
        if quick { "quick" } else { "full" },
        m["cpus"],
        m["cpu"].as_str().unwrap_or(""),
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or(""),
        m["commit"].as_str().unwrap_or(""),
        m["loadavg_before"].as_str().unwrap_or(""),
        m["loadavg_after"].as_str().unwrap_or(""),
    );
    print!("{}", table(&rows));
    let out = serde_json::json!({
        "quick": quick,
        "seconds": total,
        "machine": m,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    match serde_json::to_string_pretty(&out) {
        Ok(text) => {
            if let Err(e) = std::fs::write(&json_path, text + "\n") {
                eprintln!("kha-bench: writing {json_path}: {e}");
                failed = true;
            } else {
                eprintln!("kha-bench: figures written to {json_path}");
            }
        }
        Err(e) => eprintln!("kha-bench: {e}"),
    }
    // Targets are reported, not asserted; only a scenario that could not
    // run at all fails the command.
    if failed {
        std::process::exit(1);
    }
}

/// The 1-minute load average: other work on the machine skews every figure.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

fn usage_exit() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

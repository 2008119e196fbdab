//! kha-bench: the benchmark harness. See BENCHMARKS.md.

pub mod env;
pub mod fault;
pub mod footprint;
pub mod latency;
pub mod logs;
pub mod report;
pub mod scale;
pub mod throughput;
pub mod web;

use env::Exec;

/// What a run covers and how big it is.
#[derive(Debug, Clone)]
pub struct Opts {
    pub quick: bool,
    pub executors: Vec<Exec>,
    /// Latency: sequential builds per executor.
    pub latency_builds: usize,
    /// Throughput: jobs, builder processes, slots each.
    pub tp_jobs: usize,
    pub tp_jobs_lxc: usize,
    pub tp_builders: usize,
    pub tp_slots: u32,
    /// Logs: lines of 80 chars; bytes of the big log; tail samples.
    pub log_lines: usize,
    pub log_big_bytes: u64,
    pub tail_lines: usize,
    /// Scale: simulated builders, slots each, queued jobs, heartbeat.
    pub sim_builders: usize,
    pub sim_slots: u32,
    pub sim_jobs: usize,
    pub sim_heartbeat_ms: u64,
    pub sim_idle_secs: u64,
    /// Fault: repetitions of each case, heartbeat used.
    pub fault_reps: usize,
    pub fault_heartbeat_ms: u64,
    /// Footprint: idle time before measuring.
    pub idle_secs: u64,
}

impl Opts {
    pub fn full(executors: Vec<Exec>) -> Opts {
        Opts {
            quick: false,
            executors,
            latency_builds: 200,
            tp_jobs: 2000,
            tp_jobs_lxc: 2000,
            tp_builders: 4,
            tp_slots: 8,
            log_lines: 200_000,
            log_big_bytes: 200 * 1000 * 1000,
            tail_lines: 300,
            sim_builders: 1000,
            sim_slots: 2,
            sim_jobs: 10_000,
            sim_heartbeat_ms: 1000,
            sim_idle_secs: 5,
            fault_reps: 3,
            fault_heartbeat_ms: 1000,
            idle_secs: 3,
        }
    }

    pub fn quick(executors: Vec<Exec>) -> Opts {
        Opts {
            quick: true,
            executors,
            latency_builds: 20,
            tp_jobs: 200,
            tp_jobs_lxc: 64,
            tp_builders: 2,
            tp_slots: 4,
            log_lines: 200_000,
            log_big_bytes: 20 * 1000 * 1000,
            tail_lines: 50,
            sim_builders: 100,
            sim_slots: 2,
            sim_jobs: 1000,
            sim_heartbeat_ms: 500,
            sim_idle_secs: 1,
            fault_reps: 1,
            fault_heartbeat_ms: 300,
            idle_secs: 1,
        }
    }
}

pub const SCENARIOS: &[&str] = &[
    "footprint",
    "latency",
    "throughput",
    "logs",
    "scale",
    "fault",
    "web",
];

/// `.travis.yml` of a trivial build.
pub const TRIVIAL: &str = "language: shell\nscript: true\n";

//! Protocol limits and default intervals, in one place. The control node
//! sends the effective values to builders in `Welcome`, so builders never
//! hard-code them.

/// Largest log chunk a builder may send.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// gRPC message size limit set on every client and server (chunk + framing).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Default per-job log cap; output past it is cut with a visible marker.
pub const DEFAULT_LOG_CAP_BYTES: u64 = 64 * 1024 * 1024;
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT_MS: u64 = 5_000;
/// Leases last this many heartbeats without renewal.
pub const LEASE_HEARTBEATS: u64 = 3;
/// Default job timeout.
pub const DEFAULT_JOB_TIMEOUT_SECS: u64 = 3_600;
/// How long one `cvs` command (rlog, rls, checkout) may take before it is
/// killed, on the control node and on builders.
pub const CVS_COMMAND_TIMEOUT_SECS: u64 = 600;
/// Grace between SIGTERM and SIGKILL when a job is canceled.
pub const DEFAULT_CANCEL_GRACE_MS: u64 = 5_000;
/// How many times a job lost with its builder is handed out again.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// How long an offer may stay unanswered before the job goes back.
pub const OFFER_TIMEOUT_MS: u64 = 10_000;
/// The control node's backstop on a job's timeout, past the builder's own.
pub const TIMEOUT_BACKSTOP_MS: u64 = 30_000;
/// Suggested wait before reconnecting after a `Disconnect`.
pub const RECONNECT_AFTER_MS: u64 = 500;
/// Marker appended when a log reaches its cap.
pub const TRUNCATION_MARKER: &str =
    "\n[kha: log truncated: the job printed more than the log cap]\n";

/// How long one query of a version control system's client (`svn info`,
/// `svn log`, …) may take on the control node before it is killed: a
/// server that stops answering must not stall polling for good.
pub const VCS_QUERY_TIMEOUT_SECS: u64 = 300;
/// The most of one such query's output the control node keeps (a `svn log`
/// over a huge range, a module's whole `cvs rlog`): past it the answer is
/// refused as too large rather than held in memory.
pub const VCS_OUTPUT_CAP_BYTES: u64 = 64 << 20;
/// How long a builder's checkout by an external client (`svn checkout`)
/// may take.
pub const VCS_CHECKOUT_TIMEOUT_SECS: u64 = 3_600;
/// Largest build-cache archive (compressed) the control node stores by
/// default; a bigger one is refused with a line in the job's log.
pub const DEFAULT_CACHE_MAX_ARCHIVE_BYTES: u64 = 512 << 20;
/// Most bytes of cache archives one project keeps by default; past it the
/// least recently used archives are removed.
pub const DEFAULT_CACHE_MAX_PROJECT_BYTES: u64 = 2 << 30;

/// The resource limits a project asks for its jobs (a project setting);
/// 0 leaves a limit to the builder's own default. A builder gives at most
/// its configured maximum (`max_memory_mib`, `max_pids`, `max_cpus` in
/// `builder.toml`) and says so in the job's log when it gives less.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobLimits {
    pub memory_mib: u64,
    pub pids: u64,
    /// Thousandths of a CPU (1500: one and a half).
    pub cpu_millis: u64,
    /// The job's container has network (NAT through its builder, never
    /// to the builder's host or the control node); off, only its own
    /// loopback.
    #[serde(default)]
    pub network: bool,
}

/// The smallest limits a project may ask for: below them a job cannot
/// even start its shell.
pub const MIN_JOB_MEMORY_MIB: u64 = 32;
pub const MIN_JOB_PIDS: u64 = 16;
pub const MIN_JOB_CPU_MILLIS: u64 = 10;

impl JobLimits {
    pub fn is_default(&self) -> bool {
        *self == JobLimits::default()
    }

    /// Checks what a project asks for; the error names the setting.
    pub fn check(&self) -> Result<(), String> {
        for (name, v, min) in [
            ("memory_mib", self.memory_mib, MIN_JOB_MEMORY_MIB),
            ("pids", self.pids, MIN_JOB_PIDS),
            ("cpu_millis", self.cpu_millis, MIN_JOB_CPU_MILLIS),
        ] {
            if v != 0 && v < min {
                return Err(format!(
                    "{name} must be 0 (the builder's default) or at least {min}, not {v}"
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for JobLimits {
    /// `memory 512 MiB, 64 processes, 0.5 CPU`; `builder defaults` when
    /// nothing is asked.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = vec![];
        if self.memory_mib > 0 {
            parts.push(format!("memory {} MiB", self.memory_mib));
        }
        if self.pids > 0 {
            parts.push(format!("{} processes", self.pids));
        }
        if self.cpu_millis > 0 {
            parts.push(format!("{} CPU", self.cpu_millis as f64 / 1000.0));
        }
        if self.network {
            parts.push("network".into());
        }
        if parts.is_empty() {
            f.write_str("builder defaults")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

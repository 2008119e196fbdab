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

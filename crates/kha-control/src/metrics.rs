//! The control node's Prometheus metrics, served at `/metrics` (OpenMetrics
//! text; with `metrics_token` set, only to `Authorization: Bearer
//! <token>`). docs/metrics.md lists every metric.
//!
//! Three sources, one registry (no global one):
//! - the event stream: a consumer ([`Metrics::follow_events`]) counts
//!   builds and jobs by project and state, and times jobs from queued to
//!   started to finished, from the events' own times;
//! - counters the code moves where things happen: lease expiries (the
//!   scheduler's sweep), webhook deliveries by answer (the HTTP handlers),
//!   log bytes ingested (the log store);
//! - values read at each scrape ([`Live`]): the queue's depth by label
//!   set, connected builders and their slots, each event consumer's lag,
//!   the database's and the logs' disk use.

use crate::scheduler::Scheduler;
use crate::store::events::{EventLog, SubscribeError};
use crate::store::logs::LogStore;
use crate::store::Store;
use kha_core::event::{EventFilter, EventKind};
use kha_core::{JobId, Millis};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

type Labels = Vec<(&'static str, String)>;

/// The HTTP content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    builds_created: Family<Labels, Counter>,
    builds_finished: Family<Labels, Counter>,
    jobs_started: Family<Labels, Counter>,
    jobs_finished: Family<Labels, Counter>,
    jobs_requeued: Family<Labels, Counter>,
    queue_wait: Histogram,
    run_time: Histogram,
    webhooks: Family<Labels, Counter>,
    /// The last event the consumer read.
    consumed: Arc<AtomicU64>,
    /// Bytes of the logs directory, measured every minute.
    log_disk: Arc<AtomicU64>,
}

/// What a scrape reads from the running node.
struct Live {
    sched: Arc<Scheduler>,
    logs: Arc<LogStore>,
    store: Store,
    events: Arc<EventLog>,
    consumed: Arc<AtomicU64>,
    log_disk: Arc<AtomicU64>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

/// Seconds, from about 0.1 s to about 3 h (18 buckets doubling).
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 18))
}

impl Metrics {
    pub fn new(sched: Arc<Scheduler>, logs: Arc<LogStore>, store: Store) -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            builds_created: Family::default(),
            builds_finished: Family::default(),
            jobs_started: Family::default(),
            jobs_finished: Family::default(),
            jobs_requeued: Family::default(),
            queue_wait: seconds(),
            run_time: seconds(),
            webhooks: Family::default(),
            consumed: Arc::new(AtomicU64::new(0)),
            log_disk: Arc::new(AtomicU64::new(0)),
            registry: Registry::default(),
        };
        r.register(
            "kha_builds_created",
            "Builds created, by project",
            m.builds_created.clone(),
        );
        r.register(
            "kha_builds_finished",
            "Builds that reached a final state, by project and state",
            m.builds_finished.clone(),
        );
        r.register(
            "kha_jobs_started",
            "Jobs a builder started (each attempt), by project",
            m.jobs_started.clone(),
        );
        r.register(
            "kha_jobs_finished",
            "Jobs that reached a final state, by project and state",
            m.jobs_finished.clone(),
        );
        r.register(
            "kha_jobs_requeued",
            "Jobs put back in the queue after their builder was lost or handed them back, by project",
            m.jobs_requeued.clone(),
        );
        r.register(
            "kha_job_queue_wait_seconds",
            "Time from a job being queued to a builder starting it",
            m.queue_wait.clone(),
        );
        r.register(
            "kha_job_run_seconds",
            "Time from a builder starting a job to its final state",
            m.run_time.clone(),
        );
        r.register(
            "kha_lease_expiries",
            "Leases that expired (a builder went silent while running a job)",
            sched.lease_expiries.clone(),
        );
        r.register(
            "kha_webhook_deliveries",
            "Webhook requests received, by source (github, generic) and answer",
            m.webhooks.clone(),
        );
        r.register_collector(Box::new(Live {
            events: store.events.clone(),
            sched,
            logs,
            store,
            consumed: m.consumed.clone(),
            log_disk: m.log_disk.clone(),
        }));
        Metrics { registry: r, ..m }
    }

    /// The exposition, in OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Counts a webhook request by its source and the answer it got.
    pub fn webhook(&self, source: &'static str, answer: &'static str) {
        self.webhooks
            .get_or_create(&vec![("source", source.into()), ("answer", answer.into())])
            .inc();
    }

    /// Follows the event stream from now on, counting and timing builds
    /// and jobs; measures the logs' disk use every minute. Returns when
    /// `stop` is cancelled or the stream closes.
    pub async fn follow_events(
        &self,
        events: &Arc<EventLog>,
        logs: &LogStore,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let from = events.published();
        self.consumed.store(from, Ordering::Relaxed);
        let mut sub = events.subscribe(from + 1, EventFilter::default());
        let mut queued: HashMap<JobId, Millis> = HashMap::new();
        let mut started: HashMap<JobId, Millis> = HashMap::new();
        let mut measure = tokio::time::interval(std::time::Duration::from_secs(60));
        measure.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                _ = measure.tick() => {
                    let dir = logs.dir().to_path_buf();
                    let bytes = tokio::task::spawn_blocking(move || dir_bytes(&dir)).await.unwrap_or(0);
                    self.log_disk.store(bytes, Ordering::Relaxed);
                    continue;
                }
                n = sub.next(true) => n,
            };
            let e = match next {
                Ok(Some(e)) => e,
                Ok(None) | Err(SubscribeError::Closed) => return,
                Err(SubscribeError::Pruned { first }) => {
                    sub = events.subscribe(first, EventFilter::default());
                    continue;
                }
                Err(SubscribeError::Store(err)) => {
                    tracing::warn!(error = %err, "metrics: cannot read the event stream");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                    sub = events.subscribe(sub.position(), EventFilter::default());
                    continue;
                }
            };
            let project = || vec![("project", e.project.clone())];
            let secs = |from: Millis| e.at_ms.saturating_sub(from) as f64 / 1000.0;
            match e.kind {
                EventKind::BuildCreated => {
                    self.builds_created.get_or_create(&project()).inc();
                }
                EventKind::BuildFinished => {
                    let state = e.build_state.map(|s| s.to_string()).unwrap_or_default();
                    let mut l = project();
                    l.push(("state", state));
                    self.builds_finished.get_or_create(&l).inc();
                }
                EventKind::JobQueued => {
                    queued.insert(e.job_id, e.at_ms);
                }
                EventKind::JobStarted => {
                    if let Some(at) = queued.remove(&e.job_id) {
                        self.queue_wait.observe(secs(at));
                    }
                    started.insert(e.job_id, e.at_ms);
                    self.jobs_started.get_or_create(&project()).inc();
                }
                EventKind::JobRequeued => {
                    started.remove(&e.job_id);
                    queued.insert(e.job_id, e.at_ms);
                    self.jobs_requeued.get_or_create(&project()).inc();
                }
                EventKind::JobFinished => {
                    queued.remove(&e.job_id);
                    if let Some(at) = started.remove(&e.job_id) {
                        self.run_time.observe(secs(at));
                    }
                    let state = e.job_state.map(|s| s.to_string()).unwrap_or_default();
                    let mut l = project();
                    l.push(("state", state));
                    self.jobs_finished.get_or_create(&l).inc();
                }
                _ => {}
            }
            self.consumed.store(e.seq, Ordering::Relaxed);
        }
    }
}

/// Bytes of the files in a directory (not below it).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(0i64);
    let mut m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    match values {
        // One value without labels: `name 3`, not `name{} 3`.
        [(labels, v)] if labels.is_empty() => ConstGauge::new(*v).encode(m)?,
        _ => {
            for (labels, v) in values {
                ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
            }
        }
    }
    Ok(())
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.sched.stats();
        let depth: Vec<(Labels, i64)> = s
            .queue_depth
            .into_iter()
            .map(|(labels, n)| (vec![("labels", labels)], n as i64))
            .collect();
        gauge(
            &mut encoder,
            "kha_queue_depth",
            "Jobs waiting in the queue (not yet offered), by the labels they require",
            &depth,
        )?;
        gauge(
            &mut encoder,
            "kha_builders_connected",
            "Builders connected now",
            &[(vec![], s.builders as i64)],
        )?;
        gauge(
            &mut encoder,
            "kha_builder_slots",
            "Job slots of the connected builders: free (offered to no job), busy, and draining (of builders taking no new jobs)",
            &[
                (vec![("state", "free".into())], s.free as i64),
                (vec![("state", "busy".into())], s.busy as i64),
                (vec![("state", "draining".into())], s.draining as i64),
            ],
        )?;
        gauge(
            &mut encoder,
            "kha_jobs_running",
            "Jobs a builder holds a lease on",
            &[(vec![], s.running as i64)],
        )?;
        let ingested = ConstCounter::new(self.logs.ingested());
        ingested.encode(encoder.encode_descriptor(
            "kha_log_bytes_ingested",
            "Bytes of job logs stored (appended to logs of running jobs)",
            None,
            ingested.metric_type(),
        )?)?;
        let published = self.events.published();
        let notify = self
            .store
            .notify_cursor()
            .ok()
            .flatten()
            .unwrap_or(published);
        let consumed = self.consumed.load(Ordering::Relaxed);
        gauge(
            &mut encoder,
            "kha_event_stream_seq",
            "The last event published to the event stream",
            &[(vec![], published as i64)],
        )?;
        gauge(
            &mut encoder,
            "kha_event_stream_lag",
            "Events published that a consumer has not handled yet, by consumer (notify: notifications and hooks; metrics: these counters)",
            &[
                (
                    vec![("consumer", "notify".into())],
                    published.saturating_sub(notify) as i64,
                ),
                (
                    vec![("consumer", "metrics".into())],
                    published.saturating_sub(consumed) as i64,
                ),
            ],
        )?;
        gauge(
            &mut encoder,
            "kha_event_stream_subscribers",
            "Live readers of the event stream (web pages, kha events, --wait, the consumers above)",
            &[(vec![], self.events.subscribers() as i64)],
        )?;
        gauge(
            &mut encoder,
            "kha_disk_bytes",
            "Disk used by the database (sled) and by the job logs",
            &[
                (
                    vec![("part", "database".into())],
                    self.store.size_on_disk().unwrap_or(0) as i64,
                ),
                (
                    vec![("part", "logs".into())],
                    self.log_disk.load(Ordering::Relaxed) as i64,
                ),
            ],
        )?;
        Ok(())
    }
}

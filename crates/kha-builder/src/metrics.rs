//! The builder's Prometheus metrics, served at `/metrics` on
//! `metrics_listen` when it is set (off by default; with `metrics_token`,
//! only to `Authorization: Bearer <token>`). docs/metrics.md lists them.
//!
//! Timings are observed where they happen (the checkout, the container's
//! start); slots and the log spool are read at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The HTTP content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    /// From the job's command being made to its driver's first line in the
    /// container (lxc: the container's start).
    pub container_start: Histogram,
    /// The checkout of a job's commit into its workspace.
    pub checkout: Histogram,
    /// Jobs this builder ran to an end, by outcome.
    pub jobs: Family<Vec<(&'static str, String)>, Counter>,
    live: Arc<Live>,
}

/// What a scrape reads.
#[derive(Debug)]
struct Live {
    slots: u32,
    busy: AtomicU64,
    spool: PathBuf,
}

impl Metrics {
    pub fn new(slots: u32, spool: PathBuf) -> Metrics {
        let mut registry = Registry::default();
        let container_start = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let checkout = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let jobs = Family::default();
        registry.register(
            "kha_builder_container_start_seconds",
            "From a job's command being made to its driver running in the container",
            container_start.clone(),
        );
        registry.register(
            "kha_builder_checkout_seconds",
            "The checkout of a job's commit into its workspace",
            checkout.clone(),
        );
        registry.register(
            "kha_builder_jobs",
            "Jobs this builder ran to an end, by outcome",
            jobs.clone(),
        );
        let live = Arc::new(Live {
            slots,
            busy: AtomicU64::new(0),
            spool,
        });
        registry.register_collector(Box::new(live.clone()));
        Metrics {
            registry,
            container_start,
            checkout,
            jobs,
            live,
        }
    }

    /// How many slots run a job now.
    pub fn set_busy(&self, n: usize) {
        self.live.busy.store(n as u64, Ordering::Relaxed);
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let busy = self.busy.load(Ordering::Relaxed) as i64;
        let g = ConstGauge::new(0i64);
        let mut m = encoder.encode_descriptor(
            "kha_builder_slots",
            "This builder's job slots: busy (running a job) and free",
            None,
            g.metric_type(),
        )?;
        for (state, v) in [("busy", busy), ("free", self.slots as i64 - busy)] {
            ConstGauge::new(v.max(0)).encode(m.encode_family(&[("state", state)])?)?;
        }
        let spool: u64 = std::fs::read_dir(&self.spool)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let g = ConstGauge::new(spool as i64);
        g.encode(encoder.encode_descriptor(
            "kha_builder_spool_bytes",
            "Bytes of job logs spooled on this builder's disk (running jobs', and finished ones' not yet acknowledged)",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Serves `/metrics` on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    token: kha_core::Secret,
    stop: tokio_util::sync::CancellationToken,
) {
    use axum::http::{header, HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let (metrics, token) = (metrics.clone(), token.clone());
            async move {
                if !token.is_empty() {
                    let given = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or("");
                    if !token.matches(given) {
                        return (
                            StatusCode::UNAUTHORIZED,
                            "/metrics needs Authorization: Bearer <metrics_token>\n",
                        )
                            .into_response();
                    }
                }
                match metrics.encode() {
                    Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                }
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::warn!(error = %e, "the metrics listener stopped");
    }
}

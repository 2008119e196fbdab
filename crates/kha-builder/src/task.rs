//! Every long-lived task is spawned here, named and inside a tracing span.

use std::future::Future;
use tracing::Instrument;

pub fn spawn<F>(name: &'static str, fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut.instrument(tracing::info_span!("task", name)))
}

//! Every long-lived task is spawned here, named and inside a tracing span,
//! and owned: [`Tasks`] keeps the handles of the tasks it spawned so that
//! shutdown can wait for them (and abort what does not end in time)
//! instead of leaving them to be dropped with the runtime.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{warn, Instrument};

/// Spawns `fut` as the task `name`, in its own span. The caller owns the
/// handle: await it, or hand the task to a [`Tasks`].
pub fn spawn<F>(name: &'static str, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut.instrument(tracing::info_span!("task", name)))
}

/// A set of named tasks that run until they end by themselves, all of
/// which [`Tasks::shutdown`] waits for.
#[derive(Default)]
pub struct Tasks {
    set: Mutex<JoinSet<()>>,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Spawns `fut` as the task `name`, in its own span, and keeps it.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        // Tasks that ended are reaped here, so the set does not grow.
        while let Some(r) = set.try_join_next() {
            report(r);
        }
        set.spawn(fut.instrument(tracing::info_span!("task", name)));
    }

    /// How many tasks have not ended yet.
    pub fn len(&self) -> usize {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(r) = set.try_join_next() {
            report(r);
        }
        set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits up to `within` for every task to end, then aborts the rest and
    /// waits for them to be gone. Returns how many had to be aborted.
    pub async fn shutdown(&self, within: Duration) -> usize {
        let mut set = std::mem::take(&mut *self.set.lock().unwrap_or_else(|p| p.into_inner()));
        let ended = tokio::time::timeout(within, async {
            while let Some(r) = set.join_next().await {
                report(r);
            }
        })
        .await;
        if ended.is_ok() {
            return 0;
        }
        let aborted = set.len();
        set.shutdown().await;
        aborted
    }
}

fn report(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r {
        if e.is_panic() {
            warn!(error = %e, "a task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_then_aborts() {
        let tasks = Tasks::new();
        tasks.spawn("quick", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
        });
        tasks.spawn("stuck", std::future::pending());
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks.shutdown(Duration::from_millis(200)).await, 1);
        assert!(tasks.is_empty());
        tasks.spawn("quick", async {});
        assert_eq!(tasks.shutdown(Duration::from_secs(5)).await, 0);
    }
}
